"""How the SLA sweep scales with the number of open tickets: it must read only what is due.

Seeds 1,000 open tickets whose reminders are mostly hours away plus a fixed number due now,
times one sweep (the service and its commit, as the worker runs it), grows the table to 100,000
open tickets with the same number due, times the sweep again and prints both figures and their
ratio; the 100k sweep should cost at most twice the 1k sweep. Also prints the plan of the sweep's
read of the tickets table at both sizes.

    DATABASE_URL=postgresql+psycopg://root@127.0.0.1/postgres python -m bench.sla_sweep --fresh
    python bench/sla_sweep.py                    # a temporary SQLite file

On PostgreSQL the benchmark works in a database of its own, ``slabench``, on DATABASE_URL's
server (never the database the URL names); it must be empty (it is migrated from scratch):
a missing one is created, and ``--fresh`` drops and recreates it first.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
FIRST_RESPONSE_MIN = 8 * 60  # warning after 6.4 h: every ticket seeded "now" stays quiet
RESOLUTION_MIN = 2 * 24 * 60
INSERT_CHUNK = 10_000


def _arguments() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--small", type=int, default=1_000, help="open tickets, first run")
    parser.add_argument("--large", type=int, default=100_000, help="open tickets, second run")
    parser.add_argument("--due", type=int, default=20, help="tickets due at each sweep")
    parser.add_argument("--rounds", type=int, default=15, help="timed sweeps per size")
    parser.add_argument("--fresh", action="store_true", help="drop and recreate the PG database")
    return parser.parse_args()


DB_NAME = "slabench"


def _prepare_postgres(url, fresh: bool) -> None:
    """Create the benchmark's own database, so that no other database is ever touched."""
    import psycopg
    from psycopg import sql

    params = {"host": url.host or "127.0.0.1", "user": url.username, "dbname": "postgres"}
    if url.port:
        params["port"] = url.port
    if url.password:
        params["password"] = url.password
    with psycopg.connect(**params, autocommit=True) as conn:
        name = sql.Identifier(url.database)
        if fresh:
            conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(name))
        exists = conn.execute(
            "SELECT 1 FROM pg_database WHERE datname = %s", (url.database,)
        ).fetchone()
        if not exists:
            conn.execute(sql.SQL("CREATE DATABASE {}").format(name))


def _database_url(fresh: bool) -> str:
    from sqlalchemy.engine import make_url

    url = os.environ.get("DATABASE_URL")
    if not url:
        return f"sqlite:///{tempfile.mkdtemp(prefix='slabench-')}/slabench.db"
    parsed = make_url(url)
    if parsed.get_backend_name() != "postgresql":
        return url
    parsed = parsed.set(database=DB_NAME)
    _prepare_postgres(parsed, fresh)
    return parsed.render_as_string(hide_password=False)


class Bench:
    """The seeded brand and the helpers that grow, arm and sweep it."""

    def __init__(self, rounds: int, due: int) -> None:
        from helpdesk.extensions import db

        self.db = db
        self.rounds = rounds
        self.due = due
        self.thread = 0
        self.next_due: list[int] = []
        self.sweep_sql: tuple[str, object] | None = None

    def seed_brand(self) -> None:
        from helpdesk.accounts.models import Agent, Membership, Role
        from helpdesk.brands.models import Brand
        from helpdesk.channels.models import Channel, ChannelKind
        from helpdesk.sla import service as sla

        db = self.db
        brand = Brand(slug="bench", name="Bench", timezone="Europe/Berlin")
        db.session.add(brand)
        db.session.flush()
        channel = Channel(brand_id=brand.id, kind=ChannelKind.INSTAGRAM, account_id="bench")
        db.session.add(channel)
        agents = [
            Agent(email=f"a{i}@bench.test", name=f"A {i}", password_hash="x") for i in range(10)
        ]
        db.session.add_all(agents)
        db.session.flush()
        for index, agent in enumerate(agents):
            role = Role.MANAGER if index == 0 else Role.AGENT
            db.session.add(Membership(agent_id=agent.id, brand_id=brand.id, role=role))
        policy = sla.create_policy(
            brand,
            None,
            "Standard",
            0,
            {},
            {"first_response_min": FIRST_RESPONSE_MIN, "resolution_min": RESOLUTION_MIN},
            business_hours=False,
        )
        db.session.commit()
        self.brand_id, self.channel_id, self.policy_id = brand.id, channel.id, policy.id
        self.agent_ids = [agent.id for agent in agents]

    def grow_to(self, total: int) -> None:
        """Open tickets up to ``total`` with their clocks as the service would store them, all
        reminders hours away: COPY on PostgreSQL, executemany elsewhere."""
        from sqlalchemy import func, select

        from helpdesk.dm.models import Conversation
        from helpdesk.tickets.models import Ticket

        db = self.db
        have = db.session.scalar(select(func.count()).select_from(Ticket))
        now = datetime.now(UTC)
        while have < total:
            size = min(INSERT_CHUNK, total - have)
            keys = [f"t{self.thread + i}" for i in range(size)]
            self.thread += size
            _bulk_insert(
                Conversation.__table__,
                [
                    {
                        "brand_id": self.brand_id,
                        "channel_id": self.channel_id,
                        "kind": "direct",
                        "thread_key": key,
                        "folder": "primary",
                        "request_state": "none",
                        "status": "open",
                        "vanish_mode": False,
                        "participant_count": 0,
                        "created_at": now,
                    }
                    for key in keys
                ],
            )
            by_key = dict(
                db.session.execute(
                    select(Conversation.thread_key, Conversation.id).where(
                        Conversation.channel_id == self.channel_id,
                        Conversation.thread_key.in_(keys),
                    )
                ).all()
            )
            tickets = []
            for i, key in enumerate(keys):
                opened = now - timedelta(minutes=(have + i) % 60)
                first_warn = opened + timedelta(minutes=FIRST_RESPONSE_MIN * 0.8)
                tickets.append(
                    {
                        "brand_id": self.brand_id,
                        "conversation_id": by_key[key],
                        "channel_id": self.channel_id,
                        "status": "open",
                        "priority": "normal",
                        "assignee_id": self.agent_ids[(have + i) % len(self.agent_ids)],
                        "opened_at": opened,
                        "awaiting_since": opened,
                        "reopen_count": 0,
                        "sla_policy_id": self.policy_id,
                        "first_response_due_at": opened + timedelta(minutes=FIRST_RESPONSE_MIN),
                        "first_response_warn_at": first_warn,
                        "resolution_due_at": opened + timedelta(minutes=RESOLUTION_MIN),
                        "resolution_warn_at": opened + timedelta(minutes=RESOLUTION_MIN * 0.8),
                        "next_sla_check_at": first_warn,
                        "breached": [],
                        "created_at": now,
                        "updated_at": now,
                    }
                )
            _bulk_insert(Ticket.__table__, tickets)
            db.session.commit()
            have += size
        self.next_due = list(
            db.session.scalars(
                select(Ticket.id).order_by(Ticket.id.desc()).limit(self.due * (self.rounds + 2))
            )
        )
        if db.engine.dialect.name == "postgresql":
            with db.engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
                conn.exec_driver_sql("VACUUM ANALYZE tickets")

    def arm(self) -> datetime:
        """Make ``due`` fresh tickets overdue for their first response, as if opened 9 h ago."""
        from sqlalchemy import update

        from helpdesk.tickets.models import Ticket

        ids, self.next_due = self.next_due[: self.due], self.next_due[self.due :]
        now = datetime.now(UTC)
        opened = now - timedelta(hours=9)
        self.db.session.execute(
            update(Ticket)
            .where(Ticket.id.in_(ids))
            .values(
                opened_at=opened,
                awaiting_since=opened,
                first_response_due_at=opened + timedelta(minutes=FIRST_RESPONSE_MIN),
                first_response_warn_at=opened + timedelta(minutes=FIRST_RESPONSE_MIN * 0.8),
                resolution_due_at=opened + timedelta(minutes=RESOLUTION_MIN),
                resolution_warn_at=opened + timedelta(minutes=RESOLUTION_MIN * 0.8),
                next_sla_check_at=opened + timedelta(minutes=FIRST_RESPONSE_MIN * 0.8),
            )
        )
        self.db.session.commit()
        return datetime.now(UTC)

    def sweep_once(self) -> float:
        from helpdesk.sla import service as sla

        now = self.arm()
        started = time.perf_counter()
        report = sla.sweep_sla(now=now, limit=1000)
        self.db.session.commit()
        elapsed = time.perf_counter() - started
        if (report.checked, report.breaches) != (self.due, self.due):
            raise SystemExit(f"the sweep did not do what was armed: {report}")
        return elapsed

    def measure(self) -> list[float]:
        self.sweep_once()  # warm-up: caches and the connection pool, untimed
        return [self.sweep_once() for _ in range(self.rounds)]

    def capture_sweep_sql(self) -> None:
        """Keep the SQL and parameters of the sweep's read of tickets, to show its plan."""
        from sqlalchemy import event

        @event.listens_for(self.db.engine, "before_cursor_execute")
        def _capture(conn, cursor, statement, parameters, context, executemany):
            if "FROM tickets" in statement and "next_sla_check_at <=" in statement:
                self.sweep_sql = (statement, parameters)

    def plan(self) -> str:
        """The plan of the sweep's read with rows due, executed and rolled back."""
        if self.sweep_sql is None:
            return "(not captured)"
        statement, parameters = self.sweep_sql
        now = self.arm()
        parameters = _with_now(parameters, now)
        conn = self.db.session.connection()
        if conn.dialect.name == "postgresql":
            sql = "EXPLAIN (ANALYZE, BUFFERS, COSTS OFF, TIMING OFF) " + statement
        else:
            sql = "EXPLAIN QUERY PLAN " + statement
        rows = conn.exec_driver_sql(sql, parameters).all()
        self.db.session.rollback()
        self.sweep_armed(now)
        return "\n".join("    " + " | ".join(str(c) for c in row) for row in rows)

    def sweep_armed(self, now: datetime) -> None:
        """Sweep what the plan's arming made due, so later rounds find exactly their own rows."""
        from helpdesk.sla import service as sla

        sla.sweep_sla(now=now, limit=1000)
        self.db.session.commit()


def _bulk_insert(table, rows: list[dict]) -> None:
    """Rows into a table in the session's transaction, as fast as the database allows."""
    from helpdesk.extensions import db

    conn = db.session.connection()
    if conn.dialect.name != "postgresql":
        conn.execute(table.insert(), rows)
        return
    columns = list(rows[0])
    statement = f"COPY {table.name} ({', '.join(columns)}) FROM STDIN"
    with conn.connection.driver_connection.cursor() as cursor, cursor.copy(statement) as copy:
        for row in rows:
            copy.write_row(
                [json.dumps(v) if isinstance(v, (list, dict)) else v for v in row.values()]
            )


def _with_now(parameters, now: datetime):
    """The captured parameters with the sweep's time replaced, in the driver's own form."""
    naive = now.replace(tzinfo=None)

    def swap(value):
        if isinstance(value, datetime):
            return now if value.tzinfo is not None else naive
        return value

    if isinstance(parameters, dict):
        return {key: swap(value) for key, value in parameters.items()}
    return tuple(swap(value) for value in parameters)


def _ms(seconds: float) -> str:
    return f"{seconds * 1000:.1f} ms"


def main() -> int:
    if str(ROOT) not in sys.path:
        sys.path.insert(0, str(ROOT))
    os.environ.setdefault("HELPDESK_INSTANCE", tempfile.mkdtemp(prefix="slabench-instance-"))
    args = _arguments()
    url = _database_url(args.fresh)

    from flask_migrate import upgrade
    from sqlalchemy import inspect

    from helpdesk import create_app
    from helpdesk.extensions import db

    app = create_app({"SQLALCHEMY_DATABASE_URI": url})
    with app.app_context():
        if inspect(db.engine).get_table_names():
            print(
                f"{db.engine.url.render_as_string(hide_password=True)} is not empty; the "
                "benchmark needs an empty database (PostgreSQL: add --fresh to recreate it).",
                file=sys.stderr,
            )
            return 2
        upgrade()
        bench = Bench(rounds=args.rounds, due=args.due)
        bench.seed_brand()
        bench.capture_sweep_sql()
        print(f"SLA sweep on {db.engine.dialect.name}, {args.due} tickets due per sweep")

        figures: dict[int, float] = {}
        for total in (args.small, args.large):
            started = time.perf_counter()
            bench.grow_to(total)
            seeded = time.perf_counter() - started
            timings = bench.measure()
            figures[total] = statistics.median(timings)
            print(
                f"  {total:>7,} open tickets (seeded in {seeded:.1f} s): sweep median "
                f"{_ms(figures[total])}, min {_ms(min(timings))}, max {_ms(max(timings))} "
                f"over {len(timings)} sweeps"
            )
            print("  plan of the sweep's read of tickets:")
            print(bench.plan())

        ratio = figures[args.large] / figures[args.small]
        verdict = "OK" if ratio <= 2 else "TOO SLOW: the sweep reads more than what is due"
        print(f"  ratio {args.large:,} / {args.small:,}: {ratio:.2f} (at most 2) {verdict}")
        return 0 if ratio <= 2 else 1


if __name__ == "__main__":
    raise SystemExit(main())

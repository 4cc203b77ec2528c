"""How dashboard reads scale with history: the 90-day metrics summary at 10,000 and 1,000,000
messages, and how long recomputing the metrics of a million messages takes.

For each size the benchmark (re)creates its own PostgreSQL database (``dashbench_10k``,
``dashbench_1m``) through the ``postgres`` database of DATABASE_URL's server, migrates it, makes a
brand (Europe/Berlin, Mon-Fri 09:00-17:00, an SLA policy, 10 agents, 2 teams, 3 tags), loads
90 days of history with seed-load, gives it tickets and ticket events
(``helpdesk.metrics.history``), runs ``recompute_metrics`` (timed: under 5 minutes at 1M), then
times the 90-day summary (median of several calls) overall, by agent and in business hours, the
daily trend and the heatmap, and ``GET /api/v1/metrics/summary`` when the API serves it. Prints
the figures and the 1M / 10k ratio of the summary (at most 2).

    DATABASE_URL=postgresql+psycopg://root@127.0.0.1/postgres python -m bench.dashboard
    python -m bench.dashboard --sizes 10000 100000 --keep     # smaller, keep the databases

The databases are dropped at the end unless ``--keep``.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
RECOMPUTE_LIMIT_S = 300.0
RATIO_LIMIT = 2.0
CALENDAR = {
    "timezone": "Europe/Berlin",
    "weekly": {day: [["09:00", "17:00"]] for day in ("mon", "tue", "wed", "thu", "fri")},
    "holidays": [],
}


def _arguments() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", type=int, nargs=2, default=[10_000, 1_000_000])
    parser.add_argument("--rounds", type=int, default=15, help="timed calls per read")
    parser.add_argument("--keep", action="store_true", help="keep the databases afterwards")
    return parser.parse_args()


def _name(size: int) -> str:
    if size % 1_000_000 == 0:
        return f"dashbench_{size // 1_000_000}m"
    if size % 1_000 == 0:
        return f"dashbench_{size // 1_000}k"
    return f"dashbench_{size}"


def _admin(url):
    import psycopg

    params = {"host": url.host or "127.0.0.1", "user": url.username, "dbname": "postgres"}
    if url.port:
        params["port"] = url.port
    if url.password:
        params["password"] = url.password
    return psycopg.connect(**params, autocommit=True)


def _recreate(url, name: str) -> str:
    from psycopg import sql

    with _admin(url) as conn:
        conn.execute(
            sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name))
        )
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    return url.set(database=name).render_as_string(hide_password=False)


def _drop(url, name: str) -> None:
    from psycopg import sql

    with _admin(url) as conn:
        conn.execute(
            sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name))
        )


def _seed_brand():
    from helpdesk.accounts.models import Agent, Membership, Role
    from helpdesk.accounts.service import add_team_member, create_team
    from helpdesk.brands.models import Brand
    from helpdesk.channels.service import connect_channel
    from helpdesk.extensions import db
    from helpdesk.sla import service as sla
    from helpdesk.tickets.tags import create_tag

    brand = Brand(slug="bench", name="Bench", timezone="Europe/Berlin")
    db.session.add(brand)
    db.session.flush()
    connect_channel(brand, "instagram", "17841400000000001", "bench-token", name="Main")
    agents = [
        Agent(email=f"a{i}@bench.test", name=f"Agent {i}", password_hash="x") for i in range(10)
    ]
    db.session.add_all(agents)
    db.session.flush()
    for index, agent in enumerate(agents):
        role = Role.MANAGER if index == 0 else Role.AGENT
        db.session.add(Membership(agent_id=agent.id, brand_id=brand.id, role=role))
    db.session.flush()
    for number, team_name in enumerate(("Tier 1", "Tier 2")):
        team = create_team(brand, team_name)
        for agent in agents[number::2]:
            add_team_member(team, agent)
    for tag in ("shipping", "returns", "vip"):
        create_tag(brand, None, tag)
    sla.set_calendar(brand, None, CALENDAR)
    sla.create_policy(
        brand, None, "Standard", 0, {}, {"first_response_min": 60, "resolution_min": 8 * 60}
    )
    db.session.commit()
    return brand


def _api_call(app, brand, start, end) -> Callable[[], object] | None:
    """A timed GET of the summary through the API, once the API serves it."""
    if not any(rule.rule == "/api/v1/metrics/summary" for rule in app.url_map.iter_rules()):
        return None
    from helpdesk.accounts.tokens import create_token
    from helpdesk.extensions import db

    _row, token = create_token(brand, "bench", "manager")
    db.session.commit()
    client = app.test_client()
    headers = {"Authorization": f"Bearer {token}"}
    query = {"from": start.isoformat(), "to": end.isoformat()}

    def call() -> object:
        from helpdesk.extensions import db

        db.session.remove()
        response = client.get("/api/v1/metrics/summary", query_string=query, headers=headers)
        assert response.status_code == 200, response.get_data(as_text=True)
        return response

    return call


class Size:
    """One history size: its database, app and brand, built once, then read many times."""

    def __init__(self, server, size: int) -> None:
        self.size = size
        self.name = _name(size)
        self.url = _recreate(server, self.name)
        self.figures: dict[str, list[float]] = {}
        self.reads: dict[str, Callable[[], object]] = {}

    def build(self) -> float:
        """Migrate, seed, give the history tickets and events, recompute; returns the seconds of
        the recompute."""
        from flask_migrate import upgrade
        from sqlalchemy import func, select

        from helpdesk import create_app
        from helpdesk.extensions import db
        from helpdesk.metrics.history import build_ticket_history
        from helpdesk.metrics.models import MetricEvent, MetricRollup
        from helpdesk.metrics.service import recompute_metrics
        from helpdesk.seed.load import seed_load

        self.app = create_app({"SQLALCHEMY_DATABASE_URI": self.url})
        with self.app.app_context():
            upgrade()
            brand = _seed_brand()
            loaded = seed_load(brand, self.size, days=90, progress=True)
            history = build_ticket_history(brand)
            print(
                f"  {self.size:>9,} messages: seed-load {loaded.seconds:.1f} s, tickets and "
                f"events {history.seconds:.1f} s ({history.tickets:,} tickets, "
                f"{history.events:,} ticket events)"
            )
            report = recompute_metrics(brand, progress=True)
            phases = ", ".join(f"{name} {sec:.1f} s" for name, sec in report.phases.items())
            rollups = db.session.scalar(select(func.count()).select_from(MetricRollup))
            events = db.session.scalar(select(func.count()).select_from(MetricEvent))
            print(
                f"    recompute_metrics: {report.seconds:.1f} s ({phases}); {events:,} metric "
                f"events, {rollups:,} rollup rows, {report.volume_days} volume days"
            )
            self.brand_id = brand.id
            db.session.remove()
        return report.seconds

    def prepare_reads(self) -> None:
        from zoneinfo import ZoneInfo

        from helpdesk.brands.models import Brand
        from helpdesk.extensions import db
        from helpdesk.metrics.summary import daily_trend, heatmap, summary
        from helpdesk.types import utcnow

        with self.app.app_context():
            brand = db.session.get(Brand, self.brand_id)
            end = utcnow().astimezone(ZoneInfo(brand.timezone)).date()
            start = end - timedelta(days=89)
            result = summary(brand, start, end)
            fr, r, res = result["first_response"], result["response"], result["resolution"]
            print(
                f"    {self.size:,}: 90-day summary: first response median {fr['median_s']} s, "
                f"p90 {fr['p90_s']} s (n={fr['count']:,}); response median {r['median_s']} s "
                f"(n={r['count']:,}); resolution median {res['median_s']} s "
                f"(n={res['count']:,}); SLA {result['sla']}; volume {result['volume']}; "
                f"backlog {result['backlog']}"
            )

            def read(call: Callable[[], object]) -> Callable[[], object]:
                def run() -> object:
                    with self.app.app_context():
                        found = call(db.session.get(Brand, self.brand_id))
                        db.session.remove()
                        return found

                return run

            self.reads = {
                "summary": read(lambda b: summary(b, start, end)),
                "summary business hours": read(lambda b: summary(b, start, end, True)),
                "summary by agent": read(lambda b: summary(b, start, end, group_by="agent")),
                "summary by day": read(lambda b: summary(b, start, end, group_by="day")),
                "daily trend": read(lambda b: daily_trend(b, start, end)),
                "heatmap": read(lambda b: heatmap(b, start, end)),
            }
            api = _api_call(self.app, brand, start, end)
            if api is not None:
                self.reads["API GET /api/v1/metrics/summary"] = api

    def time_reads(self) -> None:
        for label, call in self.reads.items():
            started = time.perf_counter()
            call()
            self.figures.setdefault(label, []).append((time.perf_counter() - started) * 1000)

    def close(self) -> None:
        from helpdesk.extensions import db

        with self.app.app_context():
            db.engine.dispose()


def main() -> int:
    if str(ROOT) not in sys.path:
        sys.path.insert(0, str(ROOT))
    os.environ.setdefault("HELPDESK_INSTANCE", tempfile.mkdtemp(prefix="dashbench-instance-"))
    args = _arguments()
    from sqlalchemy.engine import make_url

    raw = os.environ.get("DATABASE_URL")
    if not raw or make_url(raw).get_backend_name() != "postgresql":
        print("DATABASE_URL must point at a PostgreSQL server", file=sys.stderr)
        return 2
    server = make_url(raw)
    print(f"Dashboard metrics on PostgreSQL, 90 days of history, {os.cpu_count()} CPUs")
    sizes: list[Size] = []
    try:
        for size in args.sizes:
            sizes.append(Size(server, size))
            recompute = sizes[-1].build()
        for size in sizes:
            size.prepare_reads()
            size.time_reads()  # warm-up: caches, the connection pool and the plans, untimed
            size.figures.clear()
        # Alternate the sizes round by round, so both meet the same machine load.
        for _round in range(args.rounds):
            for size in sizes:
                size.time_reads()
        for size in sizes:
            size.close()
    finally:
        if not args.keep:
            for size in args.sizes:
                _drop(server, _name(size))

    small, large = sizes
    ok = recompute < RECOMPUTE_LIMIT_S
    verdict = "OK" if ok else "TOO SLOW"
    print(f"  recompute at {large.size:,} messages: {recompute:.1f} s (limit 300 s) {verdict}")
    for label, timings in small.figures.items():
        low, high = statistics.median(timings), statistics.median(large.figures[label])
        ratio = high / low
        passed = ratio <= RATIO_LIMIT
        if label == "summary":
            ok &= passed
        print(
            f"  {label}: median {low:.1f} ms at {small.size:,}, {high:.1f} ms at "
            f"{large.size:,} over {args.rounds} calls each: ratio {ratio:.2f} "
            f"(at most {RATIO_LIMIT:g}) {'OK' if passed else 'TOO SLOW'}"
        )
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())

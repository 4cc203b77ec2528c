"""How the managers' dashboard scales with history: the 90-day dashboard page and
``GET /api/v1/metrics/summary`` at 10,000 and at 1,000,000 messages in one run, and how long
``recompute-metrics`` takes over a million messages.

For each size the benchmark (re)creates its own PostgreSQL database (``dashbench_10k``,
``dashbench_1m``) through the ``postgres`` database of DATABASE_URL's server and builds it with the
real commands where there is one: ``flask --app wsgi db upgrade``; a brand (Europe/Berlin, Mon-Fri
09:00-17:00, an SLA policy, a manager and 9 agents, 2 teams, 3 tags); ``seed-load --brand bench
--messages N`` (90 days); the tickets and ticket events the services would have written
(``helpdesk.metrics.history``, no command); ``recompute-metrics --brand bench`` (wall time of the
command, under 5 minutes at 1M); ``create-token --role manager``; then ANALYZE, as autovacuum
would have done by then.

In-process, with the Flask test client, it signs in as the manager through the login form and
times the server side of each read with ``time.perf_counter``: the dashboard page over the last
90 days (calendar time and business hours) and the API summary over the same days (overall and by
agent), counting the SQL statements of one request. The sizes take turns round by round, so
both meet the same machine load; the figure is the median. Prints the 1M / 10k ratios (target at
most 2).

    DATABASE_URL=postgresql+psycopg://root@127.0.0.1/postgres python -m bench.dashboard
    python -m bench.dashboard --sizes 10000 100000 --keep     # smaller, keep the databases

The databases are dropped at the end unless ``--keep``.
"""

from __future__ import annotations

import argparse
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from datetime import date, timedelta
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
RECOMPUTE_LIMIT_S = 300.0
RATIO_LIMIT = 2.0
DAYS = 90
SLUG = "bench"
MANAGER = ("manager@bench.test", "bench-manager-pass")
CSRF_RE = re.compile(r'name="csrf_token"[^>]*value="([^"]+)"')
CALENDAR = {
    "timezone": "Europe/Berlin",
    "weekly": {day: [["09:00", "17:00"]] for day in ("mon", "tue", "wed", "thu", "fri")},
    "holidays": [],
}


def _arguments() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", type=int, nargs=2, default=[10_000, 1_000_000])
    parser.add_argument("--rounds", type=int, default=25, help="timed requests per read")
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


def _drop(url, name: str) -> None:
    from psycopg import sql

    with _admin(url) as conn:
        conn.execute(
            sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name))
        )


def _recreate(url, name: str) -> str:
    from psycopg import sql

    _drop(url, name)
    with _admin(url) as conn:
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    return url.set(database=name).render_as_string(hide_password=False)


def _flask(database_url: str, *args: str) -> tuple[str, float]:
    """Run a real command on the size's database: its output and its wall time."""
    env = dict(os.environ, DATABASE_URL=database_url)
    command = [sys.executable, "-m", "flask", "--app", "wsgi", *args]
    started = time.perf_counter()
    done = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True)
    seconds = time.perf_counter() - started
    if done.returncode != 0:
        sys.exit(f"{' '.join(args)} failed:\n{done.stdout}\n{done.stderr}")
    return done.stdout.strip(), seconds


def _seed_brand() -> None:
    """What a brand's admin sets up before history arrives; commands exist only for some of it."""
    from helpdesk.accounts.models import Agent, Membership, Role
    from helpdesk.accounts.service import add_team_member, create_team, hash_password
    from helpdesk.brands.models import Brand
    from helpdesk.channels.service import connect_channel
    from helpdesk.extensions import db
    from helpdesk.sla import service as sla
    from helpdesk.tickets.tags import create_tag

    brand = Brand(slug=SLUG, name="Bench", timezone=CALENDAR["timezone"])
    db.session.add(brand)
    db.session.flush()
    connect_channel(brand, "instagram", "17841400000000001", "bench-token", name="Main")
    email, password = MANAGER
    agents = [Agent(email=email, name="Bench Manager", password_hash=hash_password(password))]
    agents += [
        Agent(email=f"a{i}@bench.test", name=f"Agent {i}", password_hash="x") for i in range(1, 10)
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


class Size:
    """One history size: its database built by the commands, then read many times."""

    def __init__(self, server, size: int) -> None:
        self.size = size
        self.name = _name(size)
        self.url = _recreate(server, self.name)
        self.timings: dict[str, list[float]] = {}
        self.queries: dict[str, int] = {}
        self.statements = [0]
        self.recompute = 0.0

    def build(self) -> None:
        from sqlalchemy import func, select, text

        from helpdesk import create_app
        from helpdesk.brands.models import Brand
        from helpdesk.extensions import db
        from helpdesk.metrics.history import build_ticket_history
        from helpdesk.metrics.models import MetricEvent, MetricRollup

        print(f"  {self.size:,} messages ({self.name})", flush=True)
        _flask(self.url, "db", "upgrade")
        self.app = create_app({"SQLALCHEMY_DATABASE_URI": self.url})
        with self.app.app_context():
            _seed_brand()
            db.session.remove()
        out, seconds = _flask(
            self.url, "seed-load", "--brand", SLUG, "--messages", str(self.size), "--days", "90"
        )
        print(f"    flask seed-load: {seconds:.1f} s  {out.splitlines()[-1]}", flush=True)
        with self.app.app_context():
            brand = db.session.scalar(select(Brand).where(Brand.slug == SLUG))
            history = build_ticket_history(brand)
            db.session.commit()
            print(
                f"    tickets and ticket events: {history.seconds:.1f} s ({history.tickets:,} "
                f"tickets, {history.events:,} ticket events)",
                flush=True,
            )
            db.session.remove()
        out, self.recompute = _flask(self.url, "recompute-metrics", "--brand", SLUG)
        print(f"    flask recompute-metrics: {self.recompute:.1f} s  {out}", flush=True)
        self.token = _flask(self.url, "create-token", "--brand", SLUG, "--name", "bench", "--role",
                            "manager")[0].splitlines()[-1]  # fmt: skip
        with self.app.app_context():
            with db.engine.connect() as conn:
                conn.execution_options(isolation_level="AUTOCOMMIT").execute(text("ANALYZE"))
            events = db.session.scalar(select(func.count()).select_from(MetricEvent))
            rollups = db.session.scalar(select(func.count()).select_from(MetricRollup))
            print(f"    {events:,} metric events, {rollups:,} rollup rows", flush=True)
            db.session.remove()

    def prepare(self) -> None:
        """Sign in as the manager and name the reads; one untimed call each warms them up."""
        from zoneinfo import ZoneInfo

        from sqlalchemy import event

        from helpdesk.extensions import db
        from helpdesk.types import utcnow

        self.client = self.app.test_client()
        html = self.client.get("/login").get_data(as_text=True)
        email, password = MANAGER
        signed = self.client.post(
            "/login",
            data={"email": email, "password": password, "csrf_token": CSRF_RE.search(html)[1]},
        )
        assert signed.status_code == 302, signed.get_data(as_text=True)[:500]

        end: date = utcnow().astimezone(ZoneInfo(CALENDAR["timezone"])).date()
        span = {"from": (end - timedelta(days=DAYS - 1)).isoformat(), "to": end.isoformat()}
        bearer = {"Authorization": f"Bearer {self.token}"}
        self.reads: dict[str, Callable[[], object]] = {
            "page /dashboard": self._get("/dashboard", span),
            "page, business hours": self._get("/dashboard", {**span, "business_hours": "1"}),
            "API /metrics/summary": self._get("/api/v1/metrics/summary", span, bearer),
            "API, group_by=agent": self._get(
                "/api/v1/metrics/summary", {**span, "group_by": "agent"}, bearer
            ),
        }
        with self.app.app_context():
            engine = db.engine
        event.listen(engine, "before_cursor_execute", self._count)
        for label, read in self.reads.items():
            read()
            self.statements[0] = 0
            read()
            self.queries[label] = self.statements[0]
        self._headline(span, bearer)

    def _count(self, *_args) -> None:
        self.statements[0] += 1

    def _get(self, path: str, query: dict, headers: dict | None = None) -> Callable[[], object]:
        def call() -> object:
            response = self.client.get(path, query_string=query, headers=headers or {})
            assert response.status_code == 200, response.get_data(as_text=True)[:500]
            return response

        return call

    def _headline(self, span: dict, bearer: dict) -> None:
        found = self.client.get(
            "/api/v1/metrics/summary", query_string=span, headers=bearer
        ).get_json()
        fr, r, res = found["first_response"], found["response"], found["resolution"]
        print(
            f"    {self.size:,}: {span['from']}..{span['to']}: first response median "
            f"{fr['median_s']} s, p90 {fr['p90_s']} s (n={fr['count']:,}); response median "
            f"{r['median_s']} s (n={r['count']:,}); resolution median {res['median_s']} s "
            f"(n={res['count']:,}); SLA {found['sla']}; volume {found['volume']}; "
            f"backlog {found['backlog']}",
            flush=True,
        )

    def time_round(self) -> None:
        for label, read in self.reads.items():
            started = time.perf_counter()
            read()
            self.timings.setdefault(label, []).append((time.perf_counter() - started) * 1000)

    def median(self, label: str) -> float:
        return statistics.median(self.timings[label])

    def close(self) -> None:
        from helpdesk.extensions import db

        with self.app.app_context():
            db.engine.dispose()


def _report(small: Size, large: Size, rounds: int) -> bool:
    print()
    heads = "".join(f"{f'{s.size:,} msgs':>16}{'SQL':>5}" for s in (small, large))
    print(f"{'90-day read (median ms)':<26}{heads}{'ratio':>8}")
    ok = True
    for label in small.reads:
        ratio = large.median(label) / small.median(label)
        ok = ok and ratio <= RATIO_LIMIT
        line = f"{label:<26}" + "".join(
            f"{s.median(label):>13.1f} ms{s.queries[label]:>5}" for s in (small, large)
        )
        print(line + f"{ratio:>8.2f}" + ("" if ratio <= RATIO_LIMIT else f"  > {RATIO_LIMIT:g}"))
    fast = large.recompute < RECOMPUTE_LIMIT_S
    print(
        f"\nmedian server time over {rounds} requests each, the sizes taking turns; ratio "
        f"{large.size:,} / {small.size:,} (target <= {RATIO_LIMIT:g}): "
        f"{'met' if ok else 'NOT met'}"
    )
    print(
        f"recompute-metrics at {large.size:,} messages: {large.recompute:.1f} s "
        f"(target < {RECOMPUTE_LIMIT_S:.0f} s): {'met' if fast else 'NOT met'}"
    )
    return ok and fast


def main() -> int:
    args = _arguments()
    os.chdir(ROOT)
    if str(ROOT) not in sys.path:
        sys.path.insert(0, str(ROOT))
    os.environ.setdefault("HELPDESK_INSTANCE", tempfile.mkdtemp(prefix="dashbench-instance-"))
    os.environ.setdefault("SECRET_KEY", "dashboard-bench-secret-key")
    from sqlalchemy.engine import make_url

    raw = os.environ.get("DATABASE_URL", "")
    if not raw.startswith("postgresql"):
        sys.exit("DATABASE_URL must point at a PostgreSQL server")
    server = make_url(raw)
    print(f"Managers' dashboard on PostgreSQL, {DAYS} days of history, {os.cpu_count()} CPUs")
    sizes: list[Size] = []
    try:
        for size in args.sizes:
            sizes.append(Size(server, size))
            sizes[-1].build()
        for size in sizes:
            size.prepare()
        for _round in range(args.rounds):
            for size in sizes:
                size.time_round()
        for size in sizes:
            size.close()
        ok = _report(*sizes, args.rounds)
    finally:
        if not args.keep:
            for size in args.sizes:
                _drop(server, _name(size))
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())

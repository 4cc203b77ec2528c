"""How the agent console's two main pages scale with history: the inbox (one page of 50 rows) and
the 500-message conversation, at 10,000 and at 1,000,000 messages, in one run.

A history spans 90 days; one under 100,000 messages spans 14 (``SMALL_HISTORY_DAYS``): seed-load
leaves open only what was active in the last days, and 10,000 messages over 90 days leave about 33
open conversations in Primary, less than the page of 50 rows that is measured. The 1M history's
open backlog is much larger (over 1,000 in Primary): the bigger history is the heavier inbox.

For each size the benchmark (re)creates its own PostgreSQL database (``consolebench_10k``,
``consolebench_1m``) through the ``postgres`` database of DATABASE_URL's server, then runs the real
commands on it: ``flask --app wsgi db upgrade``, ``seed-demo`` and
``seed-load --brand demo --messages N --days D``; then the tickets the services would have
opened on that history (``helpdesk.metrics.history``, as bench.dashboard does) and the SLA due
times of the open ones (the real recompute), so the inbox sorts on real clocks. In-process, with
the Flask test client, it signs in as the demo agent through the login form (with its CSRF token)
and times the server side of each page with ``time.perf_counter`` (median of ``--rounds``
requests; the sizes take turns request by request, so the machine's drift falls on each alike),
counting the SQL statements of one request (SQLAlchemy ``before_cursor_execute``). Prints the
figures and the 1M / 10k ratios (target at most 1.5).

    DATABASE_URL=postgresql+psycopg://root@127.0.0.1/postgres python -m bench.console
    python -m bench.console --sizes 10000 100000 --keep     # smaller, keep the databases

The databases are dropped at the end unless ``--keep``.
"""

from __future__ import annotations

import argparse
import os
import re
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
RATIO_TARGET = 1.5
SMALL_HISTORY_DAYS = 14
LONG_THREAD = 500
AGENT = ("agent@demo.test", "demo-agent-pass")
CSRF_RE = re.compile(r'name="csrf_token"[^>]*value="([^"]+)"')
INBOX = "/inbox?view=all"
ROW_RE = re.compile(r'<li class="row[ "]')


def _arguments() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[10_000, 1_000_000])
    parser.add_argument("--rounds", type=int, default=20, help="timed requests per page")
    parser.add_argument("--keep", action="store_true", help="keep the databases afterwards")
    return parser.parse_args()


def _name(size: int) -> str:
    if size % 1_000_000 == 0:
        return f"consolebench_{size // 1_000_000}m"
    if size % 1_000 == 0:
        return f"consolebench_{size // 1_000}k"
    return f"consolebench_{size}"


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


def _flask(database_url: str, *args: str) -> None:
    env = dict(os.environ, DATABASE_URL=database_url)
    command = [sys.executable, "-m", "flask", "--app", "wsgi", *args]
    started = time.perf_counter()
    done = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True)
    if done.returncode != 0:
        sys.exit(f"{' '.join(args)} failed:\n{done.stdout}\n{done.stderr}")
    last = (done.stdout.strip().splitlines() or [""])[-1]
    print(f"    flask {' '.join(args)}: {time.perf_counter() - started:.1f} s  {last}")


class Size:
    """One history size: its database built by the real commands, then read many times."""

    def __init__(self, server, size: int) -> None:
        self.size = size
        self.name = _name(size)
        self.url = _recreate(server, self.name)
        self.medians: dict[str, float] = {}
        self.queries: dict[str, int] = {}
        self.rows = 0

    def build(self) -> None:
        print(f"  {self.size:,} messages ({self.name})")
        _flask(self.url, "db", "upgrade")
        _flask(self.url, "seed-demo")
        days = "90" if self.size >= 100_000 else str(SMALL_HISTORY_DAYS)
        _flask(
            self.url, "seed-load", "--brand", "demo", "--messages", str(self.size), "--days", days
        )
        self._tickets()

    def _tickets(self) -> None:
        """The tickets the services would have opened on that history, and the SLA due times of
        the open ones, so that the inbox's SLA sort reads real clocks."""
        from sqlalchemy import select, text

        from helpdesk import create_app
        from helpdesk.brands.models import Brand
        from helpdesk.extensions import db
        from helpdesk.metrics.history import build_ticket_history
        from helpdesk.sla.service import recompute_brand
        from helpdesk.types import utcnow

        started = time.perf_counter()
        app = create_app({"SQLALCHEMY_DATABASE_URI": self.url})
        with app.app_context():
            brand = db.session.scalar(select(Brand).where(Brand.slug == "demo"))
            history = build_ticket_history(brand)
            clocks = recompute_brand(brand.id, utcnow())
            db.session.commit()
            with db.engine.connect() as conn:
                conn.execution_options(isolation_level="AUTOCOMMIT").execute(
                    text("VACUUM (ANALYZE) conversations, tickets")
                )
            db.engine.dispose()
        print(
            f"    tickets: {history.tickets:,} written, due times of {clocks:,} active ones: "
            f"{time.perf_counter() - started:.1f} s"
        )

    def open(self) -> None:
        """Sign in as the demo agent through the login form; find the long thread."""
        from sqlalchemy import event, func, select

        from helpdesk import create_app
        from helpdesk.dm.models import Message
        from helpdesk.extensions import db

        self.app = create_app({"SQLALCHEMY_DATABASE_URI": self.url})
        with self.app.app_context():
            long_id = db.session.scalar(
                select(Message.conversation_id)
                .group_by(Message.conversation_id)
                .having(func.count() == LONG_THREAD)
                .limit(1)
            )
            if long_id is None:
                sys.exit(f"no {LONG_THREAD}-message conversation at {self.size:,} messages")
            db.session.remove()
            self.engine = db.engine
        self.pages = {
            "inbox (50 rows)": INBOX,
            f"conversation ({LONG_THREAD} msgs)": f"/conversations/{long_id}",
        }
        self.client = self.app.test_client()
        html = self.client.get("/login").get_data(as_text=True)
        token = CSRF_RE.search(html).group(1)
        email, password = AGENT
        signed = self.client.post(
            "/login", data={"email": email, "password": password, "csrf_token": token}
        )
        assert signed.status_code == 302, signed.get_data(as_text=True)[:500]

        statements = [0]

        def count(*_args) -> None:
            statements[0] += 1

        event.listen(self.engine, "before_cursor_execute", count)
        try:
            for label, path in self.pages.items():
                self.get(path)  # warm up: templates compiled, connections open
                statements[0] = 0
                self.get(path)
                self.queries[label] = statements[0]
        finally:
            event.remove(self.engine, "before_cursor_execute", count)
        self.rows = len(ROW_RE.findall(self.get(INBOX).get_data(as_text=True)))
        self.timings = {label: [] for label in self.pages}

    def get(self, path: str):
        response = self.client.get(path)
        assert response.status_code == 200, response.status_code
        return response

    def time(self, label: str) -> None:
        started = time.perf_counter()
        self.get(self.pages[label])
        self.timings[label].append(time.perf_counter() - started)

    def close(self) -> None:
        self.medians = {
            label: statistics.median(times) * 1000 for label, times in self.timings.items()
        }
        self.engine.dispose()


def _measure(sizes: list[Size], rounds: int) -> None:
    """Request by request, the sizes take turns: whatever the machine does meanwhile (another
    process, a CPU's clock) falls on every size alike, so the ratios compare like with like."""
    for item in sizes:
        item.open()
    for label in sizes[0].pages:
        for _ in range(rounds):
            for item in sizes:
                item.time(label)
    for item in sizes:
        item.close()


def _report(sizes: list[Size]) -> bool:
    labels = list(sizes[0].medians)
    heads = [f"{s.size:,} msgs" for s in sizes]
    print()
    print(f"{'page':<28}" + "".join(f"{h:>16}{'SQL':>6}" for h in heads), end="")
    print(f"{'ratio':>8}" if len(sizes) > 1 else "")
    ok = True
    for label in labels:
        line = f"{label:<28}" + "".join(
            f"{s.medians[label]:>13.1f} ms{s.queries[label]:>6}" for s in sizes
        )
        if len(sizes) > 1:
            ratio = sizes[-1].medians[label] / sizes[0].medians[label]
            ok = ok and ratio <= RATIO_TARGET
            mark = "" if ratio <= RATIO_TARGET else f"  > {RATIO_TARGET}"
            line += f"{ratio:>8.2f}{mark}"
        print(line)
    shown = ", ".join(f"{s.rows} at {s.size:,}" for s in sizes)
    print(f"inbox rows shown (open conversations of the Primary folder, at most 50): {shown}")
    if any(s.rows < 50 for s in sizes):
        print("  (a page of fewer than 50 rows costs less than a full one)")
    if len(sizes) > 1:
        print(
            f"\nmedian server time; ratio: {sizes[-1].size:,} / {sizes[0].size:,} "
            f"(target <= {RATIO_TARGET}): {'met' if ok else 'NOT met'}"
        )
    return ok


def main() -> int:
    args = _arguments()
    os.chdir(ROOT)
    os.environ.setdefault("SECRET_KEY", "console-bench-secret-key")
    from sqlalchemy.engine import make_url

    raw = os.environ.get("DATABASE_URL", "")
    if not raw.startswith("postgresql"):
        sys.exit("DATABASE_URL must point at a PostgreSQL server")
    server = make_url(raw)
    sizes: list[Size] = []
    try:
        for size in args.sizes:
            item = Size(server, size)
            sizes.append(item)
            item.build()
        _measure(sizes, args.rounds)
        ok = _report(sizes)
    finally:
        if not args.keep:
            for item in sizes:
                _drop(server, item.name)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())

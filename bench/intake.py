"""Webhook intake against a trivial endpoint of the same app and a bare Flask app, side by side,
under gunicorn.

    DATABASE_URL=postgresql+psycopg://root@127.0.0.1/postgres python -m bench.intake

The app runs as in production, on PostgreSQL and Redis (REDIS_URL, by default database 12 of a
local Redis: the webhook wakes the intake worker through it). Creates (and drops) a database
`intakebench` (--database) on that server, starts gunicorn for the helpdesk and, with the same
settings (workers, threads, the gthread worker class), for bench/bare_app.py: one Flask route
answering "ok". With a closed-loop load generator on loopback (wrk when installed, else a Python
client), keep-alive connections unless --close, it measures (a) GET /ping, (b) signed
single-message webhook deliveries and (c) the bare app, in alternated rounds so that the
machine's drift falls on all alike, and checks from the kernel's socket table that the
connections really were kept (the same ones from start to end of a round). Then it sends
deliveries at a fixed rate and prints p50/p99 latency. Every delivery answered 200 is checked
to be stored.
"""

from __future__ import annotations

import argparse
import hashlib
import hmac
import http.client
import json
import os
import re
import resource
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import psycopg
from sqlalchemy.engine import make_url

ROOT = Path(__file__).resolve().parent.parent
SECRET = "bench-app-secret"
ACCOUNT = "17841400000000001"


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _admin_conninfo(url: str) -> str:
    parsed = make_url(url)
    host, port = parsed.host or "127.0.0.1", parsed.port or 5432
    return f"host={host} port={port} user={parsed.username} dbname=postgres"


def _bench_url(url: str, name: str) -> str:
    return make_url(url).set(database=name).render_as_string(hide_password=False)


def _plain_url(url: str, name: str) -> str:
    """The benchmark database's URL as psycopg takes it (no +driver)."""
    return (
        make_url(_bench_url(url, name)).set(drivername="postgresql")
        .render_as_string(hide_password=False)
    )  # fmt: skip


def _recreate_database(url: str, name: str) -> None:
    with psycopg.connect(_admin_conninfo(url), autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        conn.execute(f'CREATE DATABASE "{name}"')


def _flask(env: dict, *args: str) -> None:
    """A command of the app; its output (Alembic's log of every migration) only if it fails."""
    done = subprocess.run(
        [sys.executable, "-m", "flask", "--app", "wsgi", *args],
        cwd=ROOT, env=env, capture_output=True, text=True,
    )  # fmt: skip
    if done.returncode:
        sys.stderr.write(done.stdout + done.stderr)
        done.check_returncode()


def _body(n: int, run: str) -> bytes:
    event = {
        "sender": {"id": f"61{n % 5000:014d}"},
        "recipient": {"id": ACCOUNT},
        "timestamp": 1763800000000 + n,
        "message": {"mid": f"bench-{run}-{n}", "text": f"Where is my order #{n}?"},
    }
    body = {"object": "instagram", "entry": [{"id": ACCOUNT, "time": 1, "messaging": [event]}]}
    return json.dumps(body).encode()


def _request(
    port: int,
    method: str,
    path: str,
    body: bytes | None = None,
    conn: http.client.HTTPConnection | None = None,
) -> tuple[int, float]:
    """One request on `conn` (kept open for the next, as a keep-alive client does), or on a
    connection of its own, closed after the answer."""
    headers = {}
    if body is not None:
        headers = {"Content-Type": "application/json", "X-Hub-Signature-256": _signature(body)}
    started = time.perf_counter()
    own = conn is None
    if conn is None:
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    try:
        conn.request(method, path, body=body, headers=headers)
        response = conn.getresponse()
        response.read()
        return response.status, time.perf_counter() - started
    finally:
        if own:
            conn.close()


def closed_loop(
    port: int, seconds: float, connections: int, make, keep_alive: bool = False
) -> tuple[int, int, list[float]]:
    """`connections` clients, each sending its next request as soon as the last is answered;
    with `keep_alive` each client keeps its connection (http.client reconnects by itself if the
    server closed it)."""
    counter = iter(range(10**9))
    lock = threading.Lock()
    ok, failed, latencies = [0], [0], []
    deadline = time.perf_counter() + seconds

    def client() -> None:
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30) if keep_alive else None
        while time.perf_counter() < deadline:
            with lock:
                n = next(counter)
            method, path, body = make(n)
            status, elapsed = _request(port, method, path, body, conn)
            with lock:
                latencies.append(elapsed)
                if status == 200:
                    ok[0] += 1
                else:
                    failed[0] += 1
        if conn is not None:
            conn.close()

    threads = [threading.Thread(target=client) for _ in range(connections)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return ok[0], failed[0], latencies


def fixed_rate(port: int, seconds: float, rate: float, make) -> tuple[int, list[float]]:
    """Open-loop: a request every 1/rate s whatever the answers, so latency is not hidden."""
    latencies: list[float] = []
    ok = [0]
    lock = threading.Lock()
    threads = []
    start = time.perf_counter()
    n = 0
    while (now := time.perf_counter()) - start < seconds:
        target = start + n / rate
        if now < target:
            time.sleep(target - now)
        method, path, body = make(n)

        def send(method=method, path=path, body=body) -> None:
            status, elapsed = _request(port, method, path, body)
            with lock:
                latencies.append(elapsed)
                ok[0] += status == 200

        thread = threading.Thread(target=send)
        thread.start()
        threads.append(thread)
        n += 1
    for thread in threads:
        thread.join()
    return ok[0], latencies


WRK_REPORT = """
done = function(summary, latency, requests)
  local e = summary.errors
  io.write(string.format("WRK %d %d %d %d\\n", summary.requests,
    e.status + e.connect + e.read + e.write + e.timeout,
    latency:percentile(50), latency:percentile(99)))
end
"""


def wrk_loop(
    port: int, seconds: float, connections: int, path: str, bodies: list[bytes], keep_alive: bool
) -> tuple:
    """wrk (C, epoll, keep-alive) as the load generator: it leaves the server nearly all the CPU.
    Webhook bodies are pre-signed and taken in turn: the route stores each POST as a delivery
    whatever its mid (duplicates are dropped later, by the worker, which is not measured here).
    Returns (ok, failed, p50 s, p99 s)."""
    script = WRK_REPORT
    headers = [] if keep_alive else ["-H", "Connection: close"]
    if bodies:
        entries = ",\n".join(
            f"{{{_lua(body.decode())},{_lua(_signature(body))}}}" for body in bodies
        )
        script = (
            f"""local bodies = {{{entries}}}
local requests, i = {{}}, 0
init = function(args)
  for n, b in ipairs(bodies) do
    local headers = {{["Content-Type"] = "application/json", ["X-Hub-Signature-256"] = b[2]}}
    if {"false" if keep_alive else "true"} then headers["Connection"] = "close" end
    requests[n] = wrk.format("POST", "{path}", headers, b[1])
  end
end
request = function()
  i = i % #requests + 1
  return requests[i]
end
"""
            + script
        )
    with tempfile.NamedTemporaryFile("w", suffix=".lua", delete=False) as handle:
        handle.write(script)
    try:
        out = subprocess.run(
            ["wrk", "-t2", f"-c{connections}", f"-d{seconds:g}s", "-s", handle.name, *headers,
             f"http://127.0.0.1:{port}{path}"],
            capture_output=True, text=True, check=True,
        ).stdout  # fmt: skip
    finally:
        os.unlink(handle.name)
    total, failed, p50, p99 = map(int, re.search(r"WRK (\d+) (\d+) (\d+) (\d+)", out).groups())
    return total - failed, failed, p50 / 1e6, p99 / 1e6


def _lua(text: str) -> str:
    return "[==[" + text + "]==]"


def _signature(body: bytes) -> str:
    return "sha256=" + hmac.new(SECRET.encode(), body, hashlib.sha256).hexdigest()


def established_peers(port: int) -> set[int]:
    """Client ports of the connections established to our server's `port` right now, from the
    kernel's table (/proc/net/tcp; empty where there is none)."""
    peers: set[int] = set()
    wanted = f":{port:04X}"
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            lines = Path(table).read_text().splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            fields = line.split()
            if fields[1].endswith(wanted) and fields[3] == "01":  # 01: ESTABLISHED
                peers.add(int(fields[2].rsplit(":", 1)[1], 16))
    return peers


class ConnectionWatch:
    """Samples the connections to a server while a round runs: with keep-alive, no more client
    ports show up over the round than the load generator has connections; a client that
    reconnects shows new ones (one request per connection: nearly a new one each sample). The
    kernel builds /proc/net/tcp from its whole table (about 10 ms), so a sample a second."""

    def __init__(self, port: int, interval: float = 1.0) -> None:
        self.port, self.interval = port, interval
        self.samples: list[set[int]] = []
        self.spreads: list[tuple[int, ...]] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)

    def _sample(self) -> None:
        self._stop.wait(0.5)  # wrk's threads connect first
        while not self._stop.is_set():
            if peers := established_peers(self.port):
                self.samples.append(peers)
                self.spreads.append(connections_per_process(self.port))
            self._stop.wait(self.interval)

    def __enter__(self) -> ConnectionWatch:
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()

    @property
    def seen(self) -> int:
        return len(set().union(*self.samples)) if self.samples else 0

    @property
    def spread(self) -> tuple[int, ...]:
        """Connections held by each server process, fewest first, in the round's last sample."""
        return self.spreads[-1] if self.spreads else ()


def connections_per_process(port: int) -> tuple[int, ...]:
    """How many established connections each process serving `port` holds, from `ss` (empty
    where it is missing). The kernel gives each connection to whichever gunicorn process accepts
    first: when one gets all of them, that round measures one process, not two."""
    try:
        out = subprocess.run(
            ["ss", "-tnpH", "state", "established"], capture_output=True, text=True, check=True
        ).stdout
    except (OSError, subprocess.CalledProcessError):
        return ()
    held: dict[str, int] = {}
    for line in out.splitlines():
        fields = line.split()
        if len(fields) > 2 and fields[2].endswith(f":{port}"):
            for pid in re.findall(r"pid=(\d+)", line):
                held[pid] = held.get(pid, 0) + 1
    return tuple(sorted(held.values()))


@dataclass
class Phase:
    """One kind of request over its rounds: answered, failed, latency and CPU of each round,
    and whether its connections were kept alive."""

    port: int
    ok: int = 0
    failed: int = 0
    counts: list[int] = field(default_factory=list)
    p50s: list[float] = field(default_factory=list)
    p99s: list[float] = field(default_factory=list)
    machine: int = 0
    total: int = 0
    client: float = 0.0
    connections_seen: list[int] = field(default_factory=list)
    spreads: list[tuple[int, ...]] = field(default_factory=list)

    def run(self, phase) -> None:
        before = cpu_times()
        with ConnectionWatch(self.port) as watch:
            ok, failed, p50, p99 = phase()
        after = cpu_times()
        self.ok, self.failed = self.ok + ok, self.failed + failed
        self.counts.append(ok)
        self.p50s.append(p50)
        self.p99s.append(p99)
        self.machine += after[0] - before[0]
        self.total += after[1] - before[1]
        self.client += after[2] - before[2]
        self.connections_seen.append(watch.seen)
        self.spreads.append(watch.spread)

    @property
    def p50(self) -> float:
        """The median of the rounds' p50."""
        return statistics.median(self.p50s)

    @property
    def p99(self) -> float:
        """The worst round's p99."""
        return max(self.p99s)

    def describe(self, seconds: float) -> str:
        cores = self.machine / self.total * (os.cpu_count() or 1) if self.total else float("nan")
        return (
            f"p50 {self.p50 * 1000:6.1f} ms  p99 {self.p99 * 1000:6.1f}"
            f" ms  errors {self.failed}  cpu {cores:.2f} of {os.cpu_count()} cores (load "
            f"generator {self.client / seconds:.2f})"
        )

    def rates(self, seconds: float) -> str:
        return " ".join(f"{count / seconds:.0f}" for count in self.counts)

    def kept(self, connections: int) -> bool:
        """Every round showed its connections, and no more than the load generator opened."""
        return all(0 < seen <= connections for seen in self.connections_seen)

    def spread_over(self, processes: int, connections: int, round_: int) -> bool:
        """Whether every process held at least half its share of the connections."""
        spread = self.spreads[round_]
        return len(spread) == processes and min(spread) * 2 >= connections / processes

    def described_spreads(self) -> str:
        return " ".join("-".join(map(str, spread)) or "?" for spread in self.spreads)

    def connections(self, connections: int) -> str:
        """How many client connections each round showed, and whether they were kept."""
        kept = "kept" if self.kept(connections) else "NOT kept (reconnected)"
        return f"{'/'.join(map(str, self.connections_seen))} per round, {kept}"


def cpu_times() -> tuple[int, int, float]:
    """(busy, total) jiffies of the whole machine, from /proc/stat (0, 0 where there is none),
    and the CPU seconds of the load generator so far (this process and its children: wrk)."""
    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    client = time.process_time() + children.ru_utime + children.ru_stime
    try:
        fields = [int(x) for x in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    except (OSError, ValueError):
        return 0, 0, client
    idle = fields[3] + (fields[4] if len(fields) > 4 else 0)
    return sum(fields) - idle, sum(fields), client


def commit_time(conninfo: str, count: int = 50) -> float:
    """Median time of a one-row INSERT committed on its own, in the benchmark's database: the
    floor under every batch the webhook's writer commits. On a shared server it moves with what
    others write (one WAL for all databases), and the webhook's rate with it; the bare app's
    does not, so the ratio is read next to it."""
    times = []
    with psycopg.connect(conninfo, autocommit=True) as conn:
        conn.execute("CREATE TABLE IF NOT EXISTS bench_commit (n int)")
        for n in range(count):
            started = time.perf_counter()
            conn.execute("INSERT INTO bench_commit VALUES (%s)", (n,))
            times.append(time.perf_counter() - started)
    return statistics.median(times)


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))] if ordered else float("nan")


def _summary(result: tuple[int, int, list[float]]) -> tuple[int, int, float, float]:
    ok, failed, latencies = result
    return ok, failed, percentile(latencies, 0.5), percentile(latencies, 0.99)


def _arguments() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=15, help="per phase, over its rounds")
    parser.add_argument("--connections", type=int, default=16)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--threads", type=int, default=8)
    parser.add_argument("--rate", type=float, default=100, help="deliveries/s for the p99 run")
    parser.add_argument(
        "--client", choices=["wrk", "python"], default="wrk" if shutil.which("wrk") else "python",
        help="load generator of the closed-loop phases (wrk when installed)",
    )  # fmt: skip
    parser.add_argument(
        "--rounds", type=int, default=3, help="alternated rounds of each phase",
    )  # fmt: skip
    parser.add_argument(
        "--close", action="store_true",
        help="a connection per request, as Meta's (by default connections are kept alive)",
    )  # fmt: skip
    parser.add_argument("--keep-alive", action="store_true", help=argparse.SUPPRESS)  # the default
    parser.add_argument(
        "--database", default="intakebench",
        help="the database created (and dropped first) on DATABASE_URL's server",
    )  # fmt: skip
    return parser.parse_args()


def _gunicorn(args: argparse.Namespace, env: dict, port: int, app: str) -> subprocess.Popen:
    """The README's settings; the gthread worker keeps connections alive (sync closes them)."""
    return subprocess.Popen(
        [sys.executable, "-m", "gunicorn", "-w", str(args.workers), "-k", "gthread",
         "--threads", str(args.threads), "-b", f"127.0.0.1:{port}", "--log-level", "warning",
         app],
        cwd=ROOT, env=env,
    )  # fmt: skip


def _wait_until_up(port: int, path: str) -> None:
    for _ in range(150):
        try:
            if _request(port, "GET", path)[0] == 200:
                return
        except OSError:
            time.sleep(0.1)


def _load(args: argparse.Namespace, port: int, each: float, method: str, path: str, bodies):
    """One closed-loop round against `path`: (ok, failed, p50 s, p99 s)."""
    keep_alive = not args.close
    if args.client == "wrk":
        return wrk_loop(port, each, args.connections, path, bodies, keep_alive)
    if bodies:
        make = lambda n: (method, path, bodies[n % len(bodies)])  # noqa: E731
    else:
        make = lambda n: (method, path, None)  # noqa: E731
    return _summary(closed_loop(port, each, args.connections, make, keep_alive))


def main() -> int:
    args = _arguments()
    base_url = os.environ.get("DATABASE_URL", "")
    if not base_url.startswith("postgresql"):
        print("set DATABASE_URL to a PostgreSQL server (postgresql+psycopg://...)")
        return 2

    _recreate_database(base_url, args.database)
    instance = tempfile.mkdtemp(prefix="intakebench-")
    env = dict(
        os.environ,
        DATABASE_URL=_bench_url(base_url, args.database),
        INSTAGRAM_APP_SECRET=SECRET,
        HELPDESK_INSTANCE=instance,
        HELPDESK_ENV="production",
        REDIS_URL=os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/12"),
    )
    _flask(env, "db", "upgrade")
    _flask(env, "create-brand", "bench", "--name", "Bench", "--timezone", "UTC")
    _flask(env, "connect-instagram", "--brand", "bench", "--account-id", ACCOUNT,
           "--access-token", "token")  # fmt: skip

    port, bare_port = _free_port(), _free_port()
    server = _gunicorn(args, env, port, "wsgi:app")
    bare = _gunicorn(args, dict(os.environ), bare_port, "bench.bare_app:app")
    try:
        _wait_until_up(port, "/ping")
        _wait_until_up(bare_port, "/")
        run = str(int(time.time()))
        bodies = [_body(n, run) for n in range(2000)]
        each = args.seconds / args.rounds
        ping, hooks, baseline = Phase(port), Phase(port), Phase(bare_port)
        conninfo = _plain_url(base_url, args.database)
        commits = []
        for _ in range(args.rounds):  # alternated, so the machine's drift falls on all alike
            ping.run(lambda: _load(args, port, each, "GET", "/ping", []))
            commits.append(commit_time(conninfo))
            hooks.run(lambda: _load(args, port, each, "POST", "/webhooks/instagram", bodies))
            baseline.run(lambda: _load(args, bare_port, each, "GET", "/", []))
        rated_ok, rated = fixed_rate(
            port, args.seconds, args.rate,
            lambda n: ("POST", "/webhooks/instagram", _body(n, run + "r")),
        )  # fmt: skip
    finally:
        for process in (server, bare):
            process.terminate()
            process.wait(timeout=30)

    with psycopg.connect(_plain_url(base_url, args.database)) as conn:
        stored = conn.execute("SELECT COUNT(*) FROM webhook_events").fetchone()[0]

    ping_rps = ping.ok / args.seconds
    hook_rps = hooks.ok / args.seconds
    bare_rps = baseline.ok / args.seconds
    print(f"gunicorn: {args.workers} workers x {args.threads} threads (gthread), the helpdesk and "
          f"a bare Flask app alike; load: {args.client}, {args.connections} connections, "
          f"{'one per request' if args.close else 'keep-alive'}; {args.rounds} rounds of each "
          f"phase, alternated, {args.seconds:.0f} s per phase in all")  # fmt: skip
    print(f"(a) GET /ping:                {ping_rps:8.1f} req/s  {ping.describe(args.seconds)}")
    print(f"(b) signed webhook delivery:  {hook_rps:8.1f} req/s  {hooks.describe(args.seconds)}")
    print(f"(c) bare Flask app, GET /:    {bare_rps:8.1f} req/s  {baseline.describe(args.seconds)}")
    print(f"    per round, req/s: /ping {ping.rates(each)}; webhook {hooks.rates(each)}; "
          f"bare {baseline.rates(each)}")  # fmt: skip
    n = args.connections
    print(f"    client connections seen: /ping {ping.connections(n)}; webhook "
          f"{hooks.connections(n)}; bare {baseline.connections(n)}")  # fmt: skip
    print(f"intake / trivial throughput ratio: {hook_rps / ping_rps:.2f} (target >= 0.5)")
    print(f"webhook / bare Flask: {hook_rps / bare_rps:.2f} (target >= 0.35 with keep-alive); "
          f"/ping / bare Flask: {ping_rps / bare_rps:.2f}")  # fmt: skip
    print(f"    connections per server process, per round: /ping {ping.described_spreads()}; "
          f"webhook {hooks.described_spreads()}; bare {baseline.described_spreads()}")  # fmt: skip
    even = [
        r for r in range(args.rounds)
        if all(phase.spread_over(args.workers, n, r) for phase in (hooks, baseline))
    ]  # fmt: skip
    if even:
        evenly = sum(hooks.counts[r] for r in even) / sum(baseline.counts[r] for r in even)
        print(f"webhook / bare Flask over the {len(even)} rounds where every process of both held "
              f"at least half its share of the connections: {evenly:.2f}")  # fmt: skip
    else:
        print("webhook / bare Flask: in no round were the connections of both spread evenly")
    print(f"    a lone commit on the database server before each webhook round: median "
          f"{' '.join(f'{c * 1000:.2f}' for c in commits)} ms")  # fmt: skip
    print(f"fixed rate {args.rate:.0f}/s: {rated_ok} ok, p50 {percentile(rated, .5) * 1000:.1f} ms,"
          f" p99 {percentile(rated, .99) * 1000:.1f} ms")  # fmt: skip
    answered = hooks.ok + rated_ok
    # wrk stops counting at its deadline: up to one request a connection a round was in flight,
    # and the server stored it. The Python client waits for every answer.
    in_flight = args.connections * args.rounds if args.client == "wrk" else 0
    ok = answered <= stored <= answered + in_flight
    print(f"deliveries answered 200: {answered}, stored: {stored} (in flight at the end: at most "
          f"{in_flight}; {'every answered delivery stored' if ok else 'MISMATCH'})")  # fmt: skip
    kept = args.close or all(phase.kept(n) for phase in (ping, hooks, baseline))
    if not kept:
        print("keep-alive was asked for but connections were not kept: the ratios are not fair")
    return 0 if ok and kept else 1


if __name__ == "__main__":
    sys.exit(main())

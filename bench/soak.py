"""The whole loop at a steady rate for minutes: customers, agents, workers; nothing lost or doubled.

    DATABASE_URL=postgresql+psycopg://root@127.0.0.1/postgres REDIS_URL=redis://127.0.0.1:6379/7 \
        python -m bench.soak [--seconds 300] [--rate 50] [--repliers 4]

Creates (and drops at the end) a database `soakbench` on DATABASE_URL's server and empties the
Redis database of REDIS_URL (default redis://127.0.0.1:6379/7: give the bench a number of its
own). Runs the real commands (`db upgrade`, `create-brand`, `connect-instagram`, `create-token`)
and starts, each in a process group of its own: the Graph API simulator (which echoes every send
back as a signed webhook, as Meta does), gunicorn, one Celery worker and beat.

Customers: `--contacts` people, one picked at random for each DM, write at a fixed rate (open
loop: a DM every 1/rate s whatever the answers). Each DM is one Instagram webhook delivery built
and signed by the simulator's own helpers (`devtools.graphsim.webhooks`) and posted over a kept
connection; a delivery not answered 200 is posted again with the same mid, as Meta retries.

Agents: an inbox poller reads the whole inbox every second (`GET /api/v1/conversations`, page
by page) and hands the conversations with new activity to `--repliers` agent threads, which read
the thread (`GET .../messages`) and answer the customer's new messages with one reply quoting
the newest (`POST .../messages`). An agent answers a conversation at most once per `--round`
seconds: what the customer writes meanwhile is answered together by the next reply, so there
are fewer replies than DMs when customers write faster than that.

Measured over `--seconds` after a `--warmup` at the same rate: throughput; intake latency
(webhook POST sent -> the message with its mid committed, polled every 50 ms); reply delivery
latency (reply POSTed -> the simulator received the Send API call); queue lag, sampled every
second: the Celery queues (LLEN `celery` + `delivery`), stored deliveries not yet processed
and their age, replies waiting to be sent; RSS of the web (gunicorn master and workers) and
worker (Celery master and pool) process trees at the start of the window, at its end and after
the drain.

Then customers and agents stop and the bench drains (waits, up to `--drain-timeout`, for every
queue to empty and every echo to be processed) and checks: every delivery answered 200, every mid
stored exactly once with its text, every reply sent to the simulator exactly once with the mid
the row keeps, its echo reconciled without a second row, no delivery failed, no process died,
nothing logged at ERROR. Exits 1 when a check fails (keeping the logs).
"""

from __future__ import annotations

import argparse
import json
import os
import queue
import random
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter, defaultdict
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

import httpx
import psycopg
import redis
from sqlalchemy.engine import make_url

from devtools.graphsim import webhooks

ROOT = Path(__file__).resolve().parent.parent
SECRET = "soak-app-secret"
ACCOUNT = "17841400000000001"
DB_NAME = "soakbench"
DEFAULT_REDIS_URL = "redis://127.0.0.1:6379/7"
REPLY_MARK = re.compile(r"\[soak-reply (\d+)\]")
LOGGED_ERROR = re.compile(r'"level":\s*"(ERROR|CRITICAL)"|Traceback|\[(ERROR|CRITICAL)\]')
DELIVERY_ATTEMPTS = 6
INTAKE_POLL_SECONDS = 0.05
MiB = 1024 * 1024


# Setup ------------------------------------------------------------------------------------------


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _conninfo(url: str, database: str) -> str:
    """A libpq URL for psycopg from the SQLAlchemy one."""
    return (
        make_url(url)
        .set(drivername="postgresql", database=database)
        .render_as_string(hide_password=False)
    )


def _recreate_database(url: str, name: str = DB_NAME) -> None:
    with psycopg.connect(_conninfo(url, "postgres"), autocommit=True) as conn:
        conn.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
        conn.execute(f"CREATE DATABASE {name}")


def _drop_database(url: str, name: str = DB_NAME) -> None:
    with psycopg.connect(_conninfo(url, "postgres"), autocommit=True) as conn:
        conn.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")


def _flask(env: dict, *args: str) -> str:
    done = subprocess.run(
        [sys.executable, "-m", "flask", "--app", "wsgi", *args],
        cwd=ROOT, env=env, capture_output=True, text=True,
    )  # fmt: skip
    if done.returncode != 0:
        raise RuntimeError(f"flask {' '.join(args)} failed:\n{done.stdout}\n{done.stderr}")
    return done.stdout


def _wait_for(url: str, what: str, seconds: float = 60) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        try:
            if httpx.get(url, timeout=2).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    raise RuntimeError(f"{what} did not answer at {url}")


class Stack:
    """The processes under test, each leading a session of its own so stopping it stops its
    children too (gunicorn's workers, Celery's pool)."""

    def __init__(self, logs: Path) -> None:
        self.logs = logs
        self.processes: dict[str, subprocess.Popen] = {}

    def start(self, name: str, command: list[str], env: dict) -> None:
        with open(self.logs / f"{name}.log", "wb") as log:
            self.processes[name] = subprocess.Popen(
                command, cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT,
                start_new_session=True,
            )  # fmt: skip

    def pid(self, name: str) -> int:
        return self.processes[name].pid

    def dead(self) -> list[str]:
        return [name for name, process in self.processes.items() if process.poll() is not None]

    def stop(self) -> None:
        """SIGTERM to each leader (Celery and gunicorn stop their own children cleanly), then
        SIGKILL to whatever is left in the groups."""
        for process in self.processes.values():
            if process.poll() is None:
                process.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + 20
        for process in self.processes.values():
            try:
                process.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                _signal_group(process.pid, signal.SIGKILL)
                process.wait()
        for process in self.processes.values():  # whatever a leader left behind in its group
            _signal_group(process.pid, signal.SIGKILL)

    def errors_logged(self) -> dict[str, list[str]]:
        found: dict[str, list[str]] = {}
        for name in self.processes:
            text = (self.logs / f"{name}.log").read_text(errors="replace")
            lines = [line for line in text.splitlines() if LOGGED_ERROR.search(line)]
            if lines:
                found[name] = lines
        return found


def _signal_group(pgid: int, sig: int) -> None:
    try:
        os.killpg(pgid, sig)
    except (ProcessLookupError, PermissionError):
        pass


# Processes: memory and CPU from /proc -----------------------------------------------------------


def _children() -> dict[int, list[int]]:
    children: dict[int, list[int]] = defaultdict(list)
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as stat:
                ppid = int(stat.read().rsplit(")", 1)[1].split()[1])
        except (OSError, IndexError, ValueError):
            continue
        children[ppid].append(int(entry))
    return children


def _tree(pid: int, children: dict[int, list[int]]) -> list[int]:
    found, todo = [], [pid]
    while todo:
        current = todo.pop()
        found.append(current)
        todo.extend(children.get(current, []))
    return found


def _rss(pid: int) -> int:
    try:
        with open(f"/proc/{pid}/status") as status:
            for line in status:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 0


def _cpu(pid: int) -> float:
    """User and system seconds of the process and of its children already reaped."""
    try:
        with open(f"/proc/{pid}/stat") as stat:
            fields = stat.read().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return sum(int(value) for value in fields[11:15]) / os.sysconf("SC_CLK_TCK")


def _host_cpu() -> tuple[float, float]:
    """(busy, total) jiffies of the whole machine."""
    with open("/proc/stat") as stat:
        values = [int(value) for value in stat.readline().split()[1:]]
    idle = values[3] + values[4]
    return sum(values) - idle, sum(values)


def _database_backends_cpu() -> float:
    """CPU seconds of the PostgreSQL backends serving the bench's database (connections are
    pooled, so they live through the window; the server's own processes are not counted)."""
    total = 0.0
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/cmdline", "rb") as cmdline:
                if f" {DB_NAME} ".encode() not in cmdline.read():
                    continue
        except OSError:
            continue
        total += _cpu(int(entry))
    return total


@dataclass
class TreeSample:
    rss: int
    processes: int
    cpu: float


def sample_trees(roots: dict[str, int]) -> dict[str, TreeSample]:
    """RSS and CPU of each tree, plus `postgres` (the bench database's backends) and `bench`."""
    children = _children()
    samples = {}
    for name, pid in roots.items():
        pids = _tree(pid, children)
        samples[name] = TreeSample(
            sum(_rss(p) for p in pids), len(pids), sum(_cpu(p) for p in pids)
        )
    samples["postgres"] = TreeSample(0, 0, _database_backends_cpu())
    own = os.times()
    samples["bench"] = TreeSample(_rss(os.getpid()), 1, own.user + own.system)
    return samples


# Customers --------------------------------------------------------------------------------------


@dataclass
class Sent:
    contact: str
    text: str
    scheduled: float
    measured: bool
    started: float = 0.0  # wall clock of the first POST
    answered: float = 0.0  # wall clock of the 200
    post_seconds: float = 0.0  # how long the accepted POST took
    status: int | None = None
    attempts: int = 0
    seen: float = 0.0  # wall clock of the first poll that found the message committed


class Customers:
    """DMs at a fixed rate, each a signed webhook delivery, retried like Meta until answered 200."""

    def __init__(self, app_url: str, run: str, contacts: int, seed: int = 1) -> None:
        self.url = webhooks.webhook_url(app_url)
        self.run = run
        self.contacts = [f"61{n:014d}" for n in range(1, contacts + 1)]
        self.random = random.Random(seed)
        self.sent: dict[str, Sent] = {}
        self.outstanding: set[str] = set()  # mids posted and not yet seen in the database
        self.lock = threading.Lock()
        self.local = threading.local()
        self.pool = ThreadPoolExecutor(max_workers=64, thread_name_prefix="customer")
        self.aborted = threading.Event()

    def drive(self, seconds: float, rate: float, measured: bool) -> None:
        """Submit a DM every 1/rate s for `seconds`; returns when the last one is submitted."""
        start = time.perf_counter()
        wall = time.time()
        n = 0
        while not self.aborted.is_set():
            offset = n / rate
            if offset >= seconds:
                break
            wait = start + offset - time.perf_counter()
            if wait > 0:
                time.sleep(wait)
            mid = f"m_soak_{self.run}_{'m' if measured else 'w'}{n}"
            contact = self.random.choice(self.contacts)
            record = Sent(contact, f"Where is my order? ({mid})", wall + offset, measured)
            with self.lock:
                self.sent[mid] = record
            self.pool.submit(self._deliver, mid, record)
            n += 1

    def _client(self) -> httpx.Client:
        client = getattr(self.local, "client", None)
        if client is None:
            client = self.local.client = httpx.Client(timeout=30)
        return client

    def _deliver(self, mid: str, record: Sent) -> None:
        message = webhooks.message_fields(mid, record.text)
        event = webhooks.event(record.contact, ACCOUNT, message=message)
        raw = json.dumps(webhooks.envelope(ACCOUNT, [event])).encode()
        headers = {
            "Content-Type": "application/json",
            "X-Hub-Signature-256": webhooks.sign(raw, SECRET),
        }
        for attempt in range(1, DELIVERY_ATTEMPTS + 1):
            started = time.time()
            if attempt == 1:
                record.started = started
                with self.lock:
                    self.outstanding.add(mid)
            try:
                status = self._client().post(self.url, content=raw, headers=headers).status_code
            except httpx.HTTPError:
                status = 0
            record.attempts, record.status = attempt, status
            if status == 200:
                record.answered = time.time()
                record.post_seconds = record.answered - started
                return
            if self.aborted.wait(min(2**attempt, 15)):
                return

    def finish(self) -> None:
        self.pool.shutdown(wait=True)

    def abort(self) -> None:
        """On an interrupt: drop what is not posted yet, stop retrying."""
        self.aborted.set()
        self.pool.shutdown(wait=False, cancel_futures=True)


class IntakeWatcher(threading.Thread):
    """Marks when each posted mid becomes visible in the database (committed).

    Reads the messages above a watermark id, a range of the primary key: cheap however far the
    intake lags. Ids are taken at insert and committed out of order, so the watermark passes an
    id only once it is seen, or once it stayed missing for GAP_SECONDS (a rolled-back insert);
    a mid committed later than that is found by a slower look-up of the old outstanding mids.
    """

    GAP_SECONDS = 10.0
    FALLBACK_SECONDS = 2.0

    def __init__(self, conninfo: str, channel_id: int, customers: Customers) -> None:
        super().__init__(name="intake-watcher", daemon=True)
        self.conninfo = conninfo
        self.channel_id = channel_id
        self.customers = customers
        self.stop = threading.Event()
        self.skipped_gaps = 0
        self.found_late = 0

    def run(self) -> None:
        try:
            self._watch()
        except psycopg.Error as exc:  # the database went away (interrupted, dropped)
            print(f"intake watcher stopped: {type(exc).__name__}", file=sys.stderr)

    def _watch(self) -> None:
        low = 0  # every id up to here is seen or given up as a gap
        above: set[int] = set()
        gap: tuple[float, int] | None = None  # since when low + 1 is missing, and the top then
        fallback_at = time.monotonic()
        with psycopg.connect(self.conninfo, autocommit=True) as conn:
            while not self.stop.is_set():
                polled, now = time.time(), time.monotonic()
                rows = conn.execute(
                    "SELECT id, mid, direction FROM messages WHERE id > %s ORDER BY id", (low,)
                ).fetchall()
                found = []
                for message_id, mid, direction in rows:
                    if message_id not in above:
                        above.add(message_id)
                        if direction == "inbound":
                            found.append(mid)
                self._seen(found, polled)
                while low + 1 in above:
                    low += 1
                    above.discard(low)
                if not above:
                    gap = None
                elif gap is None:
                    gap = (now, max(above))
                elif now - gap[0] > self.GAP_SECONDS:
                    self.skipped_gaps += gap[1] - low - len([i for i in above if i <= gap[1]])
                    low = gap[1]
                    above = {i for i in above if i > low}
                    while low + 1 in above:
                        low += 1
                        above.discard(low)
                    gap = None
                if now - fallback_at > self.FALLBACK_SECONDS:
                    fallback_at = now
                    self._look_up_old(conn)
                time.sleep(INTAKE_POLL_SECONDS)

    def _seen(self, mids: list[str], polled: float) -> None:
        customers = self.customers
        with customers.lock:
            for mid in mids:
                record = customers.sent.get(mid)
                if record is not None and mid in customers.outstanding:
                    record.seen = polled
                    customers.outstanding.discard(mid)

    def _look_up_old(self, conn: psycopg.Connection) -> None:
        """Mids posted long ago and still not seen: committed behind a skipped gap, or not yet
        stored. Not prepared: a generic plan of `= ANY(array)` scans the whole channel."""
        horizon = time.time() - self.GAP_SECONDS
        with self.customers.lock:
            old = [
                mid
                for mid in self.customers.outstanding
                if self.customers.sent[mid].started < horizon
            ]
        if not old:
            return
        polled = time.time()
        rows = conn.execute(
            "SELECT mid FROM messages WHERE channel_id = %s AND mid = ANY(%s)",
            (self.channel_id, old),
            prepare=False,
        ).fetchall()
        self.found_late += len(rows)
        self._seen([mid for (mid,) in rows], polled)


# Agents -----------------------------------------------------------------------------------------


@dataclass
class Reply:
    number: int
    conversation_id: int
    quoted_mid: str
    posted: float
    measured: bool
    status: int | None = None
    message_id: int | None = None
    post_seconds: float = 0.0


@dataclass
class Agents:
    """An inbox poller and agent threads answering each conversation round once, through the API."""

    api_url: str
    token: str
    repliers: int
    round_seconds: float
    poll_seconds: float = 1.0
    measuring: threading.Event = field(default_factory=threading.Event)
    stop: threading.Event = field(default_factory=threading.Event)

    def __post_init__(self) -> None:
        self.work: queue.Queue[int] = queue.Queue()
        self.lock = threading.Lock()
        self.taken: set[int] = set()  # queued or being answered
        self.activity: dict[int, datetime] = {}  # last_message_at when last taken
        self.deferred: set[int] = set()  # new activity during the conversation's round
        self.answered: dict[int, int] = {}  # newest customer message id answered
        self.next_round: dict[int, float] = {}
        self.replies: list[Reply] = []
        self.errors: Counter[str] = Counter()
        self.polls = 0
        self.threads = [threading.Thread(target=self._poll, name="inbox", daemon=True)] + [
            threading.Thread(target=self._answer_loop, name=f"agent-{n}", daemon=True)
            for n in range(self.repliers)
        ]

    def start(self) -> None:
        for thread in self.threads:
            thread.start()

    def join(self) -> None:
        self.stop.set()
        for thread in self.threads:
            thread.join(timeout=60)

    def _client(self) -> httpx.Client:
        headers = {"Authorization": f"Bearer {self.token}"}
        return httpx.Client(base_url=self.api_url, headers=headers, timeout=30)

    def _take(self, conversation_id: int, at: datetime | None) -> None:
        """Under the lock: queue the conversation unless queued already or inside its round."""
        if at is not None:
            self.activity[conversation_id] = at
        if conversation_id in self.taken:
            return
        if time.monotonic() < self.next_round.get(conversation_id, 0.0):
            self.deferred.add(conversation_id)
            return
        self.deferred.discard(conversation_id)
        self.taken.add(conversation_id)
        self.work.put(conversation_id)

    def _poll(self) -> None:
        """The whole inbox, page by page, every poll: a message stored late carries its own
        (earlier) time, so the listing's order cannot tell what changed since the last poll."""
        with self._client() as client:
            while not self.stop.is_set():
                began = time.monotonic()
                cursor: str | None = None
                while not self.stop.is_set():
                    params: dict = {"limit": 100, **({"cursor": cursor} if cursor else {})}
                    response = client.get("/conversations", params=params)
                    if response.status_code != 200:
                        self.errors[f"GET conversations {response.status_code}"] += 1
                        break
                    page = response.json()
                    with self.lock:
                        for item in page["items"]:
                            at = _time(item.get("last_message_at"))
                            known = self.activity.get(item["id"])
                            if at is not None and (known is None or at > known):
                                self._take(item["id"], at)
                    cursor = page.get("next_cursor")
                    if not cursor:
                        break
                with self.lock:
                    for conversation_id in list(self.deferred):
                        self._take(conversation_id, None)
                    self.polls += 1
                self.stop.wait(max(0.0, self.poll_seconds - (time.monotonic() - began)))

    def _answer_loop(self) -> None:
        with self._client() as client:
            while not self.stop.is_set():
                try:
                    conversation_id = self.work.get(timeout=0.2)
                except queue.Empty:
                    continue
                try:
                    self._answer(client, conversation_id)
                except httpx.HTTPError as exc:
                    self.errors[type(exc).__name__] += 1
                finally:
                    with self.lock:
                        self.taken.discard(conversation_id)

    def _answer(self, client: httpx.Client, conversation_id: int) -> None:
        response = client.get(f"/conversations/{conversation_id}/messages", params={"limit": 20})
        if response.status_code != 200:
            self.errors[f"GET messages {response.status_code}"] += 1
            return
        answered = self.answered.get(conversation_id, 0)
        waiting = [
            message
            for message in response.json()["items"]
            if message["direction"] == "inbound" and message["id"] > answered
        ]
        if not waiting or self.stop.is_set():
            return
        quoted = max(waiting, key=lambda message: message["id"])
        with self.lock:
            reply = Reply(
                len(self.replies) + 1, conversation_id, quoted["mid"], 0.0, self.measuring.is_set()
            )
            self.replies.append(reply)
        text = f"Thanks for writing, we are on it. [soak-reply {reply.number}]"
        reply.posted = time.time()
        response = client.post(
            f"/conversations/{conversation_id}/messages",
            json={"text": text, "reply_to": quoted["id"]},
        )
        reply.post_seconds = time.time() - reply.posted
        reply.status = response.status_code
        if response.status_code == 202:
            reply.message_id = response.json()["id"]
        else:
            self.errors[f"POST messages {response.status_code}"] += 1
        with self.lock:
            self.answered[conversation_id] = quoted["id"]
            self.next_round[conversation_id] = time.monotonic() + self.round_seconds


def _time(value: str | None) -> datetime | None:
    return datetime.fromisoformat(value) if value else None


# Sampling ---------------------------------------------------------------------------------------


@dataclass
class Sample:
    at: float
    celery_queue: int
    pending_deliveries: int
    oldest_pending_seconds: float
    outbound_waiting: int


QUEUES = ("celery", "delivery")


class Sampler(threading.Thread):
    """Once a second: the Celery queue, the intake backlog and replies not yet sent."""

    def __init__(self, conninfo: str, broker: redis.Redis) -> None:
        super().__init__(name="sampler", daemon=True)
        self.conninfo = conninfo
        self.broker = broker
        self.samples: list[Sample] = []
        self.longest: tuple[int, Counter[str]] = (0, Counter())  # the queue's tasks at its longest
        self.stop = threading.Event()

    def take(self, conn: psycopg.Connection) -> Sample:
        pending, oldest = conn.execute(
            "SELECT count(*), EXTRACT(EPOCH FROM now() - min(received_at)) FROM webhook_events"
            " WHERE status = 'pending'"
        ).fetchone()
        (waiting,) = conn.execute(
            "SELECT count(*) FROM messages WHERE direction = 'outbound'"
            " AND status IN ('queued', 'sending')"
        ).fetchone()
        queued = sum(self.broker.llen(name) for name in QUEUES)
        return Sample(time.time(), queued, pending, float(oldest or 0), waiting)

    def run(self) -> None:
        try:
            self._sample()
        except (psycopg.Error, redis.RedisError) as exc:
            print(f"sampler stopped: {type(exc).__name__}", file=sys.stderr)

    def _sample(self) -> None:
        with psycopg.connect(self.conninfo, autocommit=True) as conn:
            while not self.stop.wait(1.0):
                sample = self.take(conn)
                self.samples.append(sample)
                if sample.celery_queue > self.longest[0] * 1.2 + 10:
                    self.longest = (sample.celery_queue, self.tasks_queued())

    def tasks_queued(self) -> Counter[str]:
        names: Counter[str] = Counter()
        for queue_name in QUEUES:
            for raw in self.broker.lrange(queue_name, 0, -1):
                try:
                    names[json.loads(raw)["headers"]["task"].rsplit(".", 1)[-1]] += 1
                except (ValueError, KeyError, TypeError):
                    names["?"] += 1
        return names


# The run ----------------------------------------------------------------------------------------


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))] if ordered else float("nan")


def _ms(values: list[float]) -> str:
    if not values:
        return "      (none)"
    return (
        f"p50 {percentile(values, 0.5) * 1000:7.1f} ms  p99 {percentile(values, 0.99) * 1000:7.1f}"
        f" ms  max {max(values) * 1000:7.1f} ms  (n={len(values)})"
    )


def _slope_mib_per_minute(points: list[tuple[float, int]]) -> float:
    """Least-squares slope of RSS over time: a steady leak, unlike one step after warm-up."""
    if len(points) < 3:
        return float("nan")
    n = len(points)
    mean_t = sum(t for t, _ in points) / n
    mean_r = sum(r for _, r in points) / n
    var = sum((t - mean_t) ** 2 for t, _ in points)
    cov = sum((t - mean_t) * (r - mean_r) for t, r in points)
    return cov / var * 60 / MiB if var else float("nan")


def _arguments() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=300, help="measured window")
    parser.add_argument("--rate", type=float, default=50, help="customer DMs per second")
    parser.add_argument("--warmup", type=float, default=15, help="seconds at the rate before")
    parser.add_argument("--contacts", type=int, default=300)
    parser.add_argument("--repliers", type=int, default=4, help="agent threads")
    parser.add_argument("--round", type=float, default=10, help="seconds between two replies "
                        "of an agent in one conversation")  # fmt: skip
    parser.add_argument("--web-workers", type=int, default=2)
    parser.add_argument("--web-threads", type=int, default=8)
    parser.add_argument("--concurrency", type=int, default=4, help="Celery worker pool size")
    parser.add_argument("--drain-timeout", type=float, default=1800)
    parser.add_argument("--keep", action="store_true", help="keep the database and the logs")
    return parser.parse_args()


def main() -> int:
    args = _arguments()
    base_url = os.environ.get("DATABASE_URL", "")
    if not base_url.startswith("postgresql"):
        print("set DATABASE_URL to a PostgreSQL server (postgresql+psycopg://...)")
        return 2
    redis_url = os.environ.get("REDIS_URL") or DEFAULT_REDIS_URL
    signal.signal(signal.SIGTERM, _interrupt)

    logs = Path(tempfile.mkdtemp(prefix="soakbench-"))
    stack = Stack(logs)
    failed = True
    try:
        failed = _soak(args, base_url, redis_url, logs, stack)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
    finally:
        stack.stop()
        if not args.keep:
            _drop_database(base_url)
        if failed or args.keep:
            print(f"logs kept in {logs}")
        else:
            shutil.rmtree(logs, ignore_errors=True)
    return 1 if failed else 0


def _interrupt(*_args) -> None:
    raise KeyboardInterrupt


def _soak(args, base_url: str, redis_url: str, logs: Path, stack: Stack) -> bool:
    """Returns True when a check failed."""
    _recreate_database(base_url)
    conninfo = _conninfo(base_url, DB_NAME)
    broker = redis.Redis.from_url(redis_url)
    broker.flushdb()
    web_port, sim_port = _free_port(), _free_port()
    web_url, sim_url = f"http://127.0.0.1:{web_port}", f"http://127.0.0.1:{sim_port}"
    env = dict(
        os.environ,
        DATABASE_URL=make_url(base_url).set(database=DB_NAME).render_as_string(False),
        REDIS_URL=redis_url,
        INSTAGRAM_APP_SECRET=SECRET,
        GRAPH_API_BASE=f"{sim_url}/v25.0",
        HELPDESK_INSTANCE=str(logs / "instance"),
        HELPDESK_ENV="production",
    )
    _flask(env, "db", "upgrade")
    _flask(env, "create-brand", "soak", "--name", "Soak", "--timezone", "UTC")
    _flask(env, "connect-instagram", "--brand", "soak", "--account-id", ACCOUNT,
           "--access-token", "soak-token")  # fmt: skip
    token = _flask(env, "create-token", "--brand", "soak", "--name", "agents", "--role", "agent")
    token = token.strip().splitlines()[-1]
    with psycopg.connect(conninfo) as conn:
        (channel_id,) = conn.execute(
            "SELECT id FROM channels WHERE account_id = %s", (ACCOUNT,)
        ).fetchone()

    python, celery = sys.executable, [sys.executable, "-m", "celery", "-A", "workers"]
    stack.start("graph-sim", [python, "-m", "devtools.graphsim", "serve", "--port",
                              str(sim_port), "--echo-to", web_url,
                              "--app-secret", SECRET], env)  # fmt: skip
    stack.start("web", [python, "-m", "gunicorn", "-k", "gthread", "-w", str(args.web_workers),
                        "--threads", str(args.web_threads), "-b", f"127.0.0.1:{web_port}",
                        "--log-level", "warning", "wsgi:app"], env)  # fmt: skip
    stack.start("worker", [*celery, "worker", "--loglevel=WARNING", "--pool=prefork",
                           f"--concurrency={args.concurrency}"], env)  # fmt: skip
    stack.start("beat", [*celery, "beat", "--loglevel=WARNING"], env)
    _wait_for(f"{sim_url}/_sim/health", "the simulator")
    _wait_for(f"{web_url}/healthz", "the web app")
    roots = {name: stack.pid(name) for name in ("web", "worker", "beat", "graph-sim")}

    print(
        f"soak: {args.seconds:.0f} s at {args.rate:g} DMs/s after a {args.warmup:.0f} s warm-up; "
        f"{args.contacts} contacts, {args.repliers} agents answering each conversation at most "
        f"every {args.round:g} s\nstack: gunicorn {args.web_workers} x {args.web_threads} gthread,"
        f" celery worker prefork {args.concurrency}, beat, graph-sim with echoes; "
        f"{os.cpu_count()} CPUs; logs in {logs}",
        flush=True,
    )
    customers = Customers(web_url, str(int(time.time())), args.contacts)
    watcher = IntakeWatcher(conninfo, channel_id, customers)
    agents = Agents(f"{web_url}/api/v1", token, args.repliers, args.round)
    sampler = Sampler(conninfo, broker)
    for thread in (watcher, sampler):
        thread.start()
    agents.start()

    memory: list[tuple[float, dict[str, TreeSample]]] = []
    memory_stop = threading.Event()

    def sample_memory() -> None:
        while not memory_stop.wait(5.0):
            memory.append((time.time(), sample_trees(roots)))

    threading.Thread(target=sample_memory, name="memory", daemon=True).start()

    try:
        customers.drive(args.warmup, args.rate, measured=False)
        window_start = time.time()
        start_trees, start_host = sample_trees(roots), _host_cpu()
        agents.measuring.set()
        print(
            f"warm-up done ({len(customers.sent)} DMs); measuring {args.seconds:.0f} s", flush=True
        )
        progress_done = threading.Event()
        threading.Thread(
            target=_progress,
            args=(customers, agents, sampler, stack, progress_done),
            name="progress",
            daemon=True,
        ).start()
        customers.drive(args.seconds, args.rate, measured=True)
        agents.measuring.clear()
        window_end = time.time()
        end_trees, end_host = sample_trees(roots), _host_cpu()
        dead_during_load = stack.dead()

        print("load done; draining", flush=True)
        agents.join()
        customers.finish()
    except BaseException:  # interrupted: post nothing more, so the stack stops at once
        customers.abort()
        agents.stop.set()
        raise
    drain_started = time.monotonic()
    drained = _drain(customers, agents, sampler, conninfo, sim_url, args.drain_timeout)
    drain_seconds = time.monotonic() - drain_started
    progress_done.set()
    watcher.stop.set()
    sampler.stop.set()
    memory_stop.set()
    drained_trees = sample_trees(roots)

    report = Report(customers, agents, sampler, sim_url, memory, window_start, window_end)
    report.throughput()
    report.latencies()
    print(
        f"  (stored: polled every {INTAKE_POLL_SECONDS * 1000:.0f} ms; ids given up as gaps "
        f"{watcher.skipped_gaps}, mids found by the slow look-up {watcher.found_late})"
    )
    report.queue_lag()
    report.memory(start_trees, end_trees, drained_trees)
    report.cpu(start_trees, end_trees, start_host, end_host)
    print(f"drain: {drain_seconds:.1f} s ({'complete' if drained else 'TIMED OUT'})")
    return not report.checks(conninfo, channel_id, stack, dead_during_load, drained)


def _progress(customers, agents, sampler, stack, done: threading.Event) -> None:
    """A line every 30 s through the load and the drain."""
    started = time.monotonic()
    while not done.wait(30):
        last = sampler.samples[-1] if sampler.samples else None
        with customers.lock:
            sent, waiting = len(customers.sent), len(customers.outstanding)
        line = f"  {time.monotonic() - started:5.0f} s: {sent} DMs sent, {waiting} not stored yet"
        line += f", {len(agents.replies)} replies"
        if last:
            line += (
                f", celery queue {last.celery_queue}, deliveries pending "
                f"{last.pending_deliveries}, replies unsent {last.outbound_waiting}"
            )
        if stack.dead():
            line += f"; DEAD: {', '.join(stack.dead())}"
        print(line, flush=True)


def _sim_json(sim_url: str, path: str) -> dict:
    return httpx.get(f"{sim_url}{path}", timeout=60).json()


def _drain(customers, agents, sampler, conninfo, sim_url, timeout: float) -> bool:
    """Until every DM is stored, every accepted reply reached the simulator, every echo was
    answered and processed, and no queue holds work; False on timeout."""
    accepted = {reply.number for reply in agents.replies if reply.status == 202}
    delivered: set[int] = set()
    seq = 0
    deadline = time.monotonic() + timeout
    with psycopg.connect(conninfo, autocommit=True) as conn:
        while time.monotonic() < deadline:
            for entry in _sim_json(sim_url, f"/_sim/requests?since={seq}")["requests"]:
                seq = max(seq, entry["seq"])
                number = _reply_number(entry)
                if number is not None:
                    delivered.add(number)
            sends = len(delivered)
            echoes = _sim_json(sim_url, "/_sim/echoes")["echoes"]
            now = sampler.take(conn)
            with customers.lock:
                waiting = len(customers.outstanding)
            if (
                not waiting
                and accepted <= delivered
                and len(echoes) >= sends
                and now.celery_queue == 0
                and now.pending_deliveries == 0
                and now.outbound_waiting == 0
            ):
                return True
            time.sleep(1.0)
    print(
        f"drain timed out: {waiting} DMs not stored, {len(accepted - delivered)} replies not "
        f"sent, {sends - len(echoes)} echoes not answered, celery queue {now.celery_queue}, "
        f"deliveries pending {now.pending_deliveries}, replies unsent {now.outbound_waiting}"
    )
    return False


def _reply_number(entry: dict) -> int | None:
    body = entry.get("json")
    if entry.get("endpoint") != "messages" or not isinstance(body, dict):
        return None
    text = (body.get("message") or {}).get("text") or ""
    match = REPLY_MARK.search(text)
    return int(match.group(1)) if match else None


def _stats(label: str, values: list[float], unit: str = "") -> str:
    if not values:
        return f"  {label:31s} (no samples)"
    mean = sum(values) / len(values)
    return (
        f"  {label:31s} mean {mean:7.1f}{unit}  p50 {percentile(values, 0.5):7.1f}{unit}"
        f"  p99 {percentile(values, 0.99):7.1f}{unit}  max {max(values):7.1f}{unit}"
    )


class Report:
    """Prints the figures of the measured window, then the checks over the whole run."""

    def __init__(self, customers, agents, sampler, sim_url, memory, window_start, window_end):
        self.customers = customers
        self.agents = agents
        self.sampler = sampler
        self.memory_samples = memory
        self.start, self.end = window_start, window_end
        self.window = window_end - window_start
        self.measured = [r for r in customers.sent.values() if r.measured]
        self.sim_sends: dict[int, list[dict]] = defaultdict(list)  # reply number -> Send API calls
        self.unmarked_sends: list[dict] = []
        self.profile_lookups = 0
        for entry in _sim_json(sim_url, "/_sim/requests")["requests"]:
            number = _reply_number(entry)
            if number is not None:
                self.sim_sends[number].append(entry)
            elif entry.get("endpoint") == "messages":
                self.unmarked_sends.append(entry)
            elif entry.get("endpoint") == "profile":
                self.profile_lookups += 1
        self.echoes = _sim_json(sim_url, "/_sim/echoes")["echoes"]

    def throughput(self) -> None:
        sent = self.measured
        stored = [r for r in sent if r.seen and r.seen <= self.end]
        replies = [r for r in self.agents.replies if r.measured]
        accepted = [r for r in replies if r.status == 202]
        delivered = [r for r in accepted if self._received(r) and self._received(r) <= self.end]
        retried = sum(r.attempts - 1 for r in self.customers.sent.values())
        late = [r.started - r.scheduled for r in sent if r.started]
        per_second = self.window or 1
        print(f"\nthroughput over the measured {self.window:.1f} s")
        print(
            f"  DMs posted (signed webhooks)  {len(sent):7d}  {len(sent) / per_second:6.1f}/s"
            f"  (deliveries retried {retried}; start lag p99 {percentile(late, 0.99) * 1e3:.0f} ms)"
        )
        print(
            f"  DMs stored within the window  {len(stored):7d}  {len(stored) / per_second:6.1f}/s"
        )
        print(
            f"  replies posted (API, 202)     {len(accepted):7d}  "
            f"{len(accepted) / per_second:6.1f}/s  ({len(accepted) / max(1, len(sent)):.2f} per"
            f" DM; {len(replies) - len(accepted)} refused; inbox polls {self.agents.polls})"
        )
        print(
            f"  replies sent within the window {len(delivered):6d}  "
            f"{len(delivered) / per_second:6.1f}/s"
        )

    def _received(self, reply: Reply) -> float | None:
        sends = self.sim_sends.get(reply.number)
        return datetime.fromisoformat(sends[0]["received_at"]).timestamp() if sends else None

    def latencies(self) -> None:
        sent = self.measured
        replies = [r for r in self.agents.replies if r.measured and r.status == 202]
        delivery = [
            received - reply.posted
            for reply in replies
            if (received := self._received(reply)) is not None
        ]
        print("latency (measured window)")
        print(
            f"  webhook POST answered 200      {_ms([r.post_seconds for r in sent if r.answered])}"
        )
        print(
            f"  intake: POST -> stored         {_ms([r.seen - r.started for r in sent if r.seen])}"
        )
        print(f"  reply POST answered 202        {_ms([r.post_seconds for r in replies])}")
        print(f"  reply delivery: POST -> Send API {_ms(delivery)}")

    def queue_lag(self) -> None:
        window = [s for s in self.sampler.samples if self.start <= s.at <= self.end]
        print(f"queue lag (sampled every second: {len(window)} samples)")
        print(_stats("celery queues length (LLEN)", [s.celery_queue for s in window]))
        print(_stats("deliveries stored, unprocessed", [s.pending_deliveries for s in window]))
        print(_stats("  age of the oldest", [s.oldest_pending_seconds for s in window], " s"))
        print(_stats("replies queued or sending", [s.outbound_waiting for s in window]))
        length, tasks = self.sampler.longest
        if length:
            shown = ", ".join(f"{name} {count}" for name, count in tasks.most_common(5))
            print(f"  the queue at its longest ({length}): {shown}")
        contacts = len({r.contact for r in self.customers.sent.values()})
        print(f"  Graph API profile lookups: {self.profile_lookups} for {contacts} contacts")

    def memory(self, start, end, drained) -> None:
        print("memory (RSS of the process tree, MiB)")
        print("                       start      end  drained     peak   growth  trend MiB/min")
        for name in ("web", "worker", "beat", "graph-sim"):
            points = [
                (t, trees[name].rss)
                for t, trees in self.memory_samples
                if self.start <= t <= self.end
            ]
            peak = max([rss for _, rss in points] + [start[name].rss, end[name].rss])
            label = f"{name} ({end[name].processes} proc)"
            growth = (end[name].rss - start[name].rss) / MiB
            print(
                f"  {label:18s} {start[name].rss / MiB:8.1f} {end[name].rss / MiB:8.1f} "
                f"{drained[name].rss / MiB:8.1f} {peak / MiB:8.1f} {growth:+8.1f}  "
                f"{_slope_mib_per_minute(points):+8.2f}"
            )

    def cpu(self, start, end, start_host, end_host) -> None:
        busy = (end_host[0] - start_host[0]) / max(1, end_host[1] - start_host[1])
        names = ("web", "worker", "beat", "graph-sim", "postgres", "bench")
        used = {name: (end[name].cpu - start[name].cpu) / self.window for name in names}
        machine = busy * (os.cpu_count() or 1)
        print("cpu (cores busy on average over the window)")
        print("  " + ", ".join(f"{name} {cores:.2f}" for name, cores in used.items()))
        print(
            f"  whole machine {machine:.2f} of {os.cpu_count()}; everything else (Redis, the "
            f"kernel, other users of the machine) {machine - sum(used.values()):.2f}"
        )

    def checks(self, conninfo, channel_id, stack, dead_during_load, drained) -> bool:
        with psycopg.connect(conninfo) as conn:
            inbound = {
                mid: (count, text)
                for mid, count, text in conn.execute(
                    "SELECT mid, count(*), min(text) FROM messages WHERE channel_id = %s"
                    " AND direction = 'inbound' GROUP BY mid",
                    (channel_id,),
                )
            }
            outbound = {
                message_id: (mid, status, text)
                for message_id, mid, status, text in conn.execute(
                    "SELECT id, mid, status, text FROM messages WHERE channel_id = %s"
                    " AND direction = 'outbound'",
                    (channel_id,),
                )
            }
            events = dict(
                conn.execute("SELECT status, count(*) FROM webhook_events GROUP BY status")
            )
            (event_errors,) = conn.execute(
                "SELECT count(*) FROM webhook_events WHERE error IS NOT NULL"
            ).fetchone()
        results = [
            self._customers_answered(),
            self._stored_once(inbound),
            *self._replies_sent_once(outbound),
        ]
        echo_failures = [echo for echo in self.echoes if echo.get("status") != 200]
        results.append(
            (
                not echo_failures,
                f"every echo webhook answered 200 ({len(self.echoes) - len(echo_failures)} of "
                f"{len(self.echoes)})",
            )
        )
        settled = events.get("pending", 0) == 0 and events.get("failed", 0) == 0
        results.append(
            (
                settled and not event_errors,
                f"every stored delivery processed, none failed ({events}; with an error "
                f"{event_errors})",
            )
        )
        results.append((drained, "drained within the timeout"))
        dead = sorted(set(dead_during_load) | set(stack.dead()))
        results.append((not dead, f"no process died ({', '.join(dead) or 'all alive'})"))
        logged = stack.errors_logged()
        found = "; ".join(
            f"{name}: {len(lines)} lines, first: {lines[0][:300]}" for name, lines in logged.items()
        )
        results.append((not logged, f"nothing logged at ERROR ({found or 'none'})"))

        print("checks")
        for ok, text in results:
            print(f"  [{'ok' if ok else 'FAILED'}] {text}")
        passed = all(ok for ok, _ in results)
        print("PASS" if passed else "FAIL")
        return passed

    def _customers_answered(self) -> tuple[bool, str]:
        sent = self.customers.sent
        unanswered = [mid for mid, record in sent.items() if record.status != 200]
        return (
            not unanswered,
            f"every customer delivery answered 200 ({len(sent) - len(unanswered)} of {len(sent)})",
        )

    def _stored_once(self, inbound: dict[str, tuple[int, str]]) -> tuple[bool, str]:
        sent = self.customers.sent
        missing = [mid for mid in sent if mid not in inbound]
        doubled = [mid for mid, (count, _) in inbound.items() if count > 1]
        unexpected = [mid for mid in inbound if mid not in sent]
        wrong_text = [
            mid for mid, (_, text) in inbound.items() if mid in sent and text != sent[mid].text
        ]
        return (
            not (missing or doubled or unexpected or wrong_text),
            f"every mid stored exactly once with its text ({len(inbound)} stored of {len(sent)};"
            f" missing {len(missing)}, doubled {len(doubled)}, unexpected {len(unexpected)},"
            f" wrong text {len(wrong_text)})",
        )

    def _replies_sent_once(self, outbound: dict) -> list[tuple[bool, str]]:
        replies = self.agents.replies
        accepted = [reply for reply in replies if reply.status == 202]
        numbers = {reply.number for reply in accepted}
        not_sent, not_once, refused, wrong_mid = [], [], [], []
        for reply in accepted:
            mid, status, _text = outbound.get(reply.message_id, (None, None, None))
            sends = self.sim_sends.get(reply.number, [])
            if status != "sent" or not mid:
                not_sent.append(reply.number)
            if len(sends) != 1:
                not_once.append(reply.number)
            elif sends[0].get("status") != 200:
                refused.append(reply.number)
            elif (sends[0].get("response") or {}).get("message_id") != mid:
                wrong_mid.append(reply.number)
        strays = len(self.unmarked_sends) + sum(
            len(sends) for number, sends in self.sim_sends.items() if number not in numbers
        )
        unmarked_rows = [
            message_id
            for message_id, (_mid, _status, text) in outbound.items()
            if not REPLY_MARK.search(text or "")
        ]
        errors = f"; errors {dict(self.agents.errors)}" if self.agents.errors else ""
        return [
            (
                len(accepted) == len(replies),
                f"every reply POST answered 202 ({len(accepted)} of {len(replies)}{errors})",
            ),
            (
                not (not_sent or not_once or refused or wrong_mid or strays),
                f"every reply delivered exactly once ({len(accepted) - len(not_once)} of "
                f"{len(accepted)} sent once; not once {len(not_once)} {not_once[:5]}, row not "
                f"sent {len(not_sent)}, refused {len(refused)}, row mid differs {len(wrong_mid)},"
                f" sends of no reply {strays})",
            ),
            (
                len(outbound) == len(accepted) and not unmarked_rows,
                f"every echo reconciled, no second row ({len(outbound)} outbound rows for "
                f"{len(accepted)} replies; {len(unmarked_rows)} rows of no reply)",
            ),
        ]


if __name__ == "__main__":
    sys.exit(main())

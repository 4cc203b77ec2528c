"""Webhook to inbox: how fast stored deliveries become messages in their threads, with tickets and
SLA clocks, next to how fast the web takes them.

    DATABASE_URL=postgresql+psycopg://root@127.0.0.1/postgres REDIS_URL=redis://127.0.0.1:6379/13 \
        python -m bench.pipeline [--deliveries 20000] [--customers 2000] [--workers 1,2,4] \
        [--rules 0]

For each worker count, on a fresh database `pipelinebench` (dropped at the end) and an emptied
Redis database: the real commands set up a brand, its Instagram channel and an admin token; the
API turns on "accept all requests" (every customer lands in the inbox, so every thread gets a
ticket) and adds an SLA policy (so every ticket has a due time); `--rules N` adds N enabled
automation rules that are evaluated for every message and ticket (and match none). Then gunicorn
starts as the README runs it (gthread, `--web-workers` x `--web-threads`), with a Celery worker of
that many processes (`INTAKE_LOOPS` = that count, so every process may process deliveries) and
beat.

The load: `--deliveries` signed single-event deliveries from `--customers` customers, posted over
`--connections` kept-alive connections as fast as the web answers them (closed loop). Nine in ten
are customers' messages; the rest are, in equal parts, reactions to and edits of a message the
customer sent before, and echoes (the brand answering from the Instagram app). Each customer's
events are posted in their order.

Measured from the first POST: the intake's rate (deliveries answered 200 per second, until the
last answer) and the processing rate (deliveries per second until every one is processed and
every customer message is stored in its thread with its ticket, and every ticket has its SLA
due time), and their ratio. Then it checks: every delivery stored once and processed, no
message stored twice, no delivery failed. Exits 1 when a check fails.
"""

from __future__ import annotations

import argparse
import hashlib
import hmac
import http.client
import json
import os
import random
import sys
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import httpx
import psycopg
import redis
from sqlalchemy.engine import make_url

from bench.soak import (
    Stack,
    _conninfo,
    _drop_database,
    _flask,
    _free_port,
    _recreate_database,
    _wait_for,
)

SECRET = "pipeline-app-secret"
ACCOUNT = "17841400000000001"
DB_NAME = "pipelinebench"
BASE_MS = 1763800000000


@dataclass
class Run:
    workers: int
    rules: int
    deliveries: int
    intake_seconds: float
    processing_seconds: float
    messages: int
    tickets: int

    @property
    def intake_rate(self) -> float:
        return self.deliveries / self.intake_seconds

    @property
    def processing_rate(self) -> float:
        return self.deliveries / self.processing_seconds

    @property
    def ratio(self) -> float:
        return self.processing_rate / self.intake_rate


# The load -----------------------------------------------------------------------------------


def _customer(n: int) -> str:
    return f"6170000{n:08d}"


def _event(customer: int, number: int, kind: str, target: int) -> dict:
    """One messaging event: the customer's `number`th event; `target`, an earlier message."""
    at = BASE_MS + number * 1000 + customer
    person, brand = {"id": _customer(customer)}, {"id": ACCOUNT}
    mid = f"pl-{customer}-{number}"
    earlier = f"pl-{customer}-{target}"
    if kind == "reaction":
        body = {"reaction": {"mid": earlier, "action": "react", "reaction": "love", "emoji": "❤️"}}
        return {"sender": person, "recipient": brand, "timestamp": at, **body}
    if kind == "edit":
        body = {"message_edit": {"mid": earlier, "text": f"edited {earlier}", "num_edit": 1}}
        return {"sender": person, "recipient": brand, "timestamp": at, **body}
    if kind == "echo":
        message = {"mid": f"pl-echo-{customer}-{number}", "text": "On it!", "is_echo": True}
        return {"sender": brand, "recipient": person, "timestamp": at, "message": message}
    text = f"Hi, where is my order {customer}-{number}?"
    return {
        "sender": person,
        "recipient": brand,
        "timestamp": at,
        "message": {"mid": mid, "text": text},
    }


def deliveries(total: int, customers: int, seed: int = 7) -> tuple[list[bytes], int, int]:
    """The bodies in posting order (each customer's in order, customers interleaved at random),
    the number of customer messages among them, and of echoes."""
    rng = random.Random(seed)
    per_customer: list[list[dict]] = [[] for _ in range(customers)]
    messages = echoes = 0
    for index in range(total):
        customer = index % customers
        events = per_customer[customer]
        number = len(events)
        kind = "message"
        if number > 0 and rng.random() < 0.1:
            kind = rng.choice(("reaction", "edit", "echo"))
        sent = [n for n, e in enumerate(events) if "message" in e and e["sender"]["id"] != ACCOUNT]
        if kind in ("reaction", "edit") and not sent:
            kind = "message"
        target = rng.choice(sent) if sent else 0
        events.append(_event(customer, number, kind, target))
        messages += kind == "message"
        echoes += kind == "echo"
    order = [c for c in range(customers) for _ in per_customer[c]]
    rng.shuffle(order)
    cursor = [0] * customers
    bodies = []
    for customer in order:
        event = per_customer[customer][cursor[customer]]
        cursor[customer] += 1
        body = {"object": "instagram", "entry": [{"id": ACCOUNT, "time": 1, "messaging": [event]}]}
        bodies.append(json.dumps(body).encode())
    return bodies, messages, echoes


def _signature(body: bytes) -> str:
    return "sha256=" + hmac.new(SECRET.encode(), body, hashlib.sha256).hexdigest()


def post_all(port: int, bodies: list[bytes], connections: int) -> tuple[float, float, int]:
    """Closed loop over kept connections; a delivery not answered 200 is posted again (as Meta
    retries). Returns the first send's and last answer's times, and the retries."""
    signed = [(body, _signature(body)) for body in bodies]
    next_index = iter(range(len(signed)))
    lock = threading.Lock()
    retries = [0]
    first = [0.0]

    def worker() -> None:
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
        while True:
            with lock:
                index = next(next_index, None)
            if index is None:
                break
            body, signature = signed[index]
            headers = {"Content-Type": "application/json", "X-Hub-Signature-256": signature}
            while True:
                try:
                    conn.request("POST", "/webhooks/instagram", body=body, headers=headers)
                    response = conn.getresponse()
                    response.read()
                    if response.status == 200:
                        break
                except (OSError, http.client.HTTPException):
                    conn.close()
                    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
                with lock:
                    retries[0] += 1
                time.sleep(0.05)
        conn.close()

    threads = [threading.Thread(target=worker) for _ in range(connections)]
    first[0] = time.monotonic()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return first[0], time.monotonic(), retries[0]


# The stack ----------------------------------------------------------------------------------


def _setup(env: dict, base_url: str, rules: int) -> None:
    """Accept every request and time every ticket; `rules` automations that match nothing."""
    token = _flask(env, "create-token", "--brand", "bench", "--name", "bench").strip()
    headers = {"Authorization": f"Bearer {token}"}
    with httpx.Client(base_url=base_url, headers=headers, timeout=30) as api:
        _ok(api.patch("/api/v1/brand", json={"requests": {"accept_all": True}}))
        policy = {
            "name": "Everyone",
            "position": 1,
            "conditions": {},
            "targets": {"first_response_min": 60, "next_response_min": 60, "resolution_min": 1440},
            "business_hours": False,
        }
        _ok(api.post("/api/v1/sla-policies", json=policy))
        for n in range(rules):
            _ok(api.post("/api/v1/automations", json=_rule(n)))


def _rule(n: int) -> dict:
    """Rules of the three kinds the intake runs, each with a condition that holds for no ticket
    of the load, so that every rule is evaluated and none acts."""
    event = ("message_received", "ticket_created", "message_received", "ticket_updated")[n % 4]
    return {
        "name": f"Bench rule {n}",
        "enabled": True,
        "position": n + 1,
        "trigger": {"event": event},
        "conditions": [
            {"field": "priority", "op": "ne", "value": "low"},
            {"field": "text", "op": "contains", "value": f"no such words {n}"},
        ],
        "actions": [{"type": "set_priority", "value": "urgent"}],
        "once_per_ticket": False,
    }


def _ok(response: httpx.Response) -> None:
    if response.status_code >= 300:
        raise RuntimeError(f"{response.request.method} {response.request.url}: {response.text}")


def _state(conninfo: str) -> tuple[int, int, int, int, int]:
    """Pending deliveries, customer messages with their ticket, tickets, tickets whose SLA
    clocks run (their policy chosen, due times set), failed deliveries."""
    with psycopg.connect(conninfo) as conn:
        return conn.execute(
            """
            SELECT
              (SELECT count(*) FROM webhook_events WHERE status = 'pending'),
              (SELECT count(*) FROM messages
                 WHERE direction = 'inbound' AND ticket_id IS NOT NULL),
              (SELECT count(*) FROM tickets),
              (SELECT count(*) FROM tickets WHERE sla_policy_id IS NOT NULL),
              (SELECT count(*) FROM webhook_events WHERE status = 'failed')
            """
        ).fetchone()


def run_once(args: argparse.Namespace, workers: int, rules: int, load) -> Run:
    bodies, messages, _echoes = load
    _recreate_database(args.database, DB_NAME)
    client = redis.Redis.from_url(args.redis)
    client.flushdb()
    conninfo = _conninfo(args.database, DB_NAME)
    port, sim_port = _free_port(), _free_port()
    logs = Path(tempfile.mkdtemp(prefix="pipeline-"))
    env = dict(
        os.environ,
        DATABASE_URL=make_url(args.database).set(database=DB_NAME).render_as_string(False),
        REDIS_URL=args.redis,
        INSTAGRAM_APP_SECRET=SECRET,
        GRAPH_API_BASE=f"http://127.0.0.1:{sim_port}/v25.0",  # profiles, as Meta would answer
        HELPDESK_INSTANCE=str(logs / "instance"),
        HELPDESK_ENV="production",
        INTAKE_LOOPS=str(workers),
    )
    _flask(env, "db", "upgrade")
    _flask(env, "create-brand", "bench", "--name", "Bench", "--timezone", "UTC")
    _flask(env, "connect-instagram", "--brand", "bench", "--account-id", ACCOUNT,
           "--access-token", "bench-token")  # fmt: skip
    stack = Stack(logs)
    python, celery = sys.executable, [sys.executable, "-m", "celery", "-A", "workers"]
    try:
        stack.start("graph-sim", [python, "-m", "devtools.graphsim", "serve", "--port",
                                  str(sim_port), "--app-secret", SECRET], env)  # fmt: skip
        stack.start("web", [python, "-m", "gunicorn", "-k", "gthread", "-w", str(args.web_workers),
                            "--threads", str(args.web_threads), "-b", f"127.0.0.1:{port}",
                            "--log-level", "warning", "wsgi:app"], env)  # fmt: skip
        stack.start("worker", [*celery, "worker", "--loglevel=WARNING", "--pool=prefork",
                               f"--concurrency={workers}"], env)  # fmt: skip
        stack.start("beat", [*celery, "beat", "--loglevel=WARNING",
                             "-s", str(logs / "beat-schedule")], env)  # fmt: skip
        _wait_for(f"http://127.0.0.1:{sim_port}/_sim/health", "the simulator")
        _wait_for(f"http://127.0.0.1:{port}/healthz", "the web app")
        _setup(env, f"http://127.0.0.1:{port}", rules)
        time.sleep(2)  # the worker is up and listening
        started, answered, retries = post_all(port, bodies, args.connections)
        customers = args.customers
        while True:
            pending, stored, tickets, timed, failed = _state(conninfo)
            if pending == 0 and stored >= messages and timed >= tickets >= customers:
                break
            if time.monotonic() - started > args.timeout:
                raise RuntimeError(
                    f"not done after {args.timeout} s: {pending} pending, {stored}/{messages} "
                    f"messages, {timed}/{tickets} tickets timed, {failed} failed"
                )
            time.sleep(0.1)
        done = time.monotonic()
        _check(conninfo, len(bodies), messages, retries)
        return Run(workers, rules, len(bodies), answered - started, done - started, stored, tickets)
    finally:
        stack.stop()
        _drop_database(args.database, DB_NAME)


def _check(conninfo: str, total: int, messages: int, retries: int) -> None:
    with psycopg.connect(conninfo) as conn:
        stored, processed, failed = conn.execute(
            "SELECT count(*), count(*) FILTER (WHERE status = 'processed'),"
            " count(*) FILTER (WHERE status = 'failed') FROM webhook_events"
        ).fetchone()
        doubled = conn.execute(
            "SELECT count(*) FROM (SELECT mid FROM messages GROUP BY channel_id, mid"
            " HAVING count(*) > 1) AS twice"
        ).fetchone()[0]
        inbound = conn.execute(
            "SELECT count(*) FROM messages WHERE direction = 'inbound' AND mid LIKE 'pl-%'"
        ).fetchone()[0]
    problems = []
    if stored < total or processed != stored or failed:
        problems.append(f"{stored} stored, {processed} processed, {failed} failed of {total}")
    if doubled:
        problems.append(f"{doubled} messages stored twice")
    if inbound != messages:
        problems.append(f"{inbound} customer messages stored, {messages} sent")
    if problems:
        raise RuntimeError("; ".join(problems) + f" ({retries} retried posts)")


# Main ---------------------------------------------------------------------------------------


def _arguments() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--database", default=os.environ.get("DATABASE_URL", ""))
    parser.add_argument("--redis", default=os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/13"))
    parser.add_argument("--deliveries", type=int, default=20_000)
    parser.add_argument("--customers", type=int, default=2_000)
    parser.add_argument("--workers", default="1,2,4", help="worker process counts, in turn")
    parser.add_argument("--rules", default="0", help="automation rule counts, in turn (0,50)")
    parser.add_argument("--connections", type=int, default=16)
    parser.add_argument("--web-workers", type=int, default=2)
    parser.add_argument("--web-threads", type=int, default=8)
    parser.add_argument("--timeout", type=float, default=900)
    args = parser.parse_args()
    if not args.database.startswith("postgresql"):
        parser.error("DATABASE_URL (or --database) must name a PostgreSQL server")
    return args


def main() -> int:
    args = _arguments()
    load = deliveries(args.deliveries, args.customers)
    print(
        f"{args.deliveries} deliveries from {args.customers} customers: {load[1]} messages, "
        f"{load[2]} echoes, the rest reactions and edits; gunicorn {args.web_workers} x "
        f"{args.web_threads} gthread, {args.connections} kept connections; {os.cpu_count()} CPUs"
    )
    print(f"{'workers':>7} {'rules':>5} {'intake/s':>9} {'processed/s':>12} {'ratio':>6}"
          f" {'intake s':>9} {'done s':>7}")  # fmt: skip
    failed = False
    for rules in [int(n) for n in args.rules.split(",")]:
        for workers in [int(n) for n in args.workers.split(",")]:
            try:
                run = run_once(args, workers, rules, load)
            except RuntimeError as exc:
                print(f"{workers:>7} {rules:>5} failed: {exc}")
                failed = True
                continue
            print(
                f"{run.workers:>7} {run.rules:>5} {run.intake_rate:>9.0f} "
                f"{run.processing_rate:>12.0f} {run.ratio:>6.2f} {run.intake_seconds:>9.1f} "
                f"{run.processing_seconds:>7.1f}",
                flush=True,
            )
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())

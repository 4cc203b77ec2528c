"""Faults on the real services: Redis stopped and restarted while replies are being delivered, a
worker killed (SIGKILL) in the middle of each kind of task and restarted, PostgreSQL dropping the
connection of a request in progress, and the Graph API simulator answering slowly, with 500s and
with rate limits. After each, nothing is lost or doubled: every message is sent once, every SLA
reminder fires once, and tickets and metrics are what they would have been without the fault.

Nothing here is mocked: a real database, a real broker, real `celery` worker processes, and the
project's Graph API simulator over HTTP. To land a kill in the middle of a task, the test holds a
PostgreSQL lock the task needs, sees the worker's backend wait for it (`pg_blocking_pids`), and
kills the worker there; the simulator's slow answer does the same for a send.

Covered elsewhere and not repeated here: Redis stopped during intake (tests/test_intake_faults.py,
whose Redis of our own this file borrows), one reply's worker killed mid-send and the Send API's
answers one call at a time (tests/test_delivery.py).
"""

from __future__ import annotations

import os
import signal
import subprocess
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import create_engine, func, select, text, update
from sqlalchemy.pool import NullPool

from devtools.graphsim.testing import SimulatorHandle
from helpdesk import create_app, queueing
from helpdesk.accounts.models import Role
from helpdesk.accounts.tokens import create_token
from helpdesk.brands.models import Brand
from helpdesk.channels.models import Channel
from helpdesk.channels.service import connect_channel
from helpdesk.dm.models import Conversation, Direction, Message, MessageStatus
from helpdesk.dm.service import InboundMessage
from helpdesk.extensions import db
from helpdesk.inbox import service as inbox
from helpdesk.intake import service as intake
from helpdesk.intake.models import EventStatus, WebhookEvent
from helpdesk.metrics import service as metrics
from helpdesk.metrics.models import MetricEvent, MetricRollup, MetricTicketState, MetricVolume
from helpdesk.metrics.plumbing import lock_key
from helpdesk.notifications.models import Notification, NotificationKind
from helpdesk.sla import service as sla
from helpdesk.sla.models import SlaReminder
from helpdesk.tickets import service as tickets
from helpdesk.tickets.models import Ticket, TicketEvent
from helpdesk.types import utcnow
from tests.conftest import DATABASE_URL, REDIS_URL, fresh, serving, table_counts, wait_for
from tests.factories import AgentFactory, BrandFactory, ChannelFactory, ContactFactory, member
from tests.helpers.webhooks import ACCOUNT, SECRET, post, text_delivery

TOKEN = "page-token-faults"
WORKER = ("worker", "--pool=solo", "--without-mingle", "--without-gossip")
DELIVER = queueing.DELIVER_MESSAGE
SWEEP_DELIVERIES = "workers.tasks.delivery.sweep_deliveries"
SWEEP_SLA = "workers.tasks.sla.sweep_sla"
RECORD_METRICS = "workers.tasks.metrics.record_ticket_metrics"
SWEEP_METRICS = "workers.tasks.metrics.sweep_metrics"
RELEASE_SCHEDULED = "workers.tasks.tickets.release_scheduled_messages"


# Fixtures -----------------------------------------------------------------------------------------


@pytest.fixture
def worker_env(sim_worker_env: dict[str, str]) -> dict[str, str]:
    """Workers here send to `sim`."""
    return sim_worker_env


@pytest.fixture
def postgres(app) -> None:
    if db.engine.dialect.name != "postgresql":
        pytest.skip(
            "needs PostgreSQL: the test holds row and advisory locks to stop a task or a "
            "request half-way, and drops a connection with pg_terminate_backend"
        )


@pytest.fixture
def worker(app, celery_process, tmp_path) -> Iterator[Callable[[], Worker]]:
    """Start real worker processes; the broker is emptied first, since tasks left by earlier
    tests name ids that this test's rows reuse."""
    app.extensions["celery"].control.purge()
    queueing.reset()
    killed: list[str] = []

    def start() -> Worker:
        log = tmp_path / f"celery-{len(list(tmp_path.glob('celery-*.log')))}.log"
        return Worker(celery_process(*WORKER), log, killed)

    yield start
    _forget_unacked(killed)


class Worker:
    """A `celery worker` process and its log."""

    def __init__(self, process: subprocess.Popen, log: Path, killed: list[str]) -> None:
        self.process, self.log, self._killed = process, log, killed

    def kill(self, *tasks: str) -> None:
        """SIGKILL to the worker's whole process group: no shutdown, no acknowledgement. `tasks`
        (ids or names) are those it held, for the broker to forget after the test."""
        os.killpg(self.process.pid, signal.SIGKILL)
        self.process.wait(timeout=10)
        self._killed.extend(tasks)

    def result(self, task_id: str, timeout: float = 60.0) -> str:
        """What the task returned, from the worker's `succeeded` line; fails if it raised."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for line in self.lines():
                if f"[{task_id}]" in line and " succeeded in " in line:
                    return line.split(": ", 1)[1] if ": " in line else ""
                if f"[{task_id}]" in line and " raised " in line:
                    pytest.fail(f"task {task_id} raised: {line}")
            time.sleep(0.2)
        pytest.fail(f"task {task_id} did not finish in time:\n{self.log.read_text()[-4000:]}")

    def results(self, task_name: str) -> list[str]:
        return [
            line.split(": ", 1)[1]
            for line in self.lines()
            if f"Task {task_name}[" in line and " succeeded in " in line
        ]

    def lines(self) -> list[str]:
        return self.log.read_text().splitlines() if self.log.exists() else []


def send(name: str, *args: Any, celery=None) -> str:
    """A task through the real broker, with an id of ours to find it in the worker's log."""
    from flask import current_app

    task_id = uuid.uuid4().hex
    (celery or current_app.extensions["celery"]).send_task(name, args=list(args), task_id=task_id)
    return task_id


def _forget_unacked(needles: list[str]) -> None:
    """With Redis, a killed worker's task waits in `unacked` to be redelivered an hour later:
    drop it (found by its id or its name), so it cannot surface in a later run against that
    run's rows."""
    if not REDIS_URL or not needles:
        return
    import redis

    client = redis.Redis.from_url(REDIS_URL)
    for tag, payload in client.hgetall("unacked").items():
        if any(needle.encode() in payload for needle in needles):
            client.hdel("unacked", tag)
            client.zrem("unacked_index", tag)


# PostgreSQL: locks held by the test, backends watched and dropped ---------------------------------


def _admin(sql: str, **params: Any) -> list:
    """A statement on a connection of its own, outside the app's pool and any transaction."""
    engine = create_engine(db.engine.url, poolclass=NullPool, isolation_level="AUTOCOMMIT")
    try:
        with engine.connect() as connection:
            return connection.execute(text(sql), params).all()
    finally:
        engine.dispose()


@contextmanager
def holding(sql: str, **params: Any) -> Iterator[int]:
    """Take a lock in a transaction of the test's own and keep it for the block (rolled back at
    the end); yields that transaction's backend pid."""
    with db.engine.connect() as connection:
        pid = connection.execute(text("SELECT pg_backend_pid()")).scalar_one()
        connection.execute(text(sql), params)
        try:
            yield pid
        finally:
            connection.rollback()


def blocked_by(holder: int, timeout: float = 60.0, other_than: int | None = None) -> tuple:
    """The backend waiting for a lock the test holds: (pid, query). Proves that whoever owns it
    is inside its transaction, at that statement, when the fault strikes."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        rows = _admin(
            "SELECT pid, query FROM pg_stat_activity WHERE :holder = ANY(pg_blocking_pids(pid))",
            holder=holder,
        )
        rows = [row for row in rows if row.pid != other_than]
        if rows:
            assert len(rows) == 1, rows
            return rows[0].pid, rows[0].query
        time.sleep(0.05)
    pytest.fail("nothing came to wait for the lock the test holds")


def tables_written_by(pid: int) -> set[str]:
    """Tables the backend's open transaction has inserted, updated or deleted rows in."""
    rows = _admin(
        "SELECT c.relname FROM pg_locks l JOIN pg_class c ON c.oid = l.relation "
        "WHERE l.pid = :pid AND l.mode = 'RowExclusiveLock' AND c.relkind = 'r'",
        pid=pid,
    )
    return {row.relname for row in rows}


def terminate(pid: int) -> None:
    assert _admin("SELECT pg_terminate_backend(:pid)", pid=pid)[0][0] is True


def wait_backend_gone(pid: int, timeout: float = 30.0) -> None:
    """A killed worker's backend finishes the statement it waited on, finds its client gone and
    rolls back; until then it still holds its locks."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not _admin("SELECT 1 FROM pg_stat_activity WHERE pid = :pid", pid=pid):
            return
        time.sleep(0.1)
    pytest.fail(f"backend {pid} of the killed worker is still there")


# Data ---------------------------------------------------------------------------------------------


def customer_writes(channel: Channel, platform_id: str, minutes_ago: float) -> Conversation:
    """A followed customer's message through the inbox: the conversation and its open ticket."""
    ContactFactory(channel=channel, platform_id=platform_id, followed_by_brand=True)
    when = utcnow() - timedelta(minutes=minutes_ago)
    incoming = InboundMessage(
        mid=f"m_in_{platform_id}", sender_id=platform_id, sent_at=when, text="Where is my order?"
    )
    message = inbox.receive(channel, incoming, now=when)
    return db.session.get(Conversation, message.conversation_id)


def ticket_of(conversation: Conversation) -> Ticket:
    return tickets.current_ticket(conversation)


def api_replies(web, minutes_ago: float) -> tuple[Callable[[str], Any], int, int]:
    """A customer who wrote `minutes_ago`, and a function that posts an agent's reply to them
    through `web`'s API: the function, the conversation's id and its ticket's id."""
    channel = ChannelFactory(access_token=TOKEN)
    conversation = customer_writes(channel, "6120000000000001", minutes_ago=minutes_ago)
    _row, token = create_token(db.session.get(Brand, channel.brand_id), "api", Role.AGENT)
    conversation_id, ticket_id = conversation.id, ticket_of(conversation).id
    db.session.commit()
    api = web.test_client()

    def post_reply(words: str):
        return api.post(
            f"/api/v1/conversations/{conversation_id}/messages",
            json={"text": words},
            headers={"Authorization": f"Bearer {token}"},
        )

    return post_reply, conversation_id, ticket_id


def reply(conversation: Conversation, text_: str, **kwargs: Any) -> int:
    message = inbox.reply(conversation, None, text=text_, **kwargs)
    db.session.commit()
    return message.id


def message_state(message_id: int) -> tuple[MessageStatus, int, str | None]:
    def read():
        message = db.session.get(Message, message_id)
        return message.status, message.delivery_attempts, message.mid

    return fresh(read)


def event_kinds(ticket_id: int) -> list[str]:
    return fresh(
        lambda: list(
            db.session.scalars(
                select(TicketEvent.kind)
                .where(TicketEvent.ticket_id == ticket_id)
                .order_by(TicketEvent.id)
            )
        )
    )


def count(model, *where) -> int:
    return fresh(lambda: db.session.scalar(select(func.count()).select_from(model).where(*where)))


def sends_by_text(sim: SimulatorHandle) -> dict[str, list[int]]:
    """HTTP status of every Send API call, per message text."""
    out: dict[str, list[int]] = {}
    for entry in sim.sends():
        out.setdefault(entry["json"]["message"]["text"], []).append(entry["status"])
    return out


# 1. Redis stopped and restarted during delivery ---------------------------------------------------


@pytest.mark.worker
def test_redis_restarted_during_delivery_loses_and_doubles_no_reply(
    app,
    own_redis,  # noqa: F811
    sim,
    worker,
    worker_env,  # noqa: F811
):
    broker = f"redis://127.0.0.1:{own_redis.port}/0"
    web = create_app(
        {
            "SQLALCHEMY_DATABASE_URI": DATABASE_URL,
            "GRAPH_API_BASE": sim.base_url,
            "CELERY": {**app.config["CELERY"], "broker_url": broker, "result_backend": broker},
        }
    )
    try:
        api_reply, _conversation_id, ticket_id = api_replies(web, minutes_ago=60)

        def post_reply(words: str) -> int:
            started = time.monotonic()
            response = api_reply(words)
            assert response.status_code == 202, response.get_data(as_text=True)
            assert time.monotonic() - started < 3, "a reply waited for the broker"
            return response.get_json()["id"]

        queueing.reset()
        worker_env.update(REDIS_URL=broker)
        first = worker()
        sim.delay(2500)  # the first send is in flight while Redis goes down
        a = post_reply("A: on its way")
        assert sim.wait_for_requests(1, timeout=60), "the worker never called the Send API"

        own_redis.stop()
        b = post_reply("B: tracking number follows")
        c = post_reply("C: anything else?")
        assert message_state(b) == (MessageStatus.QUEUED, 0, None)
        assert message_state(c) == (MessageStatus.QUEUED, 0, None)
        # The send in flight ends, and is recorded, while the broker is still down.
        assert wait_for(lambda: message_state(a)[0] is MessageStatus.SENT, timeout=30)
        time.sleep(1)
        own_redis.start()  # empty: what was queued in Redis is gone, the rows are not
        queueing.reset()

        # Beat's delivery sweep takes queued messages no task holds after a minute: as after an
        # outage of two minutes. Two sweeps before any delivery runs enqueue B and C twice.
        db.session.execute(
            update(Message)
            .where(Message.id.in_([b, c]))
            .values(created_at=utcnow() - timedelta(minutes=2))
        )
        db.session.commit()
        celery = web.extensions["celery"]
        sweeps = [send(SWEEP_DELIVERIES, celery=celery) for _ in range(2)]
        for task_id in sweeps:
            assert first.result(task_id) == "{'failed': 0, 'requeued': 2}"
        assert any("Connection to broker lost" in line for line in first.lines())
        assert wait_for(
            lambda: {message_state(m)[0] for m in (b, c)} == {MessageStatus.SENT}, timeout=60
        ), first.log.read_text()[-3000:]
        deadline = time.monotonic() + 30
        while len(first.results(DELIVER)) < 5 and time.monotonic() < deadline:
            time.sleep(0.2)
        # Each reply sent by one task; the duplicates (and A's task, should the broker hand it
        # over again) found it sent.
        outcomes = first.results(DELIVER)
        assert outcomes.count("'sent'") == 3 and outcomes.count("'skipped'") >= 2, outcomes
        assert set(outcomes) == {"'sent'", "'skipped'"}, outcomes

        assert sends_by_text(sim) == {
            "A: on its way": [200],
            "B: tracking number follows": [200],
            "C: anything else?": [200],
        }
        mids = {
            entry["json"]["message"]["text"]: entry["response"]["message_id"]
            for entry in sim.sends()
        }
        assert message_state(a) == (MessageStatus.SENT, 1, mids["A: on its way"])
        assert message_state(b) == (MessageStatus.SENT, 1, mids["B: tracking number follows"])
        assert message_state(c) == (MessageStatus.SENT, 1, mids["C: anything else?"])
        assert event_kinds(ticket_id).count("response") == 3
        assert event_kinds(ticket_id).count("first_response") == 1
    finally:
        queueing.reset()
        with web.app_context():
            db.engine.dispose()
        app.extensions["celery"].set_default()


# 2. A worker killed mid-task, then restarted ------------------------------------------------------


@pytest.mark.worker
def test_worker_killed_mid_sla_sweep_fires_every_reminder_once(app, postgres, worker):
    channel = ChannelFactory()
    brand = db.session.get(Brand, channel.brand_id)
    agent, manager = AgentFactory(), AgentFactory()
    member(agent, brand, Role.AGENT)
    member(manager, brand, Role.MANAGER)
    sla.create_policy(
        brand, manager, "Standard", 0, {}, {"first_response_min": 30}, business_hours=False
    )
    overdue = ticket_of(customer_writes(channel, "6120000000000001", minutes_ago=60))
    warned = ticket_of(customer_writes(channel, "6120000000000002", minutes_ago=25))
    for ticket in (overdue, warned):
        tickets.assign(ticket, agent.id, manager)
    brand_id, overdue_id, warned_id = brand.id, overdue.id, warned.id
    agent_id, manager_id = agent.id, manager.id
    db.session.commit()

    def state() -> dict[str, Any]:
        def read():
            return {
                "reminders": sorted(
                    (r.ticket_id, r.target.value, r.kind.value)
                    for r in db.session.scalars(select(SlaReminder))
                ),
                "notifications": sorted(
                    (n.ticket_id, n.agent_id, n.kind.value)
                    for n in db.session.scalars(
                        select(Notification).where(
                            Notification.kind.in_(
                                [NotificationKind.SLA_BREACH, NotificationKind.SLA_WARNING]
                            )
                        )
                    )
                ),
                "breached": {
                    ticket.id: ticket.breached
                    for ticket in db.session.scalars(select(Ticket).order_by(Ticket.id))
                },
                "events": sorted(
                    (e.ticket_id, e.kind)
                    for e in db.session.scalars(
                        select(TicketEvent).where(TicketEvent.kind.like("sla_%"))
                    )
                ),
            }

        return fresh(read)

    before = state()
    assert before["reminders"] == [] and before["notifications"] == []

    first = worker()
    # Firing a reminder inserts a row naming the brand, which waits for the test's row lock.
    with holding("SELECT id FROM brands WHERE id = :id FOR UPDATE", id=brand_id) as holder:
        killed = send(SWEEP_SLA)
        backend, query = blocked_by(holder)
        assert query.lstrip().startswith("INSERT INTO sla_reminders"), query
        first.kill(killed)
    wait_backend_gone(backend)
    assert state() == before, "the killed sweep left part of its work behind"

    second = worker()
    assert second.result(send(SWEEP_SLA)) == "{'checked': 2, 'warnings': 1, 'breaches': 1}"
    after = state()
    for _ in range(2):  # beat keeps sweeping: nothing fires again
        assert second.result(send(SWEEP_SLA)).endswith("'warnings': 0, 'breaches': 0}")
    assert state() == after

    # What one sweep without a fault gives: the breach to the assignee and the managers, the
    # warning to the assignee, each once.
    assert after == {
        "reminders": sorted(
            [(overdue_id, "first_response", "breach"), (warned_id, "first_response", "warning")]
        ),
        "notifications": sorted(
            [
                (overdue_id, agent_id, "sla_breach"),
                (overdue_id, manager_id, "sla_breach"),
                (warned_id, agent_id, "sla_warning"),
            ]
        ),
        "breached": {overdue_id: ["first_response"], warned_id: []},
        "events": sorted([(overdue_id, "sla_breached"), (warned_id, "sla_warning")]),
    }


def metric_rows(*tables) -> dict[str, list[tuple]]:
    """Every row of the metric tables, without surrogate ids and refresh times."""
    skip = {"id", "refreshed_at", "updated_at"}

    def read():
        out = {}
        for model in tables:
            columns = [c for c in model.__table__.columns if c.name not in skip]
            rows = db.session.execute(select(*columns)).all()
            out[model.__tablename__] = sorted(tuple(map(repr, row)) for row in rows)
        return out

    return fresh(read)


@pytest.mark.worker
@pytest.mark.parametrize("task", [RECORD_METRICS, SWEEP_METRICS])
def test_worker_killed_mid_metrics_leaves_the_numbers_of_a_run_without_fault(
    app, postgres, worker, task
):
    channel = ChannelFactory()
    brand = db.session.get(Brand, channel.brand_id)
    agent = AgentFactory()
    member(agent, brand, Role.AGENT)
    conversation = customer_writes(channel, "6120000000000001", minutes_ago=180)
    ticket = ticket_of(conversation)
    start = utcnow()
    inbox.reply(conversation, agent, text="Looking", now=start - timedelta(minutes=150))
    later = InboundMessage(
        mid="m_in_again",
        sender_id="6120000000000001",
        sent_at=start - timedelta(minutes=100),
        text="Any news?",
    )
    inbox.receive(channel, later, now=later.sent_at)
    inbox.reply(conversation, agent, text="Shipped", now=start - timedelta(minutes=70))
    tickets.set_status(ticket, "resolved", agent, now=start - timedelta(minutes=60))
    brand_id, ticket_id = brand.id, ticket.id
    db.session.commit()
    tables = (MetricEvent, MetricRollup, MetricTicketState)
    if task == SWEEP_METRICS:
        tables += (MetricVolume,)
    before = metric_rows(*tables)
    assert not any(before.values()), "nothing computed yet"

    # The rollup of a day waits for its advisory lock once the ticket's metric events are
    # rewritten: the test holds the locks of every day the history can touch.
    clock = metrics.BrandContext.load(brand_id).clock
    today = clock.local_date(start)
    days = [today + timedelta(days=offset) for offset in (-1, 0, 1)]
    keys = [lock_key(f"metrics:day:{brand_id}:{day.isoformat()}") for day in days]
    args = [ticket_id] if task == RECORD_METRICS else []

    first = worker()
    lock_days = "SELECT count(pg_advisory_xact_lock(k)) FROM unnest(CAST(:keys AS bigint[])) k"
    with holding(lock_days, keys=keys) as holder:
        killed = send(task, *args)
        backend, query = blocked_by(holder)
        assert "pg_advisory_xact_lock" in query, query
        assert {MetricEvent.__tablename__, MetricTicketState.__tablename__} <= tables_written_by(
            backend
        )
        first.kill(killed)
    wait_backend_gone(backend)
    assert metric_rows(*tables) == before, "the killed task left part of its work behind"

    second = worker()
    second.result(send(task, *args))  # as the broker redelivers it, or beat sweeps again
    after = metric_rows(*tables)
    assert after["metric_events"] and after["metric_rollups"]

    def recompute() -> None:
        metrics.recompute_metrics(db.session.get(Brand, brand_id))
        db.session.commit()

    fresh(recompute)
    assert metric_rows(*tables) == after


def scheduled_reply(channel: Channel, words: str) -> tuple[int, int]:
    """A reply scheduled a minute ago for half a minute ago: due. Returns (message, ticket)."""
    conversation = customer_writes(channel, "6120000000000001", minutes_ago=30)
    now = utcnow()
    message = inbox.reply(
        conversation,
        None,
        text=words,
        send_at=now - timedelta(seconds=30),
        now=now - timedelta(minutes=1),
    )
    assert message.status is MessageStatus.SCHEDULED
    ids = message.id, ticket_of(conversation).id
    db.session.commit()  # and no transaction left open: on SQLite it would hold the write lock
    return ids


@pytest.mark.worker
def test_worker_killed_while_releasing_a_scheduled_message_sends_it_once(
    app, postgres, sim, worker
):
    channel = ChannelFactory(access_token=TOKEN)
    message_id, ticket_id = scheduled_reply(channel, "Your order ships Monday")
    conversation_id = fresh(lambda: db.session.get(Message, message_id).conversation_id)

    first = worker()
    # Releasing counts the reply on its conversation, which waits for the test's row lock.
    with holding(
        "SELECT id FROM conversations WHERE id = :id FOR UPDATE", id=conversation_id
    ) as holder:
        killed = send(RELEASE_SCHEDULED)
        backend, query = blocked_by(holder)
        assert query.lstrip().startswith(("UPDATE", "INSERT")), query
        held = _admin(
            "SELECT id FROM messages WHERE id = :id FOR UPDATE SKIP LOCKED", id=message_id
        )
        assert held == [], "the worker has not taken the scheduled message"
        first.kill(killed)
    wait_backend_gone(backend)
    assert message_state(message_id) == (MessageStatus.SCHEDULED, 0, None)
    assert "response" not in event_kinds(ticket_id)
    assert sim.requests() == []

    second = worker()
    assert second.result(send(RELEASE_SCHEDULED)) == "1"
    assert wait_for(lambda: message_state(message_id)[0] is MessageStatus.SENT, timeout=30)
    assert second.result(send(RELEASE_SCHEDULED)) == "0"  # beat again: nothing left to release

    assert sends_by_text(sim) == {"Your order ships Monday": [200]}
    mid = sim.sends()[0]["response"]["message_id"]
    assert message_state(message_id) == (MessageStatus.SENT, 1, mid)
    kinds = event_kinds(ticket_id)
    assert (kinds.count("first_response"), kinds.count("response")) == (1, 1)


@pytest.mark.worker
def test_worker_killed_mid_send_of_a_scheduled_message_never_sends_it_twice(app, sim, worker):
    channel = connect_channel(BrandFactory(), "instagram", ACCOUNT, TOKEN)
    message_id, ticket_id = scheduled_reply(channel, "Your order ships Monday")

    with serving(app) as url:
        sim.set_echo(f"{url}/webhooks/instagram", SECRET)
        first = worker()
        sim.delay(3000)
        send(RELEASE_SCHEDULED)
        assert sim.wait_for_requests(1, timeout=60), "the worker never called the Send API"
        # Released, claimed and on the wire: Meta has it, the worker has not heard back.
        assert message_state(message_id) == (MessageStatus.SENDING, 1, None)
        first.kill(DELIVER)

        # Meta accepts the send and echoes it to the webhook; nobody is left to hear the answer.
        deadline = time.monotonic() + 30
        while not sim.echoes() and time.monotonic() < deadline:
            time.sleep(0.1)
        assert [echo.get("status") for echo in sim.echoes()] == [200]

    second = worker()
    # The broker hands the killed delivery over again, and beat releases and sweeps again.
    assert second.result(send(DELIVER, message_id)) == "'skipped'"
    assert second.result(send(RELEASE_SCHEDULED)) == "0"
    send("workers.tasks.intake.process_pending_webhooks")
    mid = sim.sends()[0]["response"]["message_id"]
    assert wait_for(lambda: message_state(message_id) == (MessageStatus.SENT, 1, mid), timeout=30)

    assert sends_by_text(sim) == {"Your order ships Monday": [200]}
    assert count(Message, Message.direction == Direction.OUTBOUND) == 1, "the echo is no new row"
    assert count(WebhookEvent, WebhookEvent.status == EventStatus.PROCESSED) == 1
    kinds = event_kinds(ticket_id)
    assert (kinds.count("first_response"), kinds.count("response")) == (1, 1)


# 3. PostgreSQL drops the connection of a request in progress --------------------------------------


def webhook_body(n: int) -> bytes:
    return text_delivery(n, "m_dropped_")


def in_thread(call: Callable[[], Any]) -> Callable[[], Any]:
    """Start `call` in a thread; the returned function waits for and gives its result."""
    outcome: dict[str, Any] = {}

    def run() -> None:
        try:
            outcome["value"] = call()
        except BaseException as exc:  # handed to the test's thread
            outcome["error"] = exc

    thread = threading.Thread(target=run, daemon=True)
    thread.start()

    def result() -> Any:
        thread.join(timeout=30)
        assert not thread.is_alive(), "the request never ended"
        if "error" in outcome:
            raise outcome["error"]
        return outcome["value"]

    return result


def process_pending() -> int:
    """What the intake worker does with the stored deliveries; returns how many."""
    ids = db.session.scalars(
        select(WebhookEvent.id).where(WebhookEvent.status == EventStatus.PENDING)
    ).all()
    for event_id in ids:
        intake.process_event(event_id)
        db.session.commit()
    return len(ids)


@pytest.fixture
def rows_before(app, postgres) -> dict[str, int]:
    """An Instagram channel for the deliveries; then the rows per table, before any arrives."""
    connect_channel(BrandFactory(), "instagram", ACCOUNT, TOKEN)
    db.session.commit()
    return table_counts()


@contextmanager
def storing_held(client) -> Iterator[tuple[int, Callable[[], Any]]]:
    """Delivery 1 posted in a thread while the test holds a lock on the table: the lock's backend,
    and the response to wait for."""
    with holding("LOCK TABLE webhook_events IN SHARE MODE") as holder:
        yield holder, in_thread(lambda: post(client, webhook_body(1)))


def retried(holder: int, dropped: int) -> int:
    """The writer's second try at the batch, on a new connection after `dropped`: its backend."""
    backend, query = blocked_by(holder, timeout=10, other_than=dropped)
    assert query.lstrip().startswith("INSERT INTO webhook_events"), query
    return backend


def stored_once() -> None:
    assert fresh(process_pending) == 1
    assert count(Message, Message.mid == "m_dropped_1") == 1


def test_connection_dropped_once_while_storing_a_webhook_is_retried_and_stored_once(
    postgres, client, rows_before
):
    # Storing a delivery needs the table in ROW EXCLUSIVE mode: it waits for the test's lock.
    with storing_held(client) as (holder, response):
        dropped, query = blocked_by(holder)
        assert query.lstrip().startswith("INSERT INTO webhook_events"), query
        terminate(dropped)
        # The writer takes a new connection and tries the batch once more.
        retried(holder, dropped)
    assert response().status_code == 200

    after = table_counts()
    assert after == {**rows_before, "webhook_events": rows_before["webhook_events"] + 1}
    stored_once()


def test_connection_dropped_for_good_while_storing_a_webhook_answers_503_and_stores_nothing(
    postgres, client, rows_before
):
    with storing_held(client) as (holder, response):
        first, _query = blocked_by(holder)
        terminate(first)
        terminate(retried(holder, first))  # the retry's connection is dropped too
        refused = response()
    assert refused.status_code == 503
    assert refused.get_json() == {
        "error": {"code": "unavailable", "message": refused.get_json()["error"]["message"]}
    }
    assert table_counts() == rows_before, "a refused delivery left rows behind"

    # Meta retries a 5xx: the next request is stored, and processed once.
    assert post(client, webhook_body(1)).status_code == 200
    assert table_counts()["webhook_events"] == rows_before["webhook_events"] + 1
    stored_once()


def test_connections_dropped_while_idle_cost_the_next_webhook_and_reply_nothing(
    app, postgres, client
):
    """As after a database restart or failover: every idle connection of the app is gone, the
    intake writer's included. The next delivery and the next reply still succeed."""
    channel = connect_channel(BrandFactory(), "instagram", ACCOUNT, TOKEN)
    conversation = customer_writes(channel, "6120000000000001", minutes_ago=30)
    _row, token = create_token(db.session.get(Brand, channel.brand_id), "api", Role.AGENT)
    conversation_id = conversation.id
    db.session.commit()
    assert post(client, webhook_body(1)).status_code == 200  # the writer is connected
    before = table_counts()
    db.session.close()

    dropped = _admin(
        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
        "WHERE datname = current_database() AND pid <> pg_backend_pid() AND state = 'idle'"
    )
    assert len(dropped) >= 2, "the intake writer's connection and the pool's"

    # The request's pool and the intake writer each find their connection dead: the first by
    # checking it out, the second by a failed insert tried once more.
    response = client.post(
        f"/api/v1/conversations/{conversation_id}/messages",
        json={"text": "After the restart"},
        headers={"Authorization": f"Bearer {token}"},
    )
    assert response.status_code == 202, response.get_data(as_text=True)
    assert post(client, webhook_body(2)).status_code == 200
    after = table_counts()
    assert after["webhook_events"] == before["webhook_events"] + 1
    assert after["messages"] == before["messages"] + 1
    assert fresh(process_pending) == 2
    assert count(Message, Message.mid.in_(["m_dropped_1", "m_dropped_2"])) == 2


def test_connection_dropped_during_an_api_reply_fails_cleanly_and_the_next_succeeds(app, postgres):
    # The app as it runs in production: an unexpected error becomes the API's JSON 500.
    web = create_app({"SQLALCHEMY_DATABASE_URI": DATABASE_URL, "PROPAGATE_EXCEPTIONS": False})
    try:
        post_reply, conversation_id, ticket_id = api_replies(web, minutes_ago=30)
        assert post_reply("warm the pool").status_code == 202
        before = table_counts()
        kinds_before = event_kinds(ticket_id)

        # Storing the reply names its conversation, which waits for the test's row lock.
        with holding(
            "SELECT id FROM conversations WHERE id = :id FOR UPDATE", id=conversation_id
        ) as holder:
            response = in_thread(lambda: post_reply("Lost with the connection"))
            backend, query = blocked_by(holder)
            assert query.lstrip().startswith(("INSERT", "UPDATE")), query
            terminate(backend)
            failed = response()
        assert failed.status_code == 500, failed.get_data(as_text=True)
        assert failed.get_json()["error"]["code"] == "internal_error"
        assert table_counts() == before, "the failed request left part of its work behind"
        assert event_kinds(ticket_id) == kinds_before

        recovered = post_reply("Sent after the drop")
        assert recovered.status_code == 202, recovered.get_data(as_text=True)
        assert table_counts()["messages"] == before["messages"] + 1
        texts = fresh(
            lambda: list(
                db.session.scalars(
                    select(Message.text)
                    .where(Message.direction == Direction.OUTBOUND)
                    .order_by(Message.id)
                )
            )
        )
        assert texts == ["warm the pool", "Sent after the drop"]
    finally:
        with web.app_context():
            db.engine.dispose()
        app.extensions["celery"].set_default()
        app.extensions["celery"].control.purge()


# 4. The Graph API slow, failing with 500s, rate-limiting ------------------------------------------


@pytest.mark.worker
def test_slow_failing_and_rate_limited_graph_api_delivers_each_reply_once(app, sim, worker):
    """Through a real worker and its Celery retries with backoff: codes 1 and 2 (HTTP 500),
    4, 17, 341 and 613 (limits) are retried until sent; a slow answer within the timeout is a
    send; 551 fails at once with the reason. One accepted send per reply, never a second."""
    channel = ChannelFactory(access_token=TOKEN)
    plans = {
        "6120000000000001": ("server errors", [(1, 0), (2, 0)]),
        "6120000000000002": ("rate limited", [(613, 0), (4, 0)]),
        "6120000000000003": ("slow limits", [(17, 1500), (341, 0)]),
        "6120000000000004": ("slow", []),
        "6120000000000005": ("unavailable", [(551, 0)]),
    }
    ids = {}
    for customer, (words, _errors) in plans.items():
        ids[words] = reply(customer_writes(channel, customer, minutes_ago=30), words)
    for customer, (_words, errors) in plans.items():
        for code, delay_ms in errors:
            sim.fail_next(code, recipient_id=customer, delay_ms=delay_ms)
    sim.delay(2000, recipient_id="6120000000000004")

    first = worker()
    for message_id in ids.values():
        assert queueing.enqueue_delivery(message_id)

    def settled() -> bool:
        return all(
            message_state(message_id)[0] in (MessageStatus.SENT, MessageStatus.FAILED)
            for message_id in ids.values()
        )

    assert wait_for(settled, timeout=90), first.log.read_text()[-3000:]
    sweep = first.result(send(SWEEP_DELIVERIES))  # beat's sweep finds nothing left to send
    assert sweep == "{'failed': 0, 'requeued': 0}"

    assert sends_by_text(sim) == {
        "server errors": [500, 500, 200],
        "rate limited": [400, 400, 200],
        "slow limits": [400, 400, 200],
        "slow": [200],
        "unavailable": [400],
    }
    accepted = {
        entry["json"]["message"]["text"]: entry["response"]["message_id"]
        for entry in sim.sends()
        if entry["status"] == 200
    }
    for words in ("server errors", "rate limited", "slow limits"):
        assert message_state(ids[words]) == (MessageStatus.SENT, 3, accepted[words])
    assert message_state(ids["slow"]) == (MessageStatus.SENT, 1, accepted["slow"])
    failed = fresh(lambda: db.session.get(Message, ids["unavailable"]))
    assert (failed.status, failed.delivery_attempts, failed.error_code) == (
        MessageStatus.FAILED,
        1,
        "551",
    )
    assert failed.error == "This person isn't available right now"
    # The retries were the task's own, after its backoff (2 s, then 4 s), not the sweep's.
    retries = [line for line in first.lines() if f"{DELIVER}[" in line and " retry: " in line]
    assert sorted(line.rsplit(" ", 1)[1] for line in retries) == ["2s"] * 3 + ["4s"] * 3
    assert sorted(first.results(DELIVER)) == ["'failed'"] + ["'sent'"] * 4

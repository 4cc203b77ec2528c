"""Waking the workers: one intake wake-up waits in the broker however many deliveries arrive, and
no more intake loops run at once than configured (across processes, with Redis)."""

from __future__ import annotations

import re
import time
from contextlib import ExitStack
from pathlib import Path

import pytest
from sqlalchemy import event, select

from helpdesk import queueing
from helpdesk.dm.models import Contact
from helpdesk.extensions import db
from helpdesk.intake import batch
from helpdesk.intake import service as intake
from helpdesk.intake.models import EventStatus, WebhookEvent
from helpdesk.queueing import PROCESS_PENDING_WEBHOOKS as PROCESS_PENDING
from tests.conftest import REDIS_URL, drain_broker
from tests.helpers.webhooks import FIXTURES, post
from workers.tasks import intake as intake_tasks
from workers.tasks.intake import fetch_contact_profiles, process_pending_webhooks

needs_redis = pytest.mark.skipif(
    not REDIS_URL, reason="REDIS_URL is not set: the shared flag and lock live in Redis (CI)"
)


@pytest.fixture(autouse=True)
def _clean(app):
    queueing.reset()
    queueing.kicked(PROCESS_PENDING)
    drain_broker(app)
    yield
    drain_broker(app)
    queueing.kicked(PROCESS_PENDING)


def body(n: int, sender: int = 1) -> bytes:
    """The text example with a mid of its own (and, given `sender`, another customer's)."""
    raw = (FIXTURES / "text.json").read_bytes()
    raw = raw.replace(b'"6120000000000001"', b'"61200000%08d"' % sender)
    return raw.replace(b'E600000001"', b'E6%08d"' % n)


def wake_ups(app) -> int:
    return sum(name == PROCESS_PENDING for name, _args in drain_broker(app))


def statuses() -> list[EventStatus]:
    db.session.expire_all()
    return list(db.session.scalars(select(WebhookEvent.status).order_by(WebhookEvent.id)))


@needs_redis
def test_a_burst_of_deliveries_asks_for_one_intake_task(app, client, webhook_channel):
    for n in range(20):
        assert post(client, body(n)).status_code == 200
        if n % 5 == 4:
            time.sleep(queueing.COALESCE_SECONDS)  # past what one process would coalesce

    queued = [name for name, _args in drain_broker(app)]
    assert queued == [PROCESS_PENDING]
    assert statuses() == [EventStatus.PENDING] * 20

    assert process_pending_webhooks() == 20
    assert statuses() == [EventStatus.PROCESSED] * 20


@needs_redis
def test_a_started_task_lets_the_next_delivery_ask_again(app, client, webhook_channel):
    post(client, body(1))
    assert wake_ups(app) == 1
    post(client, body(2))
    assert wake_ups(app) == 0  # the first is still waiting for a worker

    assert process_pending_webhooks() == 2  # it starts: the flag is cleared
    time.sleep(queueing.COALESCE_SECONDS)  # this process's own pause between asks
    post(client, body(3))
    assert wake_ups(app) == 1


@needs_redis
def test_no_more_intake_loops_than_configured(app, client, webhook_channel):
    post(client, body(1))
    loops = app.config["INTAKE_LOOPS"]
    with ExitStack() as running:
        for _ in range(loops):
            assert running.enter_context(queueing.runner_slot(PROCESS_PENDING, 30, loops))
        assert process_pending_webhooks() == 0
        assert statuses() == [EventStatus.PENDING]
    assert process_pending_webhooks() == 1
    assert statuses() == [EventStatus.PROCESSED]


@needs_redis
def test_a_hold_whose_holder_died_lapses(app):
    with queueing.runner_slot(PROCESS_PENDING, 0.2) as mine:
        assert mine
        time.sleep(0.4)
        with queueing.runner_slot(PROCESS_PENDING, 30) as other:
            assert other


def test_every_task_name_queueing_sends_is_a_registered_task(app):
    celery = app.extensions["celery"]
    celery.loader.import_default_modules()  # what a worker imports at start (its `include`)
    registered = celery.tasks
    assert [name for name in queueing.TASK_NAMES if name not in registered] == []


def test_queueing_is_the_only_module_of_helpdesk_that_names_a_task():
    """helpdesk/ hands work to the workers through queueing alone and never imports them (the
    app factory wires Celery in); workers import helpdesk, so the arrow points one way."""
    root = Path(__file__).resolve().parent.parent / "helpdesk"
    naming, importing = [], []
    for path in sorted(root.rglob("*.py")):
        text = path.read_text(encoding="utf-8")
        name = path.relative_to(root).as_posix()
        if "workers.tasks." in text and name != "queueing.py":
            naming.append(name)
        if re.search(r"^\s*(from|import) workers\b", text, re.MULTILINE) and name != "__init__.py":
            importing.append(name)
    assert (naming, importing) == ([], [])


def test_a_loop_whose_budget_is_spent_with_work_left_goes_on_in_a_new_run(
    app, client, webhook_channel
):
    post(client, body(1))
    drain_broker(app)
    assert process_pending_webhooks(budget_seconds=0) == 0  # no time: nothing done
    assert statuses() == [EventStatus.PENDING]
    assert wake_ups(app) == 1  # it queued its own continuation

    assert process_pending_webhooks() == 1
    assert wake_ups(app) == 0  # done, with nothing left: no continuation


def test_later_claims_of_a_run_name_only_the_deliveries_that_failed(
    app, client, webhook_channel, monkeypatch
):
    """Batches of one: the run claims four times. A processed delivery is no longer pending, so
    a later claim need not name it; the one that failed stays pending and is named, so the run
    does not take it again (the sweep retries it later)."""
    for n in range(1, 5):
        post(client, body(n))
    drain_broker(app)
    monkeypatch.setattr(batch, "POSTGRESQL_BATCH", 1)
    monkeypatch.setattr(batch, "SQLITE_BATCH", 1)
    real_apply = intake.apply_event

    def apply_event(channel, event):
        if event.mid.endswith("00000002"):
            raise RuntimeError("this one breaks")
        return real_apply(channel, event)

    monkeypatch.setattr(intake, "apply_event", apply_event)
    claims: list[tuple[str, object]] = []

    def record(conn, cursor, statement, parameters, context, executemany):
        if statement.lstrip().upper().startswith("SELECT") and "FROM webhook_events" in statement:
            if "ORDER BY webhook_events.id" in statement:
                claims.append((statement, parameters))

    event.listen(db.engine, "before_cursor_execute", record)
    try:
        assert process_pending_webhooks() == 4
    finally:
        event.remove(db.engine, "before_cursor_execute", record)
    assert statuses() == [
        EventStatus.PROCESSED, EventStatus.PENDING, EventStatus.PROCESSED, EventStatus.PROCESSED,
    ]  # fmt: skip
    failed_id = db.session.scalars(
        select(WebhookEvent.id).where(WebhookEvent.status == EventStatus.PENDING)
    ).one()
    named = [re.findall(r"NOT IN \(([^)]*)\)", statement) for statement, _ in claims]
    assert named[0] == []  # nothing failed yet
    after_failure = [found for found in named[1:] if found]
    assert after_failure, claims  # the failed delivery is skipped by the claims after it
    for (statement, parameters), found in zip(claims, named, strict=True):
        if found:
            values = parameters.values() if isinstance(parameters, dict) else parameters
            assert failed_id in values, (statement, parameters)
            assert len(found[0].split(",")) == 1, statement  # only the failed one


PROFILE_TASKS = (
    "workers.tasks.intake.fetch_contact_profile",
    "workers.tasks.intake.fetch_contact_profiles",
)


def test_a_run_asks_once_for_each_newcomers_profile_a_batch_of_them_in_one_message(
    app, client, webhook_channel, monkeypatch
):
    """30 newcomers write twice, in batches of 10: their profiles are not fetched yet when their
    second messages are processed, and are not asked for again; each batch's newcomers go to the
    broker in one message, not one each."""
    for n in range(1, 61):
        post(client, body(n, sender=(n - 1) % 30 + 1))
    drain_broker(app)
    monkeypatch.setattr(batch, "POSTGRESQL_BATCH", 10)
    monkeypatch.setattr(batch, "SQLITE_BATCH", 10)

    assert process_pending_webhooks() == 60

    asked = [args for name, args in drain_broker(app) if name in PROFILE_TASKS]
    newcomers = sorted(db.session.scalars(select(Contact.id)))
    assert len(newcomers) == 30
    assert len(asked) == 3  # one per batch of newcomers
    assert sorted(c for args in asked for c in args[0]) == newcomers  # each once


def test_profiles_fetched_together_are_committed_one_by_one(
    app, client, webhook_channel, sim, monkeypatch
):
    for n in range(1, 4):
        post(client, body(n, sender=n))
    drain_broker(app)
    process_pending_webhooks()
    drain_broker(app)
    ids = sorted(db.session.scalars(select(Contact.id)))
    real_fetch = intake_tasks.fetch_profile

    def fetch_profile(contact_id):
        fetched = real_fetch(contact_id)  # written and flushed, then the task breaks
        if contact_id == ids[1]:
            raise RuntimeError("this one breaks")
        return fetched

    monkeypatch.setattr(intake_tasks, "fetch_profile", fetch_profile)

    assert fetch_contact_profiles(ids) == 2

    db.session.expire_all()
    fetched = [db.session.get(Contact, contact_id).profile_fetched_at for contact_id in ids]
    assert [at is not None for at in fetched] == [True, False, True]
    assert db.session.get(Contact, ids[0]).username

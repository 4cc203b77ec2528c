"""Stored deliveries processed in batches (helpdesk.intake.batch) end exactly as processed one at a
time: the same messages, threads, tickets, clocks and history, whatever the mix."""

from __future__ import annotations

import json
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import event, func, insert, select, text

from helpdesk.accounts.models import Team
from helpdesk.brands.models import Brand
from helpdesk.channels.models import Channel
from helpdesk.dm import service as dm
from helpdesk.dm.models import Contact, Conversation, Message, MessageStatus, Reaction
from helpdesk.extensions import db
from helpdesk.intake import batch
from helpdesk.intake.models import EventStatus, PendingAction, WebhookEvent
from helpdesk.outgoing.models import WebhookDelivery, WebhookSubscription
from helpdesk.tickets.models import RoutingRule, Tag, TagRule, Ticket, TicketEvent, TicketTag
from helpdesk.types import utcnow
from tests.conftest import _empty_tables
from tests.helpers.webhooks import ACCOUNT, connect_example_channel, process_each

BASE_MS = 1763800000000


def _customer(n: int) -> str:
    return f"6150000{n:08d}"


def _delivery(*events: dict) -> str:
    return json.dumps(
        {"object": "instagram", "entry": [{"id": ACCOUNT, "messaging": list(events)}]}
    )


def message(n: int, mid: str, text: str, at: int) -> dict:
    return {
        "sender": {"id": _customer(n)},
        "recipient": {"id": ACCOUNT},
        "timestamp": BASE_MS + at * 1000,
        "message": {"mid": mid, "text": text},
    }


def echo(n: int, mid: str, text: str, at: int) -> dict:
    return {
        "sender": {"id": ACCOUNT},
        "recipient": {"id": _customer(n)},
        "timestamp": BASE_MS + at * 1000,
        "message": {"mid": mid, "text": text, "is_echo": True},
    }


def reaction(n: int, mid: str, emoji: str, at: int) -> dict:
    return {
        "sender": {"id": _customer(n)},
        "recipient": {"id": ACCOUNT},
        "timestamp": BASE_MS + at * 1000,
        "reaction": {"mid": mid, "action": "react", "reaction": "love", "emoji": emoji},
    }


def edit(n: int, mid: str, text: str, at: int) -> dict:
    return {
        "sender": {"id": _customer(n)},
        "recipient": {"id": ACCOUNT},
        "timestamp": BASE_MS + at * 1000,
        "message_edit": {"mid": mid, "text": text, "num_edit": 1},
    }


def unsend(n: int, mid: str, at: int) -> dict:
    return {
        "sender": {"id": _customer(n)},
        "recipient": {"id": ACCOUNT},
        "timestamp": BASE_MS + at * 1000,
        "message": {"mid": mid, "is_deleted": True},
    }


def store(bodies: list[str]) -> list[int]:
    now = utcnow()
    rows = [
        {
            "source": "instagram",
            "body": body,
            "status": EventStatus.PENDING,
            "attempts": 0,
            "account_ids": [ACCOUNT],
            "request_id": None,
            "received_at": now,
        }
        for body in bodies
    ]
    db.session.execute(insert(WebhookEvent), rows)
    db.session.commit()
    return list(db.session.scalars(select(WebhookEvent.id).order_by(WebhookEvent.id)))


def mixed_deliveries() -> list[str]:
    """Several customers; first messages and follow-ups; the same delivery twice (in one batch and
    again much later); a reaction and an edit before the message they name; echoes (the brand
    answering from the Instagram app) between a customer's messages; an unsend; keyword tags, one
    of them routing a new ticket to a team; a webhook subscriber."""
    bodies = []
    for n in range(6):  # six customers write a first message
        bodies.append(_delivery(message(n, f"m{n}-1", f"hello from {n}", at=n)))
    bodies.append(_delivery(reaction(0, "m0-2", "🔥", at=10)))  # before m0-2 arrives
    bodies.append(_delivery(edit(1, "m1-2", "edited before it landed", at=11)))
    for n in range(6):  # they write again, in open tickets: the fast lane
        bodies.append(_delivery(message(n, f"m{n}-2", f"second from {n}, refund please", 20 + n)))
    bodies.append(bodies[-1])  # a retried delivery, in the same batch
    bodies.append(_delivery(echo(2, "e2-1", "We are on it", at=30)))  # the brand answers 2
    bodies.append(_delivery(message(2, "m2-3", "thanks!", at=31)))  # 2 writes after the answer
    bodies.append(_delivery(message(3, "m3-3", "one", at=32), message(3, "m3-4", "two", at=33)))
    bodies.append(_delivery(unsend(4, "m4-2", at=34)))
    bodies.append(_delivery(reaction(5, "m5-1", "❤️", at=35)))
    bodies.append(bodies[0])  # the first delivery again, long after
    bodies.append(_delivery(message(7, "m7-1", "a new customer", at=40)))
    bodies.append(_delivery(message(7, "m7-2", "and again", at=41)))
    bodies.append(_delivery(message(8, "m8-1", "a refund for order 8", at=42)))  # routed at once
    photo = message(8, "m8-2", "", at=43)
    url = "https://lookaside.fbsbx.com/ig_messaging_cdn/?asset_id=8"
    photo["message"] = {"mid": "m8-2", "attachments": [{"type": "image", "payload": {"url": url}}]}
    bodies.append(_delivery(photo))
    return bodies


def snapshot() -> dict:
    """Everything the processing decides, without row ids (two runs number rows differently)."""
    db.session.expire_all()
    mids = dict(db.session.execute(select(Message.id, Message.mid)).all())
    threads = dict(db.session.execute(select(Conversation.id, Conversation.thread_key)).all())
    messages = sorted(
        (
            m.mid,
            m.direction.value,
            m.status.value,
            m.is_echo,
            m.text,
            m.edit_count,
            m.unsent_at is not None,
            threads[m.conversation_id],
            m.ticket_id is not None,
            m.sent_at,
            m.kind.value,
            json.dumps(m.attachments, sort_keys=True),
            json.dumps(m.extra, sort_keys=True),
        )
        for m in db.session.scalars(select(Message))
    )
    conversations = sorted(
        (
            c.thread_key,
            c.folder.value,
            c.request_state.value,
            c.status.value,
            c.last_message_preview,
            c.last_message_at,
            c.last_inbound_at,
        )
        for c in db.session.scalars(select(Conversation))
    )
    tickets = sorted(
        (
            threads[t.conversation_id],
            t.status.value,
            t.opened_at,
            t.awaiting_since,
            t.first_response_at,
            t.last_response_at,
            t.first_response_due_at,
            t.next_response_due_at,
            t.next_sla_check_at,
            t.team_id is not None,
        )
        for t in db.session.scalars(select(Ticket))
    )
    ticket_threads = dict(db.session.execute(select(Ticket.id, Ticket.conversation_id)).all())
    events = sorted(
        (
            threads[ticket_threads[e.ticket_id]],
            e.kind,
            _event_time(e),
            mids.get(e.data.get("message_id")),
        )
        for e in db.session.scalars(select(TicketEvent))
    )
    tags = sorted(
        (threads[ticket_threads[ticket_id]], tag_id)
        for ticket_id, tag_id in db.session.execute(select(TicketTag.ticket_id, TicketTag.tag_id))
    )
    reactions = sorted((mids[r.message_id], r.emoji) for r in db.session.scalars(select(Reaction)))
    return {
        "messages": messages,
        "conversations": conversations,
        "tickets": tickets,
        "events": events,
        "tags": tags,
        "reactions": reactions,
        "outgoing": sorted(
            (delivery.event, delivery.payload.get("mid") or delivery.payload.get("status"))
            for delivery in db.session.scalars(select(WebhookDelivery))
        ),
        "contacts": db.session.scalar(select(func.count()).select_from(Contact)),
        "waiting_actions": db.session.scalar(select(func.count()).select_from(PendingAction)),
        "deliveries": sorted(
            (status.value, attempts, error or "")
            for status, attempts, error in db.session.execute(
                select(WebhookEvent.status, WebhookEvent.attempts, WebhookEvent.error)
            )
        ),
    }


def _event_time(event: TicketEvent):
    """A message's time is compared; the wall clock of the run (a tag added "now") is not."""
    return event.at if event.at.timestamp() * 1000 < BASE_MS + 86_400_000 else "now"


def _prepare() -> None:
    channel = connect_example_channel()
    brand = db.session.get(Brand, channel.brand_id)
    brand.accept_all_requests = True
    tag = Tag(brand_id=brand.id, name="refund")
    db.session.add(tag)
    db.session.flush()
    db.session.add(TagRule(brand_id=brand.id, tag_id=tag.id, keyword="refund"))
    refunds = Team(brand_id=brand.id, name="Refunds")
    db.session.add(refunds)
    db.session.flush()
    db.session.add(RoutingRule(brand_id=brand.id, team_id=refunds.id, tag_id=tag.id, position=1))
    db.session.add(
        WebhookSubscription(
            brand_id=brand.id,
            url="https://example.com/hook",
            events=["ticket.created", "message.created"],
            secret_encrypted="x",
        )
    )
    db.session.commit()


def _run(bodies: list[str], process, limit: int | None = None) -> tuple[dict, list]:
    _prepare()
    store(bodies)
    outcomes = process(limit)
    return snapshot(), outcomes


def _in_batches(limit: int | None) -> list[batch.Outcome]:
    """As the worker's loop does: a delivery that failed in this run is left to the sweep."""
    outcomes: list[batch.Outcome] = []
    failed: set[int] = set()
    while (outcome := batch.process_batch(limit, skip=failed)) is not None:
        outcomes.append(outcome)
        failed.update(outcome.failed_ids)
    return outcomes


@contextmanager
def listening(name: str, listener: Callable[..., None]) -> Iterator[None]:
    """The engine's `name` event heard by `listener` inside the block."""
    event.listen(db.engine, name, listener)
    try:
        yield
    finally:
        event.remove(db.engine, name, listener)


def _one_at_a_time(_limit: int | None) -> list:
    process_each()
    return []


@pytest.mark.parametrize("limit", [None, 7, 3])
def test_a_mixed_batch_ends_as_processing_each_delivery_alone(limit):
    bodies = mixed_deliveries()
    alone, _ = _run(bodies, _one_at_a_time)
    db.session.remove()
    _empty_tables()
    together, outcomes = _run(bodies, _in_batches, limit)

    assert together == alone
    assert sum(outcome.fast for outcome in outcomes) >= 6  # the fast lane did take part
    assert sum(outcome.slow for outcome in outcomes) >= 6
    mids = [m for m, *_ in together["messages"]]
    assert len(mids) == len(set(mids)) == 20  # duplicates stored once
    assert [ticket[0] for ticket in together["tickets"] if ticket[-1]] == [
        f"direct:{_customer(8)}"
    ]  # routed by its first message's keyword tag
    assert ("ticket.created", "open") in together["outgoing"]
    assert ("message.created", "m8-1") in together["outgoing"]
    assert ("m0-2", "🔥") in together["reactions"]  # the early reaction found its message
    assert together["waiting_actions"] == 0
    assert all(status == "processed" for status, _, _ in together["deliveries"])


def test_a_thread_answered_between_two_messages_waits_again_from_the_second():
    _prepare()
    store(
        [
            _delivery(message(1, "a1", "first", at=0)),
        ]
    )
    _in_batches(None)
    store(
        [
            _delivery(message(1, "a2", "second", at=10)),
            _delivery(echo(1, "e1", "answer", at=20)),
            _delivery(message(1, "a3", "third", at=30)),
        ]
    )
    outcomes = _in_batches(None)
    ticket = db.session.scalar(select(Ticket))
    assert ticket.awaiting_since.timestamp() == (BASE_MS + 30_000) / 1000
    assert ticket.first_response_at.timestamp() == (BASE_MS + 20_000) / 1000
    # all three take the fast lane, the echo in its place between the customer's messages
    assert (outcomes[0].fast, outcomes[0].slow) == (3, 0)


def test_a_poisoned_delivery_fails_alone_and_the_others_are_processed():
    _prepare()
    ids = store(
        [
            _delivery(message(1, "p1", "before", at=0)),
            "{not json",
            _delivery(message(2, "p2", "after", at=1)),
        ]
    )
    outcomes = _in_batches(None)

    assert sorted(db.session.scalars(select(Message.mid))) == ["p1", "p2"]
    poisoned = db.session.get(WebhookEvent, ids[1])
    assert poisoned.status is EventStatus.PENDING  # left for the sweep to retry, alone
    assert poisoned.attempts == 1 and "JSONDecodeError" in poisoned.error
    assert outcomes[-1].failed_ids == [ids[1]]
    for event_id in (ids[0], ids[2]):
        assert db.session.get(WebhookEvent, event_id).status is EventStatus.PROCESSED

    # the next run skips nothing it was not told to: the retry fails alone again
    outcome = batch.process_batch()
    assert outcome is not None and outcome.failed_ids == [ids[1]]
    assert db.session.get(WebhookEvent, ids[1]).attempts == 2


def test_an_unknown_account_is_noted_once_per_delivery():
    _prepare()
    body = json.dumps(
        {"object": "instagram", "entry": [{"id": "999", "messaging": [message(1, "u1", "x", 0)]}]}
    )
    (event_id,) = store([body])
    _in_batches(None)
    row = db.session.get(WebhookEvent, event_id)
    assert row.status is EventStatus.UNKNOWN_ACCOUNT and row.attempts == 1
    assert db.session.scalar(select(func.count()).select_from(Message)) == 0


@pytest.mark.parametrize("process", [_in_batches, _one_at_a_time])
def test_a_refused_reaction_that_came_before_its_message_does_not_lose_the_message(process):
    _prepare()
    store(
        [
            _delivery(reaction(1, "q1", "not an emoji", at=1)),
            _delivery(message(1, "q1", "the message", at=0)),
        ]
    )
    process(None)
    assert db.session.scalars(select(Message.text)).all() == ["the message"]
    assert db.session.scalar(select(func.count()).select_from(PendingAction)) == 0
    assert db.session.scalar(select(func.count()).select_from(Reaction)) == 0


def test_a_batch_of_events_for_the_one_event_code_takes_no_savepoint():
    _prepare()
    brand = db.session.scalar(select(Brand))
    brand.accept_all_requests = False  # requests: each message goes through the one-event code
    db.session.commit()
    store([_delivery(message(n, f"s{n}", "hi", at=n)) for n in range(40)])
    savepoints: list[str] = []

    def count(_connection, name) -> None:
        savepoints.append(name)

    with listening("savepoint", count):
        outcomes = _in_batches(None)
    # PostgreSQL keeps 64 subtransactions per transaction in memory; past that, all sessions slow
    assert savepoints == []
    assert [outcome.slow for outcome in outcomes] == [40]  # one batch: 50 on SQLite, more elsewhere
    assert db.session.scalar(select(func.count()).select_from(Message)) == 40


def refused_reaction_deliveries() -> list[str]:
    """A reaction that is no emoji: the one-event code refuses it (a problem noted on its
    delivery), after other events of the batch were written, and before others."""
    return [
        _delivery(message(1, "r1", "hello", at=0)),
        _delivery(message(2, "r2", "hi there", at=1)),
        _delivery(unsend(1, "r1", at=2)),
        _delivery(message(3, "r3", "first", at=3)),
        _delivery(reaction(2, "r2", "not an emoji", at=4)),
        _delivery(message(2, "r2-2", "and more", at=5), echo(2, "e2", "On it", at=6)),
        _delivery(message(4, "r4", "new here", at=7)),
    ]


def test_an_event_refused_inside_a_batch_is_processed_alone_and_nothing_else_changes():
    bodies = refused_reaction_deliveries()
    alone, _ = _run(bodies, _one_at_a_time)
    db.session.remove()
    _empty_tables()
    together, outcomes = _run(bodies, _in_batches)

    assert together == alone
    errors = [error for _status, _attempts, error in together["deliveries"] if error]
    assert len(errors) == 1 and "ValidationError" in errors[0]
    assert len(outcomes) >= 2  # the batch was undone, the refused delivery went alone
    assert all(status == "processed" for status, _, _ in together["deliveries"])


def test_new_customers_first_messages_and_follow_ups_take_the_fast_lane_together():
    _prepare()
    store(
        [
            _delivery(message(1, "f1", "first", at=0)),
            _delivery(message(2, "g1", "other customer", at=1)),
            _delivery(message(1, "f2", "second", at=2)),
            _delivery(message(1, "f3", "third, refund", at=3)),
        ]
    )
    (outcome,) = _in_batches(None)
    assert (outcome.slow, outcome.fast) == (0, 4)
    ticket = db.session.scalar(
        select(Ticket)
        .join(Conversation, Conversation.id == Ticket.conversation_id)
        .where(Conversation.thread_key == f"direct:{_customer(1)}")
    )
    assert ticket.opened_at.timestamp() * 1000 == BASE_MS  # at the first message
    assert ticket.awaiting_since == ticket.opened_at
    kinds = list(
        db.session.scalars(select(TicketEvent.kind).where(TicketEvent.ticket_id == ticket.id))
    )
    assert kinds.count("created") == 1 and kinds.count("inbound") == 2 and "tagged" in kinds
    assert db.session.scalar(select(func.count()).select_from(Ticket)) == 2


def test_requests_and_blocked_threads_are_not_fast_and_open_no_ticket():
    _prepare()
    brand = db.session.scalar(select(Brand))
    brand.accept_all_requests = False
    db.session.commit()
    store([_delivery(message(1, "r1", "hi", 0)), _delivery(message(1, "r2", "again", 1))])
    outcomes = _in_batches(None)
    assert sum(o.fast for o in outcomes) == 0
    assert db.session.scalar(select(func.count()).select_from(Ticket)) == 0
    assert db.session.scalar(select(func.count()).select_from(Message)) == 2


def test_two_workers_share_the_pending_deliveries_without_doing_any_twice(app, is_postgres):
    if not is_postgres:
        pytest.skip("needs two concurrent writers: runs when DATABASE_URL names PostgreSQL")
    _prepare()
    store([_delivery(message(n % 40, f"w{n}", f"text {n}", at=n)) for n in range(400)])
    errors: list[BaseException] = []

    def work() -> None:
        with app.app_context():
            try:
                while batch.process_batch(60) is not None:
                    pass
            except BaseException as exc:  # noqa: BLE001 (reported by the test)
                errors.append(exc)
            finally:
                db.session.remove()

    threads = [threading.Thread(target=work) for _ in range(3)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(120)
    assert not errors
    assert db.session.scalar(select(func.count()).select_from(Message)) == 400
    attempts = db.session.scalars(select(WebhookEvent.attempts)).all()
    assert attempts == [1] * 400  # each delivery processed by exactly one worker, once
    assert db.session.scalar(select(func.count()).select_from(Ticket)) == 40


def test_a_customer_another_worker_holds_waits_for_a_later_batch_without_blocking_it(
    app, is_postgres
):
    if not is_postgres:
        pytest.skip("needs two concurrent writers: runs when DATABASE_URL names PostgreSQL")
    _prepare()
    channel_id = db.session.scalar(select(Channel.id))
    held, free = store(
        [_delivery(message(1, "h1", "mine, held", 0)), _delivery(message(2, "f1", "free", 0))]
    )
    other_worker = db.engine.connect()
    transaction = other_worker.begin()
    try:
        other_worker.execute(
            text("SELECT pg_advisory_xact_lock(:channel, hashtext(:person))"),
            {"channel": channel_id, "person": _customer(1)},
        )
        outcome = batch.process_batch()
        assert outcome is not None and outcome.delivery_ids == [free]
        assert db.session.get(WebhookEvent, held).status is EventStatus.PENDING
        assert batch.process_batch(skip={free}) is not None  # claimed again, still held
        assert db.session.get(WebhookEvent, held).status is EventStatus.PENDING
    finally:
        transaction.rollback()
        other_worker.close()
    outcome = batch.process_batch()
    assert outcome is not None and outcome.delivery_ids == [held]
    assert db.session.scalars(select(Message.mid).order_by(Message.mid)).all() == ["f1", "h1"]


def test_deliveries_younger_than_asked_wait(app):
    _prepare()
    store([_delivery(message(1, "y1", "hi", 0))])
    assert batch.process_batch(older_than=timedelta(minutes=5)) is None
    assert batch.process_batch() is not None


def test_a_customer_and_their_thread_are_looked_up_once_per_batch_by_the_one_event_code():
    """Reactions and edits go event by event; the contact and the thread each of them names are
    read from the database once in the batch, then kept (memo.found)."""
    _prepare()
    store([_delivery(message(1, "f1", "hello", at=0), message(1, "f2", "are you there?", at=1))])
    assert _in_batches(None)
    store(
        [
            _delivery(reaction(1, "f1", "🔥", at=10)),
            _delivery(edit(1, "f2", "anyone there?", at=11)),
            _delivery(reaction(1, "f2", "❤️", at=12)),
            _delivery(reaction(1, "f1", "😂", at=13)),
            _delivery(edit(1, "f2", "hello, anyone there?", at=14)),
        ]
    )
    lookups: list[str] = []

    def record(conn, cursor, statement, parameters, context, executemany):
        if "contacts.platform_id = " in statement or "conversations.thread_key = " in statement:
            lookups.append(statement)

    with listening("before_cursor_execute", record):
        outcomes = _in_batches(None)
    assert [outcome.slow for outcome in outcomes] == [5]  # one batch, each event by itself
    by_contact = [s for s in lookups if "FROM contacts" in s.split("WHERE")[0]]
    by_thread = [s for s in lookups if "FROM conversations" in s.split("WHERE")[0]]
    assert (len(by_contact), len(by_thread)) == (1, 0), lookups  # no thread asked for by key
    texts = db.session.scalars(select(Message.text).order_by(Message.sent_at)).all()
    assert texts == ["hello", "hello, anyone there?"]
    emojis = db.session.scalars(select(Reaction.emoji).order_by(Reaction.message_id)).all()
    assert emojis == ["😂", "❤️"]


def _at(seconds: int) -> datetime:
    return datetime.fromtimestamp(BASE_MS / 1000 + seconds, tz=UTC)


def _echoes_after_first_messages(process) -> tuple[dict, list]:
    """Six customers wrote first (each alone); then a batch of the brand's echoes among their
    messages:
    1. answered between two messages (the fast lane, the echo in its place);
    2. our own send, whose answer never came back: the echo must be reconciled with it;
    3. an echo already stored (its mid known): nothing;
    4. the customer reacted to the echo before it arrived: the reaction waits for it;
    5. an echo sent before the message that opened the ticket, delivered late: no response;
    6. an echo that quotes the customer's message (a reply to it)."""
    _prepare()
    store([_delivery(message(n, f"o{n}", f"order {n} is late", at=100 + n)) for n in range(1, 7)])
    process_each()
    customer_2 = db.session.scalar(
        select(Conversation).where(Conversation.thread_key == f"direct:{_customer(2)}")
    )
    ours = dm.record_outbound(customer_2, text="Looking into it", now=_at(200))
    ours.status, ours.delivery_attempts, ours.last_attempt_at = MessageStatus.SENDING, 1, _at(200)
    store([_delivery(echo(3, "e3", "Sorry about that", at=150))])
    process_each()
    quoting = echo(6, "e6", "Which order?", at=215)
    quoting["message"]["reply_to"] = {"mid": "o6"}
    outcomes = process(
        [
            _delivery(message(1, "o1-2", "hello?", at=205)),
            _delivery(echo(1, "e1", "Here, sorry", at=210)),
            _delivery(message(1, "o1-3", "thanks", at=220)),
            _delivery(echo(2, "e2", "Looking into it", at=201)),
            _delivery(echo(3, "e3", "Sorry about that", at=150)),
            _delivery(reaction(4, "e4", "👍", at=212)),
            _delivery(echo(4, "e4", "We are on it", at=211)),
            _delivery(echo(5, "e5", "Hello!", at=50)),
            _delivery(quoting),
        ]
    )
    return snapshot(), outcomes


def test_the_brands_echoes_in_a_batch_end_as_processed_alone():
    def alone(bodies):
        store(bodies)
        process_each()
        return []

    def together(bodies):
        store(bodies)
        return _in_batches(None)

    expected, _ = _echoes_after_first_messages(alone)
    db.session.remove()
    _empty_tables()
    got, outcomes = _echoes_after_first_messages(together)

    assert got == expected
    assert sum(outcome.fast for outcome in outcomes) >= 4  # the echoes of 1 and 3, 1's messages
    outbound = [row for row in got["messages"] if row[1] == "outbound"]
    assert [(row[0], row[3]) for row in outbound] == [  # (mid, is_echo), one per mid
        ("e1", True), ("e2", False), ("e3", True), ("e4", True), ("e5", True), ("e6", True),
    ]  # fmt: skip

"""Stored deliveries processed in batches: one transaction, set-based statements for the common
case, the one-event code for everything else.

A worker claims up to a batch of pending deliveries (`FOR UPDATE SKIP LOCKED` on PostgreSQL, so
several processes or hosts share the work and never take the same row) and applies them together:

- The common case, a customer writing again into a thread whose ticket is open, goes through the
  *fast lane*: the threads, contacts and tickets of the whole batch are read in three queries, the
  messages inserted in one statement (`ON CONFLICT (channel_id, mid) DO NOTHING`, so a retried or
  duplicated delivery adds nothing), and each thread and ticket is brought up to date once for
  all of its new messages: last activity, waiting time, keyword tags, SLA clocks, live events.
  The brand's answers from the Instagram app (echoes) into such a thread take it too, in their
  place among the customer's messages: each one is a response to the customer's wait.
- Everything else (a first message, a request, a reopened or snoozed ticket, an echo that may be
  one of our own sends, reactions, edits, unsends, reads, replies to a message, CSAT answers,
  blocked or vanish-mode threads) goes through `service.apply_event`, event by event, exactly as
  a delivery alone would.

Order per thread is kept: once an event of a thread needs the one-event code, every later event of
that thread in the batch does too, and the fast lane (which only holds events that came before
any such event of their thread) runs first. Threads of different customers do not depend on each
other.

If anything unexpected fails, the whole batch is rolled back and its deliveries are processed one
at a time (`service.process_event`): a poisoned delivery then fails alone and is retried alone,
and never holds back the others.
"""

from __future__ import annotations

import json
import logging
from collections import defaultdict
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, NamedTuple

import psycopg
from sqlalchemy import insert, select, text, update
from sqlalchemy.dialects.postgresql import insert as postgresql_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.exc import OperationalError
from sqlalchemy.orm import load_only

from helpdesk import hooks
from helpdesk.brands.models import Brand
from helpdesk.channels.models import Channel, ChannelKind
from helpdesk.database import SavepointSkipped, without_savepoints
from helpdesk.delivery.reconcile import RECONCILE_WINDOW, last_attempts, thread_keys
from helpdesk.dm import service as dm
from helpdesk.dm.conversations import _route_new_thread, touch_conversation
from helpdesk.dm.models import (
    Contact,
    Conversation,
    ConversationKind,
    Direction,
    Message,
    MessageStatus,
    Participant,
)
from helpdesk.errors import DomainError
from helpdesk.extensions import db
from helpdesk.inbox.folders import INBOX_STATES
from helpdesk.intake import instagram
from helpdesk.intake import service as intake
from helpdesk.intake.instagram import Event, MalformedEvent
from helpdesk.intake.models import EventStatus, PendingAction, WebhookEvent
from helpdesk.live import events as live
from helpdesk.media import copies
from helpdesk.memo import batch_scope, remember
from helpdesk.outgoing.models import WebhookSubscription
from helpdesk.outgoing.service import emit, message_data
from helpdesk.tickets import service as ticket_service
from helpdesk.tickets.models import ACTIVE_STATUSES, Priority, Ticket, TicketEvent, TicketStatus
from helpdesk.tickets.tags import apply_tag_rules
from helpdesk.types import utcnow

log = logging.getLogger(__name__)

# The partial unique index's condition (tickets.models): one active ticket per conversation.
ACTIVE_TICKET = "status IN (" + ", ".join(f"'{s.value}'" for s in ACTIVE_STATUSES) + ")"

# A thread whose events alternate between the lanes (a first message, then more; an echo between
# messages) moves on by at least one event per round; after the last, the rest goes one by one.
ROUNDS = 4
# Batches tried again (after a deadlock, or without an event that failed) before going one by one.
RETRIES = 3
POSTGRESQL_BATCH = 1000
SQLITE_BATCH = 50  # SQLite has one writer at a time: shorter transactions keep the web waiting less


@dataclass
class Item:
    """One event of a claimed delivery, with the channel its account belongs to."""

    delivery_id: int
    channel: Channel
    event: Event

    @property
    def thread(self) -> tuple[int, str]:
        """The customer's thread: the sender, or for the brand's echo the recipient."""
        person = self.event.recipient_id if self.event.type == "echo" else self.event.sender_id
        return self.channel.id, person


@dataclass
class Outcome:
    """What a batch did: the deliveries it processed and the contacts whose profile to fetch."""

    delivery_ids: list[int] = field(default_factory=list)
    failed_ids: list[int] = field(default_factory=list)  # left for the sweep to retry
    contacts_needing_profile: list[int] = field(default_factory=list)
    fast: int = 0
    slow: int = 0

    def add(self, other: Outcome) -> Outcome:
        self.delivery_ids += other.delivery_ids
        self.failed_ids += other.failed_ids
        self.contacts_needing_profile += other.contacts_needing_profile
        self.fast += other.fast
        self.slow += other.slow
        return self


@dataclass
class _Claimed:
    problems: dict[int, list[str]] = field(default_factory=lambda: defaultdict(list))
    unknown: dict[int, list[str]] = field(default_factory=lambda: defaultdict(list))
    items: list[Item] = field(default_factory=list)


def batch_size() -> int:
    return POSTGRESQL_BATCH if _dialect() == "postgresql" else SQLITE_BATCH


def _dialect() -> str:
    return db.session.get_bind().dialect.name


def process_batch(
    limit: int | None = None,
    older_than: timedelta = timedelta(0),
    skip: set[int] | frozenset[int] = frozenset(),
) -> Outcome | None:
    """Claim and apply up to `limit` pending deliveries, committed together; None when none was
    pending.

    `skip`: deliveries that failed in this run already (the sweep retries them later).
    The batch takes no savepoint (`database.without_savepoints`). When an event fails, the batch
    is undone; the deliveries before the failing one are applied again as a batch, then the
    failing one alone (its problem recorded as for any delivery alone), so order is kept; the
    next call takes the rest. A batch that lost a deadlock to another worker's (both wrote to
    the same thread) is simply tried again: the other has committed by then. Anything else
    unexpected undoes the batch, and its deliveries go one at a time.
    """
    below: int | None = None  # after an event failed: its delivery, to be processed alone
    attempts = 0
    while True:
        rows = _claim(limit or batch_size(), older_than, skip, below)
        if not rows:
            db.session.rollback()
            return None if below is None else _one_at_a_time([below])
        ids = [row.id for row in rows]
        alone = [below] if below is not None else []
        attempts += 1
        try:
            with batch_scope(), without_savepoints():
                outcome = _apply(rows)
            db.session.commit()
        except EventFailed as failed:
            db.session.rollback()
            log.info("delivery %s failed inside a batch; processing it alone", failed.delivery_id)
            if attempts > RETRIES:
                return _after_failure([*ids, *alone])
            below = failed.delivery_id
            continue
        except OperationalError as exc:
            db.session.rollback()
            if not isinstance(exc.orig, psycopg.errors.DeadlockDetected) or attempts > RETRIES:
                return _after_failure([*ids, *alone])
            log.info("a batch of %d deliveries lost a deadlock; trying again", len(ids))
            continue
        except Exception:
            db.session.rollback()
            return _after_failure([*ids, *alone])
        return outcome.add(_one_at_a_time(alone)) if alone else outcome


class EventFailed(Exception):
    """An event of the one-event code failed inside a batch (with no savepoint to undo it alone)."""

    def __init__(self, delivery_id: int) -> None:
        super().__init__(f"delivery {delivery_id}")
        self.delivery_id = delivery_id


def _after_failure(ids: list[int]) -> Outcome:
    log.warning(
        "a batch of %d deliveries failed; processing them one at a time", len(ids), exc_info=True
    )
    return _one_at_a_time(ids)


class _Delivery(NamedTuple):
    """A claimed delivery: what the batch reads of its row (ORM objects for a thousand rows cost
    more than the statement that claims them)."""

    id: int
    body: str


def _claim(
    limit: int, older_than: timedelta, skip: set[int] | frozenset[int], below: int | None = None
) -> list[_Delivery]:
    query = (
        select(WebhookEvent.id, WebhookEvent.body)
        .where(
            WebhookEvent.status == EventStatus.PENDING,
            WebhookEvent.received_at <= utcnow() - older_than,
        )
        .order_by(WebhookEvent.id)
        .limit(limit)
    )
    if skip:
        query = query.where(WebhookEvent.id.not_in(skip))
    if below is not None:
        query = query.where(WebhookEvent.id < below)
    if _dialect() == "postgresql":
        query = query.with_for_update(skip_locked=True)
    return [_Delivery(*row) for row in db.session.execute(query)]


def _one_at_a_time(ids: list[int]) -> Outcome:
    """The fallback: each delivery in its own transaction, a failure recorded against it alone."""
    outcome = Outcome()
    for event_id in ids:
        try:
            outcome.contacts_needing_profile += intake.process_event(event_id)
            db.session.commit()
            outcome.delivery_ids.append(event_id)
        except Exception as exc:  # noqa: BLE001 (recorded on the delivery, retried by the sweep)
            db.session.rollback()
            intake.mark_failed(event_id, f"{type(exc).__name__}: {exc}")
            db.session.commit()
            outcome.failed_ids.append(event_id)
            log.exception("webhook %s failed", event_id)
    return outcome


def _apply(rows: list[_Delivery]) -> Outcome:
    claimed = _parse(rows)
    rows = _hold_threads(rows, claimed)
    _open_threads(claimed.items)
    outcome = Outcome(delivery_ids=[row.id for row in rows])
    with hooks.ticket_changes_together(utcnow()):  # each ticket's clocks once, at the end
        senders = _rounds(claimed.items, outcome)
    _finish(rows, claimed)
    if senders:
        outcome.contacts_needing_profile = intake.contacts_needing_profile(senders)
    return outcome


def _rounds(items: list[Item], outcome: Outcome) -> list[int]:
    """The fast lane and the one-event code, round after round (`_split`); returns the contacts
    who wrote."""
    senders: list[int] = []
    ready = _ready_threads(items)
    remaining = items
    for round_ in range(ROUNDS):
        last = round_ == ROUNDS - 1
        if round_ > 0:  # the previous round opened tickets: more threads are ready now
            ready = _ready_threads(remaining)
        fast, slow, remaining = _split(remaining, ready, everything=last)
        outcome.fast += len(fast)
        outcome.slow += len(slow)
        senders += _fast_lane(fast, ready)
        named = {(item.channel.id, item.event.mid) for item in slow if item.event.mid}
        with dm.messages_known(named):  # what reactions, edits and echoes name, read at once
            senders += [contact for item in slow if (contact := _apply_one(item)) is not None]
        if not remaining:
            break
    return senders


def _hold_threads(rows: list[_Delivery], claimed: _Claimed) -> list[_Delivery]:
    """Take each of the batch's customers' threads for this transaction (PostgreSQL: an advisory
    lock per thread, taken only if free). A customer another worker's batch holds, even one whose
    first message that batch is storing, leaves its deliveries pending for a later batch, after
    that one has committed: two workers never wait for each other on a customer."""
    if _dialect() != "postgresql" or not claimed.items:
        return rows
    keys = sorted({item.thread for item in claimed.items})
    busy = {
        (channel_id, person)
        for channel_id, person in db.session.execute(
            text(
                "SELECT k.channel_id, k.person FROM unnest("
                "CAST(:channels AS integer[]), CAST(:people AS text[])) AS k(channel_id, person) "
                "WHERE NOT pg_try_advisory_xact_lock(k.channel_id, hashtext(k.person))"
            ),
            {"channels": [key[0] for key in keys], "people": [key[1] for key in keys]},
        )
    }
    if not busy:
        return rows
    later = {item.delivery_id for item in claimed.items if item.thread in busy}
    claimed.items = [item for item in claimed.items if item.delivery_id not in later]
    for problems in (claimed.problems, claimed.unknown):
        for delivery_id in later:
            problems.pop(delivery_id, None)
    return [row for row in rows if row.id not in later]


def _parse(rows: list[_Delivery]) -> _Claimed:
    claimed = _Claimed()
    bodies = {row.id: json.loads(row.body) for row in rows}
    channels = _channels(
        {
            str(entry.get("id", ""))[:64]
            for body in bodies.values()
            for entry in instagram.entries(body)
        }
    )
    for row in rows:
        for entry in instagram.entries(bodies[row.id]):
            account_id = str(entry.get("id", ""))[:64]
            channel = channels.get(account_id)
            if channel is None:
                claimed.unknown[row.id].append(account_id or "(none)")
                continue
            for raw in instagram.raw_events(entry):
                try:
                    event = instagram.parse_event(account_id, raw)
                except MalformedEvent as exc:
                    claimed.problems[row.id].append(f"MalformedEvent: {exc}")
                    continue
                claimed.items.append(Item(row.id, channel, event))
    return claimed


def _channels(account_ids: set[str]) -> dict[str, Channel]:
    found = db.session.scalars(
        select(Channel).where(
            Channel.kind == ChannelKind.INSTAGRAM, Channel.account_id.in_(account_ids)
        )
    )
    return {channel.account_id: channel for channel in found}


def _apply_one(item: Item) -> int | None:
    """One event through the one-event code. Its failure, even one that a delivery alone would
    merely note on the delivery (a reaction that is no emoji), fails the batch: without a
    savepoint, what the event wrote before failing could not be undone alone."""
    try:
        return intake.contact_of(intake.apply_event(item.channel, item.event))
    except (MalformedEvent, DomainError, SavepointSkipped) as exc:
        raise EventFailed(item.delivery_id) from exc


def _finish(rows: list[_Delivery], claimed: _Claimed) -> None:
    """Every claimed delivery is processed now: one statement for the clean ones."""
    now = utcnow()
    clean = {
        row.id for row in rows if row.id not in claimed.problems and row.id not in claimed.unknown
    }
    if clean:
        db.session.execute(
            update(WebhookEvent)
            .where(WebhookEvent.id.in_(clean))
            .values(
                status=EventStatus.PROCESSED,
                attempts=WebhookEvent.attempts + 1,
                processed_at=now,
                error=None,
            )
            .execution_options(synchronize_session=False)
        )
    for delivery in rows:
        if delivery.id in clean:
            continue
        for account_id in claimed.unknown.get(delivery.id, []):
            intake.note_unknown_account(account_id)
        problems = claimed.problems.get(delivery.id, [])
        row = db.session.get_one(WebhookEvent, delivery.id)  # locked by the claim
        row.attempts += 1
        row.error = "; ".join(problems)[:2000] or None
        only_unknown = claimed.unknown.get(row.id) and not problems
        row.status = EventStatus.UNKNOWN_ACCOUNT if only_unknown else EventStatus.PROCESSED
        row.processed_at = now
    db.session.flush()


# Which events take the fast lane ------------------------------------------------------------------


@dataclass
class _Thread:
    contact: Contact
    conversation: Conversation
    ticket: Ticket | None  # None: the thread's next message opens its ticket


def _split(
    items: list[Item], ready: dict[tuple[int, str], _Thread], everything: bool = False
) -> tuple[list[Item], list[Item], list[Item]]:
    """One round: the fast lane's events, then per thread the first event that needs the
    one-event code; what follows that event in its thread waits for the next round (a first
    message opens the ticket, and the thread's next messages can then take the fast lane).
    With `everything`, all that is left goes to the one-event code, in delivery order."""
    candidates = [item for item in items if _fast_kind(item, ready)]
    waiting_actions = _mids_with_waiting_actions(candidates)
    maybe_ours = _echoes_maybe_ours([item for item in candidates if item.event.type == "echo"])
    fast: list[Item] = []
    slow: list[Item] = []
    later: list[Item] = []
    slowed: set[tuple[int, str]] = set()
    seen_mids: set[tuple[int, str]] = set()
    for item in items:
        thread = item.thread
        mid = (item.channel.id, item.event.mid or "")
        fits = (
            _fast_kind(item, ready)
            and thread not in slowed
            and mid not in waiting_actions
            and mid not in maybe_ours
        )
        if fits and mid in seen_mids:
            continue  # the same message twice in one batch: stored once
        if fits:
            seen_mids.add(mid)
            fast.append(item)
        elif thread in slowed and not everything:
            later.append(item)
        else:
            slowed.add(thread)
            slow.append(item)
    return fast, slow, later


def _plain_message(event: Event) -> bool:
    """A customer's new message that needs nothing but its thread: no quoted message, no quick
    reply (a CSAT answer, a button), no referral."""
    return (
        event.type == "message"
        and event.mid is not None
        and event.reply_to_mid is None
        and "quick_reply" not in event.extra
        and "referral" not in event.extra
    )


def _plain_echo(event: Event) -> bool:
    """The brand's message sent from the platform's app, quoting none."""
    return event.type == "echo" and event.mid is not None and event.reply_to_mid is None


def _fast_kind(item: Item, ready: dict[tuple[int, str], _Thread]) -> bool:
    """A plain message into a ready thread, or a plain echo into a ready thread that has its
    ticket already (an echo into a thread without one is the one-event code's: it may open it)."""
    thread = ready.get(item.thread)
    if thread is None:
        return False
    if _plain_message(item.event):
        return True
    return _plain_echo(item.event) and thread.ticket is not None


def _echoes_maybe_ours(echoes: list[Item]) -> set[tuple[int, str]]:
    """Echoes that `reconcile_echo` might match to one of our own sends (an outbound message of
    the thread attempted within its window before the echo): those go through the one-event
    code, which reconciles them rather than storing a second message. Returns their
    `(channel_id, mid)`."""
    if not echoes:
        return set()
    since = min(item.event.at for item in echoes) - RECONCILE_WINDOW
    latest = last_attempts(
        {(i.channel.id, key) for i in echoes for key in thread_keys(i.event.recipient_id)}, since
    )
    return {
        (item.channel.id, item.event.mid or "")
        for item in echoes
        for key in thread_keys(item.event.recipient_id)
        if (at := latest.get((item.channel.id, key))) is not None
        and at >= item.event.at - RECONCILE_WINDOW
    }


def _ready_threads(items: list[Item]) -> dict[tuple[int, str], _Thread]:
    """The threads of the plain messages and echoes among `items` that exist and whose ticket is
    open, read in three queries."""
    candidates = [item for item in items if _plain_message(item.event) or _plain_echo(item.event)]
    if not candidates:
        return {}
    keys = {
        (channel_id, f"direct:{person}") for channel_id, person in (i.thread for i in candidates)
    }
    conversations = db.session.scalars(
        _locked(
            select(Conversation)
            .where(
                Conversation.channel_id.in_({channel_id for channel_id, _ in keys}),
                Conversation.thread_key.in_({thread_key for _, thread_key in keys}),
                Conversation.kind == ConversationKind.DIRECT,
            )
            .order_by(Conversation.id)
        )
    ).all()
    conversations = [c for c in conversations if (c.channel_id, c.thread_key) in keys]
    if not conversations:
        return {}
    contacts = {
        contact.id: contact
        for contact in db.session.scalars(
            select(Contact)
            .where(Contact.id.in_({c.contact_id for c in conversations}))
            .options(load_only(Contact.id, Contact.platform_id, Contact.blocked))
        )
    }
    tickets = {
        ticket.id: ticket
        for ticket in db.session.scalars(
            _locked(
                select(Ticket)
                .where(
                    Ticket.id.in_(
                        {c.current_ticket_id for c in conversations if c.current_ticket_id}
                    )
                )
                .order_by(Ticket.id)
            )
        )
    }
    ready: dict[tuple[int, str], _Thread] = {}
    for conversation in conversations:
        contact = contacts.get(conversation.contact_id or 0)
        remember(("thread", conversation.channel_id, conversation.thread_key), conversation)
        if contact is not None:  # for the one-event code's lookups (`memo.found`)
            remember(("contact", conversation.channel_id, contact.platform_id), contact)
        ticket = tickets.get(conversation.current_ticket_id or 0)
        if _fits_fast_lane(conversation, contact, ticket):
            assert contact is not None
            ready[(conversation.channel_id, contact.platform_id)] = _Thread(
                contact, conversation, ticket
            )
    return ready


def _locked(query: Any) -> Any:
    """The fast lane's threads and tickets are locked up front, in id order, on PostgreSQL: two
    batches with messages of the same customers then wait for each other instead of
    deadlocking."""
    return query.with_for_update() if _dialect() == "postgresql" else query


def _fits_fast_lane(
    conversation: Conversation, contact: Contact | None, ticket: Ticket | None
) -> bool:
    """An inbox thread (not a request, not blocked, not in vanish mode) whose ticket is open, or
    which has had none yet. A resolved or closed ticket (reopening, a survey's answer) and a
    snoozed or pending one (their status changes) are the one-event code's."""
    return (
        contact is not None
        and not contact.blocked
        and not conversation.vanish_mode
        and conversation.request_state in INBOX_STATES
        and (ticket is None or (ticket.status is TicketStatus.OPEN and ticket.csat_sent_at is None))
    )


def _mids_with_waiting_actions(candidates: list[Item]) -> set[tuple[int, str]]:
    """Messages whose reaction, edit or unsend arrived first: the one-event code applies those."""
    if not candidates:
        return set()
    rows = db.session.execute(
        select(PendingAction.channel_id, PendingAction.mid).where(
            PendingAction.channel_id.in_({item.channel.id for item in candidates}),
            PendingAction.mid.in_({item.event.mid for item in candidates}),
        )
    )
    return {(channel_id, mid) for channel_id, mid in rows}


# Customers writing for the first time -------------------------------------------------------------


def _open_threads(items: list[Item]) -> None:
    """Contacts and direct threads for the batch's new customers, each kind in one statement
    (`ON CONFLICT DO NOTHING`: another worker may create the same at once). Their first message
    then finds both, as it would after any earlier message, and opens the ticket."""
    firsts: dict[tuple[int, str], Item] = {}
    for item in items:
        if item.event.type == "message" and item.event.mid:
            firsts.setdefault(item.thread, item)
    if not firsts:
        return
    keys = {(channel_id, f"direct:{person}") for channel_id, person in firsts}
    existing = set(
        db.session.execute(
            select(Conversation.channel_id, Conversation.thread_key).where(
                Conversation.channel_id.in_({channel_id for channel_id, _ in keys}),
                Conversation.thread_key.in_({thread_key for _, thread_key in keys}),
            )
        ).all()
    )
    firsts = {
        (channel_id, person): item
        for (channel_id, person), item in firsts.items()
        if (channel_id, f"direct:{person}") not in existing
    }  # most customers of a batch wrote before: only the others need a contact and a thread
    if not firsts:
        return
    contacts = _contacts_for(firsts)
    rows = []
    for (channel_id, person), item in firsts.items():
        contact = contacts[(channel_id, person)]
        brand = db.session.get(Brand, item.channel.brand_id)
        folder, state = _route_new_thread(brand, contact, item.event.text)
        rows.append(
            {
                "brand_id": item.channel.brand_id,
                "channel_id": channel_id,
                "kind": ConversationKind.DIRECT,
                "thread_key": f"direct:{person}",
                "contact_id": contact.id,
                "folder": folder,
                "request_state": state,
                "participant_count": 2,
            }
        )
    if rows:
        created = db.session.execute(
            _insert(Conversation)
            .on_conflict_do_nothing(index_elements=["channel_id", "thread_key"])
            .returning(Conversation.id, Conversation.contact_id),
            sorted(rows, key=lambda row: (row["channel_id"], row["thread_key"])),
        ).all()
        seats = [{"conversation_id": id_, "is_brand": True} for id_, _ in created]
        seats += [{"conversation_id": id_, "contact_id": person} for id_, person in created]
        if seats:
            db.session.execute(insert(Participant), seats)


def _contacts_for(firsts: dict[tuple[int, str], Item]) -> dict[tuple[int, str], Contact]:
    def known() -> dict[tuple[int, str], Contact]:
        found = db.session.scalars(
            select(Contact).where(
                Contact.channel_id.in_({channel_id for channel_id, _ in firsts}),
                Contact.platform_id.in_({person for _, person in firsts}),
            )
        )
        return {(c.channel_id, c.platform_id): c for c in found}

    contacts = known()
    missing = [
        {"brand_id": item.channel.brand_id, "channel_id": key[0], "platform_id": key[1]}
        for key, item in firsts.items()
        if key not in contacts
    ]
    if missing:
        db.session.execute(
            _insert(Contact).on_conflict_do_nothing(index_elements=["channel_id", "platform_id"]),
            sorted(missing, key=lambda row: (row["channel_id"], row["platform_id"])),
        )
        contacts = known()
    return contacts


def _insert(model: type) -> Any:
    dialect_insert = postgresql_insert if _dialect() == "postgresql" else sqlite_insert
    return dialect_insert(model)


# The fast lane ------------------------------------------------------------------------------------


def _fast_lane(items: list[Item], ready: dict[tuple[int, str], _Thread]) -> list[int]:
    """Insert the messages in one statement, then bring each thread and ticket up to date once.
    Returns the contacts who wrote or were written to (their profile may be missing)."""
    if not items:
        return []
    stored = _insert_messages(items, ready)
    if not stored:
        return []
    now = utcnow()
    opened = _open_tickets(items, ready, stored, now)
    messages = list(
        db.session.scalars(select(Message).where(Message.id.in_(stored)).order_by(Message.id))
    )
    _link_waiting_replies(messages)
    by_thread: dict[tuple[int, str], list[Message]] = defaultdict(list)
    platform_ids = {thread.contact.id: key for key, thread in ready.items()}
    for message in messages:
        by_thread[platform_ids[message.contact_id or 0]].append(message)
    tickets: list[Ticket] = []
    history: list[dict] = []
    for key, new in by_thread.items():
        ticket = _update_thread(ready[key], new, opening=key in opened, history=history)
        tickets.append(ticket)
        for message in new:
            if message.direction is Direction.INBOUND:
                hooks.publish(hooks.MESSAGE_RECEIVED, ticket=ticket, message=message, now=now)
            copies.note_inbound(message)  # an echo's media, sent from the app, expires as well
    if history:  # the tickets' "inbound" events, in one statement
        _insert_history(history)
    _refresh_clocks(tickets, now)
    _announce(messages)
    return [message.contact_id for message in messages if message.contact_id]


class TicketRace(Exception):
    """Another worker opened one of the batch's tickets first: the batch goes one at a time."""


def _open_tickets(
    items: list[Item], ready: dict[tuple[int, str], _Thread], stored: list[int], now: datetime
) -> set[tuple[int, str]]:
    """Tickets for the threads that have none, opened at their first new message, in one
    INSERT (the partial unique index keeps one active ticket per thread); then what follows an
    opening (`tickets.setup_opened_many`). Returns those threads."""
    stored_mids = set(db.session.scalars(select(Message.mid).where(Message.id.in_(stored))))
    firsts: dict[tuple[int, str], Item] = {}
    for item in items:
        if ready[item.thread].ticket is None and item.event.mid in stored_mids:
            firsts.setdefault(item.thread, item)
    if not firsts:
        return set()
    rows = [
        {
            "brand_id": item.channel.brand_id,
            "conversation_id": ready[key].conversation.id,
            "channel_id": item.channel.id,
            "status": TicketStatus.OPEN,
            "priority": Priority.NORMAL,
            "opened_at": item.event.at,
            "awaiting_since": item.event.at,
            "status_changed_at": now,
            "breached": [],
            "created_at": now,
            "updated_at": now,
        }
        for key, item in sorted(firsts.items(), key=lambda pair: ready[pair[0]].conversation.id)
    ]  # in one order in every worker: two batches wait for each other, never deadlock
    statement = (
        _insert(Ticket)
        .on_conflict_do_nothing(
            index_elements=["conversation_id"],
            index_where=text(ACTIVE_TICKET),
        )
        .returning(Ticket.id)
    )
    ids = list(db.session.scalars(statement, rows))
    if len(ids) < len(rows):  # cannot happen while the threads are locked (`_locked`)
        raise TicketRace(f"{len(rows) - len(ids)} tickets were opened by another worker")
    by_conversation = {
        ticket.conversation_id: ticket
        for ticket in db.session.scalars(select(Ticket).where(Ticket.id.in_(ids)))
    }
    opened = []
    for key, item in firsts.items():
        thread = ready[key]
        thread.ticket = by_conversation[thread.conversation.id]
        opened.append((thread.conversation, thread.ticket, item.event.text))
    ticket_service.setup_opened_many(opened, now)
    return set(firsts)


def _insert_messages(items: list[Item], ready: dict[tuple[int, str], _Thread]) -> list[int]:
    now = utcnow()
    rows = []
    for item in items:
        thread = ready[item.thread]
        event = item.event
        echo = event.type == "echo"  # sent by the brand from the platform's app: already sent
        rows.append(
            {
                "brand_id": item.channel.brand_id,
                "channel_id": item.channel.id,
                "conversation_id": thread.conversation.id,
                "contact_id": thread.contact.id,
                "ticket_id": thread.ticket.id if thread.ticket else None,
                "direction": Direction.OUTBOUND if echo else Direction.INBOUND,
                "mid": event.mid,
                "kind": event.kind,
                "text": event.text,
                "attachments": list(event.attachments),
                "extra": dict(event.extra),
                "status": MessageStatus.SENT if echo else MessageStatus.RECEIVED,
                "is_echo": echo,
                "sent_at": event.at,
                "created_at": now,
            }
        )
    if _dialect() == "postgresql":
        return _insert_messages_from_arrays(rows, now)
    statement = (
        _insert(Message)
        .on_conflict_do_nothing(index_elements=["channel_id", "mid"])
        .returning(Message.id)
    )
    return list(db.session.scalars(statement, rows))


# One array per column: a statement of a dozen parameters whatever the batch's size (a VALUES list
# of 500 rows has 7,000, and the driver parses such a statement anew, in Python, every time).
_MESSAGES_FROM_ARRAYS = text(
    """
    INSERT INTO messages (brand_id, channel_id, conversation_id, contact_id, ticket_id, mid, kind,
        text, attachments, extra, sent_at, direction, status, created_at, delivery_attempts,
        is_echo, is_automated, human_agent_tag, suppressed, vanish, edit_count)
    SELECT r.brand_id, r.channel_id, r.conversation_id, r.contact_id, r.ticket_id, r.mid, r.kind,
        r.body, CAST(r.attachments AS json), CAST(r.extra AS json), r.sent_at,
        r.direction, r.status, :now, 0, r.is_echo, false, false, false, false, 0
    FROM unnest(
        CAST(:brand_id AS integer[]), CAST(:channel_id AS integer[]),
        CAST(:conversation_id AS integer[]), CAST(:contact_id AS integer[]),
        CAST(:ticket_id AS integer[]), CAST(:mid AS text[]), CAST(:kind AS text[]),
        CAST(:body AS text[]), CAST(:attachments AS text[]), CAST(:extra AS text[]),
        CAST(:sent_at AS timestamptz[]), CAST(:direction AS text[]), CAST(:status AS text[]),
        CAST(:is_echo AS boolean[])
    ) WITH ORDINALITY AS r(brand_id, channel_id, conversation_id, contact_id, ticket_id, mid, kind,
        body, attachments, extra, sent_at, direction, status, is_echo, n)
    ORDER BY r.n
    ON CONFLICT (channel_id, mid) DO NOTHING
    RETURNING id
    """
)


def _insert_messages_from_arrays(rows: list[dict], now: datetime) -> list[int]:
    """The same INSERT on PostgreSQL, with the rows passed as arrays."""
    columns = ("brand_id", "channel_id", "conversation_id", "contact_id", "ticket_id", "mid")
    arrays: dict[str, Any] = {name: [row[name] for row in rows] for name in columns}
    arrays["kind"] = [row["kind"].value for row in rows]
    arrays["direction"] = [row["direction"].value for row in rows]
    arrays["status"] = [row["status"].value for row in rows]
    arrays["is_echo"] = [row["is_echo"] for row in rows]
    arrays["body"] = [row["text"] for row in rows]
    arrays["attachments"] = [json.dumps(row["attachments"]) for row in rows]
    arrays["extra"] = [json.dumps(row["extra"]) for row in rows]
    arrays["sent_at"] = [row["sent_at"] for row in rows]
    parameters = {**arrays, "now": now}
    return list(db.session.scalars(_MESSAGES_FROM_ARRAYS, parameters))


_HISTORY_FROM_ARRAYS = text(
    """
    INSERT INTO ticket_events (brand_id, ticket_id, kind, data, at)
    SELECT r.brand_id, r.ticket_id, r.kind, CAST(r.data AS json), r.at
    FROM unnest(
        CAST(:brand_id AS integer[]), CAST(:ticket_id AS integer[]), CAST(:kind AS text[]),
        CAST(:data AS text[]), CAST(:at AS timestamptz[])
    ) WITH ORDINALITY AS r(brand_id, ticket_id, kind, data, at, n)
    ORDER BY r.n
    """
)


def _insert_history(rows: list[dict]) -> None:
    """Ticket events without an actor; on PostgreSQL passed as arrays (`_MESSAGES_FROM_ARRAYS`)."""
    if _dialect() != "postgresql":
        db.session.execute(insert(TicketEvent), rows)
        return
    db.session.execute(
        _HISTORY_FROM_ARRAYS,
        {
            "brand_id": [row["brand_id"] for row in rows],
            "ticket_id": [row["ticket_id"] for row in rows],
            "kind": [row["kind"] for row in rows],
            "data": [json.dumps(row["data"]) for row in rows],
            "at": [row["at"] for row in rows],
        },
    )


def _link_waiting_replies(messages: list[Message]) -> None:
    """Replies stored before the message they quote are linked to it now (rare: one query to
    find out, one update per quoted message)."""
    by_mid = {(m.channel_id, m.mid): m.id for m in messages}
    quoting = db.session.execute(
        select(Message.channel_id, Message.reply_to_mid).where(
            Message.channel_id.in_({channel_id for channel_id, _ in by_mid}),
            Message.reply_to_mid.in_({mid for _, mid in by_mid}),
            Message.reply_to_id.is_(None),
        )
    ).all()
    for channel_id, mid in set(quoting):
        target = by_mid.get((channel_id, mid))
        if target is None:
            continue
        db.session.execute(
            update(Message)
            .where(
                Message.channel_id == channel_id,
                Message.reply_to_mid == mid,
                Message.reply_to_id.is_(None),
                Message.id != target,
            )
            .values(reply_to_id=target)
            .execution_options(synchronize_session=False)
        )


def _update_thread(
    thread: _Thread, new: list[Message], opening: bool, history: list[dict]
) -> Ticket:
    """What `dm.receive_inbound` and `tickets.on_inbound` do per customer message, and
    `dm.record_echo` and `tickets.on_human_reply` per echo, done for all of a thread's new
    messages in their order (its ticket is open: no status change, no reopening), and the
    thread's activity set once. With `opening`, the first of them opened the ticket
    (`_open_tickets`): the others continue it."""
    conversation, ticket = thread.conversation, thread.ticket
    assert ticket is not None
    inbound = [message for message in new if message.direction is Direction.INBOUND]
    if inbound:
        latest = max(inbound, key=lambda message: (message.sent_at, message.id))
        if conversation.last_inbound_at is None or latest.sent_at > conversation.last_inbound_at:
            conversation.last_inbound_at = latest.sent_at
    touch_conversation(conversation, max(new, key=lambda message: (message.sent_at, message.id)))
    if opening:
        new = new[1:]
    texts = []
    for message in new:
        if message.direction is Direction.INBOUND:
            if ticket.awaiting_since is None:
                ticket.awaiting_since = message.sent_at
            history.append(_history(ticket, "inbound", {"message_id": message.id}, message.sent_at))
            if message.text and message.text.strip():
                texts.append(message.text)
        else:
            _answered(ticket, message, history)
    if texts:
        apply_tag_rules(ticket, "\n".join(texts))
    return ticket


def _answered(ticket: Ticket, echo: Message, history: list[dict]) -> None:
    """An echo answers the customer (`tickets.on_human_reply`), unless sent before the message
    that opened the ticket."""
    at = echo.sent_at
    if at is None or at <= ticket.opened_at:
        return
    if ticket.first_response_at is None:
        ticket.first_response_at = at
        history.append(_history(ticket, "first_response", {"message_id": echo.id}, at))
    waited = ticket.awaiting_since.isoformat() if ticket.awaiting_since else None
    history.append(
        _history(ticket, "response", {"message_id": echo.id, "awaiting_since": waited}, at)
    )
    ticket.last_response_at = at
    ticket.awaiting_since = None


def _history(ticket: Ticket, kind: str, data: dict, at: datetime | None) -> dict:
    """A ticket event without an actor (the customer, or the brand from the platform's app)."""
    return {
        "brand_id": ticket.brand_id,
        "ticket_id": ticket.id,
        "actor_id": None,
        "kind": kind,
        "data": data,
        "at": at,
    }


def _refresh_clocks(tickets: list[Ticket], now: datetime) -> None:
    """What `tickets.events.after_change` does for each ticket: its clocks are noted for the end
    of the batch (`hooks.ticket_changes_together`), where each brand's are computed at once, and
    the consoles hear of it. The tickets stay open: the conversations' mirror does not move."""
    for ticket in tickets:
        hooks.publish(hooks.TICKET_CHANGED, ticket=ticket, now=now)
        live.ticket_updated(ticket)


def _announce(messages: list[Message]) -> None:
    """Outgoing webhooks (only for brands with a subscriber) and live events, per message."""
    brands = {message.brand_id for message in messages}
    subscribed = {
        brand_id
        for brand_id, events in db.session.execute(
            select(WebhookSubscription.brand_id, WebhookSubscription.events).where(
                WebhookSubscription.brand_id.in_(brands), WebhookSubscription.active.is_(True)
            )
        )
        if "message.created" in events
    }
    for message in messages:
        # An echo goes to the consoles only, as `service._echo` has it.
        if message.direction is Direction.INBOUND and message.brand_id in subscribed:
            emit(message.brand_id, "message.created", message_data(message))
        live.message_created(message)

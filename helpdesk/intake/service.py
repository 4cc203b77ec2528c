"""Webhook intake: store the raw delivery first (a 200 means stored), then process it, by a
worker or the sweep, as often as needed: processing is idempotent by message id."""

from __future__ import annotations

import hashlib
import json
import logging
from datetime import datetime, timedelta

from flask import current_app
from sqlalchemy import insert, select
from sqlalchemy.dialects.postgresql import insert as postgresql_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.exc import IntegrityError, SQLAlchemyError

from helpdesk.channels.models import Channel, ChannelKind
from helpdesk.delivery.service import reconcile_echo
from helpdesk.dm import service as dm
from helpdesk.dm.models import Contact, Conversation, Direction, Message, RequestState
from helpdesk.dm.reactions import react_from_platform, unreact_from_platform
from helpdesk.errors import DomainError, DuplicateMessage
from helpdesk.extensions import db
from helpdesk.inbox import service as inbox
from helpdesk.intake import instagram
from helpdesk.intake.instagram import Event, MalformedEvent
from helpdesk.intake.models import EventStatus, PendingAction, UnknownAccount, WebhookEvent
from helpdesk.intake.writer import Delivery, DeliveryNotStored
from helpdesk.live import events as live
from helpdesk.media import copies
from helpdesk.memo import found
from helpdesk.tickets import service as tickets
from helpdesk.types import utcnow

log = logging.getLogger(__name__)
MAX_ATTEMPTS = 5
PENDING_ACTION_KINDS = ("unsend", "edit", "reaction", "unreaction", "read")


def account_ids_of(body: object) -> list[str]:
    return sorted({str(e.get("id"))[:64] for e in instagram.entries(body) if e.get("id")})


def store_delivery(raw: str, body: object, request_id: str | None = None) -> None:
    """Keep the delivery exactly as received; returns once the row is committed.

    On PostgreSQL the commit is shared with the other requests of this process (see `writer`);
    SQLite takes one writer at a time anyway, so the request commits its own row there.
    Raises DeliveryNotStored.
    """
    delivery = Delivery(raw, account_ids_of(body), request_id, utcnow())
    if db.engine.dialect.name == "postgresql":
        current_app.extensions["delivery_writer"].store(delivery)
        return
    try:
        db.session.execute(insert(WebhookEvent), delivery._asdict())
        db.session.commit()
    except SQLAlchemyError as exc:
        db.session.rollback()
        raise DeliveryNotStored(str(exc)) from exc


def process_event(event_id: int) -> list[int]:
    """Apply every event of a stored delivery; safe to run twice (duplicates change nothing).

    Returns the contacts whose profile is still to be fetched.
    """
    query = select(WebhookEvent).where(WebhookEvent.id == event_id)
    if db.session.get_bind().dialect.name == "postgresql":
        query = query.with_for_update(skip_locked=True)
    row = db.session.scalar(query)
    if row is None or row.status is not EventStatus.PENDING:
        return []
    row.attempts += 1
    senders: list[int] = []  # contacts who wrote, or came through a referral
    problems: list[str] = []
    unknown = 0
    body = json.loads(row.body)
    for entry in instagram.entries(body):
        account_id = str(entry.get("id", ""))[:64]
        channel = db.session.scalar(
            select(Channel).where(
                Channel.kind == ChannelKind.INSTAGRAM, Channel.account_id == account_id
            )
        )
        if channel is None:
            unknown += 1
            note_unknown_account(account_id or "(none)")
            continue
        for raw in instagram.raw_events(entry):
            try:
                with dm.atomic():
                    contact_id = contact_of(
                        apply_event(channel, instagram.parse_event(account_id, raw))
                    )
                if contact_id is not None:
                    senders.append(contact_id)
            except (MalformedEvent, DomainError) as exc:
                problems.append(f"{type(exc).__name__}: {exc}")
    row.error = "; ".join(problems)[:2000] or None
    row.status = EventStatus.UNKNOWN_ACCOUNT if unknown and not problems else EventStatus.PROCESSED
    row.processed_at = utcnow()
    db.session.flush()
    return contacts_needing_profile(senders) if senders else []


def request_id_of(event_id: int) -> str | None:
    return db.session.scalar(select(WebhookEvent.request_id).where(WebhookEvent.id == event_id))


def mark_failed(event_id: int, error: str) -> None:
    """After an unexpected error: retried by the sweep until MAX_ATTEMPTS, then left failed."""
    row = db.session.get(WebhookEvent, event_id)
    if row is None:
        return
    row.attempts += 1
    row.error = error[:2000]
    if row.attempts >= MAX_ATTEMPTS:
        row.status = EventStatus.FAILED
    db.session.flush()


def note_unknown_account(account_id: str) -> None:
    row = db.session.get(UnknownAccount, account_id)
    if row is None:
        try:
            with dm.atomic():
                db.session.add(UnknownAccount(account_id=account_id, deliveries=1))
            return
        except IntegrityError:
            row = db.session.get(UnknownAccount, account_id)
    row.deliveries += 1
    row.last_seen_at = utcnow()


def pending_event_ids(older_than: timedelta = timedelta(seconds=30), limit: int = 500) -> list[int]:
    """Deliveries nobody processed (the broker was down, a worker died): the sweep's work."""
    cutoff = utcnow() - older_than
    return list(
        db.session.scalars(
            select(WebhookEvent.id)
            .where(WebhookEvent.status == EventStatus.PENDING, WebhookEvent.received_at <= cutoff)
            .order_by(WebhookEvent.id)
            .limit(limit)
        )
    )


# Applying events ----------------------------------------------------------------------------------


def apply_event(channel: Channel, event: Event) -> Message | Contact | None:
    """The message stored, or for a referral its contact; None when nothing new arrived."""
    handler = _HANDLERS.get(event.type)
    return handler(channel, event) if handler else None


def contact_of(applied: Message | Contact | None) -> int | None:
    if isinstance(applied, Contact):
        return applied.id
    return applied.contact_id if applied is not None else None


def _inbound(channel: Channel, event: Event) -> Message | None:
    try:
        message = inbox.receive(
            channel,
            dm.InboundMessage(
                mid=event.mid,
                sender_id=event.sender_id,
                sent_at=event.at,
                kind=event.kind,
                text=event.text,
                attachments=event.attachments,
                reply_to_mid=event.reply_to_mid,
                extra=event.extra,
            ),
        )
    except DuplicateMessage:
        return None
    _after_new_message(channel, message)
    return message


def _echo(channel: Channel, event: Event) -> Message | None:
    """The brand's own message, seen from the platform: ours (reconcile) or sent from the app."""
    known = dm.message_by_mid(channel.id, event.mid)
    if known is not None:
        return None
    reconciled = _reconcile(channel, event)
    if reconciled is not None:
        _after_new_message(channel, reconciled)
        live.message_updated(reconciled)
        return reconciled
    conversation = _direct_conversation(channel, event.recipient_id)
    was_request = conversation is not None and conversation.request_state in (
        RequestState.PENDING,
        RequestState.HIDDEN,
        RequestState.DECLINED,
    )
    try:
        message = dm.record_echo(
            channel,
            event.recipient_id,
            event.mid,
            event.at,
            text=event.text,
            kind=event.kind,
            attachments=event.attachments,
            reply_to_mid=event.reply_to_mid,
            extra=event.extra,
        )
    except DuplicateMessage:
        return None
    conversation = db.session.get(Conversation, message.conversation_id)
    if was_request or (tickets.current_ticket(conversation) is None and _customer_wrote(message)):
        # A thread the brand starts has no ticket until the customer writes: it opens then.
        tickets.on_accept(conversation, event.at)
    tickets.on_human_reply(message, event.at)
    _after_new_message(channel, message)
    copies.note_inbound(message)  # sent from the platform's app: its media expires as well
    live.message_created(message)
    return message


def _customer_wrote(message: Message) -> bool:
    return (
        db.session.scalar(
            select(Message.id)
            .where(
                Message.conversation_id == message.conversation_id,
                Message.direction == Direction.INBOUND,
                Message.suppressed.is_(False),
            )
            .limit(1)
        )
        is not None
    )


def _reconcile(channel: Channel, event: Event) -> Message | None:
    return reconcile_echo(channel, event.mid, event.recipient_id, event.text, event.at)


def _direct_conversation(channel: Channel, platform_id: str) -> Conversation | None:
    key = f"direct:{platform_id}"
    return found(
        ("thread", channel.id, key),
        lambda: db.session.scalar(
            select(Conversation).where(
                Conversation.channel_id == channel.id, Conversation.thread_key == key
            )
        ),
    )


def _contact(channel: Channel, platform_id: str) -> Contact | None:
    return found(
        ("contact", channel.id, platform_id),
        lambda: db.session.scalar(
            select(Contact).where(
                Contact.channel_id == channel.id, Contact.platform_id == platform_id
            )
        ),
    )


def _on_message(channel: Channel, event: Event) -> Message | None:
    """Reactions, edits, unsends and reads name a message; if it has not landed yet, wait."""
    message = dm.message_by_mid(channel.id, event.mid)
    if message is None:
        _wait_for_message(channel, event)
        return None
    shown = live.as_shown(message)
    _apply_to_message(channel, message, event.type, event.sender_id, event.at, event)
    if live.as_shown(message) != shown:  # a repeated event changes nothing, says nothing
        live.message_updated(message)
    return message


def pending_event_key(event: Event) -> str:
    """What identifies an action waiting for its message: Meta retries a delivery for hours, and
    each retry of the same action must wait once, not once per retry."""
    parts = [
        event.type,
        event.mid or "",
        event.sender_id,
        event.at.isoformat(),
        event.emoji or "",
        str(event.num_edit or ""),
        event.text or "",
    ]
    digest = hashlib.sha256("\x1f".join(parts).encode()).hexdigest()
    return f"{event.type}:{digest}"


def _wait_for_message(channel: Channel, event: Event) -> None:
    """One pending row per event: a retried delivery of the same action adds nothing."""
    values = {
        "channel_id": channel.id,
        "mid": event.mid,
        "kind": event.type,
        "event_key": pending_event_key(event),
        "payload": {
            "sender_id": event.sender_id,
            "at": event.at.isoformat(),
            "text": event.text,
            "num_edit": event.num_edit,
            "emoji": event.emoji,
        },
        "created_at": utcnow(),
    }
    dialect = db.session.get_bind().dialect.name
    dialect_insert = postgresql_insert if dialect == "postgresql" else sqlite_insert
    db.session.execute(
        dialect_insert(PendingAction)
        .values(**values)
        .on_conflict_do_nothing(index_elements=["channel_id", "event_key"])
    )


def _apply_to_message(
    channel: Channel, message: Message, kind: str, sender_id: str, at: datetime, event: Event
) -> None:
    if kind == "unsend":
        if message.contact_id is not None and _is_sender(message, sender_id):
            dm.unsend_message(message, at)
    elif kind == "edit":
        if _is_sender(message, sender_id) and not message.unsent:
            dm.edit_message(message, event.text or "", num_edit=event.num_edit, at=at)
    elif kind in ("reaction", "unreaction"):
        contact = dm.get_or_create_contact(channel, sender_id)
        if kind == "reaction" and not message.unsent:
            react_from_platform(message, event.emoji or "❤️", contact, at)
        elif kind == "unreaction":
            unreact_from_platform(message, contact, at)
    elif kind == "read":
        dm.mark_read_by_contact(message, at)


def _is_sender(message: Message, platform_id: str) -> bool:
    contact = db.session.get(Contact, message.contact_id) if message.contact_id else None
    return contact is not None and contact.platform_id == platform_id


def _after_new_message(channel: Channel, message: Message) -> None:
    """Apply what arrived early for this message, and fetch the sender's profile once."""
    waiting = db.session.scalars(
        select(PendingAction)
        .where(PendingAction.channel_id == channel.id, PendingAction.mid == message.mid)
        .order_by(PendingAction.id)
    ).all()
    for action in waiting:
        payload = action.payload
        event = Event(
            account_id=channel.account_id,
            type=action.kind,
            sender_id=payload.get("sender_id") or "",
            recipient_id=channel.account_id,
            at=datetime.fromisoformat(payload["at"]),
            mid=action.mid,
            text=payload.get("text"),
            num_edit=payload.get("num_edit"),
            emoji=payload.get("emoji"),
        )
        try:
            with dm.atomic():
                _apply_to_message(channel, message, action.kind, event.sender_id, event.at, event)
        except DomainError as exc:  # refused now as it would have been on time: the message stays
            log.warning("a waiting %s of message %s was refused: %s", action.kind, message.id, exc)
        db.session.delete(action)
    db.session.flush()


def _referral(channel: Channel, event: Event) -> Contact:
    """An ig.me link or an ad opened the thread: logged, and the person's profile is fetched as
    for a first message; routing by referral is not modelled."""
    contact = dm.get_or_create_contact(channel, event.sender_id)
    log.info("referral for contact %s: %s", contact.id, event.extra.get("referral"))
    return contact


_HANDLERS = {
    "message": _inbound,
    "postback": _inbound,
    "echo": _echo,
    "unsend": _on_message,
    "edit": _on_message,
    "reaction": _on_message,
    "unreaction": _on_message,
    "read": _on_message,
    "referral": _referral,
}


def contacts_needing_profile(contact_ids: list[int]) -> list[int]:
    return list(
        db.session.scalars(
            select(Contact.id)
            .where(Contact.id.in_(set(contact_ids)), Contact.profile_fetched_at.is_(None))
            .order_by(Contact.id)
        )
    )

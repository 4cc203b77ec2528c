"""Publishing: a service says what changed, and the event leaves only once the change commits.

Events wait in the session (`session.info`), so one rolled back with its transaction, or with
the savepoint it was queued in, is never seen. At the commit they become `live_events` rows (the
embedded default, written in that same transaction) or, with Redis, messages on the brand's
pub/sub channel sent right after it. An event names objects by id and carries no customer text:
the console renders what it shows through the server, with the viewer's own permissions.
"""

from __future__ import annotations

import json
import logging
from typing import Any

from flask import current_app, has_app_context
from redis import Redis
from sqlalchemy import event
from sqlalchemy.orm import Session, SessionTransaction

from helpdesk.breaker import CircuitBreaker
from helpdesk.dm.models import Conversation, Message, RequestState
from helpdesk.extensions import db
from helpdesk.live.models import LiveEvent
from helpdesk.queueing import redis_client

log = logging.getLogger(__name__)

MESSAGE_CREATED = "message.created"
MESSAGE_UPDATED = "message.updated"
TICKET_UPDATED = "ticket.updated"
CONVERSATION_UPDATED = "conversation.updated"
NOTE_CREATED = "note.created"
NOTIFICATION_CREATED = "notification.created"
PRESENCE = "presence"

PENDING_KEY = "live_pending"
MARKS_KEY = "live_savepoints"
PAUSE_AFTER_FAILURE_SECONDS = 10.0

breaker = CircuitBreaker(PAUSE_AFTER_FAILURE_SECONDS)


# What services call ------------------------------------------------------------------------------


def publish(brand_id: int, kind: str, **data: Any) -> None:
    """Queue an event for the brand's consoles; it is sent when the session commits."""
    db.session.info.setdefault(PENDING_KEY, []).append((brand_id, {"type": kind, **data}))


def message_created(message: Message) -> None:
    _message_event(MESSAGE_CREATED, message)


def message_updated(message: Message) -> None:
    """Delivery status, edit or unsend: the console re-renders the message."""
    _message_event(MESSAGE_UPDATED, message)


def ticket_updated(ticket: Any) -> None:
    publish(
        ticket.brand_id,
        TICKET_UPDATED,
        conversation_id=ticket.conversation_id,
        ticket_id=ticket.id,
        status=_value(ticket.status),
        assignee_id=ticket.assignee_id,
        priority=_value(ticket.priority),
    )


def conversation_updated(conversation: Conversation) -> None:
    """A folder move, or a request accepted, declined or blocked: the conversation changes place
    in the inbox without a ticket changing, and open inboxes redraw their lists."""
    publish(
        conversation.brand_id,
        CONVERSATION_UPDATED,
        conversation_id=conversation.id,
        folder=_value(conversation.folder),
        request_state=_value(conversation.request_state),
        admin_only=conversation.request_state is RequestState.HIDDEN,
    )


def note_created(note: Any, conversation_id: int) -> None:
    """A colleague's internal note: consoles open on the conversation show it in the thread."""
    publish(note.brand_id, NOTE_CREATED, conversation_id=conversation_id, note_id=note.id)


def notification_created(notification: Any) -> None:
    """Only the agent it is for receives it (`for_agent`)."""
    publish(
        notification.brand_id,
        NOTIFICATION_CREATED,
        for_agent=notification.agent_id,
        notification_id=notification.id,
        conversation_id=notification.conversation_id,
        alert=bool(notification.alert),
    )


def as_shown(message: Message) -> tuple:
    """The content of a message as the thread shows it (an edit or unsend changes it), compared
    before and after an event that may be a repeat. Customers' reactions are left to the next
    page load: a replayed react-then-unreact would flash them (and leave events) for nothing. An
    agent's reaction, made in the console, is announced there."""
    return (message.text, message.edit_count, message.unsent_at, message.purged_at)


def _message_event(kind: str, message: Message) -> None:
    if message.suppressed:
        return
    conversation = db.session.get(Conversation, message.conversation_id)
    publish(
        message.brand_id,
        kind,
        conversation_id=message.conversation_id,
        message_id=message.id,
        direction=_value(message.direction),
        status=_value(message.status),
        admin_only=conversation is not None and conversation.request_state is RequestState.HIDDEN,
    )


def _value(member: Any) -> Any:
    return getattr(member, "value", member)


# Redis -------------------------------------------------------------------------------------------


def streaming() -> bool:
    """Redis configured: events are streamed; otherwise the console polls `live_events`."""
    return bool(current_app.config.get("REDIS_URL"))


def channel(client: Redis, brand_id: int) -> str:
    """Pub/sub ignores Redis database numbers: the number is part of the name, so installs
    sharing a server on different databases never hear each other's brands."""
    number = client.connection_pool.connection_kwargs.get("db", 0)
    return f"helpdesk:{number}:live:brand:{brand_id}"


def send_now(brand_id: int, events: list[dict]) -> bool:
    """Publish on the brand's channel at once (presence, and events after a commit)."""
    client = redis_client()
    if client is None or not events or not breaker.allows():
        return False
    try:
        with client.pipeline(transaction=False) as pipe:
            for item in events:
                pipe.publish(channel(client, brand_id), json.dumps(item, separators=(",", ":")))
            pipe.execute()
    except Exception as exc:  # a live update is a nicety: the committed change stands
        breaker.failed()
        log.warning("live updates not published: %s", type(exc).__name__)
        return False
    breaker.succeeded()
    return True


def reset() -> None:
    """Forget a past Redis failure (tests, or an operator who knows Redis is back)."""
    breaker.reset()


# The session's side ------------------------------------------------------------------------------


def _pending(session: Session) -> list[tuple[int, dict]]:
    return session.info.get(PENDING_KEY, [])


def _coalesced(pending: list[tuple[int, dict]]) -> list[tuple[int, dict]]:
    """A ticket changed three times in one transaction is one event, with its last state."""
    latest: dict[tuple, tuple[int, dict]] = {}
    for brand_id, item in pending:
        key = (
            brand_id,
            item["type"],
            item.get("message_id")
            or item.get("ticket_id")
            or item.get("notification_id")
            or item.get("note_id")
            or item.get("conversation_id"),
        )
        latest.pop(key, None)
        latest[key] = (brand_id, item)
    return list(latest.values())


@event.listens_for(db.session, "after_transaction_create")
def _savepoint_started(session: Session, transaction: SessionTransaction) -> None:
    if transaction.nested:
        session.info.setdefault(MARKS_KEY, {})[id(transaction)] = len(_pending(session))


@event.listens_for(db.session, "after_soft_rollback")
def _rolled_back(session: Session, previous: SessionTransaction) -> None:
    pending = _pending(session)
    if previous.nested:
        del pending[session.info.get(MARKS_KEY, {}).get(id(previous), len(pending)) :]
    else:
        pending.clear()


@event.listens_for(db.session, "before_commit")
def _write_rows(session: Session) -> None:
    """Embedded default: the events become rows of the very transaction being committed."""
    if session.get_nested_transaction() is not None or not has_app_context() or streaming():
        return
    session.add_all(
        LiveEvent(brand_id=brand_id, kind=item["type"], data=item)
        for brand_id, item in _coalesced(_pending(session))
    )
    _pending(session).clear()


@event.listens_for(db.session, "after_commit")
def _send(session: Session) -> None:
    if session.get_nested_transaction() is not None or not _pending(session):
        return
    events = _coalesced(_pending(session))
    _pending(session).clear()
    if not has_app_context() or not streaming():
        return
    by_brand: dict[int, list[dict]] = {}
    for brand_id, item in events:
        by_brand.setdefault(brand_id, []).append(item)
    for brand_id, items in by_brand.items():
        send_now(brand_id, items)


@event.listens_for(db.session, "after_transaction_end")
def _ended(session: Session, transaction: SessionTransaction) -> None:
    if transaction.parent is None and not transaction.nested:
        session.info.pop(PENDING_KEY, None)
        session.info.pop(MARKS_KEY, None)

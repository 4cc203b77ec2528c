"""Vanish mode: content hidden until revealed, kept until answered or confirmed read, then
purged."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import case, exists, func, select
from sqlalchemy.orm import aliased

from helpdesk.dm.edits import _erase_content, refresh_preview
from helpdesk.dm.models import Conversation, Direction, Message, MessageStatus
from helpdesk.extensions import db
from helpdesk.media import copies
from helpdesk.types import utcnow


def set_vanish_mode(conversation: Conversation, on: bool) -> Conversation:
    conversation.vanish_mode = on
    db.session.flush()
    return conversation


# Kept vanish-mode content is released for purge by a reply of a person (an agent, or the brand
# from the platform's app) written once it had been seen, or by an agent's confirmation. A reply
# still scheduled, failed or cancelled answered nothing yet.
_ANSWERING_STATUSES = (
    MessageStatus.QUEUED,
    MessageStatus.SENDING,
    MessageStatus.SENT,
    MessageStatus.DELIVERED,
    MessageStatus.SEEN,
)


def _answered(message: type[Message] | Message = Message):
    """Whether a person replied in the thread after `message` was seen (a SQL condition)."""
    reply = aliased(Message)
    return exists().where(
        reply.conversation_id == message.conversation_id,
        reply.direction == Direction.OUTBOUND,
        reply.is_automated.is_(False),
        reply.status.in_(_ANSWERING_STATUSES),
        reply.created_at >= message.seen_at,
    )


def _released():
    """Seen vanish-mode content whose keeping is over: answered, or confirmed read."""
    return _answered() | (
        Conversation.vanish_read_at.is_not(None) & (Conversation.vanish_read_at >= Message.seen_at)
    )


def _vanish_content(conversation: Conversation):
    return (
        Message.conversation_id == conversation.id,
        Message.direction == Direction.INBOUND,
        Message.vanish.is_(True),
        Message.purged_at.is_(None),
        Message.unsent_at.is_(None),
    )


@dataclass(frozen=True)
class VanishState:
    """What the console tells an agent about a vanish-mode thread: `hidden` messages wait for a
    reveal, `kept` ones were seen and stay until answered or confirmed read."""

    hidden: int = 0
    kept: int = 0


def vanish_state(conversation: Conversation) -> VanishState:
    if not conversation.vanish_mode:
        return VanishState()  # a message left hidden from before still shows its own reveal
    hidden, kept = db.session.execute(
        select(
            func.count(case((Message.seen_at.is_(None), 1))),
            func.count(case((Message.seen_at.is_not(None) & ~_released(), 1))),
        )
        .select_from(Message)
        .join(Conversation, Conversation.id == Message.conversation_id)
        .where(*_vanish_content(conversation))
    ).one()
    return VanishState(hidden=hidden, kept=kept)


def reveal_vanish_messages(conversation: Conversation, at: datetime | None = None) -> list[Message]:
    """An agent chose to see the vanish-mode messages, warned that they disappear once seen: they
    are seen from now, and kept until answered or confirmed read."""
    at = at or utcnow()
    revealed = db.session.scalars(
        select(Message)
        .where(*_vanish_content(conversation), Message.seen_at.is_(None), Message.sent_at <= at)
        .order_by(Message.id)
    ).all()
    for message in revealed:
        message.seen_at = at
    conversation.viewer_left_at = None
    db.session.flush()
    return list(revealed)


def confirm_vanish_read(conversation: Conversation, at: datetime | None = None) -> int:
    """An agent read the revealed vanish-mode messages and needs no answer to them: they may
    vanish like answered ones. Returns how many were released; hidden ones stay hidden."""
    at = at or utcnow()
    released = vanish_state(conversation).kept
    conversation.vanish_read_at = at
    db.session.flush()
    return released


def purge_vanish_messages(
    now: datetime | None = None, grace: timedelta = timedelta(minutes=5)
) -> int:
    """Erase seen vanish-mode content once the viewer left, or at the latest `grace` after seen,
    but only once it was answered or confirmed read: a customer's unanswered message is never
    lost to the purge."""
    now = now or utcnow()
    due = db.session.scalars(
        select(Message)
        .join(Conversation, Conversation.id == Message.conversation_id)
        .where(
            Message.vanish.is_(True),
            Message.purged_at.is_(None),
            Message.seen_at.is_not(None),
            (Message.seen_at <= now - grace)
            | (
                Conversation.viewer_left_at.is_not(None)
                & (Conversation.viewer_left_at >= Message.seen_at)
            ),
            (Message.direction == Direction.OUTBOUND) | _released(),
        )
    ).all()
    for message in due:
        _erase_content(message)
        message.purged_at = now
    copies.purge_messages(message.id for message in due)  # the stored copies go too
    db.session.flush()
    for conversation_id in {message.conversation_id for message in due}:
        refresh_preview(conversation_id)
    return len(due)

"""Seen and read: the brand reading a thread, the customer reading the brand's replies."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import update

from helpdesk.database import rows_matched
from helpdesk.dm.models import Conversation, Direction, Message, MessageStatus
from helpdesk.extensions import db
from helpdesk.types import utcnow


def mark_seen_by_brand(conversation: Conversation, at: datetime | None = None) -> int:
    """The brand has read the thread: every inbound message up to now is seen, except vanish-mode
    content, which is seen only when an agent chooses to reveal it (`reveal_vanish_messages`):
    seeing it starts its purge, and opening a thread is not yet reading it."""
    at = at or utcnow()
    conversation.brand_seen_at = at
    conversation.viewer_left_at = None
    count = rows_matched(
        update(Message)
        .where(
            Message.conversation_id == conversation.id,
            Message.direction == Direction.INBOUND,
            Message.vanish.is_(False),
            Message.seen_at.is_(None),
            Message.sent_at <= at,
        )
        .values(seen_at=at)
        .execution_options(synchronize_session=False)
    )
    db.session.flush()
    return count


def mark_read_by_contact(message: Message, at: datetime | None = None) -> int:
    """The customer saw the brand's messages up to `message`."""
    at = at or utcnow()
    upto = message.sent_at or message.created_at
    count = rows_matched(
        update(Message)
        .where(
            Message.conversation_id == message.conversation_id,
            Message.direction == Direction.OUTBOUND,
            Message.seen_at.is_(None),
            Message.sent_at.is_not(None),
            Message.sent_at <= upto,
        )
        .values(seen_at=at, status=MessageStatus.SEEN)
        .execution_options(synchronize_session=False)
    )
    db.session.flush()
    return count


def leave_thread(conversation: Conversation, at: datetime | None = None) -> None:
    """The viewer closed the thread: seen vanish-mode content that was answered or confirmed read
    may now be purged."""
    conversation.viewer_left_at = at or utcnow()
    db.session.flush()

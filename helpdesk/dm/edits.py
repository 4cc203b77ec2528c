"""Edits and unsends: the content changes or goes, the preview follows."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import select, update

from helpdesk.dm.conversations import _preview
from helpdesk.dm.models import Conversation, Message, MessageEdit, MessageStatus
from helpdesk.errors import InvalidState
from helpdesk.extensions import db
from helpdesk.types import utcnow


def edit_message(
    message: Message, text: str, num_edit: int | None = None, at: datetime | None = None
) -> Message:
    """Keep the previous text; an edit already applied (same `num_edit`) changes nothing."""
    if message.unsent:
        raise InvalidState("an unsent message cannot be edited")
    if message.purged_at is not None:
        raise InvalidState("a vanished message cannot be edited")
    num_edit = num_edit if num_edit is not None else message.edit_count + 1
    if num_edit <= message.edit_count:
        return message
    db.session.add(
        MessageEdit(
            message_id=message.id,
            num_edit=num_edit,
            previous_text=message.text,
            edited_at=at or utcnow(),
        )
    )
    message.text = text
    message.edit_count = num_edit
    message.edited_at = at or utcnow()
    db.session.flush()
    refresh_preview(message.conversation_id)
    return message


def _erase_content(message: Message) -> None:
    message.text = None
    message.attachments = []
    message.extra = {}
    db.session.execute(
        update(MessageEdit)
        .where(MessageEdit.message_id == message.id)
        .values(previous_text=None)
        .execution_options(synchronize_session=False)
    )


def unsend_message(message: Message, at: datetime | None = None) -> Message:
    """The sender deleted it: the content goes, a tombstone stays."""
    if message.unsent:
        return message
    _erase_content(message)
    message.unsent_at = at or utcnow()
    db.session.flush()
    refresh_preview(message.conversation_id)
    return message


def refresh_preview(conversation_id: int) -> None:
    """The inbox preview follows the latest visible message, so erased text never lingers."""
    conversation = db.session.get(Conversation, conversation_id)
    latest = db.session.scalar(
        select(Message)
        .where(
            Message.conversation_id == conversation_id,
            Message.suppressed.is_(False),
            Message.send_at.is_(None) | (Message.status != MessageStatus.SCHEDULED),
        )
        .order_by(Message.sent_at.desc().nulls_last(), Message.id.desc())
        .limit(1)
    )
    if latest is None:
        conversation.last_message_preview = None
    elif latest.unsent_at is not None:
        conversation.last_message_preview = "[unsent]"
    elif latest.purged_at is not None:
        conversation.last_message_preview = "[vanished]"
    else:
        conversation.last_message_preview = _preview(latest)

"""Edits and unsends: the content changes or goes, the preview follows."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import select, update

from helpdesk.dm.conversations import _preview
from helpdesk.dm.models import Conversation, Message, MessageEdit, MessageStatus
from helpdesk.errors import InvalidState
from helpdesk.extensions import db
from helpdesk.media import copies
from helpdesk.types import utcnow


def edit_message(
    message: Message, text: str, num_edit: int | None = None, at: datetime | None = None
) -> Message:
    """Keep every edit with the text before it; an edit already kept changes nothing.

    The platform's time `at` tells a retried edit from a new one: Meta retries deliveries for
    hours, and its `num_edit` is sometimes missing or 0. Without `at` (an edit made here) the
    number does. An edit that arrives after a later one goes into the history in its place."""
    if message.unsent:
        raise InvalidState("an unsent message cannot be edited")
    if message.purged_at is not None:
        raise InvalidState("a vanished message cannot be edited")
    edits = list(
        db.session.scalars(select(MessageEdit).where(MessageEdit.message_id == message.id))
    )
    if at is None and num_edit is not None and num_edit <= message.edit_count:
        return message
    if at is not None and any(edit.edited_at == at for edit in edits):
        return message
    at = at or utcnow()
    numbers = {edit.num_edit for edit in edits}
    if not num_edit or num_edit in numbers:
        num_edit = max(numbers | {message.edit_count}) + 1
    later = sorted((edit for edit in edits if edit.edited_at > at), key=lambda e: e.edited_at)
    kept = MessageEdit(message_id=message.id, num_edit=num_edit, edited_at=at)
    if later:  # superseded already: its text is what the next edit replaced
        kept.previous_text, later[0].previous_text = later[0].previous_text, text
    else:
        kept.previous_text, message.text, message.edited_at = message.text, text, at
    db.session.add(kept)
    message.edit_count = max(message.edit_count, num_edit)
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
    copies.purge_messages([message.id])  # a copy of an unsent photo goes with it
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
    elif latest.purged_at is not None:  # vanish mode, or the brand's retention period
        conversation.last_message_preview = "[vanished]" if latest.vanish else "[expired]"
    else:
        conversation.last_message_preview = _preview(latest)

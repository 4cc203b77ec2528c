"""The brand's messages: the reply window, replies queued or scheduled for delivery, and echoes
of messages the brand sent from the platform's own app.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from datetime import datetime, timedelta

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError

from helpdesk.accounts.models import Agent
from helpdesk.accounts.service import role_in
from helpdesk.brands.models import Brand
from helpdesk.channels.models import Channel
from helpdesk.dm.conversations import (
    OPEN_REQUEST_STATES,
    _conversation_for,
    _link_waiting_replies,
    _message_id_by_mid,
    atomic,
    get_or_create_contact,
    touch_conversation,
)
from helpdesk.dm.models import (
    Conversation,
    Direction,
    Message,
    MessageKind,
    MessageStatus,
    RequestState,
)
from helpdesk.dm.requests import _accept
from helpdesk.dm.text import MAX_TEXT_BYTES, window_closed_reason
from helpdesk.errors import (
    ContactBlocked,
    DuplicateMessage,
    Forbidden,
    ReplyWindowClosed,
    ValidationError,
)
from helpdesk.extensions import db
from helpdesk.media import uploads
from helpdesk.types import utcnow

STANDARD_WINDOW = timedelta(hours=24)


HUMAN_AGENT_WINDOW = timedelta(days=7)


def window_closes_at(conversation: Conversation, human: bool = True) -> datetime | None:
    if conversation.last_inbound_at is None:
        return None
    return conversation.last_inbound_at + (HUMAN_AGENT_WINDOW if human else STANDARD_WINDOW)


def needs_human_agent_tag(conversation: Conversation, at: datetime) -> bool:
    """A human reply 24 h to 7 days after the customer's last message carries HUMAN_AGENT."""
    last = conversation.last_inbound_at
    return last is not None and at > last + STANDARD_WINDOW


def check_reply_window(
    conversation: Conversation, at: datetime, human: bool = True, now: datetime | None = None
) -> None:
    closes = window_closes_at(conversation, human)
    if closes is None or at > closes:
        raise ReplyWindowClosed(
            window_closed_reason(conversation.last_inbound_at, at, now or utcnow(), human)
        )


def _validate_outbound(text: str | None, attachments: list[dict]) -> None:
    if not (text and text.strip()) and not attachments:
        raise ValidationError("a message needs text or an attachment")
    if text and len(text.encode()) > MAX_TEXT_BYTES:
        raise ValidationError(f"a message is at most {MAX_TEXT_BYTES} bytes of text")
    for attachment in attachments:
        url = str(attachment.get("url", ""))
        if attachment.get("type") not in ("image", "video", "audio", "file"):
            raise ValidationError("an attachment type is image, video, audio or file")
        if "media_id" in attachment:
            continue  # an agent's upload: sent at its signed link
        if not url.startswith(("https://", "http://")):
            raise ValidationError("an attachment URL must be http(s)")


def record_outbound(
    conversation: Conversation,
    text: str | None = None,
    attachments: list[dict] | None = None,
    reply_to: Message | None = None,
    agent: Agent | None = None,
    automated: bool = False,
    send_at: datetime | None = None,
    now: datetime | None = None,
) -> Message:
    """Queue a reply (delivery is a worker's job). A brand reply accepts a pending request."""
    now = now or utcnow()
    attachments = uploads.attach(conversation.brand_id, [dict(a) for a in attachments or []])
    _validate_outbound(text, attachments)
    if conversation.request_state in (RequestState.BLOCKED, RequestState.DECLINED):
        raise ContactBlocked(f"this conversation is {conversation.request_state.value}")
    if agent is not None and role_in(agent.id, conversation.brand_id) is None:
        raise Forbidden("the agent is not a member of this brand")
    if reply_to is not None and reply_to.conversation_id != conversation.id:
        raise ValidationError("a reply quotes a message of the same conversation")
    if send_at is not None and send_at <= now:
        raise ValidationError("a scheduled message needs a time in the future")
    at = send_at or now
    check_reply_window(conversation, at, human=not automated, now=now)

    message = Message(
        brand_id=conversation.brand_id,
        channel_id=conversation.channel_id,
        conversation_id=conversation.id,
        contact_id=conversation.contact_id,
        author_agent_id=agent.id if agent else None,
        direction=Direction.OUTBOUND,
        kind=_kind_of_attachments(attachments),
        text=text,
        attachments=attachments,
        reply_to_id=reply_to.id if reply_to else None,
        reply_to_mid=reply_to.mid if reply_to else None,
        status=MessageStatus.SCHEDULED if send_at else MessageStatus.QUEUED,
        is_automated=automated,
        human_agent_tag=not automated and needs_human_agent_tag(conversation, at),
        vanish=conversation.vanish_mode,
        send_at=send_at,
        created_at=now,
    )
    db.session.add(message)
    if conversation.request_state in OPEN_REQUEST_STATES:
        _accept(conversation)
    if send_at is None:
        touch_conversation(conversation, message)
    db.session.flush()
    uploads.link_to_message(message.id, attachments)
    return message


def record_echo(
    channel: Channel,
    recipient_id: str,
    mid: str,
    sent_at: datetime,
    text: str | None = None,
    kind: MessageKind = MessageKind.TEXT,
    attachments: list[dict] | None = None,
    reply_to_mid: str | None = None,
    extra: dict | None = None,
) -> Message:
    """A message the brand sent from elsewhere (the platform's app): outbound, already sent.

    Like any brand reply it accepts a pending request. Raises DuplicateMessage for a known mid.
    """
    existing = _message_id_by_mid(channel.id, mid)
    if existing is not None:
        raise DuplicateMessage(existing_id=existing)
    brand = db.session.get(Brand, channel.brand_id)
    try:
        with atomic():
            contact = get_or_create_contact(channel, recipient_id)
            conversation = _conversation_for(channel, brand, contact, None, None)
            if conversation.request_state in (RequestState.PENDING, RequestState.HIDDEN):
                _accept(conversation)
            elif conversation.request_state is RequestState.DECLINED:
                _accept(conversation)
            message = Message(
                brand_id=brand.id,
                channel_id=channel.id,
                conversation_id=conversation.id,
                contact_id=contact.id,
                direction=Direction.OUTBOUND,
                mid=mid,
                kind=kind,
                text=text,
                attachments=list(attachments or []),
                extra=dict(extra or {}),
                reply_to_mid=reply_to_mid,
                reply_to_id=_message_id_by_mid(channel.id, reply_to_mid),
                status=MessageStatus.SENT,
                is_echo=True,
                vanish=conversation.vanish_mode,
                sent_at=sent_at,
            )
            db.session.add(message)
            db.session.flush()
            _link_waiting_replies(message)
            touch_conversation(conversation, message)
            db.session.flush()
    except IntegrityError as exc:
        existing = _message_id_by_mid(channel.id, mid)
        if existing is None:
            raise
        raise DuplicateMessage(existing_id=existing) from exc
    return message


def message_by_mid(channel_id: int, mid: str) -> Message | None:
    known = _known_messages.get()
    if known is not None and (channel_id, mid) in known:
        return known[(channel_id, mid)]
    return db.session.scalar(
        select(Message).where(Message.channel_id == channel_id, Message.mid == mid)
    )


_known_messages: ContextVar[dict[tuple[int, str], Message] | None] = ContextVar(
    "known_messages", default=None
)


@contextmanager
def messages_known(keys: set[tuple[int, str]]) -> Iterator[None]:
    """For an intake batch: the messages that its events name, `(channel_id, mid)`, read in one
    query; inside, `message_by_mid` answers those from memory (the same objects the session
    holds). One not found then is looked up as usual: it may be stored meanwhile."""
    known: dict[tuple[int, str], Message] = {}
    if keys:
        found = db.session.scalars(
            select(Message).where(
                Message.channel_id.in_({channel_id for channel_id, _ in keys}),
                Message.mid.in_({mid for _, mid in keys}),
            )
        )
        known = {(m.channel_id, m.mid): m for m in found if (m.channel_id, m.mid) in keys}
    token = _known_messages.set(known)
    try:
        yield
    finally:
        _known_messages.reset(token)


def schedule_message(
    conversation: Conversation,
    send_at: datetime,
    text: str | None = None,
    attachments: list[dict] | None = None,
    agent: Agent | None = None,
    now: datetime | None = None,
) -> Message:
    """Refused at once if the reply window would be closed at `send_at`."""
    return record_outbound(
        conversation, text=text, attachments=attachments, agent=agent, send_at=send_at, now=now
    )


def _kind_of_attachments(attachments: list[dict]) -> MessageKind:
    if not attachments:
        return MessageKind.TEXT
    return MessageKind(attachments[0]["type"])

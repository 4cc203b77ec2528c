"""A customer's message arriving: stored once per mid, its thread routed, its group seat taken."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime

from sqlalchemy.exc import IntegrityError

from helpdesk.brands.models import Brand
from helpdesk.channels.models import Channel
from helpdesk.dm.conversations import (
    _conversation_for,
    _insert_participant,
    _is_participant,
    _link_waiting_replies,
    _message_id_by_mid,
    _request_state_for,
    atomic,
    get_or_create_contact,
    touch_conversation,
)
from helpdesk.dm.models import (
    Contact,
    Conversation,
    ConversationKind,
    Direction,
    Folder,
    Message,
    MessageKind,
    MessageStatus,
    RequestState,
)
from helpdesk.errors import DuplicateMessage, GroupFull
from helpdesk.extensions import db


@dataclass(frozen=True)
class InboundMessage:
    """A customer's message as the intake hands it over, platform-neutral."""

    mid: str
    sender_id: str
    sent_at: datetime
    kind: MessageKind = MessageKind.TEXT
    text: str | None = None
    attachments: list[dict] = field(default_factory=list)
    reply_to_mid: str | None = None
    extra: dict = field(default_factory=dict)
    thread_key: str | None = None  # a group thread's id; None for a 1-to-1 thread
    sender_username: str | None = None
    sender_name: str | None = None


def receive_inbound(channel: Channel, incoming: InboundMessage) -> Message:
    """Store a customer's message and route its thread (inbox, request, hidden or blocked).

    Raises DuplicateMessage, leaving the database as it was, when the `mid` is already stored.
    """
    existing = _message_id_by_mid(channel.id, incoming.mid)
    if existing is not None:
        raise DuplicateMessage(existing_id=existing)
    brand = db.session.get(Brand, channel.brand_id)
    try:
        with atomic():
            message = _store_inbound(channel, brand, incoming)
    except IntegrityError as exc:
        existing = _message_id_by_mid(channel.id, incoming.mid)
        if existing is None:
            raise
        raise DuplicateMessage(existing_id=existing) from exc
    return message


def _store_inbound(channel: Channel, brand: Brand, incoming: InboundMessage) -> Message:
    contact = get_or_create_contact(
        channel, incoming.sender_id, incoming.sender_username, incoming.sender_name
    )
    conversation = _conversation_for(channel, brand, contact, incoming.thread_key, incoming.text)
    if conversation.kind is ConversationKind.GROUP and not contact.blocked:
        _ensure_group_member(conversation, contact)

    if not contact.blocked and conversation.request_state is RequestState.DECLINED:
        # A declined contact writing again arrives as a new request.
        conversation.folder = Folder.REQUESTS
        conversation.request_state = _request_state_for(brand, incoming.text)

    message = Message(
        brand_id=brand.id,
        channel_id=channel.id,
        conversation_id=conversation.id,
        contact_id=contact.id,
        direction=Direction.INBOUND,
        mid=incoming.mid,
        kind=incoming.kind,
        text=incoming.text,
        attachments=list(incoming.attachments),
        extra=dict(incoming.extra),
        reply_to_mid=incoming.reply_to_mid,
        reply_to_id=_message_id_by_mid(channel.id, incoming.reply_to_mid),
        status=MessageStatus.RECEIVED,
        suppressed=contact.blocked,
        vanish=conversation.vanish_mode,
        sent_at=incoming.sent_at,
    )
    db.session.add(message)
    db.session.flush()
    _link_waiting_replies(message)

    if not contact.blocked:
        if conversation.last_inbound_at is None or incoming.sent_at > conversation.last_inbound_at:
            conversation.last_inbound_at = incoming.sent_at
        touch_conversation(conversation, message)
    db.session.flush()
    return message


def _ensure_group_member(conversation: Conversation, contact: Contact) -> None:
    if not _is_participant(conversation, contact):
        try:
            with atomic():
                _insert_participant(conversation, contact)
        except GroupFull:
            pass  # the platform said they wrote in this thread; their message is still kept

"""Contacts and their conversations: finding or creating them safely under concurrency, routing a
new thread (inbox or request), and the thread's bookkeeping (preview, last message, quoted mids).
Functions flush; the caller commits (docs/concepts.md).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime

from sqlalchemy import select, update
from sqlalchemy.exc import IntegrityError

from helpdesk.brands.models import Brand
from helpdesk.channels.models import Channel
from helpdesk.database import rows_matched, savepoint
from helpdesk.dm.models import (
    GROUP_LIMIT,
    Contact,
    Conversation,
    ConversationKind,
    Direction,
    Folder,
    Message,
    Participant,
    RequestState,
)
from helpdesk.errors import GroupFull
from helpdesk.extensions import db
from helpdesk.memo import found
from helpdesk.types import utcnow

PREVIEW_LENGTH = 200


VANISH_PREVIEW = "[vanish-mode message]"


OPEN_REQUEST_STATES = (RequestState.PENDING, RequestState.HIDDEN)


@contextmanager
def atomic() -> Iterator[None]:
    """A savepoint: if the block fails, only what it wrote is undone (`database.savepoint`)."""
    with savepoint():
        yield


def get_or_create_contact(
    channel: Channel, platform_id: str, username: str | None = None, name: str | None = None
) -> Contact:
    """Find the contact, creating it; safe when two processes see a new contact at once."""
    query = select(Contact).where(
        Contact.channel_id == channel.id, Contact.platform_id == platform_id
    )
    contact = found(("contact", channel.id, platform_id), lambda: db.session.scalar(query))
    if contact is None:
        try:
            with atomic():
                contact = Contact(
                    brand_id=channel.brand_id,
                    channel_id=channel.id,
                    platform_id=platform_id,
                    username=username,
                    name=name,
                )
                db.session.add(contact)
        except IntegrityError:
            contact = db.session.scalar(query)
    if username and not contact.username:
        contact.username = username
    if name and not contact.name:
        contact.name = name
    return contact


def is_known(brand: Brand, contact: Contact) -> bool:
    return (
        contact.followed_by_brand
        or (brand.followers_are_known and contact.follows_brand)
        or brand.accept_all_requests
    )


def _request_state_for(brand: Brand, text: str | None) -> RequestState:
    lowered = (text or "").casefold()
    if any(word.casefold() in lowered for word in brand.hidden_words or [] if word.strip()):
        return RequestState.HIDDEN
    return RequestState.PENDING


def _route_new_thread(
    brand: Brand, contact: Contact, text: str | None
) -> tuple[Folder, RequestState]:
    if contact.blocked:
        return Folder.REQUESTS, RequestState.BLOCKED
    if is_known(brand, contact):
        return Folder.PRIMARY, RequestState.NONE
    return Folder.REQUESTS, _request_state_for(brand, text)


def _conversation_for(
    channel: Channel, brand: Brand, contact: Contact, thread_key: str | None, text: str | None
) -> Conversation:
    is_group = thread_key is not None
    key = f"group:{thread_key}" if is_group else f"direct:{contact.platform_id}"
    query = select(Conversation).where(
        Conversation.channel_id == channel.id, Conversation.thread_key == key
    )
    conversation = found(("thread", channel.id, key), lambda: db.session.scalar(query))
    if conversation is not None:
        return conversation
    folder, state = _route_new_thread(brand, contact, text)
    try:
        with atomic():
            conversation = Conversation(
                brand_id=brand.id,
                channel_id=channel.id,
                kind=ConversationKind.GROUP if is_group else ConversationKind.DIRECT,
                thread_key=key,
                contact_id=None if is_group else contact.id,
                folder=folder,
                request_state=state,
                participant_count=1,
            )
            db.session.add(conversation)
            db.session.flush()
            db.session.add(Participant(conversation_id=conversation.id, is_brand=True))
            if not is_group:
                _insert_participant(conversation, contact)
    except IntegrityError:
        conversation = db.session.scalar(query)
    return conversation


def _insert_participant(conversation: Conversation, contact: Contact) -> Participant:
    """Take the seat with a conditional update, so two processes cannot both take the last."""
    taken = rows_matched(
        update(Conversation)
        .where(Conversation.id == conversation.id, Conversation.participant_count < GROUP_LIMIT)
        .values(participant_count=Conversation.participant_count + 1)
        .execution_options(synchronize_session=False)
    )
    if not taken:
        raise GroupFull(f"a group has at most {GROUP_LIMIT} participants, the brand included")
    participant = Participant(conversation_id=conversation.id, contact_id=contact.id)
    db.session.add(participant)
    db.session.flush()
    db.session.refresh(conversation, ["participant_count"])
    return participant


def _preview(message: Message) -> str:
    if message.vanish and message.direction is Direction.INBOUND:
        return VANISH_PREVIEW  # the inbox row must not reveal what the thread keeps hidden
    if message.text:
        return message.text[:PREVIEW_LENGTH]
    return f"[{message.kind.value.replace('_', ' ')}]"


def _is_participant(conversation: Conversation, contact: Contact) -> bool:
    return (
        db.session.scalar(
            select(Participant.id).where(
                Participant.conversation_id == conversation.id, Participant.contact_id == contact.id
            )
        )
        is not None
    )


def touch_conversation(
    conversation: Conversation, message: Message, at: datetime | None = None
) -> None:
    at = at or message.sent_at or message.created_at or utcnow()
    if conversation.last_message_at is None or at >= conversation.last_message_at:
        conversation.last_message_at = at
        conversation.last_message_preview = _preview(message)


def _message_id_by_mid(channel_id: int, mid: str | None) -> int | None:
    if mid is None:
        return None
    return db.session.scalar(
        select(Message.id).where(Message.channel_id == channel_id, Message.mid == mid)
    )


def _link_waiting_replies(message: Message) -> None:
    """Replies that arrived before the message they quote are linked once it lands."""
    db.session.execute(
        update(Message)
        .where(
            Message.channel_id == message.channel_id,
            Message.reply_to_mid == message.mid,
            Message.reply_to_id.is_(None),
            Message.id != message.id,
        )
        .values(reply_to_id=message.id)
        .execution_options(synchronize_session=False)
    )

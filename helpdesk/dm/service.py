"""The rules of the DM model (docs/concepts.md). Functions flush; the caller commits."""

from __future__ import annotations

import unicodedata
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from sqlalchemy import case, exists, func, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import aliased

from helpdesk.accounts.models import Agent
from helpdesk.accounts.service import role_in
from helpdesk.brands.models import Brand
from helpdesk.channels.models import Channel
from helpdesk.dm.models import (
    GROUP_LIMIT,
    Contact,
    Conversation,
    ConversationKind,
    Direction,
    Folder,
    Message,
    MessageEdit,
    MessageKind,
    MessageStatus,
    NotificationLevel,
    NotificationSetting,
    Participant,
    Reaction,
    RequestState,
)
from helpdesk.dm.text import MAX_TEXT_BYTES, window_closed_reason
from helpdesk.errors import (
    AlreadyExists,
    ContactBlocked,
    DuplicateMessage,
    Forbidden,
    GroupFull,
    InvalidState,
    NotAGroup,
    NotFound,
    ReplyWindowClosed,
    ValidationError,
)
from helpdesk.extensions import db
from helpdesk.live import events as live
from helpdesk.types import utcnow

STANDARD_WINDOW = timedelta(hours=24)
HUMAN_AGENT_WINDOW = timedelta(days=7)
PREVIEW_LENGTH = 200
VANISH_PREVIEW = "[vanish-mode message]"
OPEN_REQUEST_STATES = (RequestState.PENDING, RequestState.HIDDEN)


@contextmanager
def atomic() -> Iterator[None]:
    """A savepoint: if the block fails, only what it wrote is undone."""
    with db.session.begin_nested():
        yield


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


# Contacts and conversations ------------------------------------------------------------------


def get_or_create_contact(
    channel: Channel, platform_id: str, username: str | None = None, name: str | None = None
) -> Contact:
    """Find the contact, creating it; safe when two processes see a new contact at once."""
    query = select(Contact).where(
        Contact.channel_id == channel.id, Contact.platform_id == platform_id
    )
    contact = db.session.scalar(query)
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
    conversation = db.session.scalar(query)
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
    taken = db.session.execute(
        update(Conversation)
        .where(Conversation.id == conversation.id, Conversation.participant_count < GROUP_LIMIT)
        .values(participant_count=Conversation.participant_count + 1)
        .execution_options(synchronize_session=False)
    ).rowcount
    if not taken:
        raise GroupFull(f"a group has at most {GROUP_LIMIT} participants, the brand included")
    participant = Participant(conversation_id=conversation.id, contact_id=contact.id)
    db.session.add(participant)
    db.session.flush()
    db.session.refresh(conversation, ["participant_count"])
    return participant


# Inbound ----------------------------------------------------------------------------------------


def _preview(message: Message) -> str:
    if message.vanish and message.direction is Direction.INBOUND:
        return VANISH_PREVIEW  # the inbox row must not reveal what the thread keeps hidden
    if message.text:
        return message.text[:PREVIEW_LENGTH]
    return f"[{message.kind.value.replace('_', ' ')}]"


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


def _is_participant(conversation: Conversation, contact: Contact) -> bool:
    return (
        db.session.scalar(
            select(Participant.id).where(
                Participant.conversation_id == conversation.id, Participant.contact_id == contact.id
            )
        )
        is not None
    )


def _ensure_group_member(conversation: Conversation, contact: Contact) -> None:
    if not _is_participant(conversation, contact):
        try:
            with atomic():
                _insert_participant(conversation, contact)
        except GroupFull:
            pass  # the platform said they wrote in this thread; their message is still kept


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


# Reply window and outbound ----------------------------------------------------------------------


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
    attachments = [dict(a) for a in attachments or []]
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
    return db.session.scalar(
        select(Message).where(Message.channel_id == channel_id, Message.mid == mid)
    )


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


# Requests -----------------------------------------------------------------------------------------


def _accept(conversation: Conversation) -> None:
    conversation.request_state = RequestState.ACCEPTED
    conversation.folder = Folder.PRIMARY
    live.conversation_updated(conversation)


def accept_request(conversation: Conversation) -> Conversation:
    if conversation.request_state not in OPEN_REQUEST_STATES:
        raise InvalidState("only a pending or hidden request can be accepted")
    _accept(conversation)
    db.session.flush()
    return conversation


def decline_request(conversation: Conversation) -> Conversation:
    """Out of the inbox, no ticket; kept for audit, and a new message makes a new request."""
    if conversation.request_state not in OPEN_REQUEST_STATES:
        raise InvalidState("only a pending or hidden request can be declined")
    conversation.request_state = RequestState.DECLINED
    live.conversation_updated(conversation)
    db.session.flush()
    return conversation


def block_request(conversation: Conversation) -> Conversation:
    if conversation.contact_id is None:
        raise InvalidState("a group request cannot be blocked; block its members")
    block_contact(db.session.get(Contact, conversation.contact_id))
    return conversation


def block_contact(contact: Contact, now: datetime | None = None) -> Contact:
    """Their future messages are stored as blocked and never shown in an inbox."""
    contact.blocked = True
    contact.blocked_at = now or utcnow()
    db.session.execute(
        update(Conversation)
        .where(Conversation.contact_id == contact.id)
        .values(request_state=RequestState.BLOCKED, folder=Folder.REQUESTS)
        .execution_options(synchronize_session="fetch")
    )
    _announce_conversations_of(contact)
    db.session.flush()
    return contact


def unblock_contact(contact: Contact) -> Contact:
    contact.blocked = False
    contact.blocked_at = None
    db.session.execute(
        update(Conversation)
        .where(
            Conversation.contact_id == contact.id,
            Conversation.request_state == RequestState.BLOCKED,
        )
        .values(request_state=RequestState.DECLINED)
        .execution_options(synchronize_session="fetch")
    )
    _announce_conversations_of(contact)
    db.session.flush()
    return contact


def _announce_conversations_of(contact: Contact) -> None:
    """Blocking or unblocking moves every conversation of the contact in or out of the inbox."""
    for conversation in db.session.scalars(
        select(Conversation).where(Conversation.contact_id == contact.id)
    ):
        live.conversation_updated(conversation)


def move_to_folder(conversation: Conversation, folder: Folder | str) -> Conversation:
    try:
        folder = Folder(folder)
    except ValueError:
        raise ValidationError(f"unknown folder {str(folder)[:40]!r}") from None
    if conversation.request_state in OPEN_REQUEST_STATES or folder is Folder.REQUESTS:
        raise InvalidState("requests move to the inbox by being accepted")
    conversation.folder = folder
    live.conversation_updated(conversation)
    db.session.flush()
    return conversation


# Reactions, seen, edits, unsends ------------------------------------------------------------


# Emoji whose Unicode category is not "other symbol": double exclamation and friends.
_EMOJI_OUTSIDE_SO = frozenset("\u203c\u2049\u2139\u3030\u303d")


def is_emoji(text: str) -> bool:
    """One emoji as platforms send them: pictographs with their skin tones, variation selectors,
    joiners, flag tags and keycaps, and no letters, digits, spaces or punctuation besides."""
    if not text or len(text) > 32:
        return False
    keycap = "\u20e3" in text
    pictograph = False
    for char in text:
        code = ord(char)
        if unicodedata.category(char) == "So" or char in _EMOJI_OUTSIDE_SO:
            pictograph = True
        elif not (
            0x1F3FB <= code <= 0x1F3FF  # skin tones
            or char in "\ufe0e\ufe0f\u200d\u20e3"  # variation selectors, joiner, keycap
            or 0xE0020 <= code <= 0xE007F  # tags of subdivision flags
            or (keycap and char in "#*0123456789")
        ):
            return False
    return pictograph or keycap


def _reactor(contact: Contact | None) -> str:
    return f"contact:{contact.id}" if contact is not None else "brand"


def react(
    message: Message,
    emoji: str,
    contact: Contact | None = None,
    agent: Agent | None = None,
    at: datetime | None = None,
) -> Reaction:
    """One emoji per person per message: reacting again replaces the emoji."""
    if not isinstance(emoji, str) or not is_emoji(emoji):
        raise ValidationError("a reaction is one emoji")
    if message.unsent:
        raise InvalidState("an unsent message cannot be reacted to")
    reactor = _reactor(contact)
    query = select(Reaction).where(Reaction.message_id == message.id, Reaction.reactor == reactor)
    reaction = db.session.scalar(query)
    if reaction is None:
        try:
            with atomic():
                reaction = Reaction(message_id=message.id, reactor=reactor, emoji=emoji)
                db.session.add(reaction)
        except IntegrityError:
            reaction = db.session.scalar(query)
    reaction.emoji = emoji
    reaction.contact_id = contact.id if contact else None
    reaction.agent_id = agent.id if agent else None
    reaction.reacted_at = at or utcnow()
    db.session.flush()
    return reaction


def unreact(message: Message, contact: Contact | None = None) -> bool:
    reaction = db.session.scalar(
        select(Reaction).where(
            Reaction.message_id == message.id, Reaction.reactor == _reactor(contact)
        )
    )
    if reaction is None:
        return False
    db.session.delete(reaction)
    db.session.flush()
    return True


def mark_seen_by_brand(conversation: Conversation, at: datetime | None = None) -> int:
    """The brand has read the thread: every inbound message up to now is seen, except vanish-mode
    content, which is seen only when an agent chooses to reveal it (`reveal_vanish_messages`):
    seeing it starts its purge, and opening a thread is not yet reading it."""
    at = at or utcnow()
    conversation.brand_seen_at = at
    conversation.viewer_left_at = None
    count = db.session.execute(
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
    ).rowcount
    db.session.flush()
    return count


def mark_read_by_contact(message: Message, at: datetime | None = None) -> int:
    """The customer saw the brand's messages up to `message`."""
    at = at or utcnow()
    upto = message.sent_at or message.created_at
    count = db.session.execute(
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
    ).rowcount
    db.session.flush()
    return count


def leave_thread(conversation: Conversation, at: datetime | None = None) -> None:
    """The viewer closed the thread: seen vanish-mode content that was answered or confirmed read
    may now be purged."""
    conversation.viewer_left_at = at or utcnow()
    db.session.flush()


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


# Vanish mode ------------------------------------------------------------------------------------


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
    db.session.flush()
    for conversation_id in {message.conversation_id for message in due}:
        refresh_preview(conversation_id)
    return len(due)


# Groups -------------------------------------------------------------------------------------------


def create_group(
    channel: Channel, thread_key: str, contacts: list[Contact], title: str | None = None
) -> Conversation:
    if len(contacts) + 1 > GROUP_LIMIT:
        raise GroupFull(f"a group has at most {GROUP_LIMIT} participants, the brand included")
    brand = db.session.get(Brand, channel.brand_id)
    key = f"group:{thread_key}"
    if db.session.scalar(
        select(Conversation.id).where(
            Conversation.channel_id == channel.id, Conversation.thread_key == key
        )
    ):
        raise AlreadyExists("this group thread exists")
    conversation = Conversation(
        brand_id=brand.id,
        channel_id=channel.id,
        kind=ConversationKind.GROUP,
        thread_key=key,
        title=title,
        folder=Folder.PRIMARY,
        request_state=RequestState.NONE,
        participant_count=1,
    )
    db.session.add(conversation)
    db.session.flush()
    db.session.add(Participant(conversation_id=conversation.id, is_brand=True))
    for contact in contacts:
        _insert_participant(conversation, contact)
    return conversation


def add_participant(conversation: Conversation, contact: Contact) -> Participant:
    """The 33rd participant is refused with GroupFull and nothing is written."""
    if conversation.kind is not ConversationKind.GROUP:
        raise NotAGroup()
    if contact.channel_id != conversation.channel_id:
        raise ValidationError("the contact belongs to another channel")
    if _is_participant(conversation, contact):
        raise AlreadyExists("already a participant")
    try:
        with atomic():
            return _insert_participant(conversation, contact)
    except IntegrityError as exc:
        raise AlreadyExists("already a participant") from exc


def remove_participant(conversation: Conversation, contact: Contact) -> None:
    if conversation.kind is not ConversationKind.GROUP:
        raise NotAGroup()
    participant = db.session.scalar(
        select(Participant).where(
            Participant.conversation_id == conversation.id, Participant.contact_id == contact.id
        )
    )
    if participant is None:
        raise NotFound("not a participant")
    db.session.delete(participant)
    db.session.execute(
        update(Conversation)
        .where(Conversation.id == conversation.id)
        .values(participant_count=Conversation.participant_count - 1)
        .execution_options(synchronize_session=False)
    )
    db.session.flush()
    db.session.refresh(conversation, ["participant_count"])


# Notification settings ----------------------------------------------------------------------------


def set_notification_level(
    agent: Agent, conversation: Conversation, level: NotificationLevel | str
) -> NotificationSetting:
    try:
        level = NotificationLevel(level)
    except ValueError:
        raise ValidationError(f"unknown notification level {str(level)[:40]!r}") from None
    if role_in(agent.id, conversation.brand_id) is None:
        raise NotFound("no such conversation")
    query = select(NotificationSetting).where(
        NotificationSetting.agent_id == agent.id,
        NotificationSetting.conversation_id == conversation.id,
    )
    setting = db.session.scalar(query)
    if setting is None:
        try:
            with atomic():
                setting = NotificationSetting(
                    agent_id=agent.id, conversation_id=conversation.id, level=level
                )
                db.session.add(setting)
        except IntegrityError:
            setting = db.session.scalar(query)
    setting.level = level
    db.session.flush()
    return setting


def notification_level(agent_id: int, conversation_id: int) -> NotificationLevel:
    level = db.session.scalar(
        select(NotificationSetting.level).where(
            NotificationSetting.agent_id == agent_id,
            NotificationSetting.conversation_id == conversation_id,
        )
    )
    return level or NotificationLevel.ALL

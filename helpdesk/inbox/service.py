"""What happens when a message arrives or an agent acts on a conversation: the DM rules first,
then the support layer (tickets, tags, clocks). Web, API, intake and workers call these."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import select

from helpdesk import hooks
from helpdesk.accounts.actor import Actor, agent_id_of
from helpdesk.accounts.models import Agent, Role
from helpdesk.accounts.service import require_role
from helpdesk.channels.models import Channel, ChannelStatus
from helpdesk.csat import answers as csat_answers
from helpdesk.dm import service as dm
from helpdesk.dm import text as texts
from helpdesk.dm.models import (
    Contact,
    Conversation,
    Direction,
    Message,
    MessageStatus,
    Reaction,
    RequestState,
)
from helpdesk.errors import DuplicateMessage, InvalidState, NewerReply, ReplyWindowClosed
from helpdesk.extensions import db
from helpdesk.live import events as live
from helpdesk.media import copies
from helpdesk.outgoing.service import emit, message_data
from helpdesk.tickets import notes
from helpdesk.tickets import service as tickets
from helpdesk.tickets.models import Note, Ticket
from helpdesk.types import utcnow


def receive(channel: Channel, incoming: dm.InboundMessage, now: datetime | None = None) -> Message:
    """Store a customer's message, then open or continue its ticket (keyword tags included)."""
    message = dm.receive_inbound(channel, incoming)
    copies.note_inbound(message)  # the platform's media URLs expire: copied after the commit
    if not csat_answers.take(message, now):  # a survey's answer leaves its ticket resolved
        ticket = tickets.on_inbound(message, now)
        hooks.publish(hooks.MESSAGE_RECEIVED, ticket=ticket, message=message, now=now)
    if not message.suppressed:
        emit(message.brand_id, "message.created", message_data(message))
        live.message_created(message)
    return message


def receive_once(channel: Channel, incoming: dm.InboundMessage) -> tuple[Message, bool]:
    """A message posted by the brand's own systems: stored once per mid; a repeat gives back
    the stored message (and False)."""
    try:
        with db.session.begin_nested():
            return receive(channel, incoming), True
    except DuplicateMessage as duplicate:
        return db.session.get(Message, duplicate.existing_id), False


def reply(
    conversation: Conversation,
    agent: Agent | None,
    text: str | None = None,
    attachments: list[dict] | None = None,
    reply_to: Message | None = None,
    send_at: datetime | None = None,
    automated: bool = False,
    now: datetime | None = None,
) -> Message:
    """Queue a reply; a brand reply accepts a pending request and counts as a human response."""
    now = now or utcnow()
    if agent is not None:
        require_role(agent, conversation.brand_id, Role.AGENT)
    was_request = conversation.request_state in dm.OPEN_REQUEST_STATES
    message = dm.record_outbound(
        conversation,
        text=text,
        attachments=attachments,
        reply_to=reply_to,
        agent=agent,
        automated=automated,
        send_at=send_at,
        now=now,
    )
    if was_request:
        tickets.on_accept(conversation, now)
    if send_at is None and not automated:
        tickets.on_human_reply(message, now)
    emit(message.brand_id, "message.created", message_data(message))
    live.message_created(message)
    return message


def compose(
    conversation: Conversation,
    agent: Agent | None,
    text: str | None = None,
    attachments: list[dict] | None = None,
    reply_to: Message | None = None,
    send_at: datetime | None = None,
    seen_up_to: int | None = None,
    confirmed: bool = False,
    split: bool = False,
    now: datetime | None = None,
) -> list[Message]:
    """What an agent (or an integration) wrote, checked before it can reach the customer: no
    leftover shortcode or placeholder, within the byte limit (or split into several messages
    when asked), and not sent blindly over a colleague's newer reply unless confirmed."""
    text = texts.normalise(text)
    parts = texts.split_text(text) if split and text else [text]
    for part in parts:
        texts.check_sendable(part)
    if not confirmed:
        check_no_newer_reply(conversation, seen_up_to, agent)
    messages = []
    for index, part in enumerate(parts):
        messages.append(
            reply(
                conversation,
                agent,
                text=part,
                attachments=attachments if index == 0 else None,
                reply_to=reply_to if index == 0 else None,
                send_at=send_at,
                now=now,
            )
        )
    return messages


def check_no_newer_reply(
    conversation: Conversation, seen_up_to: int | None, agent: Agent | None
) -> None:
    """Someone else answered after the sender last looked: they should read it first."""
    if seen_up_to is None:
        return
    query = (
        select(Message)
        .where(
            Message.conversation_id == conversation.id,
            Message.direction == Direction.OUTBOUND,
            Message.id > seen_up_to,
            Message.is_automated.is_(False),
            Message.status != MessageStatus.SCHEDULED,
        )
        .order_by(Message.id.desc())
        .limit(1)
    )
    if agent is not None:
        query = query.where(
            (Message.author_agent_id.is_(None)) | (Message.author_agent_id != agent.id)
        )
    newer = db.session.scalar(query)
    if newer is None:
        return
    if newer.author_agent_id is not None:
        who = db.session.get(Agent, newer.author_agent_id).name
    elif newer.is_echo:
        who = "Someone using the brand's Instagram app"
    else:
        who = "An integration of the API"
    raise NewerReply(
        f"{who} replied after you opened this conversation. Read their reply, then send yours "
        "if it still applies.",
        newest_id=newer.id,
    )


def accept(
    conversation: Conversation, actor: Actor | Agent | None, now: datetime | None = None
) -> Ticket:
    require_role(actor, conversation.brand_id, Role.AGENT)
    dm.accept_request(conversation)
    return tickets.on_accept(conversation, now)


def decline(conversation: Conversation, actor: Actor | Agent | None) -> Conversation:
    require_role(actor, conversation.brand_id, Role.AGENT)
    return dm.decline_request(conversation)


def block(conversation: Conversation, actor: Actor | Agent | None) -> Conversation:
    require_role(actor, conversation.brand_id, Role.AGENT)
    return dm.block_request(conversation)


def unblock(contact: Contact, actor: Actor | Agent | None) -> Contact:
    """Any agent may block (spam will not wait), but letting a contact back into the inbox is a
    manager's decision."""
    require_role(actor, contact.brand_id, Role.MANAGER)
    return dm.unblock_contact(contact)


def react(message: Message, emoji: str, actor: Actor | Agent | None) -> Reaction:
    """React as the brand; colleagues with the thread open see the reaction change."""
    require_role(actor, message.brand_id, Role.AGENT)
    agent_id = agent_id_of(actor)
    reaction = dm.react(message, emoji, agent=db.session.get(Agent, agent_id) if agent_id else None)
    live.message_updated(message)
    return reaction


def unreact(message: Message, actor: Actor | Agent | None) -> bool:
    """Take the brand's reaction back; colleagues with the thread open see it go."""
    require_role(actor, message.brand_id, Role.AGENT)
    removed = dm.unreact(message)
    live.message_updated(message)
    return removed


def add_note(conversation: Conversation, author: Agent | None, body: str) -> Note:
    """A private note goes on the conversation's current ticket: a request has none until it is
    accepted."""
    ticket = tickets.current_ticket(conversation)
    if ticket is None:
        raise InvalidState("Notes go on a ticket: accept the request first.")
    return notes.add_note(ticket, author, body)


def release_scheduled(now: datetime | None = None, limit: int = 500) -> list[int]:
    """Scheduled messages whose time has come are queued for delivery (or failed, if the window
    closed meanwhile); returns the ids to deliver. A channel waiting for a reconnect keeps its
    messages scheduled until it is back."""
    now = now or utcnow()
    active = select(Channel.id).where(Channel.status == ChannelStatus.ACTIVE)
    query = (
        select(Message)
        .where(
            Message.status == MessageStatus.SCHEDULED,
            Message.send_at <= now,
            Message.channel_id.in_(active.scalar_subquery()),
        )
        .order_by(Message.send_at)
        .limit(limit)
    )
    if db.session.get_bind().dialect.name == "postgresql":
        query = query.with_for_update(skip_locked=True)
    released = []
    for message in db.session.scalars(query).all():
        conversation = db.session.get(Conversation, message.conversation_id)
        try:
            if conversation.request_state is RequestState.BLOCKED:
                raise ReplyWindowClosed("the contact is blocked")
            dm.check_reply_window(conversation, now, human=not message.is_automated, now=now)
        except ReplyWindowClosed as refused:
            message.status = MessageStatus.FAILED
            message.error_code = refused.code
            message.error = refused.message
            continue
        message.status = MessageStatus.QUEUED
        message.human_agent_tag = not message.is_automated and dm.needs_human_agent_tag(
            conversation, now
        )
        dm.touch_conversation(conversation, message, now)
        if not message.is_automated:
            tickets.on_human_reply(message, now)
        live.message_created(message)
        released.append(message.id)
    db.session.flush()
    return released

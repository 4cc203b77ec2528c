"""A conversation as the console shows it: a page of messages with their reactions, quotes, edits,
authors and the ticket notes of the same stretch of time, read in a fixed number of queries."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime

from sqlalchemy import and_, func, or_, select, update
from sqlalchemy.exc import IntegrityError

from helpdesk.accounts.models import Agent
from helpdesk.dm import service as dm
from helpdesk.dm.models import (
    Contact,
    Conversation,
    Message,
    MessageEdit,
    MessageStatus,
    Participant,
    Reaction,
)
from helpdesk.dm.text import window_closed_reason
from helpdesk.errors import NotFound
from helpdesk.extensions import db
from helpdesk.inbox.models import ConversationView
from helpdesk.media import copies
from helpdesk.media.models import MediaObject
from helpdesk.tickets.models import Note, Ticket
from helpdesk.tickets.queries import ticket_tags
from helpdesk.types import utcnow

THREAD_PAGE = 100
OTHER_CONVERSATIONS = 10


@dataclass
class ThreadMessage:
    message: Message
    at: datetime
    author: str | None = None  # the agent who wrote an outbound message
    sender: Contact | None = None  # the contact who wrote an inbound one (groups name them)
    reply_to: Message | None = None
    reactions: list[tuple[str, str]] = field(default_factory=list)  # (emoji, who)
    edits: list[MessageEdit] = field(default_factory=list)
    media: dict[int, MediaObject] = field(default_factory=dict)  # by attachment index
    kind: str = "message"


@dataclass
class ThreadNote:
    note: Note
    at: datetime
    author: str | None = None
    kind: str = "note"


@dataclass
class Thread:
    items: list[ThreadMessage | ThreadNote]
    has_earlier: bool
    earliest_id: int | None
    latest_id: int | None
    scheduled: list[Message]


def _key():
    """Messages sort by the platform's time, or when queued for those not sent yet."""
    return func.coalesce(Message.sent_at, Message.created_at)


def _visible(conversation_id: int):
    return and_(
        Message.conversation_id == conversation_id,
        Message.suppressed.is_(False),
        Message.status != MessageStatus.SCHEDULED,
        Message.status != MessageStatus.CANCELLED,
    )


def load_thread(
    conversation: Conversation, before_id: int | None = None, limit: int = THREAD_PAGE
) -> Thread:
    """The latest `limit` messages (or those before message `before_id`), oldest first."""
    query = select(Message).where(_visible(conversation.id))
    upper: datetime | None = None
    if before_id is not None:
        anchor = db.session.execute(
            select(_key(), Message.id).where(
                Message.id == before_id, Message.conversation_id == conversation.id
            )
        ).first()
        if anchor is None:
            raise NotFound("no such message in this conversation")
        upper = anchor[0]
        query = query.where(or_(_key() < upper, and_(_key() == upper, Message.id < before_id)))
    rows = list(
        db.session.scalars(query.order_by(_key().desc(), Message.id.desc()).limit(limit + 1))
    )
    has_earlier = len(rows) > limit
    messages = list(reversed(rows[:limit]))
    items: list[ThreadMessage | ThreadNote] = [
        ThreadMessage(message=m, at=m.sent_at or m.created_at) for m in messages
    ]
    _decorate([item for item in items if isinstance(item, ThreadMessage)])
    lower = items[0].at if items and has_earlier else None
    notes = _notes(conversation.id, lower, upper)
    _name_authors(items, notes)
    items.extend(notes)
    items.sort(key=lambda item: (item.at, 0 if item.kind == "message" else 1))
    scheduled = [] if before_id is not None else _scheduled(conversation.id)
    return Thread(
        items=items,
        has_earlier=has_earlier,
        earliest_id=messages[0].id if messages else None,
        latest_id=messages[-1].id if messages else None,
        scheduled=scheduled,
    )


def _decorate(items: list[ThreadMessage]) -> None:
    """Reactions, quoted messages, edits, senders and media copies for the whole page: a query
    each."""
    if not items:
        return
    by_id = {item.message.id: item for item in items}
    ids = list(by_id)
    reactions = db.session.execute(
        select(Reaction.message_id, Reaction.emoji, Reaction.contact_id)
        .where(Reaction.message_id.in_(ids))
        .order_by(Reaction.reacted_at, Reaction.id)
    ).all()
    quoted_ids = {
        item.message.reply_to_id
        for item in items
        if item.message.reply_to_id is not None and item.message.reply_to_id not in by_id
    }
    # One query per kind of thing, always made, so the count never depends on the page.
    quoted = {item.message.id: item.message for item in items}
    quoted.update(
        {m.id: m for m in db.session.scalars(select(Message).where(Message.id.in_(quoted_ids)))}
    )
    edited = [item.message.id for item in items if item.message.edit_count]
    edits: dict[int, list[MessageEdit]] = {}
    for edit in db.session.scalars(
        select(MessageEdit).where(MessageEdit.message_id.in_(edited)).order_by(MessageEdit.num_edit)
    ):
        edits.setdefault(edit.message_id, []).append(edit)
    contact_ids = {item.message.contact_id for item in items if item.message.contact_id}
    contact_ids |= {contact_id for _m, _e, contact_id in reactions if contact_id}
    contacts = {
        c.id: c for c in db.session.scalars(select(Contact).where(Contact.id.in_(contact_ids)))
    }
    media = copies.of_messages(ids)
    for message_id, emoji, contact_id in reactions:
        who = contacts[contact_id].display_name if contact_id in contacts else "Brand"
        by_id[message_id].reactions.append((emoji, who))
    for item in items:
        message = item.message
        item.reply_to = quoted.get(message.reply_to_id) if message.reply_to_id else None
        item.edits = edits.get(message.id, [])
        item.media = media.get(message.id, {})
        if message.direction.value == "inbound":
            item.sender = contacts.get(message.contact_id)


def _notes(
    conversation_id: int, lower: datetime | None, upper: datetime | None
) -> list[ThreadNote]:
    query = (
        select(Note)
        .join(Ticket, Ticket.id == Note.ticket_id)
        .where(Ticket.conversation_id == conversation_id)
        .order_by(Note.created_at, Note.id)
    )
    if lower is not None:
        query = query.where(Note.created_at >= lower)
    if upper is not None:
        query = query.where(Note.created_at < upper)
    return [ThreadNote(note=note, at=note.created_at) for note in db.session.scalars(query)]


def thread_note(conversation: Conversation, note_id: int) -> ThreadNote:
    """One note of the conversation's tickets as the thread shows it; NotFound otherwise."""
    note = db.session.scalar(
        select(Note)
        .join(Ticket, Ticket.id == Note.ticket_id)
        .where(Note.id == note_id, Ticket.conversation_id == conversation.id)
    )
    if note is None:
        raise NotFound("no such note in this conversation")
    item = ThreadNote(note=note, at=note.created_at)
    _name_authors([], [item])
    return item


def _name_authors(items: list, notes: list[ThreadNote]) -> None:
    agent_ids = {
        item.message.author_agent_id
        for item in items
        if isinstance(item, ThreadMessage) and item.message.author_agent_id
    }
    agent_ids |= {note.note.author_id for note in notes if note.note.author_id}
    rows = db.session.execute(select(Agent.id, Agent.name).where(Agent.id.in_(agent_ids)))
    names = {agent_id: name for agent_id, name in rows}
    for item in items:
        if isinstance(item, ThreadMessage):
            item.author = names.get(item.message.author_agent_id)
    for note in notes:
        note.author = names.get(note.note.author_id)


def _scheduled(conversation_id: int) -> list[Message]:
    return list(
        db.session.scalars(
            select(Message)
            .where(
                Message.conversation_id == conversation_id,
                Message.status == MessageStatus.SCHEDULED,
            )
            .order_by(Message.send_at, Message.id)
        )
    )


# Around the thread --------------------------------------------------------------------------------


def participants(conversation: Conversation) -> list[Contact]:
    return list(
        db.session.scalars(
            select(Contact)
            .join(Participant, Participant.contact_id == Contact.id)
            .where(Participant.conversation_id == conversation.id)
            .order_by(Participant.added_at, Participant.id)
        )
    )


def other_conversations(conversation: Conversation, contact: Contact) -> list[Conversation]:
    """The contact's other threads with the brand (direct or group), newest first."""
    return list(
        db.session.scalars(
            select(Conversation)
            .join(Participant, Participant.conversation_id == Conversation.id)
            .where(
                Participant.contact_id == contact.id,
                Conversation.brand_id == conversation.brand_id,
                Conversation.id != conversation.id,
            )
            .order_by(Conversation.last_message_at.desc().nulls_last())
            .limit(OTHER_CONVERSATIONS)
        )
    )


def mark_viewed(agent_id: int, conversation_id: int, at: datetime | None = None) -> None:
    """Remember that the agent saw the conversation now; its later messages will be unread."""
    at = at or utcnow()
    view = db.session.scalar(
        select(ConversationView).where(
            ConversationView.agent_id == agent_id,
            ConversationView.conversation_id == conversation_id,
        )
    )
    if view is not None:
        view.seen_at = at
        db.session.flush()
        return
    try:
        with db.session.begin_nested():
            db.session.add(
                ConversationView(agent_id=agent_id, conversation_id=conversation_id, seen_at=at)
            )
    except IntegrityError:  # another tab of the same agent got there first
        db.session.execute(
            update(ConversationView)
            .where(
                ConversationView.agent_id == agent_id,
                ConversationView.conversation_id == conversation_id,
            )
            .values(seen_at=at)
            .execution_options(synchronize_session=False)
        )


@dataclass
class Panel:
    """The side of the conversation page: its ticket, contact(s) and clocks."""

    ticket: Ticket | None
    tags: list[tuple[str, str]]
    contact: Contact | None
    participants: list[Contact]
    others: list[Conversation]
    level: str
    window_closes_at: datetime | None  # 24 h after the customer's last message
    human_window_closes_at: datetime | None  # 7 days: replies by a person (HUMAN_AGENT tag)

    def reply_closed_reason(self, conversation: Conversation, now: datetime) -> str | None:
        """Why the reply box is closed, in words, or None while a person may reply."""
        closes = self.human_window_closes_at
        if closes is not None and now < closes:
            return None
        return window_closed_reason(conversation.last_inbound_at, now, now, human=True)


def load_panel(conversation: Conversation, agent_id: int) -> Panel:
    ticket = (
        db.session.get(Ticket, conversation.current_ticket_id)
        if conversation.current_ticket_id
        else None
    )
    contact = db.session.get(Contact, conversation.contact_id) if conversation.contact_id else None
    members = participants(conversation) if contact is None else []
    return Panel(
        ticket=ticket,
        tags=ticket_tags([ticket.id])[ticket.id] if ticket else [],
        contact=contact,
        participants=members,
        others=other_conversations(conversation, contact) if contact else [],
        level=dm.notification_level(agent_id, conversation.id).value,
        window_closes_at=dm.window_closes_at(conversation, human=False),
        human_window_closes_at=dm.window_closes_at(conversation, human=True),
    )

"""Everything held about one contact as one JSON document, for a person asking what the brand
keeps about them (an admin hands it over). Another person's content stays out: in a group
conversation only the contact's own messages are included, and of a raw webhook delivery only
the events that concern the contact.
"""

from __future__ import annotations

import json
from collections import defaultdict
from datetime import datetime
from typing import Any

from sqlalchemy import or_, select

from helpdesk.accounts.actor import Actor
from helpdesk.accounts.models import Role
from helpdesk.audit.service import record
from helpdesk.channels.models import Channel
from helpdesk.contacts.service import conversations_of, to_dict
from helpdesk.csat import answers as csat_answers
from helpdesk.dm.models import (
    Contact,
    Conversation,
    ConversationKind,
    Message,
    MessageEdit,
    Reaction,
)
from helpdesk.extensions import db
from helpdesk.intake.models import WebhookEvent
from helpdesk.media import copies
from helpdesk.media.models import MediaObject
from helpdesk.tickets.models import Note, Ticket, TicketEvent
from helpdesk.tickets.tags import ticket_tag_names
from helpdesk.types import utcnow

EVENT_LISTS = ("messaging", "standby", "changes")
ABOUT = {
    "csat_answers": "Their answers to satisfaction surveys (CSAT: a score from 1 to 5, and the "
    "comment they wrote after it), one per surveyed ticket.",
    "raw_webhook_deliveries": "Only the events of each delivery that concern this person.",
    "messages": "Every message of their direct conversations (also the brand's replies), and "
    "their own messages in group conversations.",
}


def export(contact: Contact, actor: Actor) -> dict[str, Any]:
    """The document (admins only), audited as `contact.exported`."""
    actor.require(Role.ADMIN, "Exporting a person's data", contact.brand_id)
    conversations = conversations_of(contact)
    messages = _messages(contact, [c.id for c in conversations])
    tickets = _tickets(conversations, messages)
    document = {
        "exported_at": _time(utcnow()),
        "about": ABOUT,
        "profile": {
            **to_dict(contact),
            "avatar_url": contact.avatar_url,
            "blocked_at": _time(contact.blocked_at),
            "created_at": _time(contact.created_at),
        },
        "attributes": dict(contact.attributes or {}),
        "notes": contact.notes,
        "conversations": [_conversation(c) for c in conversations],
        "messages": _message_dicts(contact, messages),
        "tickets": _ticket_dicts(tickets),
        "csat_answers": csat_answers.as_dicts(tickets),
        "raw_webhook_deliveries": _raw_deliveries(contact),
    }
    record(actor, contact.brand_id, "contact.exported", "contact", contact.id, {},
           label=f"contact #{contact.id}")  # fmt: skip
    db.session.flush()
    return document


def as_json(document: dict[str, Any]) -> str:
    return json.dumps(document, ensure_ascii=False, indent=2, default=str)


def _time(value: datetime | None) -> str | None:
    return value.isoformat() if value else None


def _messages(contact: Contact, conversation_ids: list[int]) -> list[Message]:
    direct = select(Conversation.id).where(
        Conversation.contact_id == contact.id, Conversation.kind == ConversationKind.DIRECT
    )
    return list(
        db.session.scalars(
            select(Message)
            .where(
                Message.conversation_id.in_(conversation_ids),
                or_(Message.contact_id == contact.id, Message.conversation_id.in_(direct)),
            )
            .order_by(Message.id)
        )
    )


def _conversation(conversation: Conversation) -> dict[str, Any]:
    return {
        "id": conversation.id,
        "kind": conversation.kind.value,
        "title": conversation.title,
        "status": conversation.status.value,
        "folder": conversation.folder.value,
        "created_at": _time(conversation.created_at),
        "last_message_at": _time(conversation.last_message_at),
    }


def _message_dicts(contact: Contact, messages: list[Message]) -> list[dict[str, Any]]:
    ids = [m.id for m in messages]
    edits: dict[int, list[dict[str, Any]]] = defaultdict(list)
    for edit in db.session.scalars(
        select(MessageEdit).where(MessageEdit.message_id.in_(ids)).order_by(MessageEdit.id)
    ):
        edits[edit.message_id].append(
            {
                "num_edit": edit.num_edit,
                "previous_text": edit.previous_text,
                "edited_at": _time(edit.edited_at),
            }  # fmt: skip
        )
    reactions: dict[int, list[dict[str, Any]]] = defaultdict(list)
    mine = or_(Reaction.contact_id == contact.id, Reaction.reactor == f"contact:{contact.id}")
    for reaction in db.session.scalars(
        select(Reaction).where(or_(Reaction.message_id.in_(ids), mine)).order_by(Reaction.id)
    ):
        by = "contact" if reaction.contact_id == contact.id else "brand"
        reactions[reaction.message_id].append(
            {
                "message_id": reaction.message_id,
                "emoji": reaction.emoji,
                "by": by,
                "reacted_at": _time(reaction.reacted_at),
            }  # fmt: skip
        )
    media = copies.of_messages(ids)
    result = [
        {**_message(m, edits[m.id], reactions.pop(m.id, [])), "media_copies": _copies(media, m.id)}
        for m in messages
    ]
    # Their reactions to messages not listed (a group thread's others' messages): the emoji only.
    for rest in reactions.values():
        result.extend({"reaction_only": True, **r} for r in rest)
    return result


def _message(
    message: Message, edits: list[dict[str, Any]], reactions: list[dict[str, Any]]
) -> dict[str, Any]:
    return {
        "id": message.id,
        "conversation_id": message.conversation_id,
        "ticket_id": message.ticket_id,
        "from": "contact" if message.direction.value == "inbound" else "brand",
        "kind": message.kind.value,
        "text": message.text,
        "media_links": [a.get("url") for a in message.attachments or [] if a.get("url")],
        "attachments": message.attachments or [],
        "extra": message.extra or {},
        "sent_at": _time(message.sent_at),
        "created_at": _time(message.created_at),
        "edited_at": _time(message.edited_at),
        "unsent_at": _time(message.unsent_at),
        "edit_history": edits,
        "reactions": reactions,
    }


def _copies(media: dict[int, dict[int, MediaObject]], message_id: int) -> list[dict[str, Any]]:
    """The app's own copies of a message's media: where an admin signed in downloads each one
    (`/media/<id>`), or why there is none."""
    return [
        {
            "attachment_index": index,
            "kind": copy.kind,
            "status": copy.status.value,
            "link": f"/media/{copy.id}" if copy.status.value == "stored" else None,
            "content_type": copy.content_type,
            "size": copy.size,
            "sha256": copy.sha256,
            "stored_at": _time(copy.stored_at),
            "reason": copy.reason,
        }
        for index, copy in sorted(media.get(message_id, {}).items())
    ]


def _tickets(conversations: list[Conversation], messages: list[Message]) -> list[Ticket]:
    direct = [c.id for c in conversations if c.kind is ConversationKind.DIRECT]
    carrying = {m.ticket_id for m in messages if m.ticket_id}
    return list(
        db.session.scalars(
            select(Ticket)
            .where(or_(Ticket.conversation_id.in_(direct), Ticket.id.in_(carrying)))
            .order_by(Ticket.id)
        )
    )


def _ticket_dicts(tickets: list[Ticket]) -> list[dict[str, Any]]:
    ids = [t.id for t in tickets]
    tags = ticket_tag_names(ids)
    events: dict[int, list[dict[str, Any]]] = defaultdict(list)
    for event in db.session.scalars(
        select(TicketEvent).where(TicketEvent.ticket_id.in_(ids)).order_by(TicketEvent.id)
    ):
        events[event.ticket_id].append(
            {"kind": event.kind, "data": event.data, "at": _time(event.at)}
        )
    notes: dict[int, list[dict[str, Any]]] = defaultdict(list)
    for note in db.session.scalars(select(Note).where(Note.ticket_id.in_(ids)).order_by(Note.id)):
        notes[note.ticket_id].append({"body": note.body, "created_at": _time(note.created_at)})
    return [
        {
            "id": t.id,
            "conversation_id": t.conversation_id,
            "status": t.status.value,
            "priority": t.priority.value,
            "opened_at": _time(t.opened_at),
            "resolved_at": _time(t.resolved_at),
            "closed_at": _time(t.closed_at),
            "tags": tags.get(t.id, []),
            "events": events[t.id],
            "notes": notes[t.id],
        }
        for t in tickets
    ]


def _raw_deliveries(contact: Contact) -> list[dict[str, Any]]:
    """The stored webhook deliveries of the contact's channel that mention them, each with only
    the events that concern them."""
    channel = db.session.get(Channel, contact.channel_id)
    account = channel.account_id if channel else None
    found = []
    rows = db.session.scalars(
        select(WebhookEvent)
        .where(WebhookEvent.body.contains(contact.platform_id, autoescape=True))
        .order_by(WebhookEvent.id)
    )
    for row in rows:
        if account and account not in (row.account_ids or []):
            continue
        try:
            body = json.loads(row.body)
        except ValueError:
            continue
        events = _events_about(body, contact.platform_id)
        if events:
            found.append(
                {
                    "id": row.id,
                    "source": row.source,
                    "received_at": _time(row.received_at),
                    "events": events,
                }  # fmt: skip
            )
    return found


def _events_about(body: Any, platform_id: str) -> list[dict[str, Any]]:
    entries = body.get("entry") if isinstance(body, dict) else body
    events: list[dict[str, Any]] = []
    for entry in entries if isinstance(entries, list) else []:
        if not isinstance(entry, dict):
            continue
        for key in EVENT_LISTS:
            items = entry.get(key)
            for item in items if isinstance(items, list) else []:
                if _names(item, platform_id):
                    events.append({"entry_id": entry.get("id"), "list": key, "event": item})
    return events


def _names(value: Any, platform_id: str) -> bool:
    """Whether a JSON value holds the platform id anywhere, as text or as a number."""
    if isinstance(value, dict):
        return any(_names(item, platform_id) for item in value.values())
    if isinstance(value, list):
        return any(_names(item, platform_id) for item in value)
    if isinstance(value, str | int) and not isinstance(value, bool):
        return str(value) == platform_id
    return False

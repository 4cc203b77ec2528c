"""Rows to the API's shapes, a page at a time: contacts, tickets, tags and reactions are read in one
query per kind for the whole page, never one per row."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from helpdesk.accounts.models import Agent
from helpdesk.accounts.queries import roles_in, team_ids_of
from helpdesk.canned.models import CannedReply
from helpdesk.canned.service import to_dict as canned_to_dict
from helpdesk.dm import service as dm
from helpdesk.dm.models import Contact, Conversation, Message, Reaction
from helpdesk.dm.queries import contacts_by_id, participants_of, reactions_of
from helpdesk.sla.models import SlaPolicy
from helpdesk.sla.service import TARGET_FIELDS
from helpdesk.tickets.models import Note, Ticket
from helpdesk.tickets.queries import tag_names, tickets_by_id
from helpdesk.tickets.tags import ticket_tag_names


def contact(row: Contact) -> dict[str, Any]:
    return {
        "id": row.id,
        "platform_id": row.platform_id,
        "username": row.username,
        "name": row.name,
        "follows_brand": row.follows_brand,
        "followed_by_brand": row.followed_by_brand,
        "blocked": row.blocked,
    }


def tickets(rows: list[Ticket]) -> list[dict[str, Any]]:
    if not rows:
        return []
    names = ticket_tag_names([row.id for row in rows])
    return [
        {
            "id": row.id,
            "conversation_id": row.conversation_id,
            "status": row.status.value,
            "priority": row.priority.value,
            "assignee_id": row.assignee_id,
            "team_id": row.team_id,
            "tags": names[row.id],
            "opened_at": row.opened_at,
            "first_response_at": row.first_response_at,
            "resolved_at": row.resolved_at,
            "snoozed_until": row.snoozed_until,
            "sla": {
                "policy_id": row.sla_policy_id,
                "first_response_due_at": row.first_response_due_at,
                "next_response_due_at": row.next_response_due_at,
                "resolution_due_at": row.resolution_due_at,
                "breached": list(row.breached or []),
            },
            "csat": (
                {"score": row.csat_score, "answered_at": row.csat_answered_at}
                if row.csat_score is not None
                else None
            ),
        }
        for row in rows
    ]


def ticket(row: Ticket) -> dict[str, Any]:
    return tickets([row])[0]


def conversations(rows: list[Conversation]) -> list[dict[str, Any]]:
    if not rows:
        return []
    people = participants_of(row.id for row in rows)
    direct = contacts_by_id(row.contact_id for row in rows if row.contact_id is not None)
    current_rows = tickets_by_id(row.current_ticket_id for row in rows if row.current_ticket_id)
    current = {shown["id"]: shown for shown in tickets(list(current_rows.values()))}
    return [
        {
            "id": row.id,
            "kind": row.kind.value,
            "channel_id": row.channel_id,
            "title": row.title,
            "contact": contact(direct[row.contact_id]) if row.contact_id in direct else None,
            "contacts": [contact(person) for person in people[row.id]],
            "folder": row.folder.value,
            "request_state": row.request_state.value,
            "status": row.status.value,
            "vanish_mode": row.vanish_mode,
            "window_closes_at": dm.window_closes_at(row, human=True),
            "standard_window_closes_at": dm.window_closes_at(row, human=False),
            "last_message_at": row.last_message_at,
            "preview": row.last_message_preview,
            "current_ticket": current.get(row.current_ticket_id),
        }
        for row in rows
    ]


def conversation(row: Conversation) -> dict[str, Any]:
    return conversations([row])[0]


def reaction(row: Reaction) -> dict[str, Any]:
    return {
        "emoji": row.emoji,
        "reactor": "brand" if row.reactor == "brand" else "contact",
        "contact_id": row.contact_id,
        "reacted_at": row.reacted_at,
    }


def messages(rows: list[Message]) -> list[dict[str, Any]]:
    if not rows:
        return []
    reactions = reactions_of(row.id for row in rows)
    return [
        {
            "id": row.id,
            "conversation_id": row.conversation_id,
            "contact_id": row.contact_id,
            "mid": row.mid,
            "direction": row.direction.value,
            "kind": row.kind.value,
            "text": row.text,
            "attachments": list(row.attachments or []),
            "reply_to": (
                {"id": row.reply_to_id, "mid": row.reply_to_mid}
                if row.reply_to_id is not None or row.reply_to_mid is not None
                else None
            ),
            "reactions": [reaction(each) for each in reactions[row.id]],
            "sent_at": row.sent_at,
            "send_at": row.send_at,
            "status": row.status.value,
            "error": row.error,
            "edited": row.edited,
            "unsent": row.unsent,
            **carried(row),
        }
        for row in rows
    ]


CARRIED = ("story", "quick_reply", "referral", "postback")


def carried(row: Message) -> dict[str, dict | None]:
    """What the platform carried with a message (kept in `extra`): the story a reply answers, a
    quick reply's payload, the ad or ig.me link it came from, a tapped button."""
    extra = row.extra if isinstance(row.extra, dict) else {}
    found: dict[str, dict | None] = {
        key: extra[key] if isinstance(extra.get(key), dict) else None for key in CARRIED
    }
    if found["postback"] is None and row.kind.value == "postback" and "payload" in extra:
        found["postback"] = {"title": row.text, "payload": extra["payload"]}  # stored before
    return found


def message(row: Message) -> dict[str, Any]:
    return messages([row])[0]


def note(row: Note) -> dict[str, Any]:
    return {
        "id": row.id,
        "ticket_id": row.ticket_id,
        "author_id": row.author_id,
        "body": row.body,
        "mentions": list(row.mentions or []),
        "created_at": row.created_at,
    }


def canned_replies(rows: Iterable[CannedReply]) -> list[dict[str, Any]]:
    return [canned_to_dict(row) for row in rows]


def sla_policies(rows: list[SlaPolicy]) -> list[dict[str, Any]]:
    if not rows:
        return []
    names = tag_names(row.tag_id for row in rows if row.tag_id is not None)
    return [
        {
            "id": row.id,
            "name": row.name,
            "position": row.position,
            "conditions": {
                "priority": row.priority,
                "tag": names.get(row.tag_id),
                "tag_id": row.tag_id,
                "channel_id": row.channel_id,
            },
            "targets": {field: getattr(row, field) for field in TARGET_FIELDS.values()},
            "business_hours": row.business_hours,
            "warning_pct": row.warning_pct,
        }
        for row in rows
    ]


def sla_policy(row: SlaPolicy) -> dict[str, Any]:
    return sla_policies([row])[0]


def agents(rows: list[Agent], brand_id: int) -> list[dict[str, Any]]:
    if not rows:
        return []
    ids = [row.id for row in rows]
    roles = roles_in(brand_id, ids)
    teams = team_ids_of(brand_id, ids)
    return [
        {
            "id": row.id,
            "email": row.email,
            "name": row.name,
            "role": roles[row.id].value,
            "availability": row.availability.value,
            "capacity": row.capacity,
            "team_ids": teams[row.id],
            "active": row.active,
        }
        for row in rows
    ]


def agent(row: Agent, brand_id: int) -> dict[str, Any]:
    return agents([row], brand_id)[0]

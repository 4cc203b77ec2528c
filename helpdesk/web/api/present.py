"""Rows to the API's shapes, a page at a time: contacts, tickets, tags and reactions are read in one
query per kind for the whole page, never one per row."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable
from typing import Any

from sqlalchemy import select

from helpdesk.accounts.models import Agent, Membership, Team, TeamMember
from helpdesk.canned.models import CannedReply
from helpdesk.canned.service import to_dict as canned_to_dict
from helpdesk.dm import service as dm
from helpdesk.dm.models import Contact, Conversation, Message, Participant, Reaction
from helpdesk.extensions import db
from helpdesk.sla.models import SlaPolicy
from helpdesk.sla.service import TARGET_FIELDS
from helpdesk.tickets.models import Note, Tag, Ticket
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
        }
        for row in rows
    ]


def ticket(row: Ticket) -> dict[str, Any]:
    return tickets([row])[0]


def _contacts_of(rows: list[Conversation]) -> dict[int, list[Contact]]:
    found: dict[int, list[Contact]] = defaultdict(list)
    pairs = db.session.execute(
        select(Participant.conversation_id, Contact)
        .join(Contact, Contact.id == Participant.contact_id)
        .where(Participant.conversation_id.in_([row.id for row in rows]))
        .order_by(Participant.id)
    )
    for conversation_id, person in pairs:
        found[conversation_id].append(person)
    return found


def conversations(rows: list[Conversation]) -> list[dict[str, Any]]:
    if not rows:
        return []
    people = _contacts_of(rows)
    direct_ids = {row.contact_id for row in rows if row.contact_id is not None}
    direct = {
        person.id: person
        for person in db.session.scalars(select(Contact).where(Contact.id.in_(direct_ids)))
    }
    ticket_ids = [row.current_ticket_id for row in rows if row.current_ticket_id is not None]
    current_rows = db.session.scalars(select(Ticket).where(Ticket.id.in_(ticket_ids))).all()
    current = {shown["id"]: shown for shown in tickets(list(current_rows))}
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


def _reactions_of(message_ids: list[int]) -> dict[int, list[dict[str, Any]]]:
    found: dict[int, list[dict[str, Any]]] = defaultdict(list)
    rows = db.session.scalars(
        select(Reaction)
        .where(Reaction.message_id.in_(message_ids))
        .order_by(Reaction.reacted_at, Reaction.id)
    )
    for row in rows:
        found[row.message_id].append(
            {
                "emoji": row.emoji,
                "reactor": "brand" if row.reactor == "brand" else "contact",
                "contact_id": row.contact_id,
                "reacted_at": row.reacted_at,
            }
        )
    return found


def messages(rows: list[Message]) -> list[dict[str, Any]]:
    if not rows:
        return []
    reactions = _reactions_of([row.id for row in rows])
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
            "reactions": reactions[row.id],
            "sent_at": row.sent_at,
            "send_at": row.send_at,
            "status": row.status.value,
            "error": row.error,
            "edited": row.edited,
            "unsent": row.unsent,
        }
        for row in rows
    ]


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
    tag_ids = {row.tag_id for row in rows if row.tag_id is not None}
    tag_names = dict(db.session.execute(select(Tag.id, Tag.name).where(Tag.id.in_(tag_ids))).all())
    return [
        {
            "id": row.id,
            "name": row.name,
            "position": row.position,
            "conditions": {
                "priority": row.priority,
                "tag": tag_names.get(row.tag_id),
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
    roles = dict(
        db.session.execute(
            select(Membership.agent_id, Membership.role).where(
                Membership.brand_id == brand_id, Membership.agent_id.in_(ids)
            )
        ).all()
    )
    teams: dict[int, list[int]] = defaultdict(list)
    pairs = db.session.execute(
        select(TeamMember.agent_id, TeamMember.team_id)
        .join(Team, Team.id == TeamMember.team_id)
        .where(Team.brand_id == brand_id, TeamMember.agent_id.in_(ids))
        .order_by(TeamMember.team_id)
    )
    for agent_id, team_id in pairs:
        teams[agent_id].append(team_id)
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

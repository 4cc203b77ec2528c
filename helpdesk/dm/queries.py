"""Bulk reads of the DM model for a page of rows: contacts and reactions are read in one query
per kind for the whole page, never one per row."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable

from sqlalchemy import select

from helpdesk.dm.models import Contact, Participant, Reaction
from helpdesk.extensions import db


def participants_of(conversation_ids: Iterable[int]) -> dict[int, list[Contact]]:
    """Each conversation's contacts, in the order they joined."""
    found: dict[int, list[Contact]] = defaultdict(list)
    ids = list(conversation_ids)
    if not ids:
        return found
    pairs = db.session.execute(
        select(Participant.conversation_id, Contact)
        .join(Contact, Contact.id == Participant.contact_id)
        .where(Participant.conversation_id.in_(ids))
        .order_by(Participant.id)
    )
    for conversation_id, person in pairs:
        found[conversation_id].append(person)
    return found


def contacts_by_id(contact_ids: Iterable[int]) -> dict[int, Contact]:
    ids = set(contact_ids)
    if not ids:
        return {}
    return {row.id: row for row in db.session.scalars(select(Contact).where(Contact.id.in_(ids)))}


def reactions_of(message_ids: Iterable[int]) -> dict[int, list[Reaction]]:
    """Each message's reactions, oldest first."""
    found: dict[int, list[Reaction]] = defaultdict(list)
    ids = list(message_ids)
    if not ids:
        return found
    rows = db.session.scalars(
        select(Reaction)
        .where(Reaction.message_id.in_(ids))
        .order_by(Reaction.reacted_at, Reaction.id)
    )
    for row in rows:
        found[row.message_id].append(row)
    return found

"""Listing, reading, editing and erasing a brand's contacts: one set of rules for the API and the
console. A contact of another brand is NotFound, like no contact at all.

The audit of an edit names what changed, never the values: a contact's name, attributes and the
agents' notes are about a person, and an erasure must not leave them behind in the audit log.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import asdict
from typing import Any

from sqlalchemy import ColumnElement, Select, or_, select

from helpdesk.accounts.actor import Actor
from helpdesk.accounts.models import Role
from helpdesk.audit.service import HIDDEN, record
from helpdesk.dm.models import Contact, Conversation, Message, Participant, RequestState
from helpdesk.dm.visibility import sees_hidden_requests
from helpdesk.errors import InvalidField, NotFound
from helpdesk.extensions import db
from helpdesk.privacy.erase import erase_contact
from helpdesk.tickets.models import Ticket

MAX_NAME = 200
MAX_KEY = 64
MAX_ATTRIBUTES = 50
MAX_VALUE = 500
MAX_NOTES = 10_000
MAX_QUERY = 200
ERASE_REASON = "erased by an admin"
UNSET: Any = object()


def search(brand_id: int, q: str = "", role: Role = Role.ADMIN) -> Select:
    """The brand's contacts that `role` may see, newest first; `q` matches part of a name, a
    username or a platform id (case aside). The caller pages it (keyset, by id)."""
    statement = select(Contact).where(Contact.brand_id == brand_id)
    if not sees_hidden_requests(role):
        statement = statement.where(_not_only_hidden())
    words = (q or "").strip()[:MAX_QUERY]
    if words:
        pattern = f"%{_escaped(words.lstrip('@'))}%"
        statement = statement.where(
            or_(
                Contact.name.ilike(pattern, escape="\\"),
                Contact.username.ilike(pattern, escape="\\"),
                Contact.platform_id.ilike(pattern, escape="\\"),
            )
        )
    return statement


def _not_only_hidden() -> ColumnElement[bool]:
    """Someone known only from hidden requests (the brand's filter words: spam, abuse) is for
    admins, like those requests: neither listed nor found below that role."""
    hidden = select(Conversation.id).where(
        Conversation.contact_id == Contact.id, Conversation.request_state == RequestState.HIDDEN
    )
    shown = select(Conversation.id).where(
        Conversation.contact_id == Contact.id, Conversation.request_state != RequestState.HIDDEN
    )
    return or_(~hidden.exists(), shown.exists())


def _escaped(text: str) -> str:
    return text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")


def get(actor: Actor, contact_id: int) -> Contact:
    """The actor's brand's contact with this id, or NotFound."""
    contact = db.session.get(Contact, contact_id) if 0 < contact_id <= 2**31 - 1 else None
    if contact is None or contact.brand_id != actor.brand_id:
        raise NotFound("no such contact")
    role = actor.require(Role.AGENT, "Seeing a contact", contact.brand_id)
    if role is not None and not sees_hidden_requests(role):
        visible = select(Contact.id).where(Contact.id == contact.id, _not_only_hidden())
        if db.session.scalar(visible) is None:
            raise NotFound("no such contact")
    return contact


def conversations_of(contact: Contact) -> list[Conversation]:
    """Their direct conversations, and the groups they are in or wrote to."""
    groups = select(Participant.conversation_id).where(Participant.contact_id == contact.id)
    theirs = select(Message.conversation_id).where(Message.contact_id == contact.id)
    return list(
        db.session.scalars(
            select(Conversation)
            .where(
                Conversation.brand_id == contact.brand_id,
                or_(
                    Conversation.contact_id == contact.id,
                    Conversation.id.in_(groups),
                    Conversation.id.in_(theirs),
                ),
            )
            .order_by(Conversation.id)
        )
    )


def tickets_of(conversation_ids: list[int]) -> list[Ticket]:
    return list(
        db.session.scalars(
            select(Ticket).where(Ticket.conversation_id.in_(conversation_ids)).order_by(Ticket.id)
        )
    )


def to_dict(contact: Contact) -> dict[str, Any]:
    return {
        "id": contact.id,
        "platform_id": contact.platform_id,
        "username": contact.username,
        "name": contact.name,
        "follows_brand": contact.follows_brand,
        "followed_by_brand": contact.followed_by_brand,
        "blocked": contact.blocked,
        "attributes": dict(contact.attributes or {}),
        "notes": contact.notes,
    }


def update(
    contact: Contact,
    actor: Actor,
    name: Any = UNSET,
    attributes: Any = UNSET,
    notes: Any = UNSET,
) -> Contact:
    """Change the given fields (all checked before any is applied); audited as
    `contact.updated` naming what changed, without the values."""
    actor.require(Role.AGENT, "Editing a contact", contact.brand_id)
    wanted: dict[str, Any] = {}
    if name is not UNSET:
        wanted["name"] = clean_name(name)
    if attributes is not UNSET:
        wanted["attributes"] = clean_attributes(attributes)
    if notes is not UNSET:
        wanted["notes"] = clean_notes(notes)
    changes = _changes(contact, wanted)
    if not changes:
        return contact
    for field, value in wanted.items():
        setattr(contact, field, value)
    record(actor, contact.brand_id, "contact.updated", "contact", contact.id, changes,
           label=f"contact #{contact.id}")  # fmt: skip
    db.session.flush()
    return contact


def _changes(contact: Contact, wanted: Mapping[str, Any]) -> dict[str, Any]:
    changes: dict[str, Any] = {}
    if "name" in wanted and wanted["name"] != contact.name:
        changes["name"] = [HIDDEN, HIDDEN]
    if "notes" in wanted and wanted["notes"] != contact.notes:
        changes["notes"] = [HIDDEN, HIDDEN]
    if "attributes" in wanted:
        before, after = dict(contact.attributes or {}), wanted["attributes"]
        if before != after:
            # Names of the attributes only: their values are about the person.
            changes["attributes"] = [sorted(before), sorted(after)]
            changed = sorted(k for k in set(before) & set(after) if before[k] != after[k])
            if changed:
                changes["attribute_values_changed"] = [None, changed]
    return changes


def _no_nul(field: str, text: str) -> None:
    """PostgreSQL stores neither NUL characters nor lone surrogates (JSON can send both)."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        raise InvalidField(field, "contains a character that cannot be stored") from None
    if "\x00" in text:
        raise InvalidField(field, "contains a character that cannot be stored")


def clean_name(value: Any) -> str | None:
    if value is None:
        return None
    if not isinstance(value, str):
        raise InvalidField("name", "The name should be text")
    value = value.strip()
    if len(value) > MAX_NAME:
        raise InvalidField("name", f"The name can be at most {MAX_NAME} characters")
    _no_nul("name", value)
    return value or None


def clean_notes(value: Any) -> str | None:
    if value is None:
        return None
    if not isinstance(value, str):
        raise InvalidField("notes", "The notes should be text")
    if len(value) > MAX_NOTES:
        raise InvalidField("notes", f"The notes can be at most {MAX_NOTES:,} characters")
    _no_nul("notes", value)
    return value if value.strip() else None


def clean_attributes(value: Any) -> dict[str, Any]:
    """Names of 1 to 64 characters, at most 50 of them; each value text (up to 500
    characters), a number, or yes/no (true/false)."""
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise InvalidField("attributes", "Attributes should be a list of names and values")
    if len(value) > MAX_ATTRIBUTES:
        raise InvalidField("attributes", f"A contact can have at most {MAX_ATTRIBUTES} attributes")
    cleaned: dict[str, Any] = {}
    for key, item in value.items():
        name = key.strip() if isinstance(key, str) else ""
        if not 1 <= len(name) <= MAX_KEY:
            raise InvalidField("attributes", f"An attribute's name needs 1 to {MAX_KEY} characters")
        _no_nul("attributes", name)
        if name in cleaned:
            raise InvalidField("attributes", f"Two attributes are named “{name}”")
        cleaned[name] = _attribute_value(name, item)
    return cleaned


def _attribute_value(name: str, item: Any) -> Any:
    if isinstance(item, bool):
        return item
    if isinstance(item, int | float):
        if isinstance(item, float) and not math.isfinite(item):
            raise InvalidField("attributes", f"“{name}” is not a number that can be stored")
        if isinstance(item, int) and abs(item) > 2**53:
            raise InvalidField("attributes", f"“{name}” is too large a number")
        return item
    if isinstance(item, str):
        if len(item) > MAX_VALUE:
            raise InvalidField(
                "attributes", f"The value of “{name}” can be at most {MAX_VALUE} characters"
            )
        _no_nul("attributes", item)
        return item
    raise InvalidField("attributes", f"The value of “{name}” should be text, a number or yes/no")


def attributes_from_rows(
    rows: Iterable[tuple[str, str]], existing: Mapping[str, Any]
) -> dict[str, Any]:
    """The console's rows of (name, value) as attributes: an empty row is skipped, a row with a
    value but no name is an error; a value shown unchanged keeps its type (a number stays one),
    otherwise the typed text is kept as text."""
    result: dict[str, Any] = {}
    for key, text in rows:
        key, text = key.strip(), text.strip()
        if not key and not text:
            continue
        if not key:
            raise InvalidField("attributes", "Give each value a name")
        if key in result:
            raise InvalidField("attributes", f"Two attributes are named “{key}”")
        old = existing.get(key)
        result[key] = old if old is not None and shown(old) == text else text
    return result


def shown(value: Any) -> str:
    """An attribute's value as the console's input shows it."""
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def erase(contact: Contact, actor: Actor) -> dict[str, int]:
    """Erase everything held about the contact (`erase_contact`, audited there), for admins;
    the counts of what was removed or overwritten."""
    actor.require(Role.ADMIN, "Erasing a person's data", contact.brand_id)
    return asdict(erase_contact(contact, actor, reason=ERASE_REASON))

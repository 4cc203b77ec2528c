"""What a rule's conditions may test, and testing them against one ticket.

The vocabulary (FIELDS, OPS, FIELD_OPS) is the contract with the rule editor (rules.py and the
console's field-aware inputs): a field names the kind of value it takes, and each kind allows some
operators. Values are plain JSON: ids (ints) for channel, agent and team; a tag is its id (an int)
or its name (a string, any case); enumerations (folder, priority, status, open/closed) are their
lower-case names; `in`/`not_in` take a list; `bool` fields take true or false.

Testing reads the ticket's own columns first and loads anything else (tags, the conversation, the
contact, the business calendar, the latest customer text) only when a condition asks for it, once
per evaluation however many rules ask (`Facts`), so fifty rules on a message cost a few lookups.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from datetime import datetime
from typing import Any

from sqlalchemy import select

from helpdesk.brands.models import Brand
from helpdesk.dm.models import Contact, Conversation, Direction, Message
from helpdesk.extensions import db
from helpdesk.inbox.folders import folder_name
from helpdesk.sla.calendar import is_open
from helpdesk.sla.clocks import get_calendar
from helpdesk.tickets.models import Tag, Ticket, TicketTag
from helpdesk.types import utcnow

# field -> the kind of value it takes (the console picks an input by kind).
FIELDS: dict[str, str] = {
    "text": "text",
    "folder": "folder",
    "channel_id": "channel",
    "tag": "tag",
    "priority": "priority",
    "status": "status",
    "assignee_id": "agent",
    "team_id": "team",
    "business_hours": "open_closed",
    "contact_follows_brand": "bool",
    "contact_is_new": "bool",
}

OPS: tuple[str, ...] = ("eq", "ne", "contains", "not_contains", "in", "not_in")

# kind -> the operators it allows. A tag "contains" when the ticket carries it; eq/ne on a tag
# mean the same as contains/not_contains.
KIND_OPS: dict[str, tuple[str, ...]] = {
    "text": ("contains", "not_contains", "eq", "ne"),
    "tag": ("contains", "not_contains", "eq", "ne", "in", "not_in"),
    "folder": ("eq", "ne", "in", "not_in"),
    "channel": ("eq", "ne", "in", "not_in"),
    "priority": ("eq", "ne", "in", "not_in"),
    "status": ("eq", "ne", "in", "not_in"),
    "agent": ("eq", "ne", "in", "not_in"),
    "team": ("eq", "ne", "in", "not_in"),
    "open_closed": ("eq", "ne"),
    "bool": ("eq", "ne"),
}
FIELD_OPS: dict[str, tuple[str, ...]] = {field: KIND_OPS[kind] for field, kind in FIELDS.items()}

# The choices of the enumerated kinds (the ids of channels, agents, teams and tags are the brand's).
CHOICES: dict[str, tuple[str, ...]] = {
    "folder": ("primary", "general", "requests"),
    "priority": ("low", "normal", "high", "urgent"),
    "status": ("open", "pending", "snoozed", "resolved", "closed"),
    "open_closed": ("open", "closed"),
}

_ID_KINDS = ("channel", "agent", "team")


class Facts:
    """What the conditions see of one ticket at one moment; each costly value loaded once."""

    def __init__(self, ticket: Ticket, message: Message | None = None, now: datetime | None = None):
        self.ticket = ticket
        self.message = message
        self.now = now or utcnow()
        self._cache: dict[str, Any] = {}

    def get(self, field: str) -> Any:
        if field not in self._cache:
            self._cache[field] = _LOADERS[field](self)
        return self._cache[field]

    def conversation(self) -> Conversation:
        if "_conversation" not in self._cache:
            self._cache["_conversation"] = db.session.get(Conversation, self.ticket.conversation_id)
        return self._cache["_conversation"]

    def contact(self) -> Contact | None:
        contact_id = self.conversation().contact_id
        return db.session.get(Contact, contact_id) if contact_id is not None else None


def _text(facts: Facts) -> str:
    if facts.message is not None:
        return facts.message.text or ""
    latest = db.session.scalar(
        select(Message.text)
        .where(Message.ticket_id == facts.ticket.id, Message.direction == Direction.INBOUND)
        .order_by(Message.id.desc())
        .limit(1)
    )
    return latest or ""


def _tags(facts: Facts) -> tuple[set[int], set[str]]:
    rows = db.session.execute(
        select(Tag.id, Tag.name_key)
        .join(TicketTag, TicketTag.tag_id == Tag.id)
        .where(TicketTag.ticket_id == facts.ticket.id)
    ).all()
    return {row.id for row in rows}, {row.name_key for row in rows}


def _folder(facts: Facts) -> str | None:
    conversation = facts.conversation()
    return folder_name(conversation.request_state, conversation.folder)


def _business_hours(facts: Facts) -> str:
    brand = db.session.get(Brand, facts.ticket.brand_id)
    return "open" if is_open(get_calendar(brand), facts.now) else "closed"


def _follows(facts: Facts) -> bool:
    contact = facts.contact()
    return bool(contact and contact.follows_brand)


def _is_new(facts: Facts) -> bool:
    """The contact's first ticket: no earlier ticket of any of their conversations."""
    contact_id = facts.conversation().contact_id
    if contact_id is None:
        return True
    earlier = db.session.scalar(
        select(Ticket.id)
        .join(Conversation, Conversation.id == Ticket.conversation_id)
        .where(Conversation.contact_id == contact_id, Ticket.id < facts.ticket.id)
        .limit(1)
    )
    return earlier is None


_LOADERS: dict[str, Callable[[Facts], Any]] = {
    "text": _text,
    "folder": _folder,
    "channel_id": lambda f: f.ticket.channel_id,
    "tag": _tags,
    "priority": lambda f: f.ticket.priority.value,
    "status": lambda f: f.ticket.status.value,
    "assignee_id": lambda f: f.ticket.assignee_id,
    "team_id": lambda f: f.ticket.team_id,
    "business_hours": _business_hours,
    "contact_follows_brand": _follows,
    "contact_is_new": _is_new,
}


# Normalising values -----------------------------------------------------------------------------


def _as_bool(value: Any) -> bool:
    if isinstance(value, str):
        return value.strip().lower() in ("true", "1", "yes", "on")
    return bool(value)


def _as_id(value: Any) -> int | None:
    if value is None or value == "" or str(value).lower() in ("none", "null"):
        return None
    try:
        return int(value)
    except (TypeError, ValueError):
        return -1  # matches no row


def normalise(kind: str, value: Any) -> Any:
    """One stored value as the facts hold it (ids as ints, names in lower case)."""
    if kind == "bool":
        return _as_bool(value)
    if kind in _ID_KINDS:
        return _as_id(value)
    if kind == "tag":
        return value if isinstance(value, int) and not isinstance(value, bool) else _tag_key(value)
    return None if value is None else str(value).strip().lower()


def _tag_key(value: Any) -> int | str:
    text = str(value).strip()
    return int(text) if text.isdigit() else text.lower()


def _values(kind: str, value: Any) -> list[Any]:
    items = value if isinstance(value, list | tuple | set) else [value]
    return [normalise(kind, item) for item in items]


# Testing ----------------------------------------------------------------------------------------


def _has_tag(tags: tuple[set[int], set[str]], wanted: int | str) -> bool:
    ids, names = tags
    return wanted in ids if isinstance(wanted, int) else wanted in names


def _test_tag(tags: tuple[set[int], set[str]], op: str, value: Any) -> bool:
    wanted = _values("tag", value)
    hit = any(_has_tag(tags, item) for item in wanted)
    return not hit if op in ("ne", "not_contains", "not_in") else hit


def _test_text(actual: str, op: str, value: Any) -> bool:
    haystack = (actual or "").casefold()
    needle = ("" if value is None else str(value)).casefold()
    if op == "contains":
        return needle in haystack
    if op == "not_contains":
        return needle not in haystack
    equal = haystack.strip() == needle.strip()
    return equal if op == "eq" else not equal


def _test_value(kind: str, actual: Any, op: str, value: Any) -> bool:
    if op in ("in", "not_in"):
        hit = actual in _values(kind, value)
        return hit if op == "in" else not hit
    equal = actual == normalise(kind, value)
    if op == "eq":
        return equal
    if op == "ne":
        return not equal
    return False  # an operator the kind does not allow never holds


def holds(condition: dict, facts: Facts) -> bool:
    """One condition; an unknown field or operator never holds (the rule does not run)."""
    field, op, value = condition.get("field"), condition.get("op"), condition.get("value")
    kind = FIELDS.get(str(field))
    if kind is None or op not in KIND_OPS[kind]:
        return False
    actual = facts.get(str(field))
    if kind == "tag":
        return _test_tag(actual, op, value)
    if kind == "text":
        return _test_text(actual, op, value)
    return _test_value(kind, actual, op, value)


def all_hold(conditions: Iterable[dict], facts: Facts) -> bool:
    """Every condition holds (a rule without conditions always matches)."""
    return all(holds(condition, facts) for condition in conditions or ())

"""Recording and reading the audit log.

Services call `record` in the transaction of the change they make, so a change and its audit row
commit together or not at all. `changes` is `{field: [before, after]}`; a field named as secret
(passwords, token and webhook secrets) is never written, only that it changed.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from datetime import UTC, date, datetime, time, timedelta
from enum import Enum
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import Select, select

from helpdesk.accounts.actor import Actor, ActorKind
from helpdesk.accounts.models import Agent
from helpdesk.audit.models import AuditEvent
from helpdesk.errors import InvalidField
from helpdesk.extensions import db
from helpdesk.keyset import Order
from helpdesk.types import utcnow

SECRET_FIELDS = frozenset(
    {"password", "password_hash", "secret", "token", "token_hash", "access_token"}
)
HIDDEN = "(changed)"
MAX_ID = 2**31 - 1
TARGET_TYPES = (
    "brand",
    "channel",
    "agent",
    "team",
    "business_hours",
    "sla_policy",
    "canned_reply",
    "tag",
    "api_token",
    "webhook",
    "automation",
    "contact",
)


def plain(value: Any) -> Any:
    """A value as JSON can hold it: enums by value, times in ISO 8601, sets and tuples as lists."""
    if isinstance(value, Enum):
        return value.value
    if isinstance(value, datetime | date):
        return value.isoformat()
    if isinstance(value, Mapping):
        return {str(k): plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple | set | frozenset):
        items = [plain(v) for v in value]
        return sorted(items, key=repr) if isinstance(value, set | frozenset) else items
    return value


def snapshot(obj: Any, fields: Iterable[str]) -> dict[str, Any]:
    """The named attributes of a row, as `plain` values, to diff before and after a change."""
    return {name: plain(getattr(obj, name)) for name in fields}


def is_secret(name: str) -> bool:
    """A field that names a secret: listed, or spelled like one (`webhook_secret`,
    `new_password`, `refresh_token`), so a new caller's secret is masked too."""
    name = str(name).lower()
    return (
        name in SECRET_FIELDS
        or any(word in name for word in ("password", "secret"))
        or name.endswith(("_token", "token_hash"))
    )


def masked(value: Any) -> Any:
    """`value` as `plain` gives it, with every secret field inside it (at any depth) hidden."""
    value = plain(value)
    if isinstance(value, dict):
        return {k: HIDDEN if is_secret(k) else masked(v) for k, v in value.items()}
    if isinstance(value, list):
        return [masked(v) for v in value]
    return value


def diff(before: Mapping[str, Any], after: Mapping[str, Any]) -> dict[str, list[Any]]:
    """`{field: [before, after]}` for each field whose value differs; secrets only say so."""
    changes: dict[str, list[Any]] = {}
    for name in sorted(set(before) | set(after)):
        old, new = plain(before.get(name)), plain(after.get(name))
        if old == new:
            continue
        changes[name] = [HIDDEN, HIDDEN] if is_secret(name) else [masked(old), masked(new)]
    return changes


def _actor_fields(actor: Actor | Agent | None) -> dict[str, Any]:
    if isinstance(actor, Agent):
        return {"actor_type": ActorKind.AGENT.value, "actor_id": actor.id, "actor_name": actor.name}
    if actor is None or actor.kind is ActorKind.SYSTEM:
        return {"actor_type": ActorKind.SYSTEM.value, "actor_id": None, "actor_name": "the system"}
    actor_id = actor.agent_id if actor.kind is ActorKind.AGENT else actor.token_id
    return {"actor_type": actor.kind.value, "actor_id": actor_id, "actor_name": actor.name[:200]}


def record(
    actor: Actor | Agent | None,
    brand_id: int,
    action: str,
    target_type: str,
    target_id: int | None = None,
    changes: Mapping[str, Any] | None = None,
    label: str = "",
    at: datetime | None = None,
) -> AuditEvent:
    """One audit row in the current transaction. `changes` is either a `diff` result or plain
    `{field: value}` of what was created or removed (shown as [None, value] / [value, None] by
    the caller); secret fields are masked whatever the caller passed."""
    safe = {
        str(name): ([HIDDEN, HIDDEN] if is_secret(name) else masked(value))
        for name, value in (changes or {}).items()
    }
    event = AuditEvent(
        brand_id=brand_id,
        at=at or utcnow(),
        action=action,
        target_type=target_type,
        target_id=target_id,
        target_label=(label or "")[:200],
        changes=safe,
        **_actor_fields(actor),
    )
    db.session.add(event)
    return event


def created(values: Mapping[str, Any]) -> dict[str, list[Any]]:
    """The changes of a new thing: every field from nothing to its value."""
    return diff({}, values)


def removed(values: Mapping[str, Any]) -> dict[str, list[Any]]:
    """The changes of a removed thing: every field from its value to nothing."""
    return diff(values, {})


def events_query(
    brand_id: int,
    since: datetime | None = None,
    until: datetime | None = None,
    actor_type: str | None = None,
    actor_id: int | None = None,
    target_type: str | None = None,
    action: str | None = None,
) -> Select:
    """The brand's audit rows matching the filters, for a listing to order and page (by ORDER).
    `action` matches part of the action's name: `tag` finds every change of a tag."""
    query = select(AuditEvent).where(AuditEvent.brand_id == brand_id)
    if since is not None:
        query = query.where(AuditEvent.at >= since)
    if until is not None:
        query = query.where(AuditEvent.at < until)
    if actor_type:
        query = query.where(AuditEvent.actor_type == actor_type)
    if actor_id is not None:
        query = query.where(AuditEvent.actor_id == actor_id)
    if target_type:
        query = query.where(AuditEvent.target_type == target_type)
    if action:
        query = query.where(AuditEvent.action.contains(action.strip().lower(), autoescape=True))
    return query


def to_dict(event: AuditEvent) -> dict[str, Any]:
    """The API's and the export's shape of one row."""
    return {
        "id": event.id,
        "at": event.at.isoformat().replace("+00:00", "Z"),
        "actor": {"type": event.actor_type, "id": event.actor_id, "name": event.actor_name},
        "action": event.action,
        "target": {"type": event.target_type, "id": event.target_id, "label": event.target_label},
        "changes": {
            name: [HIDDEN, HIDDEN] if is_secret(name) else masked(value)
            for name, value in (event.changes or {}).items()
        },
    }


# Reading the log: the console's page and the API share these ---------------------------------

# Newest first; rows of one instant by id.
ORDER = Order("audit", AuditEvent.id, AuditEvent.at, datetime, descending=True)
ACTOR_TYPES = tuple(kind.value for kind in ActorKind)
_WORDS = {
    "api_token": "API token",
    "sla_policy": "SLA policy",
    "business_hours": "Business hours",
    "canned_reply": "Canned reply",
}
_ACTOR_WORDS = {"agent": "agent", "token": "API token", "system": "system"}


def target_words(target_type: str) -> str:
    """`sla_policy` as a person says it: "SLA policy"."""
    return _WORDS.get(target_type, target_type.replace("_", " ").capitalize())


def action_words(action: str) -> str:
    """`api_token.revoked` as a sentence: "API token revoked"."""
    target, _, verb = action.partition(".")
    return f"{target_words(target)} {verb.replace('_', ' ')}".strip()


def actor_words(actor_type: str) -> str:
    return _ACTOR_WORDS.get(actor_type, actor_type)


def parse_actor(text: str | None) -> tuple[str | None, int | None]:
    """The actor filter as `(actor_type, actor_id)`: `agent:12`, `token:3`, `agent` or `token`
    (any of them), `system`; empty is no filter. Anything else is refused on the `actor` field."""
    text = (text or "").strip().lower()
    if not text:
        return None, None
    kind, colon, number = text.partition(":")
    if kind not in ACTOR_TYPES or (colon and kind == ActorKind.SYSTEM.value):
        raise InvalidField("actor", "Use agent:<id>, token:<id>, agent, token or system.")
    if not colon:
        return kind, None
    if not number.isdigit() or not 0 < int(number) <= MAX_ID:
        raise InvalidField("actor", f"{kind}: must be followed by an id, as in {kind}:12.")
    return kind, int(number)


def parse_target_type(text: str | None) -> str | None:
    text = (text or "").strip()
    if text and text not in TARGET_TYPES:
        raise InvalidField("target_type", "Choose one of the listed kinds of thing.")
    return text or None


def local_day(
    text: str | None, zone: ZoneInfo, field: str, next_day: bool = False
) -> datetime | None:
    """The start of a date typed in the brand's time zone (of the day after it, for an
    inclusive "until"), in UTC; empty is no bound."""
    text = (text or "").strip()
    if not text:
        return None
    try:
        day = date.fromisoformat(text)
        if next_day:
            day += timedelta(days=1)
        return datetime.combine(day, time(), zone).astimezone(UTC)
    except (ValueError, OverflowError):
        raise InvalidField(field, "Enter a date such as 2026-01-31.") from None


def shown(value: Any) -> str:
    """A before or after value as text for the page: nothing is "—", lists and objects as
    JSON, text as typed."""
    if value is None or value == "":
        return "—"
    if isinstance(value, str):
        return value
    return json.dumps(value, ensure_ascii=False, sort_keys=True)

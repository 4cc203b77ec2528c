"""Recording and reading the audit log.

Services call `record` in the transaction of the change they make, so a change and its audit row
commit together or not at all. `changes` is `{field: [before, after]}`; a field named as secret
(passwords, token and webhook secrets) is never written, only that it changed.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from datetime import date, datetime
from enum import Enum
from typing import Any

from sqlalchemy import Select, select

from helpdesk.accounts.actor import Actor, ActorKind
from helpdesk.accounts.models import Agent
from helpdesk.audit.models import AuditEvent
from helpdesk.extensions import db
from helpdesk.types import utcnow

SECRET_FIELDS = frozenset(
    {"password", "password_hash", "secret", "token", "token_hash", "access_token"}
)
HIDDEN = "(changed)"
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


def diff(before: Mapping[str, Any], after: Mapping[str, Any]) -> dict[str, list[Any]]:
    """`{field: [before, after]}` for each field whose value differs; secrets only say so."""
    changes: dict[str, list[Any]] = {}
    for name in sorted(set(before) | set(after)):
        old, new = plain(before.get(name)), plain(after.get(name))
        if old == new:
            continue
        changes[name] = [HIDDEN, HIDDEN] if name in SECRET_FIELDS else [old, new]
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
        name: ([HIDDEN, HIDDEN] if name in SECRET_FIELDS else plain(value))
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
    """The brand's audit rows matching the filters, for a listing to order and page."""
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
        query = query.where(AuditEvent.action == action)
    return query


def to_dict(event: AuditEvent) -> dict[str, Any]:
    """The API's and the export's shape of one row."""
    return {
        "id": event.id,
        "at": event.at.isoformat().replace("+00:00", "Z"),
        "actor": {"type": event.actor_type, "id": event.actor_id, "name": event.actor_name},
        "action": event.action,
        "target": {"type": event.target_type, "id": event.target_id, "label": event.target_label},
        "changes": dict(event.changes or {}),
    }

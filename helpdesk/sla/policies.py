"""What a manager sets: SLA policies and the brand's business hours, checked before anything is
written, after which every open clock of the brand moves. Functions flush; the caller commits."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Any

from sqlalchemy import select

from helpdesk.accounts.actor import Actor
from helpdesk.accounts.models import Agent, Role
from helpdesk.accounts.service import require_role
from helpdesk.audit import service as audit
from helpdesk.brands.models import Brand
from helpdesk.channels.models import Channel
from helpdesk.errors import InvalidField, NotFound, ValidationError
from helpdesk.extensions import db
from helpdesk.sla.calendar import BusinessCalendar
from helpdesk.sla.clocks import TARGET_FIELDS, get_calendar, recompute_brand
from helpdesk.sla.models import BusinessHours, SlaPolicy
from helpdesk.tickets.models import Priority, Tag
from helpdesk.types import utcnow

CONDITION_KEYS = frozenset({"priority", "tag", "tag_id", "channel_id"})
POLICY_FIELDS = frozenset(
    {"name", "position", "conditions", "targets", "business_hours", "warning_pct"}
)
# What the audit log keeps of a policy, before and after a change.
AUDITED = (
    "name",
    "position",
    "priority",
    "tag_id",
    "channel_id",
    "first_response_min",
    "next_response_min",
    "resolution_min",
    "business_hours",
    "warning_pct",
)


def set_calendar(
    brand: Brand, actor: Actor | Agent | None, data: Mapping[str, Any], now: datetime | None = None
) -> BusinessHours:
    """Validate before writing, so a refused calendar changes nothing, then move every clock."""
    require_role(actor, brand.id, Role.MANAGER)
    calendar = BusinessCalendar.from_dict(data)
    if not calendar.has_open_days():
        raise ValidationError("The calendar needs open hours on at least one day.")
    row = db.session.scalar(select(BusinessHours).where(BusinessHours.brand_id == brand.id))
    before = get_calendar(brand).to_dict()  # the hours in effect: around the clock if none
    if row is None:
        row = BusinessHours(brand_id=brand.id, calendar=calendar.to_dict())
        db.session.add(row)
    else:
        row.calendar = calendar.to_dict()
    db.session.flush()
    changes = audit.diff(before, row.calendar)
    if changes:
        label = "Business hours"
        audit.record(
            actor, brand.id, "business_hours.updated", "business_hours", row.id, changes, label
        )
    recompute_brand(brand.id, now or utcnow())
    return row


def _int(value: Any, what: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise ValidationError(f"{what} must be a whole number, not {value!r}.")
    return value


def _name(value: Any) -> str:
    if not isinstance(value, str) or not value.strip():
        raise InvalidField("name", "A policy needs a name.")
    if len(value.strip()) > 120:
        raise InvalidField("name", "A policy name has at most 120 characters.")
    return value.strip()


def _warning_pct(value: Any) -> int:
    value = _int(value, "The warning percentage")
    if not 1 <= value <= 99:
        raise ValidationError("The warning percentage must be between 1 and 99.")
    return value


def _targets(data: Any, current: Mapping[str, int | None]) -> dict[str, int | None]:
    """Minutes per target: a positive whole number, or None for no clock."""
    if not isinstance(data, Mapping):
        raise ValidationError("targets must be an object.")
    unknown = sorted(set(data) - set(TARGET_FIELDS.values()))
    if unknown:
        raise ValidationError(f"Unknown targets {unknown!r}.")
    targets = dict(current)
    for key, value in data.items():
        if value is not None and (isinstance(value, bool) or not isinstance(value, int)):
            raise InvalidField(key, "Write a whole number of minutes, such as 30.")
        if value is not None and value <= 0:
            raise InvalidField(key, "A target must be a positive number of minutes (1 or more).")
        targets[key] = value
    if all(value is None for value in targets.values()):
        raise InvalidField(
            "targets", "Set at least one target: first response, next response or resolution."
        )
    return targets


def _tag_id(brand_id: int, value: Any) -> int:
    """A tag of the brand, given by id or by name."""
    query = select(Tag.id).where(Tag.brand_id == brand_id)
    if isinstance(value, str):
        query = query.where(Tag.name == value)
    else:
        query = query.where(Tag.id == _int(value, "tag"))
    tag_id = db.session.scalar(query)
    if tag_id is None:
        raise InvalidField("tag_id", f"The brand has no tag {value!r}.")
    return tag_id


def _conditions(brand_id: int, data: Any, current: Mapping[str, Any]) -> dict[str, Any]:
    """Conditions given are replaced, those left out kept; None means "any"."""
    if not isinstance(data, Mapping):
        raise ValidationError("conditions must be an object.")
    unknown = sorted(set(data) - CONDITION_KEYS)
    if unknown:
        raise ValidationError(f"Unknown conditions {unknown!r}.")
    if "tag" in data and "tag_id" in data:
        raise ValidationError("Give the tag condition once, as tag or tag_id.")
    conditions = dict(current)
    if "priority" in data:
        conditions["priority"] = _priority(data["priority"])
    for key in ("tag", "tag_id"):
        if key in data:
            value = data[key]
            conditions["tag_id"] = None if value is None else _tag_id(brand_id, value)
    if "channel_id" in data:
        conditions["channel_id"] = _channel_id(brand_id, data["channel_id"])
    return conditions


def _priority(value: Any) -> str | None:
    """A priority condition by its value; None matches any priority."""
    if value is None:
        return None
    try:
        return Priority(value).value
    except ValueError as exc:
        raise InvalidField("priority", f"Unknown priority {value!r}.") from exc


def _channel_id(brand_id: int, value: Any) -> Any:
    """A channel of the brand, kept as given; None matches any channel."""
    if value is not None:
        channel = db.session.get(Channel, _int(value, "channel_id"))
        if channel is None or channel.brand_id != brand_id:
            raise InvalidField("channel_id", f"The brand has no channel {value!r}.")
    return value


def _policy_values(
    brand_id: int, changes: Mapping[str, Any], policy: SlaPolicy | None
) -> dict[str, Any]:
    """Every column a create or update writes, checked before anything is written."""
    unknown = sorted(set(changes) - POLICY_FIELDS)
    if unknown:
        raise ValidationError(f"Unknown policy fields {unknown!r}.")
    values: dict[str, Any] = {}
    if "name" in changes:
        values["name"] = _name(changes["name"])
    if "position" in changes:
        values["position"] = _int(changes["position"], "position")
    if "business_hours" in changes:
        if not isinstance(changes["business_hours"], bool):
            raise ValidationError("business_hours must be true or false.")
        values["business_hours"] = changes["business_hours"]
    if "warning_pct" in changes:
        values["warning_pct"] = _warning_pct(changes["warning_pct"])
    if "conditions" in changes:
        current = {
            "priority": policy.priority if policy else None,
            "tag_id": policy.tag_id if policy else None,
            "channel_id": policy.channel_id if policy else None,
        }
        values.update(_conditions(brand_id, changes["conditions"], current))
    if "targets" in changes:
        current_targets: dict[str, int | None] = {
            field: getattr(policy, field) if policy else None for field in TARGET_FIELDS.values()
        }
        values.update(_targets(changes["targets"], current_targets))
    return values


def create_policy(
    brand: Brand,
    actor: Actor | Agent | None,
    name: str,
    position: int,
    conditions: Mapping[str, Any],
    targets: Mapping[str, Any],
    business_hours: bool = True,
    warning_pct: int = 80,
    now: datetime | None = None,
) -> SlaPolicy:
    """A new policy applies to the brand's open tickets at once."""
    require_role(actor, brand.id, Role.MANAGER)
    values = _policy_values(
        brand.id,
        {
            "name": name,
            "position": position,
            "conditions": conditions,
            "targets": targets,
            "business_hours": business_hours,
            "warning_pct": warning_pct,
        },
        None,
    )
    policy = SlaPolicy(brand_id=brand.id, **values)
    db.session.add(policy)
    db.session.flush()
    changes = audit.created(audit.snapshot(policy, AUDITED))
    audit.record(actor, brand.id, "sla_policy.created", "sla_policy", policy.id, changes, name)
    recompute_brand(brand.id, now or utcnow())
    return policy


def update_policy(
    policy: SlaPolicy, actor: Actor | Agent | None, now: datetime | None = None, **changes: Any
) -> SlaPolicy:
    """Partial update (PATCH): what is left out stays; open tickets follow the new rules."""
    require_role(actor, policy.brand_id, Role.MANAGER)
    before = audit.snapshot(policy, AUDITED)
    for key, value in _policy_values(policy.brand_id, changes, policy).items():
        setattr(policy, key, value)
    db.session.flush()
    diff = audit.diff(before, audit.snapshot(policy, AUDITED))
    if diff:
        audit.record(
            actor, policy.brand_id, "sla_policy.updated", "sla_policy", policy.id, diff, policy.name
        )
    recompute_brand(policy.brand_id, now or utcnow())
    return policy


def delete_policy(
    policy: SlaPolicy, actor: Actor | Agent | None, now: datetime | None = None
) -> None:
    """Open tickets fall through to the next matching policy, or to none."""
    require_role(actor, policy.brand_id, Role.MANAGER)
    brand_id = policy.brand_id
    changes = audit.removed(audit.snapshot(policy, AUDITED))
    audit.record(
        actor, brand_id, "sla_policy.deleted", "sla_policy", policy.id, changes, policy.name
    )
    db.session.delete(policy)
    db.session.flush()
    recompute_brand(brand_id, now or utcnow())


def last_position(brand_id: int) -> int:
    """The position after every policy of the brand, so that a new one is tried last."""
    positions = db.session.scalars(select(SlaPolicy.position).where(SlaPolicy.brand_id == brand_id))
    return max(positions, default=-1) + 1


def move_policy(
    policy: SlaPolicy, actor: Actor | Agent | None, up: bool, now: datetime | None = None
) -> bool:
    """Swap a policy with its neighbour in matching order (False at either end): the rows are
    locked first on PostgreSQL, so two moves at once cannot interleave their swaps."""
    require_role(actor, policy.brand_id, Role.MANAGER)
    query = (
        select(SlaPolicy)
        .where(SlaPolicy.brand_id == policy.brand_id)
        .order_by(SlaPolicy.position, SlaPolicy.id)
    )
    if db.session.get_bind().dialect.name == "postgresql":
        query = query.with_for_update()
    ordered = list(db.session.scalars(query.execution_options(populate_existing=True)))
    index = ordered.index(policy)
    other = index - 1 if up else index + 1
    if not 0 <= other < len(ordered):
        return False
    neighbour = ordered[other]
    names = [p.name for p in ordered]
    before = policy.position
    if neighbour.position != policy.position:
        policy.position, neighbour.position = neighbour.position, policy.position
    else:  # equal positions fall back on ids: number them all to make the new order stick
        ordered[index], ordered[other] = neighbour, policy
        for position, each in enumerate(ordered):
            each.position = position
    db.session.flush()
    changes = {
        "position": [before, policy.position],
        "order": [names, [p.name for p in sorted(ordered, key=lambda p: (p.position, p.id))]],
    }
    audit.record(
        actor, policy.brand_id, "sla_policy.moved", "sla_policy", policy.id, changes, policy.name
    )
    recompute_brand(policy.brand_id, now or utcnow())
    return True


def get_policy(policy_id: int, brand_id: int) -> SlaPolicy:
    """A policy of the brand; another brand's policy does not exist for the caller."""
    policy = db.session.get(SlaPolicy, policy_id)
    if policy is None or policy.brand_id != brand_id:
        raise NotFound("no such SLA policy")
    return policy


def policy_to_dict(policy: SlaPolicy) -> dict[str, Any]:
    """The API shape of a policy."""
    tag_name = (
        db.session.scalar(select(Tag.name).where(Tag.id == policy.tag_id))
        if policy.tag_id is not None
        else None
    )
    return {
        "id": policy.id,
        "name": policy.name,
        "position": policy.position,
        "conditions": {
            "priority": policy.priority,
            "tag": tag_name,
            "tag_id": policy.tag_id,
            "channel_id": policy.channel_id,
        },
        "targets": {field: getattr(policy, field) for field in TARGET_FIELDS.values()},
        "business_hours": policy.business_hours,
        "warning_pct": policy.warning_pct,
    }

"""SLA clocks (docs/concepts.md): policies, the brand's calendar, due times stored on tickets,
and the sweep that sends each warning and breach reminder exactly once. Functions flush; the
caller commits."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from sqlalchemy import Select, select
from sqlalchemy.exc import IntegrityError

from helpdesk import hooks
from helpdesk.accounts.actor import Actor
from helpdesk.accounts.models import Agent, Membership, Role, TeamMember
from helpdesk.accounts.service import brand_agent_ids, require_role
from helpdesk.brands.models import Brand
from helpdesk.channels.models import Channel
from helpdesk.errors import NotFound, ValidationError
from helpdesk.extensions import db
from helpdesk.live import events as live
from helpdesk.notifications.models import NotificationKind
from helpdesk.notifications.service import notify
from helpdesk.outgoing.service import emit, ticket_data
from helpdesk.sla.calendar import DAYS, BusinessCalendar, deadline_with_pauses
from helpdesk.sla.models import BusinessHours, ReminderKind, SlaPolicy, SlaReminder, SlaTarget
from helpdesk.tickets.events import record_event
from helpdesk.tickets.models import ACTIVE_STATUSES, Priority, Tag, Ticket, TicketPause, TicketTag
from helpdesk.types import utcnow

TARGET_FIELDS: dict[SlaTarget, str] = {
    SlaTarget.FIRST_RESPONSE: "first_response_min",
    SlaTarget.NEXT_RESPONSE: "next_response_min",
    SlaTarget.RESOLUTION: "resolution_min",
}
CONDITION_KEYS = frozenset({"priority", "tag", "tag_id", "channel_id"})
POLICY_FIELDS = frozenset(
    {"name", "position", "conditions", "targets", "business_hours", "warning_pct"}
)
MANAGER_ROLES = (Role.MANAGER, Role.ADMIN)
RECOMPUTE_CHUNK = 500

Pause = tuple[datetime, datetime | None]
Fired = set[tuple[SlaTarget, ReminderKind, str]]


@dataclass
class SweepReport:
    """What one sweep did, for the worker's log and the benchmark."""

    checked: int = 0
    warnings: int = 0
    breaches: int = 0


# Calendars ---------------------------------------------------------------------------------------


def _around_the_clock(timezone: str) -> BusinessCalendar:
    return BusinessCalendar(timezone=timezone, weekly={day: [("00:00", "24:00")] for day in DAYS})


def get_calendar(brand: Brand) -> BusinessCalendar:
    """The brand's business hours; a brand that set none is open 24/7 in its own time zone."""
    stored = db.session.scalar(
        select(BusinessHours.calendar).where(BusinessHours.brand_id == brand.id)
    )
    if stored is None:
        return _around_the_clock(brand.timezone)
    return BusinessCalendar.from_dict(stored)


def set_calendar(
    brand: Brand, actor: Actor | Agent | None, data: Mapping[str, Any], now: datetime | None = None
) -> BusinessHours:
    """Validate before writing, so a refused calendar changes nothing, then move every clock."""
    require_role(actor, brand.id, Role.MANAGER)
    calendar = BusinessCalendar.from_dict(data)
    if not calendar.has_open_days():
        raise ValidationError("The calendar needs open hours on at least one day.")
    row = db.session.scalar(select(BusinessHours).where(BusinessHours.brand_id == brand.id))
    if row is None:
        row = BusinessHours(brand_id=brand.id, calendar=calendar.to_dict())
        db.session.add(row)
    else:
        row.calendar = calendar.to_dict()
    db.session.flush()
    recompute_brand(brand.id, now or utcnow())
    return row


# Policies ----------------------------------------------------------------------------------------


def policies_query(brand_id: int) -> Select:
    """The brand's policies, for a listing to order and page."""
    return select(SlaPolicy).where(SlaPolicy.brand_id == brand_id)


def list_policies(brand_id: int) -> list[SlaPolicy]:
    """In matching order, because the first match wins."""
    return list(
        db.session.scalars(policies_query(brand_id).order_by(SlaPolicy.position, SlaPolicy.id))
    )


def _int(value: Any, what: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise ValidationError(f"{what} must be a whole number, not {value!r}.")
    return value


def _name(value: Any) -> str:
    if not isinstance(value, str) or not value.strip():
        raise ValidationError("A policy needs a name.")
    if len(value.strip()) > 120:
        raise ValidationError("A policy name has at most 120 characters.")
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
        if value is not None and _int(value, key) <= 0:
            raise ValidationError(f"{key} must be a positive number of minutes.")
        targets[key] = value
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
        raise ValidationError(f"The brand has no tag {value!r}.")
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
        priority = data["priority"]
        if priority is not None:
            try:
                priority = Priority(priority).value
            except ValueError as exc:
                raise ValidationError(f"Unknown priority {priority!r}.") from exc
        conditions["priority"] = priority
    for key in ("tag", "tag_id"):
        if key in data:
            value = data[key]
            conditions["tag_id"] = None if value is None else _tag_id(brand_id, value)
    if "channel_id" in data:
        channel_id = data["channel_id"]
        if channel_id is not None:
            channel = db.session.get(Channel, _int(channel_id, "channel_id"))
            if channel is None or channel.brand_id != brand_id:
                raise ValidationError(f"The brand has no channel {channel_id!r}.")
        conditions["channel_id"] = channel_id
    return conditions


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
        current = {
            field: getattr(policy, field) if policy else None for field in TARGET_FIELDS.values()
        }
        values.update(_targets(changes["targets"], current))
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
    recompute_brand(brand.id, now or utcnow())
    return policy


def update_policy(
    policy: SlaPolicy, actor: Actor | Agent | None, now: datetime | None = None, **changes: Any
) -> SlaPolicy:
    """Partial update (PATCH): what is left out stays; open tickets follow the new rules."""
    require_role(actor, policy.brand_id, Role.MANAGER)
    for key, value in _policy_values(policy.brand_id, changes, policy).items():
        setattr(policy, key, value)
    db.session.flush()
    recompute_brand(policy.brand_id, now or utcnow())
    return policy


def delete_policy(
    policy: SlaPolicy, actor: Actor | Agent | None, now: datetime | None = None
) -> None:
    """Open tickets fall through to the next matching policy, or to none."""
    require_role(actor, policy.brand_id, Role.MANAGER)
    brand_id = policy.brand_id
    db.session.delete(policy)
    db.session.flush()
    recompute_brand(brand_id, now or utcnow())


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


# Due times ---------------------------------------------------------------------------------------


@dataclass
class _BrandRules:
    """A brand's policies and calendar, loaded once for however many tickets are refreshed."""

    policies: list[SlaPolicy]
    calendar: BusinessCalendar

    @classmethod
    def load(cls, brand_id: int) -> _BrandRules:
        return cls(list_policies(brand_id), get_calendar(db.session.get(Brand, brand_id)))

    @property
    def uses_tags(self) -> bool:
        return any(policy.tag_id is not None for policy in self.policies)

    def policy_for(self, ticket: Ticket, tag_ids: set[int]) -> SlaPolicy | None:
        for policy in self.policies:
            if policy.priority is not None and policy.priority != Priority(ticket.priority):
                continue
            if policy.tag_id is not None and policy.tag_id not in tag_ids:
                continue
            if policy.channel_id is not None and policy.channel_id != ticket.channel_id:
                continue
            return policy
        return None


def _utc(value: datetime) -> datetime:
    return value.astimezone(UTC)


def _cycle(ticket: Ticket, target: SlaTarget) -> str | None:
    """Which run of a clock a reminder belongs to: each run reminds once."""
    if target is SlaTarget.FIRST_RESPONSE:
        return "first"
    if target is SlaTarget.NEXT_RESPONSE:
        if ticket.awaiting_since is None:
            return None
        return _utc(ticket.awaiting_since).isoformat()
    return f"r{ticket.reopen_count}"


def _times(ticket: Ticket, target: SlaTarget) -> tuple[datetime | None, datetime | None]:
    return getattr(ticket, f"{target.value}_warn_at"), getattr(ticket, f"{target.value}_due_at")


def _set_times(
    ticket: Ticket, target: SlaTarget, warn_at: datetime | None, due_at: datetime | None
) -> None:
    setattr(ticket, f"{target.value}_warn_at", warn_at)
    setattr(ticket, f"{target.value}_due_at", due_at)


def _clock_start(ticket: Ticket, target: SlaTarget) -> datetime | None:
    """When a target's clock runs from, or None when it does not run."""
    if ticket.status not in ACTIVE_STATUSES:
        return None
    if target is SlaTarget.FIRST_RESPONSE:
        return ticket.opened_at if ticket.first_response_at is None else None
    if target is SlaTarget.NEXT_RESPONSE:
        return ticket.awaiting_since if ticket.first_response_at is not None else None
    return ticket.opened_at


def _next_check(ticket: Ticket, fired: Fired) -> datetime | None:
    """The earliest reminder still to send; a breach already sent makes its warning moot."""
    pending: list[datetime] = []
    for target in SlaTarget:
        warn_at, due_at = _times(ticket, target)
        cycle = _cycle(ticket, target)
        if due_at is None or cycle is None or (target, ReminderKind.BREACH, cycle) in fired:
            continue
        if warn_at is not None and (target, ReminderKind.WARNING, cycle) not in fired:
            pending.append(warn_at)
        else:
            pending.append(due_at)
    return min(pending, default=None)


def _apply(
    ticket: Ticket, rules: _BrandRules, tag_ids: set[int], pauses: list[Pause], fired: Fired
) -> None:
    policy = rules.policy_for(ticket, tag_ids)
    ticket.sla_policy_id = policy.id if policy else None
    paused = any(ended is None for _started, ended in pauses)
    for target, field in TARGET_FIELDS.items():
        minutes = getattr(policy, field) if policy else None
        start = _clock_start(ticket, target)
        if minutes is None or start is None or paused:
            _set_times(ticket, target, None, None)
            continue
        seconds = minutes * 60
        due_at = deadline_with_pauses(rules.calendar, start, seconds, pauses, policy.business_hours)
        warn_at = deadline_with_pauses(
            rules.calendar, start, seconds * policy.warning_pct / 100, pauses, policy.business_hours
        )
        _set_times(ticket, target, warn_at, due_at)
    ticket.next_sla_check_at = _next_check(ticket, fired)


def _tag_ids(ticket_ids: list[int]) -> dict[int, set[int]]:
    found: dict[int, set[int]] = {ticket_id: set() for ticket_id in ticket_ids}
    rows = db.session.execute(
        select(TicketTag.ticket_id, TicketTag.tag_id).where(TicketTag.ticket_id.in_(ticket_ids))
    )
    for ticket_id, tag_id in rows:
        found[ticket_id].add(tag_id)
    return found


def _pauses(ticket_ids: list[int]) -> dict[int, list[Pause]]:
    found: dict[int, list[Pause]] = {ticket_id: [] for ticket_id in ticket_ids}
    rows = db.session.execute(
        select(TicketPause.ticket_id, TicketPause.started_at, TicketPause.ended_at).where(
            TicketPause.ticket_id.in_(ticket_ids)
        )
    )
    for ticket_id, started_at, ended_at in rows:
        found[ticket_id].append((started_at, ended_at))
    return found


def _fired(ticket_ids: list[int]) -> dict[int, Fired]:
    found: dict[int, Fired] = {ticket_id: set() for ticket_id in ticket_ids}
    rows = db.session.execute(
        select(
            SlaReminder.ticket_id, SlaReminder.target, SlaReminder.kind, SlaReminder.cycle
        ).where(SlaReminder.ticket_id.in_(ticket_ids))
    )
    for ticket_id, target, kind, cycle in rows:
        found[ticket_id].add((target, kind, cycle))
    return found


def _refresh_many(
    tickets: list[Ticket], rules: _BrandRules, fired: dict[int, Fired] | None = None
) -> None:
    ids = [ticket.id for ticket in tickets]
    tags = _tag_ids(ids) if rules.uses_tags else {}
    pauses = _pauses(ids)
    fired = _fired(ids) if fired is None else fired
    for ticket in tickets:
        _apply(ticket, rules, tags.get(ticket.id, set()), pauses[ticket.id], fired[ticket.id])


def refresh_ticket_sla(ticket: Ticket, now: datetime) -> None:
    """Called after every change that moves a clock: the due times are stored on the ticket so
    that lists sort by them and the sweep reads only what is due.

    ``now`` is the moment of the change; the due times depend only on the ticket's own times.
    """
    db.session.flush()
    _refresh_many([ticket], _BrandRules.load(ticket.brand_id))


def recompute_brand(brand_id: int, now: datetime) -> int:
    """After a policy or calendar change every active ticket of the brand gets new due times;
    returns how many were recomputed."""
    db.session.flush()
    rules = _BrandRules.load(brand_id)
    count, after_id = 0, 0
    while True:
        tickets = list(
            db.session.scalars(
                select(Ticket)
                .where(
                    Ticket.brand_id == brand_id,
                    Ticket.status.in_(ACTIVE_STATUSES),
                    Ticket.id > after_id,
                )
                .order_by(Ticket.id)
                .limit(RECOMPUTE_CHUNK)
            )
        )
        if not tickets:
            break
        _refresh_many(tickets, rules)
        db.session.flush()
        count += len(tickets)
        after_id = tickets[-1].id
    return count


# The sweep ---------------------------------------------------------------------------------------


def _due_tickets(now: datetime, limit: int) -> list[Ticket]:
    """Only the rows due by now, through ix_tickets_sla_check; on PostgreSQL rows another sweep
    holds are skipped, so overlapping sweeps split the work instead of queueing."""
    query = (
        select(Ticket)
        .where(Ticket.next_sla_check_at <= now, Ticket.status.in_(ACTIVE_STATUSES))
        .order_by(Ticket.next_sla_check_at)
        .limit(limit)
        .execution_options(populate_existing=True)
    )
    if db.session.get_bind().dialect.name == "postgresql":
        query = query.with_for_update(skip_locked=True)
    return list(db.session.scalars(query))


def _managers(ticket: Ticket) -> list[int]:
    """The team's managers (and admins), or the brand's when the ticket has no team."""
    if ticket.team_id is None:
        return sorted(brand_agent_ids(ticket.brand_id, MANAGER_ROLES))
    return list(
        db.session.scalars(
            select(TeamMember.agent_id)
            .join(
                Membership,
                (Membership.agent_id == TeamMember.agent_id)
                & (Membership.brand_id == ticket.brand_id),
            )
            .where(TeamMember.team_id == ticket.team_id, Membership.role.in_(MANAGER_ROLES))
            .order_by(TeamMember.agent_id)
        )
    )


def _recipients(ticket: Ticket, kind: ReminderKind) -> list[int]:
    agents = [ticket.assignee_id] if ticket.assignee_id is not None else []
    if kind is ReminderKind.BREACH:
        agents += _managers(ticket)
    return list(dict.fromkeys(agents))


def _when(due_at: datetime, brand: Brand, now: datetime) -> str:
    """The due time as the brand's people read it: the time alone when it is today."""
    try:
        zone = ZoneInfo(brand.timezone)
    except (ZoneInfoNotFoundError, ValueError):
        zone = ZoneInfo("UTC")
    local = due_at.astimezone(zone)
    if local.date() == now.astimezone(zone).date():
        return local.strftime("%H:%M")
    return local.strftime("%H:%M on %a %d %b")


def _fire(
    ticket: Ticket,
    brand: Brand,
    target: SlaTarget,
    kind: ReminderKind,
    cycle: str,
    due_at: datetime,
    now: datetime,
) -> bool:
    """Record the reminder first, in a savepoint: if another sweep already did, this one stops
    here without notifying anyone; otherwise the notifications commit with the reminder."""
    try:
        with db.session.begin_nested():
            db.session.add(
                SlaReminder(
                    brand_id=ticket.brand_id,
                    ticket_id=ticket.id,
                    target=target,
                    kind=kind,
                    cycle=cycle,
                    due_at=due_at,
                    fired_at=now,
                )
            )
    except IntegrityError:
        return False
    label = target.value.replace("_", " ")
    if kind is ReminderKind.BREACH:
        body = f"SLA breached: {label} was due {_when(due_at, brand, now)} on ticket #{ticket.id}"
        notification_kind = NotificationKind.SLA_BREACH
    else:
        body = f"SLA warning: {label} due {_when(due_at, brand, now)} on ticket #{ticket.id}"
        notification_kind = NotificationKind.SLA_WARNING
    for agent_id in _recipients(ticket, kind):
        notify(
            agent_id,
            ticket.brand_id,
            notification_kind,
            body,
            ticket_id=ticket.id,
            conversation_id=ticket.conversation_id,
            at=now,
        )
    data = {"target": target.value, "due_at": due_at.isoformat(), "cycle": cycle}
    if kind is ReminderKind.BREACH:
        if target.value not in ticket.breached:
            ticket.breached = [*ticket.breached, target.value]
        record_event(ticket, "sla_breached", data=data, at=now)
        emit(ticket.brand_id, "sla.breached", ticket_data(ticket, **data))
    else:
        record_event(ticket, "sla_warning", data=data, at=now)
    live.ticket_updated(ticket)  # open inboxes redraw its SLA badge
    return True


def _sweep_ticket(
    ticket: Ticket, brand: Brand, fired: Fired, now: datetime, report: SweepReport
) -> None:
    """A late sweep sends only the breach: a warning after the fact would be noise."""
    for target in SlaTarget:
        warn_at, due_at = _times(ticket, target)
        cycle = _cycle(ticket, target)
        if due_at is None or cycle is None or (target, ReminderKind.BREACH, cycle) in fired:
            continue
        if due_at <= now:
            kind = ReminderKind.BREACH
        elif warn_at is not None and warn_at <= now:
            kind = ReminderKind.WARNING
        else:
            continue
        if (target, kind, cycle) in fired:
            continue
        if _fire(ticket, brand, target, kind, cycle, due_at, now):
            if kind is ReminderKind.BREACH:
                report.breaches += 1
            else:
                report.warnings += 1
        fired.add((target, kind, cycle))


def sweep_sla(now: datetime | None = None, limit: int = 1000) -> SweepReport:
    """Send the reminders due by ``now`` for at most ``limit`` tickets, reading only due rows;
    the caller commits, and a sweep that dies before that is simply redone by the next one.

    Due times are recomputed first, so a ticket whose change was stored without its clocks
    (a pause, a reply) is judged on what is true now."""
    now = now or utcnow()
    report = SweepReport()
    tickets = _due_tickets(now, limit)
    if not tickets:
        return report
    fired = _fired([ticket.id for ticket in tickets])
    by_brand: dict[int, list[Ticket]] = {}
    for ticket in tickets:
        by_brand.setdefault(ticket.brand_id, []).append(ticket)
    for brand_id, brand_tickets in by_brand.items():
        _refresh_many(brand_tickets, _BrandRules.load(brand_id), fired)
        brand = db.session.get(Brand, brand_id)
        for ticket in brand_tickets:
            _sweep_ticket(ticket, brand, fired[ticket.id], now, report)
            ticket.next_sla_check_at = _next_check(ticket, fired[ticket.id])
            report.checked += 1
    db.session.flush()
    return report

def subscribe() -> None:
    """Called by the app factory: a ticket change refreshes its clocks (see helpdesk.hooks)."""
    hooks.on(hooks.TICKET_CHANGED, refresh_ticket_sla)

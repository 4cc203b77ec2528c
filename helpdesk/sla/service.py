"""SLA clocks (docs/concepts.md): the sweep that sends each warning and breach reminder exactly
once. Policies and business hours (policies.py) and the due times stored on tickets (clocks.py)
are re-exported here for the callers of sla.create_policy, sla.get_calendar and the rest.
Functions flush; the caller commits."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError

from helpdesk import hooks
from helpdesk.accounts.models import Membership, Role, TeamMember
from helpdesk.accounts.service import brand_agent_ids
from helpdesk.brands.models import Brand
from helpdesk.extensions import db
from helpdesk.live import events as live
from helpdesk.notifications.models import NotificationKind
from helpdesk.notifications.service import notify
from helpdesk.outgoing.service import emit, ticket_data
from helpdesk.sla.clocks import (
    TARGET_FIELDS,
    BrandRules,
    Fired,
    clock_cycle,
    clock_times,
    fired_reminders,
    get_calendar,
    list_policies,
    next_check,
    policies_query,
    recompute_brand,
    refresh_many,
    refresh_ticket_sla,
    refresh_tickets_sla,
)
from helpdesk.sla.models import ReminderKind, SlaReminder, SlaTarget
from helpdesk.sla.policies import (
    create_policy,
    delete_policy,
    get_policy,
    policy_to_dict,
    set_calendar,
    update_policy,
)
from helpdesk.tickets.events import record_event
from helpdesk.tickets.models import ACTIVE_STATUSES, Ticket
from helpdesk.types import utcnow

__all__ = [
    "TARGET_FIELDS",
    "SweepReport",
    "create_policy",
    "delete_policy",
    "get_calendar",
    "get_policy",
    "list_policies",
    "policies_query",
    "policy_to_dict",
    "recompute_brand",
    "refresh_ticket_sla",
    "refresh_tickets_sla",
    "set_calendar",
    "subscribe",
    "sweep_sla",
    "update_policy",
]

MANAGER_ROLES = (Role.MANAGER, Role.ADMIN)


@dataclass
class SweepReport:
    """What one sweep did, for the worker's log and the benchmark."""

    checked: int = 0
    warnings: int = 0
    breaches: int = 0


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
        warn_at, due_at = clock_times(ticket, target)
        cycle = clock_cycle(ticket, target)
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
    fired = fired_reminders([ticket.id for ticket in tickets])
    by_brand: dict[int, list[Ticket]] = {}
    for ticket in tickets:
        by_brand.setdefault(ticket.brand_id, []).append(ticket)
    for brand_id, brand_tickets in by_brand.items():
        refresh_many(brand_tickets, BrandRules.load(brand_id), fired)
        brand = db.session.get(Brand, brand_id)
        for ticket in brand_tickets:
            _sweep_ticket(ticket, brand, fired[ticket.id], now, report)
            ticket.next_sla_check_at = next_check(ticket, fired[ticket.id])
            report.checked += 1
    db.session.flush()
    return report


def subscribe() -> None:
    """Called by the app factory: a ticket change refreshes its clocks (see helpdesk.hooks)."""
    hooks.on(hooks.TICKET_CHANGED, refresh_ticket_sla)
    hooks.on(hooks.TICKETS_CHANGED, refresh_tickets_sla)

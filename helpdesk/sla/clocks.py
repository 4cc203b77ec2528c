"""SLA due times (docs/concepts.md): which policy a ticket falls under, when each of its clocks
warns and breaches, stored on the ticket so that lists sort by them and the sweep reads only what
is due. Functions flush; the caller commits."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime

from sqlalchemy import Select, select

from helpdesk.brands.models import Brand
from helpdesk.extensions import db
from helpdesk.memo import cached
from helpdesk.sla.calendar import DAYS, BusinessCalendar, deadline_with_pauses
from helpdesk.sla.models import BusinessHours, ReminderKind, SlaPolicy, SlaReminder, SlaTarget
from helpdesk.tickets.models import ACTIVE_STATUSES, Priority, Ticket, TicketPause, TicketTag

TARGET_FIELDS: dict[SlaTarget, str] = {
    SlaTarget.FIRST_RESPONSE: "first_response_min",
    SlaTarget.NEXT_RESPONSE: "next_response_min",
    SlaTarget.RESOLUTION: "resolution_min",
}
RECOMPUTE_CHUNK = 500

Pause = tuple[datetime, datetime | None]
Fired = set[tuple[SlaTarget, ReminderKind, str]]


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


def policies_query(brand_id: int) -> Select:
    """The brand's policies, for a listing to order and page."""
    return select(SlaPolicy).where(SlaPolicy.brand_id == brand_id)


def list_policies(brand_id: int) -> list[SlaPolicy]:
    """In matching order, because the first match wins."""
    return list(
        db.session.scalars(policies_query(brand_id).order_by(SlaPolicy.position, SlaPolicy.id))
    )


@dataclass
class BrandRules:
    """A brand's policies and calendar, loaded once for however many tickets are refreshed."""

    policies: list[SlaPolicy]
    calendar: BusinessCalendar

    @classmethod
    def load(cls, brand_id: int) -> BrandRules:
        """Read once per intake batch (helpdesk.memo), else at every call."""
        return cached(("sla_rules", brand_id), lambda: cls._read(brand_id))

    @classmethod
    def _read(cls, brand_id: int) -> BrandRules:
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


def clock_cycle(ticket: Ticket, target: SlaTarget) -> str | None:
    """Which run of a clock a reminder belongs to: each run reminds once."""
    if target is SlaTarget.FIRST_RESPONSE:
        return "first"
    if target is SlaTarget.NEXT_RESPONSE:
        if ticket.awaiting_since is None:
            return None
        return _utc(ticket.awaiting_since).isoformat()
    return f"r{ticket.reopen_count}"


def clock_times(ticket: Ticket, target: SlaTarget) -> tuple[datetime | None, datetime | None]:
    """A target's warning and due times as stored on the ticket."""
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


def next_check(ticket: Ticket, fired: Fired) -> datetime | None:
    """The earliest reminder still to send; a breach already sent makes its warning moot."""
    pending: list[datetime] = []
    for target in SlaTarget:
        warn_at, due_at = clock_times(ticket, target)
        cycle = clock_cycle(ticket, target)
        if due_at is None or cycle is None or (target, ReminderKind.BREACH, cycle) in fired:
            continue
        if warn_at is not None and (target, ReminderKind.WARNING, cycle) not in fired:
            pending.append(warn_at)
        else:
            pending.append(due_at)
    return min(pending, default=None)


def _apply(
    ticket: Ticket, rules: BrandRules, tag_ids: set[int], pauses: list[Pause], fired: Fired
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
    ticket.next_sla_check_at = next_check(ticket, fired)


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


def fired_reminders(ticket_ids: list[int]) -> dict[int, Fired]:
    """The reminders already sent per ticket, so none is sent twice."""
    found: dict[int, Fired] = {ticket_id: set() for ticket_id in ticket_ids}
    rows = db.session.execute(
        select(
            SlaReminder.ticket_id, SlaReminder.target, SlaReminder.kind, SlaReminder.cycle
        ).where(SlaReminder.ticket_id.in_(ticket_ids))
    )
    for ticket_id, target, kind, cycle in rows:
        found[ticket_id].add((target, kind, cycle))
    return found


def refresh_many(
    tickets: list[Ticket], rules: BrandRules, fired: dict[int, Fired] | None = None
) -> None:
    """New due times for tickets of one brand, reading their tags, pauses and reminders at once."""
    ids = [ticket.id for ticket in tickets]
    tags = _tag_ids(ids) if rules.uses_tags else {}
    pauses = _pauses(ids)
    fired = fired_reminders(ids) if fired is None else fired
    for ticket in tickets:
        _apply(ticket, rules, tags.get(ticket.id, set()), pauses[ticket.id], fired[ticket.id])


def refresh_ticket_sla(ticket: Ticket, now: datetime) -> None:
    """Called after every change that moves a clock: the due times are stored on the ticket so
    that lists sort by them and the sweep reads only what is due.

    ``now`` is the moment of the change; the due times depend only on the ticket's own times.
    """
    db.session.flush()
    refresh_many([ticket], BrandRules.load(ticket.brand_id))


def refresh_tickets_sla(tickets: list[Ticket], now: datetime) -> None:
    """`refresh_ticket_sla` for many tickets, each brand's read at once."""
    db.session.flush()
    by_brand: dict[int, list[Ticket]] = {}
    for ticket in tickets:
        by_brand.setdefault(ticket.brand_id, []).append(ticket)
    for brand_id, brand_tickets in by_brand.items():
        refresh_many(brand_tickets, BrandRules.load(brand_id))


def recompute_brand(brand_id: int, now: datetime) -> int:
    """After a policy or calendar change every active ticket of the brand gets new due times;
    returns how many were recomputed."""
    db.session.flush()
    rules = BrandRules.load(brand_id)
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
        refresh_many(tickets, rules)
        db.session.flush()
        count += len(tickets)
        after_id = tickets[-1].id
    return count

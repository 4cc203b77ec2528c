"""When would a message arriving now be due? Worked out with the policy matching and the
deadline code that set the tickets' due times (clocks.py), so the settings pages show what the
tickets will really get, not an estimate of it."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

from helpdesk.sla.calendar import BusinessCalendar, deadline_with_pauses, is_open, next_open
from helpdesk.sla.clocks import TARGET_FIELDS, BrandRules
from helpdesk.sla.models import SlaPolicy, SlaTarget
from helpdesk.tickets.models import Priority, Ticket
from helpdesk.types import utcnow

TARGET_LABELS = {
    SlaTarget.FIRST_RESPONSE: "first response",
    SlaTarget.NEXT_RESPONSE: "next response",
    SlaTarget.RESOLUTION: "resolution",
}


@dataclass(frozen=True)
class Due:
    """One target of one policy for a message arriving at ``arriving_at``."""

    target: SlaTarget
    minutes: int
    business: bool
    arriving_at: datetime
    due_at: datetime
    # When the clock starts running: later than the arrival when the brand is closed.
    starts_at: datetime

    @property
    def label(self) -> str:
        return TARGET_LABELS[self.target]

    @property
    def waits(self) -> bool:
        return self.starts_at > self.arriving_at


def due(
    calendar: BusinessCalendar, policy: SlaPolicy, target: SlaTarget, at: datetime
) -> Due | None:
    """A target's due time for a message at ``at``, or None when the policy does not set it."""
    minutes = getattr(policy, TARGET_FIELDS[target])
    if minutes is None:
        return None
    due_at = deadline_with_pauses(calendar, at, minutes * 60, [], policy.business_hours)
    assert due_at is not None  # no pauses, so never "paused"
    starts_at = next_open(calendar, at) if policy.business_hours else at
    return Due(target, minutes, policy.business_hours, at, due_at, starts_at)


def targets(calendar: BusinessCalendar, policy: SlaPolicy, at: datetime) -> list[Due]:
    """Every target the policy sets, in the order a ticket meets them."""
    found = (due(calendar, policy, target, at) for target in SlaTarget)
    return [each for each in found if each is not None]


def first_target(calendar: BusinessCalendar, policy: SlaPolicy, at: datetime) -> Due | None:
    """The first response when the policy sets it, else its first target."""
    return next(iter(targets(calendar, policy, at)), None)


def policy_for_new_message(rules: BrandRules) -> SlaPolicy | None:
    """The policy a new normal-priority ticket without tags gets (a policy for one channel only
    is left out: an example message has no channel)."""
    example = Ticket(priority=Priority.NORMAL, channel_id=None)
    return rules.policy_for(example, set())


@dataclass(frozen=True)
class Preview:
    """What the business-hours page says about a message arriving now and one at closing."""

    policy: SlaPolicy | None
    now: Due | None
    at_closing: Due | None
    zone: ZoneInfo


def preview(brand_id: int, now: datetime | None = None) -> Preview:
    """The brand's first matching policy applied to a message now, and to one arriving at the
    next closing time, which shows how the clock waits for the next business day."""
    now = now or utcnow()
    rules = BrandRules.load(brand_id)
    calendar = rules.calendar
    policy = policy_for_new_message(rules)
    if policy is None or not calendar.has_open_days():
        return Preview(policy, None, None, calendar.zone)
    arriving = first_target(calendar, policy, now)
    at_closing = None
    if policy.business_hours:
        closing = closing_after(calendar, now)
        if closing is not None:
            at_closing = first_target(calendar, policy, closing)
    return Preview(policy, arriving, at_closing, calendar.zone)


def closing_after(calendar: BusinessCalendar, at: datetime) -> datetime | None:
    """The end of the open period now running (or the next one), when the brand then closes;
    None for a brand that never closes."""
    for _opens, closes in calendar.periods_from(at):
        if not is_open(calendar, closes):
            return closes
        if closes - at > timedelta(days=14):
            return None
    return None


def local_time(at: datetime, zone: ZoneInfo, now: datetime | None = None) -> str:
    """A time as the brand's people read it: "10:30 today (Monday)", "09:30 tomorrow
    (Tuesday)" or "09:30 on Thursday 10 December"."""
    local = at.astimezone(zone)
    today = (now or utcnow()).astimezone(zone).date()
    clock = local.strftime("%H:%M")
    weekday = local.strftime("%A")
    if local.date() == today:
        return f"{clock} today ({weekday})"
    if local.date() == today + timedelta(days=1):
        return f"{clock} tomorrow ({weekday})"
    return f"{clock} on {weekday} {local.day} {local:%B}" + (
        f" {local.year}" if local.year != today.year else ""
    )

"""Running automation rules: which rules a moment concerns, whether they match, and their actions.

The services announce what happened through helpdesk.hooks (a customer message, a ticket opened,
changed by a person or resolved); `subscribe()`, called by the app factory, makes the engine hear
them, so the console, the API, the intake and the sweeps reach the same code. The rules of the
ticket's brand for that event run in `position` order, each in its own savepoint: a rule or an
action that fails is recorded (why, in the run and the ticket's history) and never fails the
operation that triggered it.

Nothing an automation does triggers automations again: while a rule's actions run, a context
variable is set and every hook the actions cause is ignored here.

The vocabulary for the rule editor: EVENTS, FIELDS, OPS (FIELD_OPS per field), ACTIONS.
"""

from __future__ import annotations

import contextvars
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, Protocol

from sqlalchemy import select

from helpdesk.automations.conditions import CHOICES, FIELD_OPS, FIELDS, OPS, Facts, all_hold
from helpdesk.automations.idle import IDLE_STATUSES, idle_since, idle_tickets
from helpdesk.automations.models import AutomationRule
from helpdesk.dm.models import Message
from helpdesk.extensions import db
from helpdesk.tickets.models import ACTIVE_STATUSES, Ticket
from helpdesk.types import utcnow

__all__ = [
    "ACTIONS",
    "CHOICES",
    "EVENTS",
    "FIELDS",
    "FIELD_OPS",
    "IDLE_STATUSES",
    "OPS",
    "dry_run",
    "matches",
]

EVENTS: tuple[str, ...] = (
    "message_received",
    "ticket_created",
    "ticket_updated",
    "ticket_resolved",
    "ticket_idle",
)

# action -> the kind of value it takes: "team"/"agent" an id, "tag" a tag id (or name),
# "priority"/"status" a name, "minutes" a positive int, "canned_reply" a canned reply id,
# "text" the note's body, "recipient" "agent:ID" or "team:ID".
ACTIONS: dict[str, str] = {
    "assign_team": "team",
    "assign_agent": "agent",
    "add_tag": "tag",
    "remove_tag": "tag",
    "set_priority": "priority",
    "set_status": "status",
    "snooze_minutes": "minutes",
    "send_canned_reply": "canned_reply",
    "add_note": "text",
    "notify": "recipient",
}
# The statuses set_status may set (snoozing needs a time: snooze_minutes).
ACTION_STATUSES: tuple[str, ...] = ("open", "pending", "resolved", "closed")


class RuleLike(Protocol):
    id: int
    brand_id: int
    name: str
    event: str
    idle_minutes: int | None
    idle_status: str | None
    conditions: list[dict]
    actions: list[dict]
    once_per_ticket: bool


@dataclass(frozen=True)
class RuleSpec:
    """A rule copied out of its row, so the per-process cache never holds an ORM object."""

    id: int
    brand_id: int
    name: str
    event: str
    idle_minutes: int | None
    idle_status: str | None
    conditions: list[dict] = field(default_factory=list)
    actions: list[dict] = field(default_factory=list)
    once_per_ticket: bool = False

    @classmethod
    def of(cls, rule: AutomationRule) -> RuleSpec:
        return cls(
            id=rule.id,
            brand_id=rule.brand_id,
            name=rule.name,
            event=rule.event,
            idle_minutes=rule.idle_minutes,
            idle_status=rule.idle_status,
            conditions=[dict(c) for c in rule.conditions or []],
            actions=[dict(a) for a in rule.actions or []],
            once_per_ticket=bool(rule.once_per_ticket),
        )


# Matching ---------------------------------------------------------------------------------------


def _idle_holds(rule: RuleLike, ticket: Ticket, now: datetime) -> bool:
    since = idle_since(ticket, rule.idle_status or "")
    return since is not None and since <= now - timedelta(minutes=rule.idle_minutes or 0)


def matches(
    rule: RuleLike,
    ticket: Ticket,
    message: Message | None = None,
    now: datetime | None = None,
    facts: Facts | None = None,
) -> bool:
    """Whether the rule's conditions hold for the ticket now (for a time rule, also its idle
    condition); `message` is the customer message of a message_received event (its text)."""
    if ticket.brand_id != rule.brand_id:
        return False
    now = now or utcnow()
    facts = facts or Facts(ticket, message, now)
    if rule.event == "ticket_idle" and not _idle_holds(rule, ticket, now):
        return False
    return all_hold(rule.conditions, facts)


DRY_RUN_SCAN = 1000


def dry_run(rule: RuleLike, limit: int = 50, now: datetime | None = None) -> list[Ticket]:
    """The brand's active tickets the rule would match now (newest first; a time rule: those
    idle long enough, longest idle first). Changes nothing."""
    now = now or utcnow()
    if rule.event == "ticket_idle":
        found = idle_tickets(
            rule.brand_id, rule.idle_status or "", rule.idle_minutes or 0, now, DRY_RUN_SCAN
        )
        tickets = [ticket for ticket, _since in found]
    else:
        tickets = list(
            db.session.scalars(
                select(Ticket)
                .where(Ticket.brand_id == rule.brand_id, Ticket.status.in_(ACTIVE_STATUSES))
                .order_by(Ticket.id.desc())
                .limit(DRY_RUN_SCAN)
            )
        )
    matched = []
    for ticket in tickets:
        if all_hold(rule.conditions, Facts(ticket, None, now)):
            matched.append(ticket)
            if len(matched) >= limit:
                break
    return matched


# The loop guard ---------------------------------------------------------------------------------

_acting: contextvars.ContextVar[bool] = contextvars.ContextVar("automation_acting", default=False)


def acting() -> bool:
    """True while an automation's actions run: what they cause triggers no automation."""
    return _acting.get()


@contextmanager
def automation_acting() -> Iterator[None]:
    token = _acting.set(True)
    try:
        yield
    finally:
        _acting.reset(token)


def describe(rule: RuleLike) -> dict[str, Any]:
    return {"rule_id": rule.id, "rule_name": rule.name}

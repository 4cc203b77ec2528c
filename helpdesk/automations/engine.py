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
import logging
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, Protocol

from flask import current_app
from sqlalchemy import event as sqla_event
from sqlalchemy import func, select
from sqlalchemy.exc import IntegrityError, SQLAlchemyError

from helpdesk import hooks
from helpdesk.accounts.actor import Actor, ActorKind
from helpdesk.accounts.models import Agent
from helpdesk.automations.actions import HANDLERS, ActionFailed, Context, automation_actor
from helpdesk.automations.conditions import CHOICES, FIELD_OPS, FIELDS, OPS, Facts, all_hold
from helpdesk.automations.idle import IDLE_STATUSES, idle_since, idle_tickets
from helpdesk.automations.models import AutomationRule, AutomationRun
from helpdesk.dm.models import Message
from helpdesk.errors import DomainError
from helpdesk.extensions import db
from helpdesk.tickets.events import record_event
from helpdesk.tickets.models import ACTIVE_STATUSES, Ticket
from helpdesk.types import utcnow

log = logging.getLogger(__name__)

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
    """An AutomationRule row or its cached copy (RuleSpec): what matching and running read."""

    @property
    def id(self) -> int: ...
    @property
    def brand_id(self) -> int: ...
    @property
    def name(self) -> str: ...
    @property
    def event(self) -> str: ...
    @property
    def idle_minutes(self) -> int | None: ...
    @property
    def idle_status(self) -> str | None: ...
    @property
    def conditions(self) -> list[dict]: ...
    @property
    def actions(self) -> list[dict]: ...
    @property
    def once_per_ticket(self) -> bool: ...


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


# The brand's rules, cached per process -----------------------------------------------------------

DEFAULT_TTL_SECONDS = 2.0


@dataclass
class _BrandRules:
    checked: float
    version: tuple
    by_event: dict[str, list[RuleSpec]]


_rules: dict[int, _BrandRules] = {}


def invalidate(brand_id: int | None = None) -> None:
    """Forget the cached rules (of one brand, or all): the next event reads them again. The rule
    service calls it after a change; other processes notice within the TTL (version check)."""
    if brand_id is None:
        _rules.clear()
    else:
        _rules.pop(brand_id, None)


def _ttl() -> float:
    """Tests empty the tables between cases and reuse brand ids: they read the rules each time."""
    default = 0.0 if current_app.testing else DEFAULT_TTL_SECONDS
    return float(current_app.config.get("AUTOMATION_RULES_TTL", default))


def _version(brand_id: int) -> tuple:
    """Changes whenever a rule of the brand is added, changed (enabled, moved) or deleted."""
    row = db.session.execute(
        select(
            func.count(AutomationRule.id),
            func.max(AutomationRule.id),
            func.max(AutomationRule.updated_at),
        ).where(AutomationRule.brand_id == brand_id)
    ).one()
    return tuple(row)


def _load(brand_id: int) -> dict[str, list[RuleSpec]]:
    rows = db.session.scalars(
        select(AutomationRule)
        .where(AutomationRule.brand_id == brand_id, AutomationRule.enabled.is_(True))
        .order_by(AutomationRule.position, AutomationRule.id)
    )
    by_event: dict[str, list[RuleSpec]] = {}
    for row in rows:
        by_event.setdefault(row.event, []).append(RuleSpec.of(row))
    return by_event


def rules_for(brand_id: int, event: str) -> list[RuleSpec]:
    """The brand's enabled rules for the event, in position order; read from the database at
    most every AUTOMATION_RULES_TTL seconds (a cheap version check), else from memory."""
    now = time.monotonic()
    cached = _rules.get(brand_id)
    if cached is not None and now - cached.checked < _ttl():
        return cached.by_event.get(event, [])
    version = _version(brand_id)
    if cached is None or cached.version != version:
        cached = _BrandRules(now, version, _load(brand_id))
        _rules[brand_id] = cached
    cached.checked = now
    return cached.by_event.get(event, [])


@sqla_event.listens_for(AutomationRule, "after_insert")
@sqla_event.listens_for(AutomationRule, "after_update")
@sqla_event.listens_for(AutomationRule, "after_delete")
def _rule_changed(_mapper: Any, _connection: Any, rule: AutomationRule) -> None:
    # This process sees its own changes at once; the commit's version change tells the others.
    invalidate(rule.brand_id)


# Running ----------------------------------------------------------------------------------------


def _claim(rule: RuleLike, ticket: Ticket, periods: list[str | None]) -> AutomationRun | None:
    """Insert the run rows first, in a savepoint: a period already claimed (someone else ran it,
    now or before) raises IntegrityError, and the rule does not run again."""
    runs = [
        AutomationRun(brand_id=ticket.brand_id, rule_id=rule.id, ticket_id=ticket.id, period=p)
        for p in periods
    ]
    try:
        with db.session.begin_nested():
            db.session.add_all(runs)
            db.session.flush()
    except IntegrityError:
        return None
    return runs[0]


def _periods(rule: RuleLike, period: str | None) -> list[str | None]:
    periods: list[str | None] = [period] if period else []
    if rule.once_per_ticket:
        periods.append("once")
    return periods or [None]


def _act(rule: RuleLike, ticket: Ticket, now: datetime) -> tuple[list[str], list[str]]:
    """Every action in order, each in its own savepoint; a failure is noted and the next runs."""
    ctx = Context(ticket, automation_actor(ticket.brand_id, rule.name), now, rule.name)
    done: list[str] = []
    failures: list[str] = []
    with automation_acting():
        for action in rule.actions:
            kind = str(action.get("type"))
            handler = HANDLERS.get(kind)
            try:
                if handler is None:
                    raise ActionFailed(f"unknown action {kind!r}")
                with db.session.begin_nested():
                    done.append(f"{kind}: {handler(ctx, action.get('value'))}")
            except DomainError as refused:
                failures.append(f"{kind}: {refused.message}")
            except SQLAlchemyError as error:
                log.warning("automation %s action %s failed: %s", rule.id, kind, error)
                failures.append(f"{kind}: {type(error).__name__}")
    return done, failures


def apply(
    rule: RuleLike, ticket: Ticket, now: datetime | None = None, period: str | None = None
) -> AutomationRun | None:
    """Run a matched rule's actions on the ticket and record the run (a ticket event naming the
    rule, and an AutomationRun); None when the rule already ran for this period or ticket."""
    now = now or utcnow()
    run = _claim(rule, ticket, _periods(rule, period))
    if run is None:
        return None
    done, failures = _act(rule, ticket, now)
    run.outcome = "; ".join(failures) or None
    record_event(
        ticket,
        "automation",
        None,
        {**describe(rule), "event": rule.event, "actions": done, "failures": failures},
        now,
    )
    db.session.flush()
    return run


def _run_one(rule: RuleSpec, ticket: Ticket, facts: Facts) -> bool:
    """One rule: its conditions read, and only a rule that matches acts, in a savepoint, so that
    whatever goes wrong stays inside it (most rules match most tickets not at all, and a
    savepoint per rule and message would cost the intake dearly). True if it ran."""
    try:
        if not matches(rule, ticket, facts.message, facts.now, facts):
            return False
        with db.session.begin_nested():
            return apply(rule, ticket, facts.now) is not None
    except Exception:  # noqa: BLE001 - a rule never fails the operation that triggered it
        log.exception("automation rule %s failed on ticket %s", rule.id, ticket.id)
        return False


def run_event(
    event: str, ticket: Ticket, message: Message | None = None, now: datetime | None = None
) -> int:
    """Run the brand's rules for `event` on the ticket; returns how many ran. Does nothing while
    an automation acts (no loops) and costs one cached lookup when the brand has no such rule."""
    if acting() or ticket is None:
        return 0
    rules = rules_for(ticket.brand_id, event)
    if not rules:
        return 0
    facts = Facts(ticket, message, now or utcnow())
    ran = 0
    for rule in rules:
        if _run_one(rule, ticket, facts):
            ran += 1
            facts = Facts(ticket, message, facts.now)  # the actions may have changed the ticket
    return ran


# Hooks ------------------------------------------------------------------------------------------


def _by_a_person(actor: Any) -> bool:
    """A change by an agent or through the API (a token), not by the system or a worker."""
    if isinstance(actor, Actor):
        return actor.kind in (ActorKind.AGENT, ActorKind.TOKEN)
    return isinstance(actor, Agent)


def on_message_received(
    ticket: Ticket | None, message: Message, now: datetime | None = None, **_: Any
) -> None:
    if ticket is not None:
        run_event("message_received", ticket, message, now)


def on_ticket_created(ticket: Ticket, now: datetime | None = None, **_: Any) -> None:
    run_event("ticket_created", ticket, None, now)


def on_ticket_updated(
    ticket: Ticket, actor: Any = None, now: datetime | None = None, **_: Any
) -> None:
    if _by_a_person(actor):
        run_event("ticket_updated", ticket, None, now)


def on_ticket_resolved(ticket: Ticket, now: datetime | None = None, **_: Any) -> None:
    run_event("ticket_resolved", ticket, None, now)


def subscribe() -> None:
    """Called by the app factory: the services announce, the rules act (see helpdesk.hooks)."""
    hooks.on(hooks.MESSAGE_RECEIVED, on_message_received)
    hooks.on(hooks.TICKET_CREATED, on_ticket_created)
    hooks.on(hooks.TICKET_UPDATED, on_ticket_updated)
    hooks.on(hooks.TICKET_RESOLVED, on_ticket_resolved)

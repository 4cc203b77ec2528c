"""The time rules' sweep (beat, every minute): tickets idle long enough get the rule's actions,
once per ticket and idle period.

Exactly once, even with two sweeps at once or a worker killed mid-run: each ticket is its own
transaction, whose first write is the AutomationRun row for (rule, ticket, idle start); the unique
constraint lets one transaction have it (the other waits, then fails the insert and skips), and a
transaction killed before its commit leaves nothing, so the next sweep does the work again.

Candidates come from an indexed query per rule (brand, status, since) that also leaves out the
tickets the rule already ran on in their current idle period, so tickets that fired long ago never
crowd out the ones due now.
"""

from __future__ import annotations

import logging
from datetime import datetime, timedelta

from sqlalchemy import Select, and_, exists, select
from sqlalchemy.orm import aliased

from helpdesk.automations import engine
from helpdesk.automations.conditions import Facts, all_hold
from helpdesk.automations.idle import candidates_query, idle_since
from helpdesk.automations.models import AutomationRule, AutomationRun
from helpdesk.extensions import db
from helpdesk.tickets.models import Ticket, TicketEvent
from helpdesk.types import utcnow

log = logging.getLogger(__name__)
BATCH = 500


def _not_yet_run(rule: engine.RuleSpec, query: Select) -> Select:
    """Leave out tickets the rule already ran on in their current idle period (a run since the
    period began; for `unassigned`, a run no unassignment followed)."""
    runs = aliased(AutomationRun)
    ran = and_(runs.rule_id == rule.id, runs.ticket_id == Ticket.id)
    if rule.idle_status == "pending":
        ran = and_(ran, runs.at >= Ticket.status_changed_at)
    elif rule.idle_status == "open":
        ran = and_(ran, runs.at >= Ticket.awaiting_since)
    else:
        later = exists().where(
            TicketEvent.ticket_id == Ticket.id,
            TicketEvent.kind == "unassigned",
            TicketEvent.at > runs.at,
        )
        ran = and_(ran, ~later)
    return query.where(~exists().where(ran))


def due_ticket_ids(rule: engine.RuleSpec, now: datetime, limit: int = BATCH) -> list[int]:
    cutoff = now - timedelta(minutes=rule.idle_minutes or 0)
    query = candidates_query(rule.brand_id, rule.idle_status or "", cutoff)
    query = _not_yet_run(rule, query).with_only_columns(Ticket.id).limit(limit)
    return list(db.session.scalars(query))


def _fire(rule: engine.RuleSpec, ticket_id: int, now: datetime) -> bool:
    """One ticket, one transaction: checked again (the list may be stale), then run and commit."""
    ticket = db.session.get(Ticket, ticket_id)
    if ticket is None:
        return False
    since = idle_since(ticket, rule.idle_status or "")
    if since is None or since > now - timedelta(minutes=rule.idle_minutes or 0):
        return False
    if not all_hold(rule.conditions, Facts(ticket, None, now)):
        return False
    return engine.apply(rule, ticket, now, period=since.isoformat()) is not None


def _fire_and_commit(rule: engine.RuleSpec, ticket_id: int, now: datetime) -> bool:
    try:
        fired = _fire(rule, ticket_id, now)
        db.session.commit()
        return fired
    except Exception:  # noqa: BLE001 - one ticket's failure must not stop the sweep
        db.session.rollback()
        log.exception("time rule %s failed on ticket %s", rule.id, ticket_id)
        return False


def idle_rules() -> list[engine.RuleSpec]:
    rows = db.session.scalars(
        select(AutomationRule)
        .where(AutomationRule.event == "ticket_idle", AutomationRule.enabled.is_(True))
        .order_by(AutomationRule.brand_id, AutomationRule.position, AutomationRule.id)
    )
    return [engine.RuleSpec.of(row) for row in rows]


def sweep_idle(now: datetime | None = None, limit: int = BATCH) -> int:
    """Fire every enabled time rule on the tickets idle long enough; returns how many fired."""
    now = now or utcnow()
    rules = idle_rules()
    db.session.commit()  # end the read: each ticket below is its own transaction
    fired = 0
    for rule in rules:
        ticket_ids = due_ticket_ids(rule, now, limit)
        db.session.commit()
        for ticket_id in ticket_ids:
            fired += _fire_and_commit(rule, ticket_id, now)
    return fired

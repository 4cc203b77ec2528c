"""Time rules: pending, open without a reply, unassigned; once per ticket and idle period, even
with two sweeps at once or a worker killed in the middle of one."""

from __future__ import annotations

import os
import signal
from datetime import datetime, timedelta

import pytest
from sqlalchemy import func, select, text

from helpdesk.automations import sweep
from helpdesk.automations.models import AutomationRule, AutomationRun
from helpdesk.extensions import db
from helpdesk.tickets import service as tickets
from helpdesk.tickets.models import Ticket, TicketStatus
from helpdesk.types import utcnow
from tests.conftest import fresh, race, wait_for
from tests.helpers.world import World, known_contact, receive


def time_rule(brand, idle_status, minutes, actions, **fields) -> AutomationRule:
    row = AutomationRule(
        brand_id=brand.id,
        name=f"{idle_status} for {minutes} minutes",
        event="ticket_idle",
        idle_status=idle_status,
        idle_minutes=minutes,
        conditions=fields.pop("conditions", []),
        actions=actions,
        **fields,
    )
    db.session.add(row)
    db.session.commit()
    return row


def run_count(rule_id: int) -> int:
    db.session.expire_all()
    return db.session.scalar(
        select(func.count(AutomationRun.id)).where(AutomationRun.rule_id == rule_id)
    )


def open_ticket(w: World, minutes_ago: int) -> Ticket:
    contact = known_contact(w.channel)
    message = receive(
        w.channel, contact.platform_id, "hi", at=utcnow() - timedelta(minutes=minutes_ago)
    )
    db.session.commit()
    return db.session.get(Ticket, message.ticket_id)


def test_pending_for_n_minutes_resolves_once_per_pending_period():
    w = World()
    r = time_rule(w.brand, "pending", 60, [{"type": "set_status", "value": "resolved"}])
    ticket = open_ticket(w, 5)
    tickets.set_status(ticket, "pending", w.agent)
    db.session.commit()
    ticket_pending_since = ticket.status_changed_at.isoformat()
    assert sweep.sweep_idle(now=utcnow() + timedelta(minutes=30)) == 0
    assert sweep.sweep_idle(now=utcnow() + timedelta(minutes=61)) == 1
    db.session.refresh(ticket)
    assert ticket.status is TicketStatus.RESOLVED
    [run] = db.session.scalars(select(AutomationRun).where(AutomationRun.rule_id == r.id))
    assert run.period == ticket_pending_since
    assert sweep.sweep_idle(now=utcnow() + timedelta(minutes=120)) == 0


def test_open_without_a_reply_raises_priority_and_a_reply_ends_the_period():
    w = World()
    r = time_rule(w.brand, "open", 15, [{"type": "set_priority", "value": "high"}])
    waiting = open_ticket(w, 20)
    answered = open_ticket(w, 20)
    answered.awaiting_since = None  # someone replied
    db.session.commit()
    assert sweep.sweep_idle() == 1
    db.session.expire_all()
    assert db.session.get(Ticket, waiting.id).priority.value == "high"
    assert db.session.get(Ticket, answered.id).priority.value == "normal"
    assert sweep.sweep_idle() == 0 and run_count(r.id) == 1
    # The customer writes again after a reply: a new idle period, the rule may fire again.
    ticket = db.session.get(Ticket, waiting.id)
    ticket.awaiting_since = utcnow()
    db.session.commit()
    later = utcnow() + timedelta(minutes=16)
    assert sweep.sweep_idle(now=later) == 2  # this one again, and the world's own ticket
    assert run_count(r.id) == 3


def test_unassigned_for_n_minutes_notifies_and_counts_from_the_last_unassignment():
    w = World()
    r = time_rule(w.brand, "unassigned", 10, [{"type": "add_note", "value": "Nobody took it"}])
    ticket = open_ticket(w, 30)
    tickets.assign(ticket, w.agent.id, w.manager)
    db.session.commit()
    assert sweep.sweep_idle() == 0  # assigned
    tickets.unassign(ticket, w.manager)
    db.session.commit()
    assert sweep.sweep_idle() == 0  # unassigned just now, though opened 30 minutes ago
    unassigned_at = utcnow()
    # This ticket and the world's own (opened just now, never assigned).
    assert sweep.sweep_idle(now=utcnow() + timedelta(minutes=11)) == 2
    assert sweep.sweep_idle(now=utcnow() + timedelta(minutes=20)) == 0
    assert run_count(r.id) == 2
    period = db.session.scalar(
        select(AutomationRun.period).where(AutomationRun.ticket_id == ticket.id)
    )
    assert abs(datetime.fromisoformat(period) - unassigned_at) < timedelta(seconds=5)


def test_conditions_of_a_time_rule_apply_too():
    w = World()
    r = time_rule(
        w.brand,
        "open",
        5,
        [{"type": "set_priority", "value": "urgent"}],
        conditions=[{"field": "text", "op": "contains", "value": "refund"}],
    )
    open_ticket(w, 10)
    assert sweep.sweep_idle() == 0 and run_count(r.id) == 0


def test_two_sweeps_at_once_fire_once(app):
    w = World()
    r = time_rule(w.brand, "open", 5, [{"type": "add_note", "value": "late"}])
    ids = [open_ticket(w, 10).id for _ in range(3)]
    db.session.commit()
    outcomes = race(app, sweep.sweep_idle, count=2)
    assert not any(isinstance(o, Exception) for o in outcomes), outcomes
    assert sum(outcomes) == 3
    assert run_count(r.id) == 3
    notes = db.session.execute(text("SELECT ticket_id, COUNT(*) FROM notes GROUP BY ticket_id"))
    assert dict(notes.all()) == {ticket_id: 1 for ticket_id in ids}


@pytest.mark.worker
def test_a_worker_killed_mid_sweep_and_a_second_sweep_fire_exactly_once(
    app, is_postgres, celery_process
):
    if not is_postgres:
        pytest.skip("holds a row lock to stop the worker inside its transaction: PostgreSQL")
    w = World()
    r = time_rule(w.brand, "open", 5, [{"type": "set_priority", "value": "high"}])
    first, second = open_ticket(w, 20), open_ticket(w, 10)  # swept oldest first
    first_id, second_id = first.id, second.id
    db.session.commit()

    # Another transaction holds the second ticket: the worker fires the first, then waits there,
    # with the second ticket's run row written but not committed.
    blocker = db.engine.connect()
    locking = blocker.begin()
    blocker.execute(text("SELECT id FROM tickets WHERE id = :id FOR UPDATE"), {"id": second_id})
    worker = celery_process("worker", "--pool=solo", "--without-mingle", "--without-gossip")
    app.extensions["celery"].send_task("workers.tasks.automations.sweep_time_rules")

    def waiting_on_the_lock() -> bool:
        return bool(
            db.session.scalar(
                text(
                    "SELECT COUNT(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock' "
                    "AND datname = current_database()"
                )
            )
        )

    assert wait_for(waiting_on_the_lock, timeout=60), "the worker never reached the second ticket"
    assert fresh(lambda: run_count(r.id)) == 1  # the first ticket's run is committed
    os.killpg(worker.pid, signal.SIGKILL)
    worker.wait()
    locking.rollback()
    blocker.close()
    assert wait_for(lambda: not waiting_on_the_lock(), timeout=30)
    assert fresh(lambda: run_count(r.id)) == 1  # the killed transaction left nothing

    assert sweep.sweep_idle() == 1  # the next sweep: the second ticket only
    assert sweep.sweep_idle() == 0
    db.session.expire_all()
    assert run_count(r.id) == 2
    for ticket_id in (first_id, second_id):
        events = db.session.execute(
            text(
                "SELECT COUNT(*) FROM ticket_events WHERE ticket_id = :id AND kind = 'automation'"
            ),
            {"id": ticket_id},
        ).scalar()
        assert events == 1
        assert db.session.get(Ticket, ticket_id).priority.value == "high"

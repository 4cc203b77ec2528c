"""Who owns a ticket: taking, assigning and unassigning, each one conditional update so that two
agents acting at once never both win."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import update

from helpdesk import hooks
from helpdesk.accounts.actor import Actor, agent_id_of
from helpdesk.accounts.models import Agent, Role
from helpdesk.accounts.service import require_role, role_in
from helpdesk.database import rows_matched
from helpdesk.errors import AlreadyAssigned, ValidationError
from helpdesk.extensions import db
from helpdesk.notifications.models import NotificationKind
from helpdesk.notifications.service import notify
from helpdesk.outgoing.service import emit, ticket_data
from helpdesk.tickets.events import after_change, record_event
from helpdesk.tickets.models import Ticket
from helpdesk.types import utcnow


def _check_assignee(ticket: Ticket, assignee_id: int) -> Agent:
    agent = db.session.get(Agent, assignee_id)
    if agent is None or not agent.active or role_in(assignee_id, ticket.brand_id) is None:
        raise ValidationError("the assignee is not an agent of this brand")
    return agent


def _assigned(ticket: Ticket, assignee_id: int | None, actor_id: int | None, now: datetime) -> None:
    db.session.refresh(ticket)
    record_event(
        ticket,
        "assigned" if assignee_id else "unassigned",
        actor_id,
        {"assignee_id": assignee_id},
        now,
    )
    if assignee_id is not None and assignee_id != actor_id:
        notify(
            assignee_id,
            ticket.brand_id,
            NotificationKind.ASSIGNMENT,
            f"Ticket #{ticket.id} was assigned to you",
            ticket_id=ticket.id,
            conversation_id=ticket.conversation_id,
            at=now,
        )
    if assignee_id is not None:
        emit(ticket.brand_id, "ticket.assigned", ticket_data(ticket, actor_id=actor_id))
    after_change(ticket, now)


def take(ticket: Ticket, actor: Actor | Agent, now: datetime | None = None) -> Ticket:
    """Exactly one of two agents taking the same ticket at once wins; the other: AlreadyAssigned."""
    now = now or utcnow()
    require_role(actor, ticket.brand_id, Role.AGENT)
    taker = agent_id_of(actor)
    if taker is None:
        raise ValidationError("only an agent takes a ticket; assign it to one instead")
    taken = rows_matched(
        update(Ticket)
        .where(Ticket.id == ticket.id, Ticket.assignee_id.is_(None))
        .values(assignee_id=taker, assigned_at=now)
        .execution_options(synchronize_session=False)
    )
    if not taken:
        db.session.refresh(ticket, ["assignee_id"])
        if ticket.assignee_id == taker:
            return ticket
        raise AlreadyAssigned()
    _assigned(ticket, taker, taker, now)
    hooks.publish(hooks.TICKET_UPDATED, ticket=ticket, actor=actor, now=now)
    return ticket


def assign(
    ticket: Ticket,
    assignee_id: int | None,
    actor: Actor | Agent | None,
    now: datetime | None = None,
    expect_unassigned: bool = False,
) -> Ticket:
    """Assign, reassign or (None) unassign; with `expect_unassigned` it behaves like a take."""
    now = now or utcnow()
    require_role(actor, ticket.brand_id, Role.AGENT)
    if assignee_id is not None:
        _check_assignee(ticket, assignee_id)
    query = update(Ticket).where(Ticket.id == ticket.id)
    if expect_unassigned:
        query = query.where(Ticket.assignee_id.is_(None))
    changed = rows_matched(
        query.values(
            assignee_id=assignee_id, assigned_at=now if assignee_id else None
        ).execution_options(synchronize_session=False)
    )
    if not changed:
        db.session.refresh(ticket, ["assignee_id"])
        if ticket.assignee_id == assignee_id:
            return ticket
        raise AlreadyAssigned()
    _assigned(ticket, assignee_id, agent_id_of(actor), now)
    hooks.publish(hooks.TICKET_UPDATED, ticket=ticket, actor=actor, now=now)
    return ticket


def unassign(ticket: Ticket, actor: Actor | Agent | None, now: datetime | None = None) -> Ticket:
    return assign(ticket, None, actor, now)

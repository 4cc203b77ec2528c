"""A ticket changed as a whole, as the API's PATCH asks: several changes in one use case, and
assignment that never takes a ticket from the person who holds it."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from helpdesk.accounts.actor import Actor
from helpdesk.accounts.models import Role
from helpdesk.errors import AlreadyAssigned, InvalidField
from helpdesk.tickets import service as tickets
from helpdesk.tickets.models import Ticket, TicketStatus
from helpdesk.types import utcnow


def assign_if_free(
    ticket: Ticket, assignee_id: int | None, actor: Actor, now: datetime | None = None
) -> Ticket:
    """Assign an unassigned ticket, or unassign; a ticket someone else holds is AlreadyAssigned
    (unassign it first), so an integration never silently takes a ticket from a person."""
    now = now or utcnow()
    if assignee_id is None:
        if ticket.assignee_id is not None:
            tickets.unassign(ticket, actor, now)
        return ticket
    if ticket.assignee_id == assignee_id:
        return ticket
    if ticket.assignee_id is not None:
        raise AlreadyAssigned(
            f"the ticket is assigned to agent {ticket.assignee_id}; unassign it first"
        )
    return tickets.assign(ticket, assignee_id, actor, now, expect_unassigned=True)


def change_ticket(
    ticket: Ticket, changes: dict[str, Any], actor: Actor, now: datetime | None = None
) -> Ticket:
    """Several changes in one transaction: the assignee before the team (so routing does not
    auto-assign over it), the status last (resolving may hand waiting tickets to the freed
    agent)."""
    now = now or utcnow()
    actor.require(Role.AGENT, "changing a ticket", ticket.brand_id)
    if "priority" in changes:
        tickets.set_priority(ticket, changes["priority"], actor, now)
    if "assignee_id" in changes:
        assign_if_free(ticket, changes["assignee_id"], actor, now)
    if "team_id" in changes:
        tickets.set_team(ticket, changes["team_id"], actor, now)
    status, until = changes.get("status"), changes.get("snoozed_until")
    if until is not None and (status or ticket.status) != TicketStatus.SNOOZED:
        raise InvalidField("snoozed_until", "goes with status snoozed")
    if status is not None or until is not None:
        tickets.set_status(ticket, status or ticket.status, actor, until, now)
    return ticket

"""When a ticket became idle in the sense of a time rule, and the indexed query for candidates.

- `pending`: status pending since `status_changed_at` (kept by a validator on Ticket.status);
- `open`: status open and the customer waiting since `awaiting_since` (no reply since);
- `unassigned`: active (open, pending, snoozed) without an assignee since the later of its opening
  and its last unassignment (the latest "unassigned" ticket event): a ticket that was assigned and
  handed back starts a new idle period, so the rule may fire again for it.

The start of the idle period is also the rule's `period` (ISO text) in AutomationRun, which makes
a time rule fire once per ticket and idle period.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from sqlalchemy import Select, func, select

from helpdesk.extensions import db
from helpdesk.tickets.models import ACTIVE_STATUSES, Ticket, TicketEvent, TicketStatus

IDLE_STATUSES = ("open", "pending", "unassigned")


def _last_unassigned(ticket_ids: list[int]) -> dict[int, datetime]:
    if not ticket_ids:
        return {}
    rows = db.session.execute(
        select(TicketEvent.ticket_id, func.max(TicketEvent.at))
        .where(TicketEvent.ticket_id.in_(ticket_ids), TicketEvent.kind == "unassigned")
        .group_by(TicketEvent.ticket_id)
    ).all()
    return {ticket_id: at for ticket_id, at in rows}


def idle_since(
    ticket: Ticket, idle_status: str, unassigned_at: datetime | None = None
) -> datetime | None:
    """The start of the ticket's current idle period of that kind; None: it is not idle so."""
    if idle_status == "pending":
        return ticket.status_changed_at if ticket.status is TicketStatus.PENDING else None
    if idle_status == "open":
        return ticket.awaiting_since if ticket.status is TicketStatus.OPEN else None
    if idle_status == "unassigned":
        if ticket.status not in ACTIVE_STATUSES or ticket.assignee_id is not None:
            return None
        if unassigned_at is None:
            unassigned_at = _last_unassigned([ticket.id]).get(ticket.id)
        return max(ticket.opened_at, unassigned_at) if unassigned_at else ticket.opened_at
    return None


def candidates_query(brand_id: int, idle_status: str, cutoff: datetime) -> Select:
    """Tickets possibly idle since before `cutoff`, through the indexes on (brand_id, status, …).

    For `unassigned` the query is a superset (opened before the cutoff); `idle_since` decides."""
    query = select(Ticket).where(Ticket.brand_id == brand_id)
    if idle_status == "pending":
        return query.where(
            Ticket.status == TicketStatus.PENDING, Ticket.status_changed_at <= cutoff
        ).order_by(Ticket.status_changed_at)
    if idle_status == "open":
        return query.where(
            Ticket.status == TicketStatus.OPEN, Ticket.awaiting_since <= cutoff
        ).order_by(Ticket.awaiting_since)
    return query.where(
        Ticket.status.in_(ACTIVE_STATUSES),
        Ticket.assignee_id.is_(None),
        Ticket.opened_at <= cutoff,
    ).order_by(Ticket.opened_at)


def idle_tickets(
    brand_id: int, idle_status: str, minutes: int, now: datetime, limit: int = 500
) -> list[tuple[Ticket, datetime]]:
    """Tickets idle of that kind for at least `minutes` at `now`, each with its idle start."""
    cutoff = now - timedelta(minutes=minutes)
    tickets = list(db.session.scalars(candidates_query(brand_id, idle_status, cutoff).limit(limit)))
    unassigned = _last_unassigned([t.id for t in tickets]) if idle_status == "unassigned" else {}
    found = []
    for ticket in tickets:
        since = idle_since(ticket, idle_status, unassigned.get(ticket.id))
        if since is not None and since <= cutoff:
            found.append((ticket, since))
    return found

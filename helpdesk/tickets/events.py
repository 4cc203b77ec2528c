"""The ticket history: one row per change, so history and metrics can be rebuilt."""

from __future__ import annotations

from datetime import datetime

from helpdesk.extensions import db
from helpdesk.tickets.models import Ticket, TicketEvent
from helpdesk.types import utcnow


def record_event(
    ticket: Ticket,
    kind: str,
    actor_id: int | None = None,
    data: dict | None = None,
    at: datetime | None = None,
) -> TicketEvent:
    event = TicketEvent(
        brand_id=ticket.brand_id,
        ticket_id=ticket.id,
        actor_id=actor_id,
        kind=kind,
        data=data or {},
        at=at or utcnow(),
    )
    db.session.add(event)
    return event

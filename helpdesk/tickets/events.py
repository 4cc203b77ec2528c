"""The ticket history: one row per change, so history and metrics can be rebuilt; and what follows
every change (the conversation's mirror of the status, the hooks, the live update)."""

from __future__ import annotations

from datetime import datetime

from helpdesk import hooks
from helpdesk.dm.models import Conversation, ConversationStatus
from helpdesk.extensions import db
from helpdesk.live import events as live
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


def after_change(ticket: Ticket, now: datetime) -> None:
    """Keep the SLA clocks and the conversation's mirror of the status in step."""
    conversation = db.session.get(Conversation, ticket.conversation_id)
    if conversation.current_ticket_id == ticket.id:
        conversation.status = ConversationStatus(ticket.status.value)
    hooks.publish(hooks.TICKET_CHANGED, ticket=ticket, now=now)  # sla refreshes the clocks
    db.session.flush()
    live.ticket_updated(ticket)


def offer_to_assignment(ticket: Ticket, now: datetime) -> None:
    """An unowned ticket of a team is offered to auto-assignment, which subscribes to the hook."""
    if ticket.assignee_id is None and ticket.team_id is not None:
        hooks.publish(hooks.TICKET_WAITING, ticket=ticket, now=now)  # assignment may take it

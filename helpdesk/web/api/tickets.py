"""Tickets: listing, detail and changes; their tags and private notes."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from flask import Response
from sqlalchemy import Select

from helpdesk import transaction
from helpdesk.idempotency.service import Answer
from helpdesk.tickets import changes as changes_service
from helpdesk.tickets import notes, tags
from helpdesk.tickets.models import Ticket
from helpdesk.tickets.queries import ticket_listing
from helpdesk.types import utcnow
from helpdesk.web.api import idempotency, present
from helpdesk.web.api.auth import actor, brand_id
from helpdesk.web.api.blueprint import api_blueprint
from helpdesk.web.api.inputs import NoteInSchema, TagInSchema, TicketPatchSchema, TicketQuerySchema
from helpdesk.web.api.lookups import owned
from helpdesk.web.api.pagination import Order, paginate
from helpdesk.web.api.schemas import NoteSchema, TicketSchema, page_of

bp = api_blueprint("tickets", "Tickets, their tags and private notes")

TICKETS = Order("tickets", Ticket.id)


def ticket_query(args: dict[str, Any], now: datetime) -> Select:
    """The listing's filters; "breached" and "at risk" as the console's (`tickets.queries`)."""
    return ticket_listing(
        brand_id(),
        status=args.get("status"),
        assignee=args.get("assignee"),
        tag=args.get("tag"),
        sla=args.get("sla"),
        now=now,
    )


@bp.route("/tickets", methods=["GET"])
@bp.arguments(TicketQuerySchema, location="query")
@bp.response(200, page_of(TicketSchema, "TicketPage"))
def list_tickets(args: dict[str, Any]) -> dict[str, Any]:
    """Tickets, newest first."""
    rows, cursor = paginate(ticket_query(args, utcnow()), TICKETS, args)
    return {"items": present.tickets(rows), "next_cursor": cursor}


@bp.route("/tickets/<id:ticket_id>", methods=["GET"])
@bp.response(200, TicketSchema)
def get_ticket(ticket_id: int) -> dict[str, Any]:
    """A ticket with its tags and SLA clocks."""
    return present.ticket(owned(Ticket, ticket_id))


@bp.route("/tickets/<id:ticket_id>", methods=["PATCH"])
@bp.arguments(TicketPatchSchema)
@bp.response(200, TicketSchema)
def patch_ticket(changes: dict[str, Any], ticket_id: int) -> dict[str, Any]:
    """Change status, priority, assignee, team or snooze; assigning someone else's ticket is 409."""
    ticket = changes_service.change_ticket(owned(Ticket, ticket_id), changes, actor())
    transaction.commit()
    return present.ticket(ticket)


@bp.route("/tickets/<id:ticket_id>/tags", methods=["POST"])
@bp.arguments(TagInSchema)
@bp.response(200, TicketSchema)
def add_tag(data: dict[str, Any], ticket_id: int) -> dict[str, Any]:
    """Tag the ticket, creating the brand's tag if new; tagging twice changes nothing."""
    ticket = owned(Ticket, ticket_id)
    tags.add_tag(ticket, data["name"], None)
    transaction.commit()
    return present.ticket(ticket)


@bp.route("/tickets/<id:ticket_id>/tags/<path:name>", methods=["DELETE"])
@bp.response(204)
def remove_tag(ticket_id: int, name: str) -> None:
    """Untag the ticket; 404 when it does not carry the tag."""
    tags.remove_tag(owned(Ticket, ticket_id), name, None)
    transaction.commit()


@bp.route("/tickets/<id:ticket_id>/notes", methods=["POST"])
@bp.arguments(NoteInSchema)
@bp.response(201, NoteSchema)
def add_note(data: dict[str, Any], ticket_id: int) -> Response:
    """A private note (never sent); @mentions notify the agents named."""
    ticket = owned(Ticket, ticket_id)
    claimed = idempotency.begin()
    if isinstance(claimed, Answer):
        return idempotency.replay(claimed)
    note = notes.add_note(ticket, None, data["body"])
    answer = idempotency.answer(claimed, 201, NoteSchema, present.note(note))
    transaction.commit()
    return answer

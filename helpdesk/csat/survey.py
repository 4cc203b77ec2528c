"""The satisfaction survey (API.md "Automations and CSAT"): resolving a ticket of a brand with
CSAT enabled schedules one survey, `csat_delay_minutes` later; a beat task sends the due ones.

Exactly once per ticket: the sweep claims a ticket with a conditional UPDATE (`csat_sent_at IS
NULL`), so overlapping sweeps or a retried task never send two. A survey goes only while the
24-hour window for automated messages is open and only for a ticket still resolved; otherwise
nothing is sent and a `csat_not_sent` ticket event says why. The survey is an automated message
(never a human response) whose quick replies carry `CSAT:<ticket_id>:<score>`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta

from sqlalchemy import select, update

from helpdesk import hooks
from helpdesk.brands.models import Brand
from helpdesk.database import rows_matched
from helpdesk.dm import service as dm
from helpdesk.dm.models import Conversation, ConversationKind
from helpdesk.errors import DomainError
from helpdesk.extensions import db
from helpdesk.inbox import service as inbox
from helpdesk.tickets.events import record_event
from helpdesk.tickets.models import Ticket, TicketStatus
from helpdesk.types import utcnow

BATCH = 200
PAYLOAD_PREFIX = "CSAT"
SCORE_WORDS = {1: "Very poor", 2: "Poor", 3: "OK", 4: "Good", 5: "Great"}
FINISHED = (TicketStatus.RESOLVED, TicketStatus.CLOSED)


def payload(ticket_id: int, score: int) -> str:
    return f"{PAYLOAD_PREFIX}:{ticket_id}:{score}"


def quick_replies(ticket_id: int) -> list[dict]:
    """The five buttons, worst first; a title stays within Instagram's 20 characters."""
    return [
        {
            "content_type": "text",
            "title": f"{score} {'★' * score}"[:20],
            "payload": payload(ticket_id, score),
        }
        for score in SCORE_WORDS
    ]


def subscribe() -> None:
    """Called by the app factory: a resolved ticket schedules its survey."""
    hooks.on(hooks.TICKET_RESOLVED, schedule)


def schedule(ticket: Ticket, now: datetime | None = None) -> None:
    """Due `delay_minutes` after the resolution; a ticket is surveyed once, so a ticket resolved
    again after its survey went out is not asked twice."""
    brand = db.session.get(Brand, ticket.brand_id)
    if brand is None or not brand.csat_enabled or ticket.csat_sent_at is not None:
        return
    ticket.csat_due_at = (now or utcnow()) + timedelta(minutes=brand.csat_delay_minutes)


@dataclass
class SweepReport:
    checked: int = 0
    message_ids: list[int] = field(default_factory=list)  # to hand to delivery after the commit
    not_sent: int = 0


def send_due(now: datetime | None = None, limit: int = BATCH) -> SweepReport:
    """Send the surveys due by `now` (ix_tickets_csat_due_at); the caller commits, then
    enqueues the messages' delivery."""
    now = now or utcnow()
    report = SweepReport()
    ticket_ids = db.session.scalars(
        select(Ticket.id)
        .where(Ticket.csat_due_at <= now, Ticket.csat_sent_at.is_(None))
        .order_by(Ticket.csat_due_at)
        .limit(limit)
    ).all()
    for ticket_id in ticket_ids:
        report.checked += 1
        if not _claim(ticket_id, now):
            continue  # another sweep has it
        message_id = _send(db.session.get(Ticket, ticket_id), now)
        if message_id is None:
            report.not_sent += 1
        else:
            report.message_ids.append(message_id)
    return report


def _claim(ticket_id: int, now: datetime) -> bool:
    """One sweep wins a ticket: the UPDATE matches only while no survey went out."""
    return (
        rows_matched(
            update(Ticket)
            .where(
                Ticket.id == ticket_id,
                Ticket.csat_sent_at.is_(None),
                Ticket.csat_due_at <= now,
            )
            .values(csat_sent_at=now, csat_due_at=None)
            .execution_options(synchronize_session=False)
        )
        == 1
    )


def _send(ticket: Ticket, now: datetime) -> int | None:
    """The survey message's id, or None with the reason recorded on the ticket."""
    db.session.refresh(ticket)
    brand = db.session.get(Brand, ticket.brand_id)
    conversation = db.session.get(Conversation, ticket.conversation_id)
    reason = _reason_not_to_send(brand, conversation, ticket, now)
    if reason is None:
        try:
            with dm.atomic():
                message = inbox.reply(
                    conversation, None, text=brand.csat_question, automated=True, now=now
                )
                message.ticket_id = ticket.id
                message.extra = {**(message.extra or {}), "quick_replies": quick_replies(ticket.id)}
                db.session.flush()
        except DomainError as refused:
            reason = refused.message
        else:
            record_event(ticket, "csat_sent", data={"message_id": message.id}, at=now)
            return message.id
    ticket.csat_sent_at = None  # nothing went out; a later resolution may schedule it again
    record_event(ticket, "csat_not_sent", data={"reason": reason}, at=now)
    return None


def _reason_not_to_send(
    brand: Brand, conversation: Conversation, ticket: Ticket, now: datetime
) -> str | None:
    if not brand.csat_enabled:
        return "the survey was turned off"
    if ticket.status not in FINISHED or conversation.current_ticket_id != ticket.id:
        return "the ticket was reopened"
    if conversation.kind is ConversationKind.GROUP:
        return "group conversations are not surveyed"
    closes = dm.window_closes_at(conversation, human=False)
    if closes is None or now > closes:
        return "the reply window is closed (24 hours after the customer's last message)"
    return None

"""The customer's answer to a survey, recognised in the inbound path before the ticket rules run,
so that a score (or a comment on it) is kept on the resolved ticket instead of reopening it.

An answer is the survey's quick reply (payload `CSAT:<ticket_id>:<1-5>`, honoured only for a
ticket of the same conversation: a payload naming another ticket is an ordinary message) or a
bare digit 1 to 5 written within 24 hours of the survey. The first answer wins: the score a
customer gave is not replaced by a later one, so figures already shown do not move. The first
text message after the score, within 24 hours of the survey, is kept as a note ("CSAT comment:
...") on the same ticket, which stays resolved.
"""

from __future__ import annotations

import re
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import select, update

from helpdesk.database import rows_matched
from helpdesk.dm.models import Contact, Conversation, Direction, Message
from helpdesk.extensions import db
from helpdesk.live import events as live
from helpdesk.tickets.events import record_event
from helpdesk.tickets.models import Note, Ticket, TicketEvent, TicketStatus
from helpdesk.types import utcnow

ANSWER_WINDOW = timedelta(hours=24)
COMMENT_PREFIX = "CSAT comment: "
MAX_COMMENT_CHARS = 4900  # a note holds 5000 characters, the prefix included
_PAYLOAD = re.compile(r"CSAT:([0-9]{1,18}):([1-5])")
# "5", " 4 ", "5/5", "3." : a digit alone, as people answer a 1-to-5 question.
_BARE = re.compile(r"\s*([1-5])\s*(?:/\s*5)?\s*[.!]?\s*")
FINISHED = (TicketStatus.RESOLVED, TicketStatus.CLOSED)


def take(message: Message, now: datetime | None = None) -> bool:
    """True when the message answered a survey or commented on its score: it then belongs to
    the surveyed ticket and opens or reopens nothing. False: the usual ticket rules apply."""
    if message.direction is not Direction.INBOUND or message.suppressed:
        return False
    now = now or utcnow()
    at = message.sent_at or now
    quick = _quick_reply(message)
    if quick is not None:
        return _answer_by_quick_reply(message, *quick, at=at)
    ticket = _surveyed_ticket(message)
    if ticket is None or ticket.csat_sent_at is None or at > ticket.csat_sent_at + ANSWER_WINDOW:
        return False
    if ticket.csat_score is None:
        score = bare_score(message.text)
        return score is not None and _store(ticket, message, score, "text", at)
    return _comment(ticket, message, at)


def bare_score(text: str | None) -> int | None:
    match = _BARE.fullmatch(text or "")
    return int(match.group(1)) if match else None


def _quick_reply(message: Message) -> tuple[int, int] | None:
    quick = (message.extra or {}).get("quick_reply")
    value = quick.get("payload") if isinstance(quick, dict) else None
    match = _PAYLOAD.fullmatch(value) if isinstance(value, str) else None
    return (int(match.group(1)), int(match.group(2))) if match else None


def _answer_by_quick_reply(message: Message, ticket_id: int, score: int, at: datetime) -> bool:
    """Only a surveyed ticket of this very conversation: a forged payload changes nothing."""
    ticket = db.session.get(Ticket, ticket_id)
    if (
        ticket is None
        or ticket.conversation_id != message.conversation_id
        or ticket.csat_sent_at is None
    ):
        return False
    _store(ticket, message, score, "quick_reply", at)
    # A ticket reopened meanwhile (the customer wrote first) hears of the message as usual.
    return not ticket.active


def _surveyed_ticket(message: Message) -> Ticket | None:
    conversation = db.session.get(Conversation, message.conversation_id)
    if conversation is None or conversation.current_ticket_id is None:
        return None
    ticket = db.session.get(Ticket, conversation.current_ticket_id)
    return ticket if ticket is not None and ticket.status in FINISHED else None


def _store(ticket: Ticket, message: Message, score: int, via: str, at: datetime) -> bool:
    """First answer wins, even with two answers processed at once (a conditional UPDATE)."""
    message.ticket_id = ticket.id
    won = rows_matched(
        update(Ticket)
        .where(Ticket.id == ticket.id, Ticket.csat_score.is_(None))
        .values(csat_score=score, csat_answered_at=at)
        .execution_options(synchronize_session=False)
    )
    db.session.refresh(ticket)
    if won:
        record_event(
            ticket, "csat_answered", data={"score": score, "via": via, "message_id": message.id}
        )
        live.ticket_updated(ticket)
    return True


def _comment(ticket: Ticket, message: Message, at: datetime) -> bool:
    """The first text after the score becomes a note; anything later is an ordinary message."""
    text = (message.text or "").strip()
    answered = ticket.csat_answered_at
    if not text or answered is None or at < answered or _has_comment(ticket):
        return False
    if len(text) > MAX_COMMENT_CHARS:
        text = text[: MAX_COMMENT_CHARS - 1] + "…"
    message.ticket_id = ticket.id
    note = Note(brand_id=ticket.brand_id, ticket_id=ticket.id, body=COMMENT_PREFIX + text)
    db.session.add(note)
    db.session.flush()
    record_event(ticket, "csat_comment", data={"note_id": note.id, "message_id": message.id})
    live.note_created(note, ticket.conversation_id)
    return True


def _has_comment(ticket: Ticket) -> bool:
    return (
        db.session.scalar(
            select(TicketEvent.id)
            .where(TicketEvent.ticket_id == ticket.id, TicketEvent.kind == "csat_comment")
            .limit(1)
        )
        is not None
    )


# Reading the answers ------------------------------------------------------------------------------


def comments(ticket_ids: list[int]) -> dict[int, str]:
    """The comment kept after each ticket's score, without its note's prefix."""
    note_ids = {
        event.data.get("note_id"): event.ticket_id
        for event in db.session.scalars(
            select(TicketEvent).where(
                TicketEvent.ticket_id.in_(ticket_ids), TicketEvent.kind == "csat_comment"
            )
        )
    }
    notes = db.session.execute(
        select(Note.id, Note.body).where(Note.id.in_([i for i in note_ids if i is not None]))
    )
    return {note_ids[note_id]: body.removeprefix(COMMENT_PREFIX) for note_id, body in notes}


def as_dicts(tickets: list[Ticket]) -> list[dict[str, Any]]:
    """The answered surveys among `tickets`: what a contact's export and the settings page show."""
    answered = [t for t in tickets if t.csat_score is not None]
    said = comments([t.id for t in answered])
    return [
        {
            "ticket_id": t.id,
            "score": t.csat_score,
            "answered_at": t.csat_answered_at.isoformat() if t.csat_answered_at else None,
            "survey_sent_at": t.csat_sent_at.isoformat() if t.csat_sent_at else None,
            "comment": said.get(t.id),
        }
        for t in answered
    ]


def recent(brand_id: int, limit: int = 20) -> list[dict[str, Any]]:
    """The brand's latest answers, newest first, with the customer's name for the settings page."""
    rows = db.session.execute(
        select(Ticket, Contact.name, Contact.username)
        .join(Conversation, Conversation.id == Ticket.conversation_id)
        .outerjoin(Contact, Contact.id == Conversation.contact_id)
        .where(Ticket.brand_id == brand_id, Ticket.csat_score.is_not(None))
        .order_by(Ticket.csat_answered_at.desc(), Ticket.id.desc())
        .limit(limit)
    ).all()
    said = comments([ticket.id for ticket, _name, _username in rows])
    return [
        {
            "ticket": ticket,
            "customer": name or (f"@{username}" if username else "Someone"),
            "comment": said.get(ticket.id),
        }
        for ticket, name, username in rows
    ]

"""Private notes on tickets: internal only, never sent, with `@mentions` that notify agents.

Functions flush; the caller commits.
"""

from __future__ import annotations

from sqlalchemy import func, or_, select

from helpdesk.accounts.models import Agent, Membership, Role
from helpdesk.accounts.service import require_role
from helpdesk.errors import ValidationError
from helpdesk.extensions import db
from helpdesk.live import events as live
from helpdesk.notifications.models import NotificationKind
from helpdesk.notifications.service import notify
from helpdesk.search.matching import starts_with
from helpdesk.tickets.events import record_event
from helpdesk.tickets.models import Note, Ticket

MAX_NOTE_CHARS = 5000
NOTIFICATION_EXCERPT_CHARS = 140
CANDIDATE_LIMIT = 10


def email_handle(agent: Agent) -> str:
    """The handle the console inserts: the email's local part, which is unique enough to type."""
    return agent.email.split("@", 1)[0].lower()


def name_handle(agent: Agent) -> str:
    return "".join(agent.name.split()).lower()


def _brand_agents(brand_id: int) -> list[Agent]:
    return list(
        db.session.scalars(
            select(Agent)
            .join(Membership, Membership.agent_id == Agent.id)
            .where(Membership.brand_id == brand_id, Agent.active.is_(True))
        )
    )


def find_mentions(body: str, agents: list[Agent]) -> list[int]:
    """Ids of the agents a body mentions, in order of first mention.

    After each `@` that does not continue a word (so an email address in the text is no mention),
    the longest handle that follows and ends where a word ends wins: `@anna.smith,` mentions
    anna.smith rather than anna, and `@annabel` mentions neither.
    """
    handles: dict[str, list[int]] = {}
    for agent in agents:
        for handle in {email_handle(agent), name_handle(agent)}:
            if handle:
                handles.setdefault(handle, []).append(agent.id)
    by_length = sorted(handles, key=len, reverse=True)
    mentioned: list[int] = []
    for index, char in enumerate(body):
        if char != "@" or (index > 0 and (body[index - 1].isalnum() or body[index - 1] == "_")):
            continue
        rest = body[index + 1 :]
        for handle in by_length:
            after = rest[len(handle) : len(handle) + 1]
            if rest[: len(handle)].lower() == handle and not (after.isalnum() or after == "_"):
                mentioned.extend(i for i in handles[handle] if i not in mentioned)
                break
    return mentioned


def add_note(ticket: Ticket, author: Agent | None, body: str) -> Note:
    """Store an internal note and alert the agents it mentions (never its author)."""
    require_role(author, ticket.brand_id, Role.AGENT)
    if not isinstance(body, str):
        raise ValidationError("a note must be text")
    body = body.strip()
    if not 1 <= len(body) <= MAX_NOTE_CHARS:
        raise ValidationError(f"a note has 1 to {MAX_NOTE_CHARS} characters")
    mentions = find_mentions(body, _brand_agents(ticket.brand_id))
    note = Note(
        brand_id=ticket.brand_id,
        ticket_id=ticket.id,
        author_id=author.id if author else None,
        body=body,
        mentions=mentions,
    )
    db.session.add(note)
    db.session.flush()
    record_event(
        ticket,
        "note_added",
        author.id if author else None,
        {"note_id": note.id, "mentions": mentions},
        at=note.created_at,
    )
    who = author.name if author else "The helpdesk"
    excerpt = body if len(body) <= NOTIFICATION_EXCERPT_CHARS else body[:139] + "…"
    for agent_id in mentions:
        if author is not None and agent_id == author.id:
            continue
        notify(
            agent_id,
            ticket.brand_id,
            NotificationKind.MENTION,
            f"{who} mentioned you on ticket #{ticket.id}: {excerpt}",
            ticket_id=ticket.id,
            conversation_id=ticket.conversation_id,
            at=note.created_at,
        )
    db.session.flush()
    live.note_created(note, ticket.conversation_id)
    return note


def list_notes(ticket: Ticket, actor: Agent | None = None) -> list[Note]:
    """A ticket's notes, oldest first, as they read in the conversation's timeline."""
    require_role(actor, ticket.brand_id, Role.AGENT)
    return list(
        db.session.scalars(
            select(Note).where(Note.ticket_id == ticket.id).order_by(Note.created_at, Note.id)
        )
    )


def mention_candidates(
    brand_id: int, prefix: str, actor: Agent | None = None, limit: int = CANDIDATE_LIMIT
) -> list[dict]:
    """Agents of the brand for `@` completion, matched by email local part or name."""
    require_role(actor, brand_id, Role.AGENT)
    handle = "".join((prefix or "").removeprefix("@").split())
    query = (
        select(Agent)
        .join(Membership, Membership.agent_id == Agent.id)
        .where(
            Membership.brand_id == brand_id,
            Agent.active.is_(True),
            or_(
                starts_with(Agent.email, handle),
                starts_with(func.replace(Agent.name, " ", ""), handle),
            ),
        )
        .order_by(func.lower(Agent.name), Agent.id)
        .limit(max(1, min(limit, 50)))
    )
    return [
        {"id": agent.id, "name": agent.name, "handle": email_handle(agent)}
        for agent in db.session.scalars(query)
    ]

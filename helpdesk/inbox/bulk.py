"""Bulk actions from the inbox: the same service call on each selected conversation's ticket, each
in its own savepoint so that one refusal (a ticket someone else just took) spares the others."""

from __future__ import annotations

from dataclasses import dataclass, field

from helpdesk.accounts.models import Agent
from helpdesk.dm.models import Conversation
from helpdesk.errors import DomainError, ValidationError
from helpdesk.extensions import db
from helpdesk.tickets import service as tickets
from helpdesk.tickets import tags
from helpdesk.tickets.models import Ticket, TicketStatus

ACTIONS = ("assign", "tag", "resolve")
MAX_SELECTION = 200


@dataclass
class BulkResult:
    done: int = 0
    skipped: list[str] = field(default_factory=list)


def apply_bulk(
    conversations: list[Conversation],
    action: str,
    actor: Agent,
    assignee_id: int | None = None,
    tag: str | None = None,
) -> BulkResult:
    """Assign (None: unassign), tag or resolve every selected conversation's active ticket."""
    if action not in ACTIONS:
        raise ValidationError(f"unknown bulk action {action!r}")
    if not conversations:
        raise ValidationError("select at least one conversation")
    if len(conversations) > MAX_SELECTION:
        raise ValidationError(f"at most {MAX_SELECTION} conversations at once")
    if action == "tag" and not (tag or "").strip():
        raise ValidationError("name the tag to add")
    result = BulkResult()
    for conversation in conversations:
        ticket = tickets.current_ticket(conversation)
        label = f"#{conversation.id}"
        if ticket is None or not ticket.active:
            result.skipped.append(f"{label}: no open ticket")
            continue
        try:
            with db.session.begin_nested():
                _apply(ticket, action, actor, assignee_id, tag)
        except DomainError as refused:
            result.skipped.append(f"{label}: {refused.message}")
            continue
        result.done += 1
    return result


def _apply(
    ticket: Ticket, action: str, actor: Agent, assignee_id: int | None, tag: str | None
) -> None:
    if action == "assign":
        tickets.assign(ticket, assignee_id, actor)
    elif action == "tag":
        tags.add_tag(ticket, tag, actor)
    else:
        tickets.set_status(ticket, TicketStatus.RESOLVED, actor)

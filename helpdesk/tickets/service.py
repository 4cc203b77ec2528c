"""Ticket lifecycle (docs/concepts.md): one support episode of a conversation, from first message to
resolution. Every change is a ticket event; SLA clocks and assignment follow each change. Taking and
assigning live in assignees.py, re-exported here for callers of tickets.take, assign, unassign."""

from __future__ import annotations

from datetime import datetime, timedelta

from sqlalchemy import func, select, update

from helpdesk import hooks
from helpdesk.accounts.actor import Actor, agent_id_of
from helpdesk.accounts.models import Agent, Role, Team
from helpdesk.accounts.service import require_role
from helpdesk.brands.models import Brand
from helpdesk.dm.models import Conversation, ConversationStatus, Direction, Message
from helpdesk.dm.service import atomic
from helpdesk.errors import InvalidState, StaleTicket, ValidationError
from helpdesk.extensions import db
from helpdesk.inbox.folders import INBOX_STATES
from helpdesk.live import events as live
from helpdesk.memo import cached
from helpdesk.outgoing.service import emit, ticket_data
from helpdesk.tickets.assignees import assign as assign
from helpdesk.tickets.assignees import take as take
from helpdesk.tickets.assignees import unassign as unassign
from helpdesk.tickets.events import after_change, offer_to_assignment, record_event
from helpdesk.tickets.models import (
    ACTIVE_STATUSES,
    Priority,
    RoutingRule,
    Ticket,
    TicketPause,
    TicketStatus,
    TicketTag,
)
from helpdesk.tickets.tags import apply_tag_rules
from helpdesk.types import utcnow


def current_ticket(conversation: Conversation) -> Ticket | None:
    if conversation.current_ticket_id is None:
        return None
    return db.session.get(Ticket, conversation.current_ticket_id)


def _route_team(ticket: Ticket) -> int | None:
    """The first routing rule whose channel and tag conditions match names the team."""
    rules = _routing_rules(ticket.brand_id)
    if not rules:
        return None
    tag_ids = set(
        db.session.scalars(select(TicketTag.tag_id).where(TicketTag.ticket_id == ticket.id))
    )
    for rule in rules:
        if rule.channel_id is not None and rule.channel_id != ticket.channel_id:
            continue
        if rule.tag_id is not None and rule.tag_id not in tag_ids:
            continue
        return rule.team_id
    return None


def _routing_rules(brand_id: int) -> list[RoutingRule]:
    return cached(
        ("routing_rules", brand_id),
        lambda: list(
            db.session.scalars(
                select(RoutingRule)
                .where(RoutingRule.brand_id == brand_id)
                .order_by(RoutingRule.position, RoutingRule.id)
            )
        ),
    )


def open_ticket(
    conversation: Conversation,
    opened_at: datetime,
    now: datetime | None = None,
    text: str | None = None,
) -> Ticket:
    """Open a ticket; the partial unique index keeps it to one active ticket per conversation."""
    now = now or utcnow()
    existing = db.session.scalar(
        select(Ticket).where(
            Ticket.conversation_id == conversation.id, Ticket.status.in_(ACTIVE_STATUSES)
        )
    )
    if existing is not None:
        return existing
    ticket = Ticket(
        brand_id=conversation.brand_id,
        conversation_id=conversation.id,
        channel_id=conversation.channel_id,
        status=TicketStatus.OPEN,
        priority=Priority.NORMAL,
        opened_at=opened_at,
        awaiting_since=opened_at,
        breached=[],
        created_at=now,
        updated_at=now,
    )
    with atomic():
        db.session.add(ticket)
        db.session.flush()
    return setup_opened(conversation, ticket, now, text)


def setup_opened(
    conversation: Conversation, ticket: Ticket, now: datetime, text: str | None = None
) -> Ticket:
    """What follows a new ticket's row (inserted by `open_ticket`): the thread's messages join
    it, keyword tags, routing, clocks, the `ticket.created` webhook, assignment, automations and
    the live update."""
    setup_opened_many([(conversation, ticket, text)], now)
    live.ticket_updated(ticket)
    return ticket


def setup_opened_many(opened: list[tuple[Conversation, Ticket, str | None]], now: datetime) -> None:
    """`setup_opened` for one or many new tickets (the intake's batches insert many rows at
    once): the threads' messages join their tickets in one statement and the clocks are
    computed per brand at once (`hooks.TICKETS_CHANGED`). Live updates are the caller's."""
    for conversation, ticket, _text in opened:
        conversation.current_ticket_id = ticket.id
        conversation.status = ConversationStatus(ticket.status.value)
    db.session.execute(
        update(Message)
        .where(
            Message.conversation_id.in_([conversation.id for conversation, _, _ in opened]),
            Message.ticket_id.is_(None),
            Message.suppressed.is_(False),
        )
        .values(
            ticket_id=select(Ticket.id)
            .where(
                Ticket.conversation_id == Message.conversation_id,
                Ticket.id.in_([ticket.id for _, ticket, _ in opened]),
            )
            .scalar_subquery()
        )
        .execution_options(synchronize_session=False)
    )
    for _conversation, ticket, text in opened:
        record_event(ticket, "created", data={"opened_at": ticket.opened_at.isoformat()}, at=now)
        # Keyword tags first: routing rules may send tagged tickets to a team.
        apply_tag_rules(ticket, text)
        ticket.team_id = _route_team(ticket)
    db.session.flush()
    hooks.publish(hooks.TICKETS_CHANGED, tickets=[ticket for _, ticket, _ in opened], now=now)
    for _conversation, ticket, _text in opened:
        emit(ticket.brand_id, "ticket.created", ticket_data(ticket))
        offer_to_assignment(ticket, now)
        hooks.publish(hooks.TICKET_CREATED, ticket=ticket, now=now)


def _brand(brand_id: int) -> Brand:
    return db.session.get(Brand, brand_id)


def on_inbound(message: Message, now: datetime | None = None) -> Ticket | None:
    """A customer message: continue, wake, reopen or open the conversation's ticket.

    Requests, hidden, declined and blocked threads get no ticket until they are accepted.
    """
    now = now or utcnow()
    conversation = db.session.get(Conversation, message.conversation_id)
    if message.suppressed or conversation.request_state not in INBOX_STATES:
        return None
    at = message.sent_at or now
    ticket = current_ticket(conversation)

    if ticket is not None and ticket.status is TicketStatus.RESOLVED:
        reopen_until = ticket.resolved_at + timedelta(days=_brand(ticket.brand_id).reopen_days)
        if at <= reopen_until:
            _reopen(ticket, at, now)
        else:
            ticket = None
    elif ticket is not None and ticket.status is TicketStatus.CLOSED:
        ticket = None

    if ticket is None:
        ticket = open_ticket(conversation, opened_at=at, now=now, text=message.text)
        message.ticket_id = ticket.id
        return ticket

    message.ticket_id = ticket.id
    if ticket.status is TicketStatus.SNOOZED:
        _change_status(ticket, TicketStatus.OPEN, None, now, reason="customer_wrote")
    elif ticket.status is TicketStatus.PENDING:
        _change_status(ticket, TicketStatus.OPEN, None, now, reason="customer_wrote")
    if ticket.awaiting_since is None:
        ticket.awaiting_since = at
    record_event(ticket, "inbound", data={"message_id": message.id}, at=at)
    apply_tag_rules(ticket, message.text)
    after_change(ticket, now)
    return ticket


def _reopen(ticket: Ticket, at: datetime, now: datetime) -> None:
    # The resolved stretch does not count against the clocks of the reopened ticket.
    db.session.add(TicketPause(ticket_id=ticket.id, started_at=ticket.resolved_at, ended_at=at))
    previous = ticket.status
    ticket.status = TicketStatus.OPEN
    ticket.reopen_count += 1
    ticket.resolved_at = None
    ticket.awaiting_since = at
    ticket.breached = [name for name in ticket.breached if name == "first_response"]
    record_event(
        ticket,
        "reopened",
        data={"from": previous.value, "reopen_count": ticket.reopen_count},
        at=at,
    )
    offer_to_assignment(ticket, now)


def on_accept(conversation: Conversation, now: datetime | None = None) -> Ticket:
    """An accepted request opens its ticket at the first message: the customer waited since."""
    now = now or utcnow()
    first = db.session.scalar(
        select(func.min(Message.sent_at)).where(
            Message.conversation_id == conversation.id,
            Message.direction == Direction.INBOUND,
            Message.ticket_id.is_(None),
            Message.suppressed.is_(False),
        )
    )
    return open_ticket(conversation, opened_at=first or now, now=now)


def on_human_reply(message: Message, at: datetime | None = None) -> Ticket | None:
    """A person answered (console, API or the platform app): first response and response clocks.
    Only a reply strictly after the ticket's opening counts."""
    at = at or message.sent_at or utcnow()
    if message.is_automated or message.direction is not Direction.OUTBOUND:
        return None
    conversation = db.session.get(Conversation, message.conversation_id)
    ticket = current_ticket(conversation)
    if ticket is None or not ticket.active:
        return None
    message.ticket_id = ticket.id
    if at <= ticket.opened_at:
        # Sent before the customer's message that opened the ticket (an echo delivered late, or
        # the brand's own opening of the thread): it answers nothing of this ticket.
        return ticket
    if ticket.first_response_at is None:
        ticket.first_response_at = at
        record_event(
            ticket, "first_response", message.author_agent_id, {"message_id": message.id}, at
        )
    record_event(
        ticket,
        "response",
        message.author_agent_id,
        {"message_id": message.id, "awaiting_since": _iso(ticket.awaiting_since)},
        at,
    )
    ticket.last_response_at = at
    ticket.awaiting_since = None
    after_change(ticket, at)
    return ticket


def _iso(value: datetime | None) -> str | None:
    return value.isoformat() if value else None


# Status -----------------------------------------------------------------------------------------


def _change_status(
    ticket: Ticket,
    status: TicketStatus,
    actor_id: int | None,
    now: datetime,
    snoozed_until: datetime | None = None,
    reason: str | None = None,
) -> None:
    previous = ticket.status
    if previous is TicketStatus.PENDING and status is not TicketStatus.PENDING:
        db.session.execute(
            update(TicketPause)
            .where(TicketPause.ticket_id == ticket.id, TicketPause.ended_at.is_(None))
            .values(ended_at=now)
            .execution_options(synchronize_session=False)
        )
        ticket.paused_at = None
    if status is TicketStatus.PENDING and previous is not TicketStatus.PENDING:
        db.session.add(TicketPause(ticket_id=ticket.id, started_at=now))
        ticket.paused_at = now
    ticket.status = status
    ticket.snoozed_until = snoozed_until if status is TicketStatus.SNOOZED else None
    if status is TicketStatus.RESOLVED:
        ticket.resolved_at = now
        emit(ticket.brand_id, "ticket.resolved", ticket_data(ticket, actor_id=actor_id))
        hooks.publish(hooks.TICKET_RESOLVED, ticket=ticket, now=now)  # csat schedules its survey
    if status is TicketStatus.CLOSED:
        ticket.closed_at = now
        ticket.resolved_at = ticket.resolved_at or now
    data = {"from": previous.value, "to": status.value}
    if snoozed_until:
        data["snoozed_until"] = snoozed_until.isoformat()
    if reason:
        data["reason"] = reason
    record_event(ticket, "status_changed", actor_id, data, now)


def state_token(ticket: Ticket) -> str:
    """What a page showed of the ticket; a form carrying it is refused once that changed."""
    return ".".join(
        str(part)
        for part in (
            ticket.id,
            ticket.status.value,
            ticket.assignee_id or 0,
            ticket.priority.value,
            ticket.team_id or 0,
        )
    )


def check_unchanged(ticket: Ticket, seen: str | None) -> None:
    """A change decided on a stale page (Back, a second tab) is refused, not applied."""
    if seen is None or seen == state_token(ticket):
        return
    assignee = db.session.get(Agent, ticket.assignee_id) if ticket.assignee_id else None
    now = f"{ticket.status.value}, {'assigned to ' + assignee.name if assignee else 'unassigned'}"
    raise StaleTicket(
        f"This ticket changed since this page was loaded (it is now {now}, priority "
        f"{ticket.priority.value}). Nothing was changed: check it below and try again."
    )


def set_status(
    ticket: Ticket,
    status: TicketStatus | str,
    actor: Actor | Agent | None,
    snoozed_until: datetime | None = None,
    now: datetime | None = None,
) -> Ticket:
    now = now or utcnow()
    require_role(actor, ticket.brand_id, Role.AGENT)
    try:
        status = TicketStatus(status)
    except ValueError as exc:
        raise ValidationError(f"unknown status {status!r}") from exc
    if ticket.status is TicketStatus.CLOSED:
        raise InvalidState("a closed ticket stays closed; a new message opens a new ticket")
    if status is TicketStatus.SNOOZED and (snoozed_until is None or snoozed_until <= now):
        raise ValidationError("snoozing needs a time in the future")
    if status is TicketStatus.OPEN and ticket.status is TicketStatus.RESOLVED:
        if _other_active_ticket(ticket):
            raise InvalidState("the conversation already has an open ticket")
        _reopen(ticket, now, now)
        after_change(ticket, now)
        hooks.publish(hooks.TICKET_UPDATED, ticket=ticket, actor=actor, now=now)
        return ticket
    if status is ticket.status and status is not TicketStatus.SNOOZED:
        return ticket
    _change_status(ticket, status, agent_id_of(actor), now, snoozed_until)
    after_change(ticket, now)
    if status in (TicketStatus.RESOLVED, TicketStatus.CLOSED):
        hooks.publish(hooks.TICKET_FINISHED, brand_id=ticket.brand_id, now=now)
    hooks.publish(hooks.TICKET_UPDATED, ticket=ticket, actor=actor, now=now)
    return ticket


def _other_active_ticket(ticket: Ticket) -> bool:
    return (
        db.session.scalar(
            select(Ticket.id).where(
                Ticket.conversation_id == ticket.conversation_id,
                Ticket.id != ticket.id,
                Ticket.status.in_(ACTIVE_STATUSES),
            )
        )
        is not None
    )


def wake_snoozed(now: datetime | None = None, limit: int = 500) -> int:
    """Snoozed tickets whose time has come are open again."""
    now = now or utcnow()
    query = (
        select(Ticket)
        .where(Ticket.status == TicketStatus.SNOOZED, Ticket.snoozed_until <= now)
        .order_by(Ticket.snoozed_until)
        .limit(limit)
    )
    if db.session.get_bind().dialect.name == "postgresql":
        query = query.with_for_update(skip_locked=True)
    tickets = db.session.scalars(query).all()
    for ticket in tickets:
        _change_status(ticket, TicketStatus.OPEN, None, now, reason="snooze_ended")
        after_change(ticket, now)
    return len(tickets)


def set_priority(
    ticket: Ticket,
    priority: Priority | str,
    actor: Actor | Agent | None,
    now: datetime | None = None,
) -> Ticket:
    now = now or utcnow()
    require_role(actor, ticket.brand_id, Role.AGENT)
    try:
        priority = Priority(priority)
    except ValueError as exc:
        raise ValidationError(f"unknown priority {priority!r}") from exc
    if priority is ticket.priority:
        return ticket
    record_event(
        ticket,
        "priority_changed",
        agent_id_of(actor),
        {"from": ticket.priority.value, "to": priority.value},
        now,
    )
    ticket.priority = priority
    after_change(ticket, now)
    hooks.publish(hooks.TICKET_UPDATED, ticket=ticket, actor=actor, now=now)
    return ticket


def set_team(
    ticket: Ticket, team_id: int | None, actor: Actor | Agent | None, now: datetime | None = None
) -> Ticket:
    now = now or utcnow()
    require_role(actor, ticket.brand_id, Role.AGENT)
    if team_id is not None:
        team = db.session.get(Team, team_id)
        if team is None or team.brand_id != ticket.brand_id:
            raise ValidationError("no such team in this brand")
    if team_id == ticket.team_id:
        return ticket
    record_event(
        ticket,
        "team_changed",
        agent_id_of(actor),
        {"from": ticket.team_id, "to": team_id},
        now,
    )
    ticket.team_id = team_id
    after_change(ticket, now)
    if ticket.active:
        offer_to_assignment(ticket, now)
    hooks.publish(hooks.TICKET_UPDATED, ticket=ticket, actor=actor, now=now)
    return ticket

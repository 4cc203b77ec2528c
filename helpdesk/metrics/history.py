"""Tickets and ticket events for bulk history (`seed-load` writes conversations and messages only),
so that benchmarks can recompute metrics over a million messages.

Each conversation that would have a ticket (not a pending request) gets one, opened at its first
customer message, with the events the ticket service records: created, assigned, inbound,
first_response, response (one per brand message, credited to its author) and, for conversations
seed-load marked resolved or quiet for three days, a resolution ten minutes after the last
message. SLA breaches follow
the brand's first policy. Written in bulk: one aggregate query, set-based updates, then events per
chunk of tickets through COPY on PostgreSQL.
"""

from __future__ import annotations

import time
from collections import defaultdict
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import func, select, text, update

from helpdesk.accounts.models import Membership, Team
from helpdesk.brands.models import Brand
from helpdesk.dm.models import Conversation, Direction, Message, RequestState
from helpdesk.extensions import db
from helpdesk.metrics.compute import BusinessClock
from helpdesk.metrics.plumbing import bulk_insert
from helpdesk.sla.models import SlaPolicy
from helpdesk.sla.service import get_calendar
from helpdesk.tickets.models import Tag, Ticket, TicketEvent, TicketTag
from helpdesk.types import utcnow

RESOLVED_AFTER = timedelta(minutes=10)
# Agents resolve conversations that went quiet (seed-load leaves most of them open for ever).
IDLE_RESOLVED = timedelta(days=3)
TAGGED_EVERY = 3  # one ticket in three carries a tag
CHUNK_TICKETS = 2000
TICKET_COLUMNS = (
    "brand_id", "conversation_id", "channel_id", "status", "priority", "assignee_id", "team_id",
    "opened_at", "first_response_at", "awaiting_since", "last_response_at", "resolved_at",
    "assigned_at", "reopen_count", "sla_policy_id", "breached", "created_at", "updated_at",
)  # fmt: skip
EVENT_COLUMNS = ("brand_id", "ticket_id", "actor_id", "kind", "data", "at")


@dataclass
class HistoryReport:
    tickets: int = 0
    events: int = 0
    seconds: float = 0.0


def _breached(
    clock: BusinessClock, policy: SlaPolicy | None, opened: datetime, first: datetime | None,
    resolved: datetime | None, now: datetime,
) -> list[str]:  # fmt: skip
    """Which targets the SLA sweep would have marked breached (pauses aside)."""
    if policy is None:
        return []

    def took(end: datetime) -> float:
        if policy.business_hours:
            return clock.business_seconds(opened, end)
        return (end - opened).total_seconds()

    breached = []
    if policy.first_response_min and took(first or now) > policy.first_response_min * 60:
        breached.append("first_response")
    if policy.resolution_min and took(resolved or now) > policy.resolution_min * 60:
        breached.append("resolution")
    return breached


def build_ticket_history(brand: Brand) -> HistoryReport:
    """Give the brand's ticketless conversations the tickets and events the services would have
    written; the caller's session is committed along the way."""
    started = time.perf_counter()
    report = HistoryReport()
    now = utcnow()
    clock = BusinessClock(get_calendar(brand))
    policy = db.session.scalar(
        select(SlaPolicy)
        .where(SlaPolicy.brand_id == brand.id)
        .order_by(SlaPolicy.position, SlaPolicy.id)
    )
    agents = list(
        db.session.scalars(
            select(Membership.agent_id)
            .where(Membership.brand_id == brand.id)
            .order_by(Membership.agent_id)
        )
    )
    teams = list(db.session.scalars(select(Team.id).where(Team.brand_id == brand.id)))
    tags = list(db.session.scalars(select(Tag.id).where(Tag.brand_id == brand.id)))

    inbound = Message.direction == Direction.INBOUND
    aggregates = db.session.execute(
        select(
            Conversation.id,
            Conversation.channel_id,
            Conversation.status,
            func.min(Message.sent_at).filter(inbound),
            func.min(Message.sent_at).filter(~inbound),
            func.max(Message.sent_at),
        )
        .join(Message, Message.conversation_id == Conversation.id)
        .where(
            Conversation.brand_id == brand.id,
            Conversation.current_ticket_id.is_(None),
            Conversation.request_state.in_([RequestState.NONE, RequestState.ACCEPTED]),
            Message.suppressed.is_(False),
        )
        .group_by(Conversation.id, Conversation.channel_id, Conversation.status)
        .order_by(Conversation.id)
    ).all()
    before = db.session.scalar(select(func.coalesce(func.max(Ticket.id), 0)))
    rows, tagged = [], []
    for conversation_id, channel_id, status, first_in, first_out, last_at in aggregates:
        if first_in is None:
            continue
        resolved = status.value == "resolved" or last_at < now - IDLE_RESOLVED
        resolved_at = last_at + RESOLVED_AFTER if resolved else None
        assignee = agents[conversation_id % len(agents)] if agents else None
        rows.append((
            brand.id, conversation_id, channel_id, "resolved" if resolved else "open", "normal",
            assignee, teams[conversation_id % len(teams)] if teams else None, first_in,
            first_out, None if first_out else first_in, first_out, resolved_at,
            first_in if assignee else None, 0, policy.id if policy else None,
            _breached(clock, policy, first_in, first_out, resolved_at, now), now, now,
        ))  # fmt: skip
        if tags and conversation_id % TAGGED_EVERY == 0:
            tagged.append((conversation_id, tags[conversation_id % len(tags)]))
    bulk_insert(Ticket, TICKET_COLUMNS, rows)
    db.session.execute(
        update(Conversation)
        .where(
            Conversation.brand_id == brand.id,
            Conversation.current_ticket_id.is_(None),
            Ticket.conversation_id == Conversation.id,
            Ticket.id > before,
        )
        .values(current_ticket_id=Ticket.id, status=Ticket.status)
        .execution_options(synchronize_session=False)
    )
    db.session.execute(
        update(Message)
        .where(
            Message.brand_id == brand.id,
            Message.ticket_id.is_(None),
            Message.suppressed.is_(False),
            Conversation.id == Message.conversation_id,
            Conversation.current_ticket_id > before,
        )
        .values(ticket_id=Conversation.current_ticket_id)
        .execution_options(synchronize_session=False)
    )
    ticket_of = dict(
        db.session.execute(
            select(Ticket.conversation_id, Ticket.id).where(
                Ticket.brand_id == brand.id, Ticket.id > before
            )
        ).all()
    )
    bulk_insert(
        TicketTag,
        ("ticket_id", "tag_id"),
        [(ticket_of[c], tag) for c, tag in tagged if c in ticket_of],
    )
    db.session.commit()
    report.tickets = len(ticket_of)

    facts = {ticket_of[row[1]]: (row[5], row[7], row[11]) for row in rows if row[1] in ticket_of}
    ids = sorted(facts)
    for start in range(0, len(ids), CHUNK_TICKETS):
        chunk = ids[start : start + CHUNK_TICKETS]
        report.events += _write_events(brand.id, chunk, facts)
        db.session.commit()
    if db.session.get_bind().dialect.name == "postgresql":
        db.session.execute(text("ANALYZE tickets, ticket_events, ticket_tags, messages"))
        db.session.commit()
    report.seconds = time.perf_counter() - started
    return report


def _write_events(brand_id: int, ids: list[int], facts: dict) -> int:
    messages: dict[int, list[tuple]] = defaultdict(list)
    for ticket_id, message_id, direction, sent_at, author in db.session.execute(
        select(
            Message.ticket_id, Message.id, Message.direction, Message.sent_at,
            Message.author_agent_id,
        )
        .where(Message.ticket_id >= ids[0], Message.ticket_id <= ids[-1])
        .order_by(Message.ticket_id, Message.sent_at, Message.id)
    ):  # fmt: skip
        messages[ticket_id].append((message_id, direction, sent_at, author))
    events: list[tuple] = []
    for ticket_id in ids:
        assignee, opened_at, resolved_at = facts[ticket_id]
        events.append(
            (brand_id, ticket_id, None, "created", {"opened_at": opened_at.isoformat()}, opened_at)
        )
        if assignee is not None:
            data = {"assignee_id": assignee, "auto": True}
            events.append((brand_id, ticket_id, None, "assigned", data, opened_at))
        answered = False
        waiting: datetime | None = None
        for position, (message_id, direction, sent_at, author) in enumerate(
            messages.get(ticket_id, ())
        ):
            if direction is Direction.INBOUND:
                waiting = waiting or sent_at
                if position:
                    data = {"message_id": message_id}
                    events.append((brand_id, ticket_id, None, "inbound", data, sent_at))
                continue
            if not answered:
                data = {"message_id": message_id}
                events.append((brand_id, ticket_id, author, "first_response", data, sent_at))
                answered = True
            data = {
                "message_id": message_id,
                "awaiting_since": waiting.isoformat() if waiting else None,
            }
            events.append((brand_id, ticket_id, author, "response", data, sent_at))
            waiting = None
        if resolved_at is not None:
            data = {"from": "open", "to": "resolved"}
            events.append((brand_id, ticket_id, assignee, "status_changed", data, resolved_at))
    bulk_insert(TicketEvent, EVENT_COLUMNS, events)
    return len(events)

"""Per-ticket metric events (docs/metrics.md), recomputed from a ticket's history as a whole
(delete, insert), so a second run changes nothing."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime
from datetime import time as clock_time

from sqlalchemy import delete, func, or_, select

from helpdesk.brands.models import Brand
from helpdesk.dm.models import Direction, Message
from helpdesk.extensions import db
from helpdesk.metrics.compute import (
    EVENT_FIELDS,
    EVENT_KINDS,
    BusinessClock,
    EventFacts,
    Targets,
    TicketFacts,
    bucket_of,
    calendar_seconds,
    measure_ticket,
)
from helpdesk.metrics.models import MetricEvent, MetricTicketState
from helpdesk.metrics.plumbing import bulk_insert, lock, one_of, utc_session
from helpdesk.metrics.rollups import rebuild_rollups
from helpdesk.sla.models import SlaPolicy
from helpdesk.sla.service import get_calendar
from helpdesk.tickets.models import Ticket, TicketEvent, TicketTag
from helpdesk.types import utcnow

CHUNK = 1000  # tickets loaded and recomputed together
METRIC_COLUMNS = (
    "brand_id", "ticket_id", "kind", "seq", "started_at", "ended_at", "calendar_seconds",
    "business_seconds", "calendar_bucket", "business_bucket", "agent_id", "from_app", "team_id",
    "channel_id", "tag_ids", "sla_met", "day",
)  # fmt: skip
STATE_COLUMNS = ("ticket_id", "last_event_id", "refreshed_at")


@dataclass
class BrandContext:
    """A brand's calendar and SLA targets, loaded once for however many tickets are computed."""

    brand_id: int
    clock: BusinessClock
    targets: dict[int, Targets]

    @classmethod
    def load(cls, brand_id: int) -> BrandContext:
        brand = db.session.get(Brand, brand_id)
        rows = db.session.execute(
            select(SlaPolicy.id, SlaPolicy.first_response_min, SlaPolicy.resolution_min).where(
                SlaPolicy.brand_id == brand_id
            )
        )
        targets = {
            policy_id: Targets(first is not None, resolution is not None)
            for policy_id, first, resolution in rows
        }
        return cls(brand_id, BusinessClock(get_calendar(brand)), targets)

    def local_midnight(self, day: date) -> datetime:
        """The UTC instant a brand-local date starts."""
        return datetime.combine(day, clock_time(0), tzinfo=self.clock.zone).astimezone(UTC)


def _ticket_facts(ids: Sequence[int]) -> tuple[list[TicketFacts], dict[int, int | None]]:
    tags: dict[int, list[int]] = defaultdict(list)
    for ticket_id, tag_id in db.session.execute(
        select(TicketTag.ticket_id, TicketTag.tag_id)
        .where(one_of(TicketTag.ticket_id, ids))
        .order_by(TicketTag.tag_id)
    ):
        tags[ticket_id].append(tag_id)
    facts, policies = [], {}
    for row in db.session.execute(
        select(
            Ticket.id,
            Ticket.brand_id,
            Ticket.channel_id,
            Ticket.team_id,
            Ticket.assignee_id,
            Ticket.status,
            Ticket.opened_at,
            Ticket.resolved_at,
            Ticket.breached,
            Ticket.sla_policy_id,
        ).where(one_of(Ticket.id, ids))
    ):
        facts.append(
            TicketFacts(
                id=row.id,
                brand_id=row.brand_id,
                channel_id=row.channel_id,
                team_id=row.team_id,
                assignee_id=row.assignee_id,
                status=row.status.value,
                opened_at=row.opened_at,
                resolved_at=row.resolved_at,
                breached=tuple(row.breached or ()),
                tag_ids=tuple(tags.get(row.id, ())),
            )
        )
        policies[row.id] = row.sla_policy_id
    return facts, policies


def _histories(
    ids: Sequence[int],
) -> tuple[dict[int, list[datetime]], dict[int, set[int]], dict[int, list[EventFacts]], dict]:
    """Inbound times, echo ids, relevant events and the newest event id of each ticket."""
    inbound: dict[int, list[datetime]] = defaultdict(list)
    echoes: dict[int, set[int]] = defaultdict(set)
    is_inbound = (Message.direction == Direction.INBOUND).label("inbound")
    for ticket_id, message_id, customer, sent_at, created_at in db.session.execute(
        select(
            Message.ticket_id, Message.id, is_inbound, Message.sent_at, Message.created_at
        ).where(
            one_of(Message.ticket_id, ids),
            Message.suppressed.is_(False),
            or_(is_inbound, Message.is_echo.is_(True)),
        )
    ):
        if customer:
            inbound[ticket_id].append(sent_at or created_at)
        else:
            echoes[ticket_id].add(message_id)
    events: dict[int, list[EventFacts]] = defaultdict(list)
    data = TicketEvent.data
    for ticket_id, event_id, kind, at, actor_id, *fields in db.session.execute(
        select(
            TicketEvent.ticket_id,
            TicketEvent.id,
            TicketEvent.kind,
            TicketEvent.at,
            TicketEvent.actor_id,
            data["message_id"].as_integer(),
            data["from"].as_string(),
            data["to"].as_string(),
            data["assignee_id"].as_integer(),
            data["target"].as_string(),
        ).where(one_of(TicketEvent.ticket_id, ids), TicketEvent.kind.in_(EVENT_KINDS))
    ):
        facts = dict(zip(EVENT_FIELDS, fields, strict=True))
        events[ticket_id].append(EventFacts(event_id, kind, at, actor_id, facts))
    newest = dict(
        db.session.execute(
            select(TicketEvent.ticket_id, func.max(TicketEvent.id))
            .where(one_of(TicketEvent.ticket_id, ids))
            .group_by(TicketEvent.ticket_id)
        ).all()
    )
    return inbound, echoes, events, newest


def refresh_chunk(context: BrandContext, ids: Sequence[int]) -> tuple[set[date], set[date]]:
    """Replace the metric events of these tickets of one brand; returns the days whose rollups
    changed (old rows and new) and the days the tickets were opened on."""
    ids = sorted(set(ids))
    utc_session()
    lock(f"metrics:ticket:{ticket_id}" for ticket_id in ids)
    facts, policies = _ticket_facts(ids)
    facts = [ticket for ticket in facts if ticket.brand_id == context.brand_id]
    ids = [ticket.id for ticket in facts]
    if not ids:
        return set(), set()
    inbound, echoes, events, newest = _histories(ids)
    clock = context.clock
    rows: list[tuple] = []
    for ticket in facts:
        targets = context.targets.get(policies[ticket.id], Targets())
        measured = measure_ticket(
            ticket, inbound.get(ticket.id, ()), events.get(ticket.id, ()),
            echoes.get(ticket.id, set()), targets,
        )  # fmt: skip
        for item in measured:
            calendar = business = calendar_bucket = business_bucket = None
            if item.ended_at is not None:
                calendar = calendar_seconds(item.started_at, item.ended_at)
                business = clock.business_seconds(item.started_at, item.ended_at)
                calendar_bucket, business_bucket = bucket_of(calendar), bucket_of(business)
            rows.append((
                ticket.brand_id, ticket.id, item.kind, item.seq, item.started_at, item.ended_at,
                calendar, business, calendar_bucket, business_bucket, item.agent_id,
                item.from_app, ticket.team_id, ticket.channel_id, list(ticket.tag_ids),
                item.sla_met, clock.local_date(item.happened_at),
            ))  # fmt: skip
    old_days = set(
        db.session.scalars(
            delete(MetricEvent)
            .where(one_of(MetricEvent.ticket_id, ids))
            .returning(MetricEvent.day)
            .execution_options(synchronize_session=False)
        )
    )
    bulk_insert(MetricEvent, METRIC_COLUMNS, rows)
    db.session.execute(
        delete(MetricTicketState)
        .where(one_of(MetricTicketState.ticket_id, ids))
        .execution_options(synchronize_session=False)
    )
    now = utcnow()
    bulk_insert(
        MetricTicketState,
        STATE_COLUMNS,
        [(ticket_id, newest.get(ticket_id, 0), now) for ticket_id in ids],
    )
    new_days = {row[-1] for row in rows}
    opened_days = {clock.local_date(ticket.opened_at) for ticket in facts}
    return old_days | new_days, opened_days


def refresh_ticket_metrics(ticket_id: int) -> set[date]:
    """Recompute one ticket's metric events and the rollups of the days they touch; called by
    the worker after a response or a resolution. Returns those days."""
    brand_id = db.session.scalar(select(Ticket.brand_id).where(Ticket.id == ticket_id))
    if brand_id is None:
        return set()
    days, _opened = refresh_chunk(BrandContext.load(brand_id), [ticket_id])
    rebuild_rollups(brand_id, days)
    return days

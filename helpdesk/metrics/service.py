"""Keeping metrics current (docs/metrics.md): per-ticket metric events, daily rollups and hourly
volume.

A ticket's metric events are recomputed from its history as a whole (delete, insert), then the
rollups of every brand-local day they touched are rebuilt from the metric events, so every step is
idempotent and a second run changes nothing. On PostgreSQL advisory locks (per ticket, per brand
and day) keep two workers from interleaving; SQLite serialises writers anyway. Functions flush;
the caller commits.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import sys
import time
from collections import defaultdict
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from datetime import time as clock_time
from typing import Any

import click
from sqlalchemy import (
    BigInteger,
    Integer,
    Table,
    Text,
    and_,
    any_,
    cast,
    delete,
    func,
    insert,
    literal,
    literal_column,
    or_,
    select,
    text,
)
from sqlalchemy.dialects.postgresql import ARRAY
from sqlalchemy.exc import IntegrityError

from helpdesk.brands.models import Brand
from helpdesk.dm.models import Direction, Message, MessageStatus
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
    dense_histogram,
    dimension_keys,
    measure_ticket,
)
from helpdesk.metrics.models import (
    MetricCursor,
    MetricEvent,
    MetricRollup,
    MetricTicketState,
    MetricVolume,
)
from helpdesk.sla.models import SlaPolicy
from helpdesk.sla.service import get_calendar
from helpdesk.tickets.models import Ticket, TicketEvent, TicketTag
from helpdesk.types import utcnow

CHUNK = 1000  # tickets loaded and recomputed together
DAY_BATCH = 31  # rollup days rebuilt per statement
SWEEP_BATCH = 5000  # ticket events or messages read per sweep step
# The sweep rereads this many ids below its cursor: a transaction that took an id before the last
# sweep but committed after it is still seen. Tickets already up to date are skipped.
OVERLAP = 1000
SLOT_SECONDS = 900  # volume is counted per UTC quarter hour, then mapped to local hours
DAY_SECONDS = 86_400
NOT_SENT = (MessageStatus.SCHEDULED, MessageStatus.CANCELLED, MessageStatus.FAILED)

METRIC_COLUMNS = (
    "brand_id", "ticket_id", "kind", "seq", "started_at", "ended_at", "calendar_seconds",
    "business_seconds", "calendar_bucket", "business_bucket", "agent_id", "from_app", "team_id",
    "channel_id", "tag_ids", "sla_met", "day",
)  # fmt: skip
ROLLUP_COLUMNS = (
    "brand_id", "dimension", "day", "key", "kind", "count", "calendar_sum", "business_sum",
    "calendar_hist", "business_hist", "sla_total", "sla_met",
)  # fmt: skip
VOLUME_COLUMNS = (
    "brand_id", "day", "hour", "channel_id", "tickets_opened", "messages_in", "messages_out",
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


@dataclass
class SweepReport:
    tickets: int = 0
    rollup_days: int = 0
    volume_days: int = 0
    more: bool = False
    skipped: bool = False


@dataclass
class RecomputeReport:
    tickets: int = 0
    metric_events: int = 0
    rollup_days: int = 0
    volume_days: int = 0
    seconds: float = 0.0
    phases: dict[str, float] = field(default_factory=dict)


# Plumbing ---------------------------------------------------------------------------------------


def _postgres() -> bool:
    return db.session.get_bind().dialect.name == "postgresql"


def _lock_key(name: str) -> int:
    return int.from_bytes(
        hashlib.blake2b(name.encode(), digest_size=8).digest(), "big", signed=True
    )


def _lock(names: Iterable[str]) -> None:
    """Transaction-scoped advisory locks, taken in one sorted order so that two workers never
    wait on each other in a cycle."""
    if not _postgres():
        return
    keys = sorted({_lock_key(name) for name in names})
    if keys:
        db.session.execute(
            text("SELECT count(pg_advisory_xact_lock(k)) FROM unnest(CAST(:keys AS bigint[])) k"),
            {"keys": keys},
        )


def _utc_session() -> None:
    """On PostgreSQL, have this transaction hand back times in UTC: the driver then attaches a
    fixed offset instead of a ZoneInfo, which makes hundreds of thousands of conversions cheap."""
    if _postgres():
        db.session.execute(text("SET LOCAL TimeZone = 'UTC'"))


def bulk_insert(table: Table, columns: Sequence[str], rows: list[tuple]) -> None:
    """Many rows into a table in the session's transaction: COPY on PostgreSQL."""
    if not rows:
        return
    db.session.flush()
    connection = db.session.connection()
    if connection.dialect.name != "postgresql":
        connection.execute(insert(table), [dict(zip(columns, row, strict=True)) for row in rows])
        return
    statement = f"COPY {table.name} ({', '.join(columns)}) FROM STDIN"
    raw = connection.connection.driver_connection
    with raw.cursor() as cursor, cursor.copy(statement) as copy:
        for row in rows:
            copy.write_row([json.dumps(v) if isinstance(v, (list, dict)) else v for v in row])


def _one_of(column, ids: Sequence[int]) -> Any:
    """``column IN ids``; on PostgreSQL one array parameter, which keeps a thousand ids cheap to
    send and plan."""
    if _postgres():
        return column == any_(literal(list(ids), ARRAY(Integer)))
    return column.in_(list(ids))


def _chunks(items: Sequence[Any], size: int) -> Iterator[Sequence[Any]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


# Metric events of tickets -----------------------------------------------------------------------


def _ticket_facts(ids: Sequence[int]) -> tuple[list[TicketFacts], dict[int, int | None]]:
    tags: dict[int, list[int]] = defaultdict(list)
    for ticket_id, tag_id in db.session.execute(
        select(TicketTag.ticket_id, TicketTag.tag_id)
        .where(_one_of(TicketTag.ticket_id, ids))
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
        ).where(_one_of(Ticket.id, ids))
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
            _one_of(Message.ticket_id, ids),
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
        ).where(_one_of(TicketEvent.ticket_id, ids), TicketEvent.kind.in_(EVENT_KINDS))
    ):
        facts = dict(zip(EVENT_FIELDS, fields, strict=True))
        events[ticket_id].append(EventFacts(event_id, kind, at, actor_id, facts))
    newest = dict(
        db.session.execute(
            select(TicketEvent.ticket_id, func.max(TicketEvent.id))
            .where(_one_of(TicketEvent.ticket_id, ids))
            .group_by(TicketEvent.ticket_id)
        ).all()
    )
    return inbound, echoes, events, newest


def _refresh_chunk(context: BrandContext, ids: Sequence[int]) -> tuple[set[date], set[date]]:
    """Replace the metric events of these tickets of one brand; returns the days whose rollups
    changed (old rows and new) and the days the tickets were opened on."""
    ids = sorted(set(ids))
    _utc_session()
    _lock(f"metrics:ticket:{ticket_id}" for ticket_id in ids)
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
            .where(_one_of(MetricEvent.ticket_id, ids))
            .returning(MetricEvent.day)
            .execution_options(synchronize_session=False)
        )
    )
    bulk_insert(MetricEvent.__table__, METRIC_COLUMNS, rows)
    db.session.execute(
        delete(MetricTicketState)
        .where(_one_of(MetricTicketState.ticket_id, ids))
        .execution_options(synchronize_session=False)
    )
    now = utcnow()
    bulk_insert(
        MetricTicketState.__table__,
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
    days, _opened = _refresh_chunk(BrandContext.load(brand_id), [ticket_id])
    rebuild_rollups(brand_id, days)
    return days


# Rollups --------------------------------------------------------------------------------------


class _Rollup:
    """The totals of one rollup row while it is built from grouped metric events."""

    __slots__ = ("count", "calendar", "business", "calendar_hist", "business_hist", "sla", "met")

    def __init__(self) -> None:
        self.count, self.calendar, self.business = 0, 0.0, 0.0
        self.calendar_hist: dict[int, int] = {}
        self.business_hist: dict[int, int] = {}
        self.sla = self.met = 0

    def add(
        self,
        count: int,
        calendar: float | None,
        business: float | None,
        calendar_bucket: int | None,
        business_bucket: int | None,
        sla_met: bool | None,
    ) -> None:
        """A group of metric events sharing day, kind, dimension values, buckets and outcome."""
        if calendar_bucket is not None:
            self.count += count
            self.calendar += calendar
            self.business += business
            hist = self.calendar_hist
            hist[calendar_bucket] = hist.get(calendar_bucket, 0) + count
            hist = self.business_hist
            hist[business_bucket] = hist.get(business_bucket, 0) + count
        if sla_met is not None:
            self.sla += count
            if sla_met:
                self.met += count

    def values(self) -> tuple:
        return (
            self.count,
            self.calendar,
            self.business,
            dense_histogram(self.calendar_hist),
            dense_histogram(self.business_hist),
            self.sla,
            self.met,
        )


def rebuild_rollups(brand_id: int, days: Iterable[date]) -> int:
    """Rebuild the rollups of these brand-local days from the metric events; returns how many
    days. Aggregation happens in SQL down to (day, dimension values, buckets) first."""
    ordered = sorted(set(days))
    tags_text = cast(MetricEvent.tag_ids, Text)
    for batch in _chunks(ordered, DAY_BATCH):
        _lock(f"metrics:day:{brand_id}:{day.isoformat()}" for day in batch)
        db.session.execute(
            delete(MetricRollup)
            .where(MetricRollup.brand_id == brand_id, MetricRollup.day.in_(batch))
            .execution_options(synchronize_session=False)
        )
        groups = (
            MetricEvent.day,
            MetricEvent.kind,
            MetricEvent.agent_id,
            MetricEvent.from_app,
            MetricEvent.team_id,
            MetricEvent.channel_id,
            tags_text.label("tags"),
            MetricEvent.calendar_bucket,
            MetricEvent.business_bucket,
            MetricEvent.sla_met,
        )
        query = (
            select(
                *groups,
                func.count().label("count"),
                func.sum(MetricEvent.calendar_seconds).label("calendar_sum"),
                func.sum(MetricEvent.business_seconds).label("business_sum"),
            )
            .where(MetricEvent.brand_id == brand_id, MetricEvent.day.in_(batch))
            .group_by(*groups)
        )
        totals: dict[tuple[str, date, str, str], _Rollup] = {}
        # Rows repeat a few combinations of agent, team, channel and tags: their keys are cached.
        keys_of: dict[tuple, list[tuple[str, str]]] = {}
        for (
            day, kind, agent_id, from_app, team_id, channel_id, tags, calendar_bucket,
            business_bucket, sla_met, count, calendar, business,
        ) in db.session.execute(query):  # fmt: skip
            who = (agent_id, from_app, team_id, channel_id, tags)
            keys = keys_of.get(who)
            if keys is None:
                tag_ids = json.loads(tags) if tags else []
                keys = keys_of[who] = dimension_keys(
                    agent_id, from_app, team_id, channel_id, tag_ids
                )
            for dimension, key in keys:
                total = totals.get((dimension, day, key, kind))
                if total is None:
                    total = totals[(dimension, day, key, kind)] = _Rollup()
                total.add(count, calendar, business, calendar_bucket, business_bucket, sla_met)
        bulk_insert(
            MetricRollup.__table__,
            ROLLUP_COLUMNS,
            [
                (brand_id, dimension, day, key, kind, *total.values())
                for (dimension, day, key, kind), total in totals.items()
            ],
        )
    return len(ordered)


# Volume -----------------------------------------------------------------------------------------


def _slot(column, seconds: int = SLOT_SECONDS) -> Any:
    """The number of the UTC quarter hour (or other span) a time falls in: every time zone offset
    is a multiple of 15 minutes, so a quarter hour lies within one local hour."""
    span = literal_column(str(seconds))
    if _postgres():
        return cast(func.floor(func.extract("epoch", column) / span), BigInteger)
    return cast(func.strftime(literal_column("'%s'"), column), Integer) / span


def _between(column, low: datetime | None, high: datetime | None) -> list:
    conditions = []
    if low is not None:
        conditions.append(column >= low)
    if high is not None:
        conditions.append(column < high)
    return conditions


def rebuild_volume(
    context: BrandContext, first: date | None = None, last: date | None = None
) -> int:
    """Rebuild the hourly volume of brand-local days ``first``..``last`` (open-ended when None)
    from messages and tickets, by index range on (brand, time); returns the days written.

    Messages in: the customers' (blocked contacts' excluded), by sent time. Messages out: the
    brand's that went out or are going (not scheduled, cancelled or failed), by sent time, or
    creation time while not sent yet. Tickets opened: by opened_at."""
    brand_id, zone = context.brand_id, context.clock.zone
    low = context.local_midnight(first) if first is not None else None
    high = context.local_midnight(last + timedelta(days=1)) if last is not None else None
    if first is not None and last is not None:
        days = [first + timedelta(days=n) for n in range((last - first).days + 1)]
        _lock(f"metrics:volume:{brand_id}:{day.isoformat()}" for day in days)

    moment = func.coalesce(Message.sent_at, Message.created_at)
    slot = _slot(moment)
    timed = and_(Message.sent_at.is_not(None), *_between(Message.sent_at, low, high))
    untimed = and_(Message.sent_at.is_(None), *_between(Message.created_at, low, high))
    messages = db.session.execute(
        select(Message.channel_id, Message.direction, slot, func.count())
        .where(
            Message.brand_id == brand_id,
            or_(timed, untimed),
            Message.suppressed.is_(False),
            or_(Message.direction == Direction.INBOUND, Message.status.not_in(NOT_SENT)),
        )
        .group_by(Message.channel_id, Message.direction, slot)
    ).all()
    opened_slot = _slot(Ticket.opened_at)
    tickets = db.session.execute(
        select(Ticket.channel_id, opened_slot, func.count())
        .where(Ticket.brand_id == brand_id, *_between(Ticket.opened_at, low, high))
        .group_by(Ticket.channel_id, opened_slot)
    ).all()

    local: dict[int, tuple[date, int]] = {}

    def hour_of(value: int) -> tuple[date, int]:
        found = local.get(value)
        if found is None:
            at = datetime.fromtimestamp(int(value) * SLOT_SECONDS, UTC).astimezone(zone)
            found = local[value] = (at.date(), at.hour)
        return found

    counts: dict[tuple[date, int, int], list[int]] = defaultdict(lambda: [0, 0, 0])
    for channel_id, direction, value, count in messages:
        day, hour = hour_of(value)
        counts[(day, hour, channel_id)][1 if direction is Direction.INBOUND else 2] += count
    for channel_id, value, count in tickets:
        day, hour = hour_of(value)
        counts[(day, hour, channel_id)][0] += count

    if first is None or last is None:
        written = {day for day, _hour, _channel in counts}
        existing = select(MetricVolume.day).where(
            MetricVolume.brand_id == brand_id,
            *([MetricVolume.day >= first] if first is not None else []),
            *([MetricVolume.day <= last] if last is not None else []),
        )
        _lock(
            f"metrics:volume:{brand_id}:{day.isoformat()}"
            for day in written | set(db.session.scalars(existing.distinct()))
        )
    stale = delete(MetricVolume).where(MetricVolume.brand_id == brand_id)
    if first is not None:
        stale = stale.where(MetricVolume.day >= first)
    if last is not None:
        stale = stale.where(MetricVolume.day <= last)
    db.session.execute(stale.execution_options(synchronize_session=False))
    bulk_insert(
        MetricVolume.__table__,
        VOLUME_COLUMNS,
        [
            (brand_id, day, hour, channel_id, *values)
            for (day, hour, channel_id), values in sorted(counts.items())
        ],
    )
    return len({day for day, _hour, _channel in counts})


def _day_ranges(days: Iterable[date]) -> Iterator[tuple[date, date]]:
    """Consecutive days as (first, last) ranges, so each range is one index range scan."""
    ordered = sorted(set(days))
    if not ordered:
        return
    first = previous = ordered[0]
    for day in ordered[1:]:
        if day != previous + timedelta(days=1):
            yield first, previous
            first = day
        previous = day
    yield first, previous


def refresh_volume(context: BrandContext, days: Iterable[date]) -> int:
    return sum(rebuild_volume(context, first, last) for first, last in _day_ranges(days))


# The safety sweep -------------------------------------------------------------------------------


def _cursor(name: str) -> MetricCursor | None:
    """The sweep's cursor row, locked for this transaction; None when another sweep holds it."""
    query = select(MetricCursor).where(MetricCursor.name == name)
    if _postgres():
        query = query.with_for_update(skip_locked=True)
    cursor = db.session.scalar(query)
    if cursor is not None:
        return cursor
    if db.session.scalar(select(MetricCursor.name).where(MetricCursor.name == name)):
        return None
    try:
        with db.session.begin_nested():
            cursor = MetricCursor(name=name, position=0, updated_at=utcnow())
            db.session.add(cursor)
    except IntegrityError:
        return None
    return cursor


def _sweep_tickets(report: SweepReport, limit: int) -> dict[int, set[date]]:
    """Recompute tickets with ticket events newer than what their metrics saw; returns the days
    their tickets were opened on, per brand, for the volume."""
    cursor = _cursor("ticket_events")
    if cursor is None:
        report.skipped = True
        return {}
    low = max(cursor.position - OVERLAP, 0)
    rows = db.session.execute(
        select(TicketEvent.id, TicketEvent.ticket_id, TicketEvent.brand_id)
        .where(TicketEvent.id > low)
        .order_by(TicketEvent.id)
        .limit(limit)
    ).all()
    if not rows:
        return {}
    newest: dict[int, int] = {}
    brands: dict[int, int] = {}
    for event_id, ticket_id, brand_id in rows:
        newest[ticket_id] = max(newest.get(ticket_id, 0), event_id)
        brands[ticket_id] = brand_id
    seen = dict(
        db.session.execute(
            select(MetricTicketState.ticket_id, MetricTicketState.last_event_id).where(
                MetricTicketState.ticket_id.in_(list(newest))
            )
        ).all()
    )
    dirty: dict[int, list[int]] = defaultdict(list)
    for ticket_id, event_id in newest.items():
        if seen.get(ticket_id, -1) < event_id:
            dirty[brands[ticket_id]].append(ticket_id)
    opened: dict[int, set[date]] = defaultdict(set)
    for brand_id, ids in sorted(dirty.items()):
        context = BrandContext.load(brand_id)
        days: set[date] = set()
        for chunk in _chunks(sorted(ids), CHUNK):
            changed, opened_days = _refresh_chunk(context, chunk)
            days |= changed
            opened[brand_id] |= opened_days
        report.rollup_days += rebuild_rollups(brand_id, days)
        report.tickets += len(ids)
    cursor.position = max(cursor.position, rows[-1][0])
    cursor.updated_at = utcnow()
    report.more = report.more or len(rows) == limit
    return opened


def _sweep_messages(report: SweepReport, opened: dict[int, set[date]]) -> None:
    """Rebuild the volume of the brand-local days that new messages (and newly opened tickets)
    fall on. The new messages are read as (brand, UTC day) groups in one aggregate, so a backlog
    of any size costs one pass and each day is rebuilt once."""
    cursor = _cursor("messages")
    if cursor is None:
        report.skipped = True
        return
    days: dict[int, set[date]] = defaultdict(set)
    for brand_id, opened_days in opened.items():
        days[brand_id] |= opened_days
    top = db.session.scalar(select(func.max(Message.id))) or 0
    contexts: dict[int, BrandContext] = {}
    if top > cursor.position:
        utc_day = _slot(func.coalesce(Message.sent_at, Message.created_at), DAY_SECONDS)
        rows = db.session.execute(
            select(Message.brand_id, utc_day)
            .where(Message.id > max(cursor.position - OVERLAP, 0), Message.id <= top)
            .group_by(Message.brand_id, utc_day)
        ).all()
        for brand_id, number in rows:
            context = contexts.get(brand_id)
            if context is None:
                context = contexts[brand_id] = BrandContext.load(brand_id)
            start = datetime.fromtimestamp(int(number) * DAY_SECONDS, UTC)
            days[brand_id].add(context.clock.local_date(start))
            days[brand_id].add(context.clock.local_date(start + timedelta(seconds=DAY_SECONDS - 1)))
        cursor.position = top
        cursor.updated_at = utcnow()
    for brand_id, brand_days in sorted(days.items()):
        context = contexts.get(brand_id) or BrandContext.load(brand_id)
        report.volume_days += refresh_volume(context, brand_days)
    db.session.flush()


def sweep_metrics(limit: int = SWEEP_BATCH) -> SweepReport:
    """One step of the safety sweep: tickets whose events changed since their metrics were
    computed (whatever path the change took: webhook, API, console, worker), and the volume of
    days with new messages. ``more`` says a backlog remains; the caller commits and calls again."""
    report = SweepReport()
    opened = _sweep_tickets(report, limit)
    _sweep_messages(report, opened)
    return report


# Recompute ----------------------------------------------------------------------------------------


def recompute_metrics(
    brand: Brand, since: date | None = None, progress: bool = False
) -> RecomputeReport:
    """Rebuild a brand's metric events, rollups and volume from the ticket history, from the
    brand-local date ``since`` on (everything when None); the numbers are those the workers keep.

    Tickets are loaded and written in chunks (a few queries per thousand tickets, COPY on
    PostgreSQL), each chunk committed; the rollups and volume follow, so dashboards never read
    a half-built day."""
    started = time.perf_counter()
    report = RecomputeReport()
    context = BrandContext.load(brand.id)
    query = select(Ticket.id).where(Ticket.brand_id == brand.id)
    low = context.local_midnight(since) if since is not None else None
    if low is not None:
        touched = select(TicketEvent.ticket_id).where(
            TicketEvent.brand_id == brand.id, TicketEvent.at >= low
        )
        query = query.where(or_(Ticket.opened_at >= low, Ticket.id.in_(touched)))
    ids = list(db.session.scalars(query.order_by(Ticket.id)))
    db.session.commit()
    report.tickets = len(ids)

    days: set[date] = set()
    bar = (
        click.progressbar(
            length=len(ids), label=f"recomputing {len(ids):,} tickets", file=sys.stderr
        )
        if progress
        else contextlib.nullcontext()
    )
    with bar:
        for chunk in _chunks(ids, CHUNK):
            changed, _opened = _refresh_chunk(context, chunk)
            days |= changed
            db.session.commit()
            if progress:
                bar.update(len(chunk))
    report.phases["tickets"] = time.perf_counter() - started

    phase = time.perf_counter()
    existing = select(MetricRollup.day).where(MetricRollup.brand_id == brand.id).distinct()
    if since is not None:
        existing = existing.where(MetricRollup.day >= since)
    days |= set(db.session.scalars(existing))
    report.rollup_days = rebuild_rollups(brand.id, days)
    db.session.commit()
    report.phases["rollups"] = time.perf_counter() - phase

    phase = time.perf_counter()
    report.volume_days = rebuild_volume(context, since, None)
    db.session.commit()
    report.phases["volume"] = time.perf_counter() - phase
    report.metric_events = db.session.scalar(
        select(func.count()).select_from(MetricEvent).where(MetricEvent.brand_id == brand.id)
    )
    db.session.commit()
    report.seconds = time.perf_counter() - started
    return report

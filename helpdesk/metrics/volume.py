"""Hourly volume (docs/metrics.md): tickets opened and messages in and out per brand-local hour,
counted in SQL per UTC quarter hour and mapped to local hours here."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Iterator
from datetime import UTC, date, datetime, timedelta
from typing import Any

from sqlalchemy import (
    BigInteger,
    ColumnClause,
    Integer,
    and_,
    cast,
    delete,
    func,
    literal_column,
    or_,
    select,
)

from helpdesk.dm.models import Direction, Message, MessageStatus
from helpdesk.extensions import db
from helpdesk.metrics.events import BrandContext
from helpdesk.metrics.models import MetricVolume
from helpdesk.metrics.plumbing import bulk_insert, is_postgres, lock
from helpdesk.tickets.models import Ticket

SLOT_SECONDS = 900  # volume is counted per UTC quarter hour, then mapped to local hours
DAY_SECONDS = 86_400
NOT_SENT = (MessageStatus.SCHEDULED, MessageStatus.CANCELLED, MessageStatus.FAILED)
VOLUME_COLUMNS = (
    "brand_id", "day", "hour", "channel_id", "tickets_opened", "messages_in", "messages_out",
)  # fmt: skip


def slot_number(column, seconds: int = SLOT_SECONDS) -> Any:
    """The number of the UTC quarter hour (or other span) a time falls in: every time zone offset
    is a multiple of 15 minutes, so a quarter hour lies within one local hour."""
    # No SQL type on purpose: `/` then stays the database's own division.
    span: ColumnClause[Any] = literal_column(str(seconds))
    if is_postgres():
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
        lock(f"metrics:volume:{brand_id}:{day.isoformat()}" for day in days)

    moment = func.coalesce(Message.sent_at, Message.created_at)
    slot = slot_number(moment)
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
    opened_slot = slot_number(Ticket.opened_at)
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
        lock(
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
        MetricVolume,
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

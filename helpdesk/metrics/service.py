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
import sys
import time
from collections import defaultdict
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta

import click
from sqlalchemy import func, or_, select
from sqlalchemy.exc import IntegrityError

from helpdesk.brands.models import Brand
from helpdesk.dm.models import Message
from helpdesk.extensions import db
from helpdesk.metrics.events import CHUNK, BrandContext, refresh_chunk, refresh_ticket_metrics
from helpdesk.metrics.models import MetricCursor, MetricEvent, MetricRollup, MetricTicketState
from helpdesk.metrics.plumbing import chunks, is_postgres
from helpdesk.metrics.rollups import rebuild_rollups
from helpdesk.metrics.volume import DAY_SECONDS, rebuild_volume, refresh_volume, slot_number
from helpdesk.tickets.models import Ticket, TicketEvent
from helpdesk.types import utcnow

__all__ = [
    "BrandContext",
    "RecomputeReport",
    "SweepReport",
    "rebuild_rollups",
    "recompute_metrics",
    "refresh_ticket_metrics",
    "sweep_metrics",
]

SWEEP_BATCH = 5000  # ticket events or messages read per sweep step
# The sweep rereads this many ids below its cursor: a transaction that took an id before the last
# sweep but committed after it is still seen. Tickets already up to date are skipped.
OVERLAP = 1000


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


# The safety sweep -------------------------------------------------------------------------------


def _cursor(name: str) -> MetricCursor | None:
    """The sweep's cursor row, locked for this transaction; None when another sweep holds it."""
    query = select(MetricCursor).where(MetricCursor.name == name)
    if is_postgres():
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
        for chunk in chunks(sorted(ids), CHUNK):
            changed, opened_days = refresh_chunk(context, chunk)
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
        utc_day = slot_number(func.coalesce(Message.sent_at, Message.created_at), DAY_SECONDS)
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
        else None
    )
    with bar or contextlib.nullcontext():
        for chunk in chunks(ids, CHUNK):
            changed, _opened = refresh_chunk(context, chunk)
            days |= changed
            db.session.commit()
            if bar is not None:
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

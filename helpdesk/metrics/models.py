"""Metric events (one row per first response, response and resolution of a ticket) and the
rollups built from them, so that dashboards read a few hundred rows whatever the history size."""

from __future__ import annotations

from datetime import date, datetime

from sqlalchemy import (
    JSON,
    BigInteger,
    Date,
    ForeignKey,
    Index,
    SmallInteger,
    String,
    UniqueConstraint,
)
from sqlalchemy.orm import Mapped, mapped_column

from helpdesk.dm.models import Message
from helpdesk.extensions import Model
from helpdesk.tickets.models import Ticket
from helpdesk.types import UTCDateTime, utcnow


class MetricEvent(Model):
    """One measured duration of a ticket; a ticket's rows are replaced as a whole when it is
    recomputed, and the unique key makes a second insert of the same row fail loudly.

    A row without `ended_at` is an SLA target breached before it concluded (no reply yet, not
    resolved): it counts for compliance only, on the day of the breach.
    """

    __tablename__ = "metric_events"
    __table_args__ = (
        UniqueConstraint("ticket_id", "kind", "seq"),
        Index("ix_metric_events_brand_day", "brand_id", "day", "kind"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    # Only the ticket is a foreign key: rows go with their ticket (and so with their brand), and
    # a recompute writes hundreds of thousands of rows that need no other checks.
    brand_id: Mapped[int]
    ticket_id: Mapped[int] = mapped_column(ForeignKey("tickets.id", ondelete="CASCADE"))
    kind: Mapped[str] = mapped_column(String(16))
    seq: Mapped[int] = mapped_column(default=0)
    started_at: Mapped[datetime] = mapped_column(UTCDateTime)
    ended_at: Mapped[datetime | None] = mapped_column(UTCDateTime, default=None)
    calendar_seconds: Mapped[float | None] = mapped_column(default=None)
    business_seconds: Mapped[float | None] = mapped_column(default=None)
    # Histogram buckets of both durations, so rollups are built by a GROUP BY.
    calendar_bucket: Mapped[int | None] = mapped_column(SmallInteger, default=None)
    business_bucket: Mapped[int | None] = mapped_column(SmallInteger, default=None)
    agent_id: Mapped[int | None] = mapped_column(default=None)
    from_app: Mapped[bool] = mapped_column(default=False)
    team_id: Mapped[int | None] = mapped_column(default=None)
    channel_id: Mapped[int]
    tag_ids: Mapped[list[int]] = mapped_column(JSON, default=list)
    # None: the ticket's policy has no target of this kind; else whether it was met.
    sla_met: Mapped[bool | None] = mapped_column(default=None)
    day: Mapped[date] = mapped_column(Date)


class MetricRollup(Model):
    """Counts, sums and histograms of one brand-local day, dimension value and metric kind."""

    __tablename__ = "metric_rollups"
    __table_args__ = (UniqueConstraint("brand_id", "dimension", "day", "key", "kind"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    brand_id: Mapped[int] = mapped_column(ForeignKey("brands.id", ondelete="CASCADE"))
    dimension: Mapped[str] = mapped_column(String(8))
    day: Mapped[date] = mapped_column(Date)
    # The agent, team, tag or channel id as text; "app" and "none" for replies from the app and
    # rows without one; "" for the `all` dimension.
    key: Mapped[str] = mapped_column(String(24))
    kind: Mapped[str] = mapped_column(String(16))
    count: Mapped[int] = mapped_column(default=0)
    calendar_sum: Mapped[float] = mapped_column(default=0.0)
    business_sum: Mapped[float] = mapped_column(default=0.0)
    # Histograms as [first bucket, its count, the next bucket's count, ...]: dense lists are
    # decoded and summed much faster than objects when a summary merges a few hundred rows.
    calendar_hist: Mapped[list[int]] = mapped_column(JSON, default=list)
    business_hist: Mapped[list[int]] = mapped_column(JSON, default=list)
    sla_total: Mapped[int] = mapped_column(default=0)
    sla_met: Mapped[int] = mapped_column(default=0)


class MetricVolume(Model):
    """Tickets opened and messages in and out per brand-local day, hour and channel: daily
    volume sums the hours, the weekday x hour heatmap groups them."""

    __tablename__ = "metric_volume"
    __table_args__ = (UniqueConstraint("brand_id", "day", "hour", "channel_id"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    brand_id: Mapped[int] = mapped_column(ForeignKey("brands.id", ondelete="CASCADE"))
    day: Mapped[date] = mapped_column(Date)
    hour: Mapped[int] = mapped_column(SmallInteger)
    channel_id: Mapped[int] = mapped_column(ForeignKey("channels.id", ondelete="CASCADE"))
    tickets_opened: Mapped[int] = mapped_column(default=0)
    messages_in: Mapped[int] = mapped_column(default=0)
    messages_out: Mapped[int] = mapped_column(default=0)


class MetricTicketState(Model):
    """The newest ticket event a ticket's metric events were computed from, so the sweep
    recomputes only tickets that changed since."""

    __tablename__ = "metric_ticket_state"

    ticket_id: Mapped[int] = mapped_column(
        ForeignKey("tickets.id", ondelete="CASCADE"), primary_key=True, autoincrement=False
    )
    last_event_id: Mapped[int] = mapped_column(BigInteger, default=0)
    refreshed_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class MetricCursor(Model):
    """How far the safety sweep has read a table (by id); the row is also its lock."""

    __tablename__ = "metric_cursors"

    name: Mapped[str] = mapped_column(String(32), primary_key=True)
    position: Mapped[int] = mapped_column(BigInteger, default=0)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, onupdate=utcnow)


# Volume is rebuilt per brand-local day by time range; these make those reads index range scans.
# They belong to the messages and tickets tables but only metrics read by them.
Index("ix_messages_brand_sent_at", Message.brand_id, Message.sent_at)
Index("ix_tickets_brand_opened_at", Ticket.brand_id, Ticket.opened_at)

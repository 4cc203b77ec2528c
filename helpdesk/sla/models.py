"""SLA policies, the brand's business-hours calendar, and the reminders already sent."""

from __future__ import annotations

import enum
from datetime import datetime

from sqlalchemy import JSON, ForeignKey, String, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from helpdesk.extensions import Model
from helpdesk.types import UTCDateTime, utcnow, value_enum


class SlaTarget(enum.StrEnum):
    FIRST_RESPONSE = "first_response"
    NEXT_RESPONSE = "next_response"
    RESOLUTION = "resolution"


class ReminderKind(enum.StrEnum):
    WARNING = "warning"
    BREACH = "breach"


class SlaPolicy(Model):
    """Targets in minutes; policies are tried in `position` order and the first match wins."""

    __tablename__ = "sla_policies"

    id: Mapped[int] = mapped_column(primary_key=True)
    brand_id: Mapped[int] = mapped_column(ForeignKey("brands.id", ondelete="CASCADE"), index=True)
    name: Mapped[str] = mapped_column(String(120))
    position: Mapped[int] = mapped_column(default=0)
    # Conditions: None means "any".
    priority: Mapped[str | None] = mapped_column(String(16), default=None)
    # A policy for a tag goes with the tag, rather than silently matching every ticket.
    tag_id: Mapped[int | None] = mapped_column(
        ForeignKey("tags.id", ondelete="CASCADE"), default=None
    )
    channel_id: Mapped[int | None] = mapped_column(
        ForeignKey("channels.id", ondelete="CASCADE"), default=None
    )
    first_response_min: Mapped[int | None] = mapped_column(default=None)
    next_response_min: Mapped[int | None] = mapped_column(default=None)
    resolution_min: Mapped[int | None] = mapped_column(default=None)
    business_hours: Mapped[bool] = mapped_column(default=True)
    warning_pct: Mapped[int] = mapped_column(default=80)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class BusinessHours(Model):
    """The brand's calendar, in the shape of the API: timezone, weekly intervals, holidays."""

    __tablename__ = "business_hours"

    id: Mapped[int] = mapped_column(primary_key=True)
    brand_id: Mapped[int] = mapped_column(ForeignKey("brands.id", ondelete="CASCADE"), unique=True)
    calendar: Mapped[dict] = mapped_column(JSON)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, onupdate=utcnow)


class SlaReminder(Model):
    """A reminder that fired: the unique key makes each fire once, however many sweeps run."""

    __tablename__ = "sla_reminders"
    __table_args__ = (UniqueConstraint("ticket_id", "target", "kind", "cycle"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    brand_id: Mapped[int] = mapped_column(ForeignKey("brands.id", ondelete="CASCADE"))
    ticket_id: Mapped[int] = mapped_column(ForeignKey("tickets.id", ondelete="CASCADE"))
    target: Mapped[SlaTarget] = mapped_column(value_enum(SlaTarget))
    kind: Mapped[ReminderKind] = mapped_column(value_enum(ReminderKind))
    # Which run of the clock: a next-response clock restarts with every awaited message.
    cycle: Mapped[str] = mapped_column(String(64))
    due_at: Mapped[datetime] = mapped_column(UTCDateTime)
    fired_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    data: Mapped[dict] = mapped_column(JSON, default=dict)

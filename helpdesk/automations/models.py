"""Automation rules and the record of each run (which also makes time rules fire once)."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import JSON, ForeignKey, Index, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from helpdesk.extensions import Model
from helpdesk.types import UTCDateTime, utcnow


class AutomationRule(Model):
    __tablename__ = "automation_rules"
    __table_args__ = (Index("ix_automation_rules_brand_position", "brand_id", "position"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    brand_id: Mapped[int] = mapped_column(ForeignKey("brands.id", ondelete="CASCADE"))
    name: Mapped[str] = mapped_column(String(120))
    enabled: Mapped[bool] = mapped_column(default=True)
    position: Mapped[int] = mapped_column(default=0)
    # {"event": "message_received" | ... | "ticket_idle", "idle_minutes": N, "idle_status": ...}
    event: Mapped[str] = mapped_column(String(32))
    idle_minutes: Mapped[int | None] = mapped_column(default=None)
    idle_status: Mapped[str | None] = mapped_column(String(16), default=None)
    conditions: Mapped[list[dict]] = mapped_column(JSON, default=list)
    actions: Mapped[list[dict]] = mapped_column(JSON, default=list)
    once_per_ticket: Mapped[bool] = mapped_column(default=False)
    template: Mapped[str | None] = mapped_column(String(40), default=None)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, onupdate=utcnow)


class AutomationRun(Model):
    """A rule ran on a ticket. `period` names what may fire only once: "once" for a rule that
    runs once per ticket, the idle period's start for a time rule; NULL otherwise."""

    __tablename__ = "automation_runs"
    __table_args__ = (
        UniqueConstraint("rule_id", "ticket_id", "period"),
        Index("ix_automation_runs_ticket", "ticket_id"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    brand_id: Mapped[int] = mapped_column(ForeignKey("brands.id", ondelete="CASCADE"), index=True)
    rule_id: Mapped[int] = mapped_column(ForeignKey("automation_rules.id", ondelete="CASCADE"))
    ticket_id: Mapped[int] = mapped_column(ForeignKey("tickets.id", ondelete="CASCADE"))
    period: Mapped[str | None] = mapped_column(String(64), default=None)
    outcome: Mapped[str | None] = mapped_column(Text, default=None)  # why an action failed
    at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)

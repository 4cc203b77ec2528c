from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import JSON, ForeignKey, Index, String
from sqlalchemy.orm import Mapped, mapped_column

from helpdesk.extensions import Model
from helpdesk.types import UTCDateTime, utcnow


class AuditEvent(Model):
    """One change: the actor as they were named then (an agent or token may be renamed or go),
    the action (`tag.updated`), the target, and `{field: [before, after]}` without secrets."""

    __tablename__ = "audit_events"
    __table_args__ = (
        Index("ix_audit_events_brand_at", "brand_id", "at", "id"),
        Index("ix_audit_events_brand_target", "brand_id", "target_type", "target_id"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    brand_id: Mapped[int] = mapped_column(ForeignKey("brands.id", ondelete="CASCADE"))
    at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    actor_type: Mapped[str] = mapped_column(String(16))
    actor_id: Mapped[int | None] = mapped_column(default=None)
    actor_name: Mapped[str] = mapped_column(String(200), default="")
    action: Mapped[str] = mapped_column(String(64))
    target_type: Mapped[str] = mapped_column(String(32))
    target_id: Mapped[int | None] = mapped_column(default=None)
    target_label: Mapped[str] = mapped_column(String(200), default="")
    changes: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)

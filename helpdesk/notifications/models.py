from __future__ import annotations

import enum
from datetime import datetime

from sqlalchemy import ForeignKey, Index, Text
from sqlalchemy.orm import Mapped, mapped_column

from helpdesk.extensions import Model
from helpdesk.types import UTCDateTime, utcnow, value_enum


class NotificationKind(enum.StrEnum):
    SLA_WARNING = "sla_warning"
    SLA_BREACH = "sla_breach"
    MENTION = "mention"
    ASSIGNMENT = "assignment"
    # A channel needs an admin to reconnect it (at most 11 characters: the column's width).
    RECONNECT = "reconnect"
    # An automation rule's notify action.
    AUTOMATION = "automation"


class Notification(Model):
    """An in-app notification; `alert` is false when the agent muted the conversation."""

    __tablename__ = "notifications"
    __table_args__ = (Index("ix_notifications_agent_unread", "agent_id", "read_at", "id"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    brand_id: Mapped[int] = mapped_column(ForeignKey("brands.id", ondelete="CASCADE"))
    agent_id: Mapped[int] = mapped_column(ForeignKey("agents.id", ondelete="CASCADE"))
    kind: Mapped[NotificationKind] = mapped_column(value_enum(NotificationKind))
    ticket_id: Mapped[int | None] = mapped_column(
        ForeignKey("tickets.id", ondelete="CASCADE"), default=None
    )
    conversation_id: Mapped[int | None] = mapped_column(
        ForeignKey("conversations.id", ondelete="CASCADE"), default=None
    )
    body: Mapped[str] = mapped_column(Text)
    alert: Mapped[bool] = mapped_column(default=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    read_at: Mapped[datetime | None] = mapped_column(UTCDateTime, default=None)

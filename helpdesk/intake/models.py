"""Raw webhook deliveries, stored before they are answered; actions waiting for a message."""

from __future__ import annotations

import enum
from datetime import datetime

from sqlalchemy import JSON, ForeignKey, Index, String, Text, UniqueConstraint, text
from sqlalchemy.orm import Mapped, mapped_column

from helpdesk.extensions import Model
from helpdesk.types import UTCDateTime, utcnow, value_enum


class EventStatus(enum.StrEnum):
    PENDING = "pending"
    PROCESSED = "processed"
    FAILED = "failed"
    UNKNOWN_ACCOUNT = "unknown_account"


class WebhookEvent(Model):
    """One delivery as received: the raw bytes are kept so processing can be retried or audited."""

    __tablename__ = "webhook_events"
    __table_args__ = (
        Index("ix_webhook_events_status_received", "status", "received_at"),
        # Intake batches claim the oldest pending deliveries: in id order, from this index alone.
        Index(
            "ix_webhook_events_pending",
            "id",
            sqlite_where=text("status = 'pending'"),
            postgresql_where=text("status = 'pending'"),
        ),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    source: Mapped[str] = mapped_column(String(16), default="instagram")
    body: Mapped[str] = mapped_column(Text)
    status: Mapped[EventStatus] = mapped_column(
        value_enum(EventStatus), default=EventStatus.PENDING
    )
    attempts: Mapped[int] = mapped_column(default=0)
    error: Mapped[str | None] = mapped_column(Text, default=None)
    account_ids: Mapped[list[str]] = mapped_column(JSON, default=list)
    request_id: Mapped[str | None] = mapped_column(String(64), default=None)
    received_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    processed_at: Mapped[datetime | None] = mapped_column(UTCDateTime, default=None)


class PendingAction(Model):
    """A reaction, edit, unsend or read that arrived before its message; applied when it lands."""

    __tablename__ = "pending_actions"
    __table_args__ = (
        Index("ix_pending_actions_channel_mid", "channel_id", "mid"),
        UniqueConstraint("channel_id", "event_key"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    channel_id: Mapped[int] = mapped_column(ForeignKey("channels.id", ondelete="CASCADE"))
    mid: Mapped[str] = mapped_column(String(255))
    kind: Mapped[str] = mapped_column(String(16))
    payload: Mapped[dict] = mapped_column(JSON, default=dict)
    # What identifies the event (kind, mid, sender, platform time): a retried delivery of the
    # same action waits once, not once per retry.
    event_key: Mapped[str | None] = mapped_column(String(255), default=None)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class UnknownAccount(Model):
    """Deliveries for an account id no channel has: shown to admins, never an error to Meta."""

    __tablename__ = "unknown_accounts"

    account_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    first_seen_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    last_seen_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    deliveries: Mapped[int] = mapped_column(default=0)

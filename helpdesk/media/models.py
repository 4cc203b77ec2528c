"""One stored medium: a copy of an inbound attachment, or a file an agent uploaded."""

from __future__ import annotations

import enum
from datetime import datetime

from sqlalchemy import ForeignKey, Index, String, Text, UniqueConstraint, text
from sqlalchemy.orm import Mapped, mapped_column

from helpdesk.extensions import Model
from helpdesk.types import UTCDateTime, utcnow, value_enum


class MediaStatus(enum.StrEnum):
    PENDING = "pending"  # to be copied from the platform's URL
    STORED = "stored"  # the bytes are in the store
    FAILED = "failed"  # given up; `reason` says why
    PURGED = "purged"  # erased, vanished or past retention: the bytes are gone


class MediaOrigin(enum.StrEnum):
    INBOUND = "inbound"  # copied from a customer's attachment
    UPLOAD = "upload"  # an agent's file for a reply


class MediaObject(Model):
    __tablename__ = "media_objects"
    __table_args__ = (
        # One copy per attachment of a message, however often the copy is asked for.
        UniqueConstraint("message_id", "attachment_index"),
        Index(
            "ix_media_objects_due",
            "next_attempt_at",
            sqlite_where=text("status = 'pending'"),
            postgresql_where=text("status = 'pending'"),
        ),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    brand_id: Mapped[int] = mapped_column(ForeignKey("brands.id", ondelete="CASCADE"), index=True)
    origin: Mapped[MediaOrigin] = mapped_column(value_enum(MediaOrigin))
    message_id: Mapped[int | None] = mapped_column(
        ForeignKey("messages.id", ondelete="SET NULL"), index=True, default=None
    )
    attachment_index: Mapped[int | None] = mapped_column(default=None)
    uploaded_by_id: Mapped[int | None] = mapped_column(
        ForeignKey("agents.id", ondelete="SET NULL"), default=None
    )
    kind: Mapped[str] = mapped_column(String(20))  # image, video, audio, file, ...
    status: Mapped[MediaStatus] = mapped_column(
        value_enum(MediaStatus), default=MediaStatus.PENDING
    )
    source_url: Mapped[str | None] = mapped_column(Text, default=None)
    filename: Mapped[str | None] = mapped_column(String(255), default=None)
    storage_key: Mapped[str | None] = mapped_column(String(255), default=None)
    thumbnail_key: Mapped[str | None] = mapped_column(String(255), default=None)
    content_type: Mapped[str | None] = mapped_column(String(100), default=None)
    size: Mapped[int | None] = mapped_column(default=None)
    sha256: Mapped[str | None] = mapped_column(String(64), default=None)
    reason: Mapped[str | None] = mapped_column(Text, default=None)
    attempts: Mapped[int] = mapped_column(default=0)
    next_attempt_at: Mapped[datetime | None] = mapped_column(UTCDateTime, default=None)
    stored_at: Mapped[datetime | None] = mapped_column(UTCDateTime, default=None)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)

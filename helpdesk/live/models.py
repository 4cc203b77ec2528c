from __future__ import annotations

from datetime import datetime

from sqlalchemy import JSON, ForeignKey, Index, String, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from helpdesk.extensions import Model
from helpdesk.types import UTCDateTime, utcnow


class LiveEvent(Model):
    """One event for the console's poll (the embedded default; Redis carries them otherwise).

    Ids only ever grow (AUTOINCREMENT on SQLite), so an id is a cursor; rows are pruned after a
    while, since a page that was away longer reloads anyway.
    """

    __tablename__ = "live_events"
    __table_args__ = (
        Index("ix_live_events_brand_id_id", "brand_id", "id"),
        Index("ix_live_events_created_at", "created_at"),
        {"sqlite_autoincrement": True},
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    brand_id: Mapped[int] = mapped_column(ForeignKey("brands.id", ondelete="CASCADE"))
    kind: Mapped[str] = mapped_column(String(40))
    data: Mapped[dict] = mapped_column(JSON, default=dict)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class Presence(Model):
    """An agent viewing (and maybe typing in) a conversation, until the times run out."""

    __tablename__ = "live_presence"
    __table_args__ = (UniqueConstraint("conversation_id", "agent_id"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    brand_id: Mapped[int] = mapped_column(ForeignKey("brands.id", ondelete="CASCADE"))
    conversation_id: Mapped[int] = mapped_column(ForeignKey("conversations.id", ondelete="CASCADE"))
    agent_id: Mapped[int] = mapped_column(ForeignKey("agents.id", ondelete="CASCADE"), index=True)
    viewing_until: Mapped[datetime] = mapped_column(UTCDateTime)
    typing_until: Mapped[datetime | None] = mapped_column(UTCDateTime, default=None)

from __future__ import annotations

from datetime import datetime

from sqlalchemy import JSON, String
from sqlalchemy.orm import Mapped, mapped_column

from helpdesk.extensions import Model
from helpdesk.types import UTCDateTime, utcnow


class Brand(Model):
    """A tenant: every other row belongs to exactly one brand."""

    __tablename__ = "brands"

    id: Mapped[int] = mapped_column(primary_key=True)
    slug: Mapped[str] = mapped_column(String(64), unique=True)
    name: Mapped[str] = mapped_column(String(200))
    timezone: Mapped[str] = mapped_column(String(64), default="UTC")
    # Message requests: followers of the brand may count as known contacts, or all may be accepted.
    followers_are_known: Mapped[bool] = mapped_column(default=False)
    accept_all_requests: Mapped[bool] = mapped_column(default=False)
    hidden_words: Mapped[list[str]] = mapped_column(JSON, default=list)
    # Support layer: how tickets are assigned and how long a resolved ticket may be reopened.
    assignment_mode: Mapped[str] = mapped_column(String(16), default="round_robin")
    auto_assign: Mapped[bool] = mapped_column(default=True)
    reopen_days: Mapped[int] = mapped_column(default=7)
    # Satisfaction survey after a resolved ticket, and how long content is kept (None: forever).
    csat_enabled: Mapped[bool] = mapped_column(default=False)
    csat_question: Mapped[str] = mapped_column(
        String(300), default="How would you rate the help you got?"
    )
    csat_delay_minutes: Mapped[int] = mapped_column(default=0)
    retention_days: Mapped[int | None] = mapped_column(default=None)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)

    def __repr__(self) -> str:
        return f"<Brand {self.slug}>"

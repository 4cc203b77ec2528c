"""Sign-in attempts, kept in the database so that every web process sees the same failures."""

from __future__ import annotations

import enum
from datetime import datetime

from sqlalchemy import Index, String
from sqlalchemy.orm import Mapped, mapped_column

from helpdesk.extensions import Model
from helpdesk.types import UTCDateTime, utcnow, value_enum


class LoginOutcome(enum.StrEnum):
    SUCCESS = "success"
    FAILURE = "failure"
    THROTTLED = "throttled"  # refused unchecked while the email or the address was locked
    # Reserved before the password is checked, settled as success or failure after: counted as a
    # failure meanwhile, so concurrent requests cannot all pass the limit before any is recorded.
    PENDING = "pending"


class LoginAttempt(Model):
    __tablename__ = "login_attempts"
    __table_args__ = (
        Index("ix_login_attempts_email_at", "email", "at"),
        Index("ix_login_attempts_ip_at", "ip", "at"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    email: Mapped[str] = mapped_column(String(254))
    ip: Mapped[str] = mapped_column(String(64))
    outcome: Mapped[LoginOutcome] = mapped_column(value_enum(LoginOutcome))
    at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, index=True)

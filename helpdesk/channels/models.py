from __future__ import annotations

import enum
from datetime import datetime

from sqlalchemy import ForeignKey, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from helpdesk import crypto
from helpdesk.extensions import Model
from helpdesk.types import UTCDateTime, utcnow, value_enum


class ChannelKind(enum.StrEnum):
    INSTAGRAM = "instagram"
    API = "api"


class ChannelStatus(enum.StrEnum):
    ACTIVE = "active"
    # The platform refused the token (code 190, 10, 200-299): sends wait for a reconnect.
    NEEDS_RECONNECT = "needs_reconnect"
    # An admin disconnected it, or Meta deauthorized the app: the history stays.
    DISCONNECTED = "disconnected"


class Channel(Model):
    """A brand's connected DM account; its access token is stored encrypted."""

    __tablename__ = "channels"
    __table_args__ = (UniqueConstraint("kind", "account_id"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    brand_id: Mapped[int] = mapped_column(ForeignKey("brands.id", ondelete="CASCADE"), index=True)
    kind: Mapped[ChannelKind] = mapped_column(value_enum(ChannelKind))
    account_id: Mapped[str] = mapped_column(String(64))
    name: Mapped[str] = mapped_column(String(200), default="")
    username: Mapped[str] = mapped_column(String(100), default="")
    access_token_encrypted: Mapped[str | None] = mapped_column(Text, default=None)
    status: Mapped[ChannelStatus] = mapped_column(
        value_enum(ChannelStatus), default=ChannelStatus.ACTIVE
    )
    # The long-lived token's life (Instagram Login: 60 days, refreshed daily when due).
    token_expires_at: Mapped[datetime | None] = mapped_column(UTCDateTime, default=None)
    token_refreshed_at: Mapped[datetime | None] = mapped_column(UTCDateTime, default=None)
    connected_at: Mapped[datetime | None] = mapped_column(UTCDateTime, default=None)
    disconnected_at: Mapped[datetime | None] = mapped_column(UTCDateTime, default=None)
    # When the admins were told the channel needs a reconnect: once per outage.
    reconnect_notified_at: Mapped[datetime | None] = mapped_column(UTCDateTime, default=None)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)

    @property
    def needs_new_token(self) -> bool:
        """The platform refused the token: sends wait until an admin reconnects."""
        return self.status is ChannelStatus.NEEDS_RECONNECT

    @needs_new_token.setter
    def needs_new_token(self, value: bool) -> None:
        if value:
            self.status = ChannelStatus.NEEDS_RECONNECT
        elif self.status is ChannelStatus.NEEDS_RECONNECT:
            self.status = ChannelStatus.ACTIVE

    @property
    def access_token(self) -> str | None:
        if self.access_token_encrypted is None:
            return None
        return crypto.decrypt(self.access_token_encrypted)

    @access_token.setter
    def access_token(self, value: str | None) -> None:
        self.access_token_encrypted = None if value is None else crypto.encrypt(value)

    def __repr__(self) -> str:
        return f"<Channel {self.kind.value}:{self.account_id}>"


class OAuthState(Model):
    """One Instagram Login attempt: the `state` sent to the authorize page (only its hash kept),
    bound to the admin's session, used once; the code it brought back, so a code is used once."""

    __tablename__ = "oauth_states"

    id: Mapped[int] = mapped_column(primary_key=True)
    state_hash: Mapped[str] = mapped_column(String(64), unique=True)
    session_hash: Mapped[str] = mapped_column(String(64))
    brand_id: Mapped[int] = mapped_column(ForeignKey("brands.id", ondelete="CASCADE"))
    agent_id: Mapped[int | None] = mapped_column(
        ForeignKey("agents.id", ondelete="SET NULL"), default=None
    )
    code_hash: Mapped[str | None] = mapped_column(String(64), unique=True, default=None)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime)
    used_at: Mapped[datetime | None] = mapped_column(UTCDateTime, default=None)


class Backfill(Model):
    """Reading a newly connected account's recent history: where the worker is, so a worker
    that dies resumes there (messages are stored idempotently, so a replayed page adds nothing)."""

    __tablename__ = "channel_backfills"

    id: Mapped[int] = mapped_column(primary_key=True)
    channel_id: Mapped[int] = mapped_column(
        ForeignKey("channels.id", ondelete="CASCADE"), unique=True
    )
    status: Mapped[str] = mapped_column(String(16), default="pending")  # running, done, failed
    next_url: Mapped[str | None] = mapped_column(Text, default=None)
    conversations_done: Mapped[int] = mapped_column(default=0)
    messages_stored: Mapped[int] = mapped_column(default=0)
    error: Mapped[str | None] = mapped_column(Text, default=None)
    started_at: Mapped[datetime | None] = mapped_column(UTCDateTime, default=None)
    updated_at: Mapped[datetime | None] = mapped_column(UTCDateTime, default=None)
    finished_at: Mapped[datetime | None] = mapped_column(UTCDateTime, default=None)


class DataDeletionRequest(Model):
    """Meta's data-deletion callback for one Instagram user: its status is public at the URL
    returned to Meta, by its confirmation code."""

    __tablename__ = "data_deletion_requests"

    id: Mapped[int] = mapped_column(primary_key=True)
    confirmation_code: Mapped[str] = mapped_column(String(64), unique=True)
    platform_user_id: Mapped[str] = mapped_column(String(64))
    status: Mapped[str] = mapped_column(String(16), default="received")  # done, failed
    contacts_erased: Mapped[int] = mapped_column(default=0)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    completed_at: Mapped[datetime | None] = mapped_column(UTCDateTime, default=None)

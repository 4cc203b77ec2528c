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


class Channel(Model):
    """A brand's connected DM account; its access token is stored encrypted."""

    __tablename__ = "channels"
    __table_args__ = (UniqueConstraint("kind", "account_id"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    brand_id: Mapped[int] = mapped_column(ForeignKey("brands.id", ondelete="CASCADE"), index=True)
    kind: Mapped[ChannelKind] = mapped_column(value_enum(ChannelKind))
    account_id: Mapped[str] = mapped_column(String(64))
    name: Mapped[str] = mapped_column(String(200), default="")
    access_token_encrypted: Mapped[str | None] = mapped_column(Text, default=None)
    needs_new_token: Mapped[bool] = mapped_column(default=False)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)

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

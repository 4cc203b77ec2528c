"""What each agent has seen: the inbox shows a conversation as unread until they open it."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import ForeignKey, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from helpdesk.extensions import Model
from helpdesk.types import UTCDateTime, utcnow


class ConversationView(Model):
    """When an agent last opened a conversation; a later customer message makes it unread."""

    __tablename__ = "conversation_views"
    __table_args__ = (UniqueConstraint("agent_id", "conversation_id"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    agent_id: Mapped[int] = mapped_column(ForeignKey("agents.id", ondelete="CASCADE"))
    conversation_id: Mapped[int] = mapped_column(
        ForeignKey("conversations.id", ondelete="CASCADE"), index=True
    )
    seen_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)

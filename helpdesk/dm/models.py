"""The DM model of docs/concepts.md: contacts, conversations, participants, messages, reactions."""

from __future__ import annotations

import enum
from datetime import datetime
from typing import Any

from sqlalchemy import (
    JSON,
    CheckConstraint,
    ForeignKey,
    Index,
    String,
    Text,
    UniqueConstraint,
)
from sqlalchemy.orm import Mapped, mapped_column, relationship

from helpdesk.extensions import Model
from helpdesk.types import UTCDateTime, utcnow, value_enum

GROUP_LIMIT = 32


class ConversationKind(enum.StrEnum):
    DIRECT = "direct"
    GROUP = "group"


class Folder(enum.StrEnum):
    PRIMARY = "primary"
    GENERAL = "general"
    REQUESTS = "requests"


class RequestState(enum.StrEnum):
    NONE = "none"  # never was a request: a known contact
    PENDING = "pending"
    HIDDEN = "hidden"  # a request matching the brand's hidden-words filter
    ACCEPTED = "accepted"
    DECLINED = "declined"
    BLOCKED = "blocked"


class ConversationStatus(enum.StrEnum):
    """Mirrors the current ticket's status so the inbox listing needs one index."""

    OPEN = "open"
    PENDING = "pending"
    SNOOZED = "snoozed"
    RESOLVED = "resolved"
    CLOSED = "closed"


class Direction(enum.StrEnum):
    INBOUND = "inbound"
    OUTBOUND = "outbound"


class MessageKind(enum.StrEnum):
    TEXT = "text"
    IMAGE = "image"
    VIDEO = "video"
    AUDIO = "audio"
    FILE = "file"
    GIF = "gif"
    STICKER = "sticker"
    SHARE = "share"
    STORY_REPLY = "story_reply"
    STORY_MENTION = "story_mention"
    LINK = "link"
    LOCATION = "location"
    PRODUCT = "product"
    POSTBACK = "postback"
    UNSUPPORTED = "unsupported"


class MessageStatus(enum.StrEnum):
    RECEIVED = "received"
    SCHEDULED = "scheduled"
    QUEUED = "queued"
    SENDING = "sending"
    SENT = "sent"
    DELIVERED = "delivered"
    SEEN = "seen"
    FAILED = "failed"
    CANCELLED = "cancelled"


class NotificationLevel(enum.StrEnum):
    ALL = "all"
    MUTED = "muted"
    OFF = "off"


class Contact(Model):
    """A person on the other side of a channel, known by their platform-scoped id."""

    __tablename__ = "contacts"
    __table_args__ = (UniqueConstraint("channel_id", "platform_id"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    brand_id: Mapped[int] = mapped_column(ForeignKey("brands.id", ondelete="CASCADE"), index=True)
    channel_id: Mapped[int] = mapped_column(ForeignKey("channels.id", ondelete="CASCADE"))
    platform_id: Mapped[str] = mapped_column(String(64))
    username: Mapped[str | None] = mapped_column(String(64), default=None)
    name: Mapped[str | None] = mapped_column(String(200), default=None)
    avatar_url: Mapped[str | None] = mapped_column(Text, default=None)
    follows_brand: Mapped[bool] = mapped_column(default=False)
    followed_by_brand: Mapped[bool] = mapped_column(default=False)
    blocked: Mapped[bool] = mapped_column(default=False)
    blocked_at: Mapped[datetime | None] = mapped_column(UTCDateTime, default=None)
    profile_fetched_at: Mapped[datetime | None] = mapped_column(UTCDateTime, default=None)
    # What agents keep about the person: free key/value attributes and a note.
    attributes: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    notes: Mapped[str | None] = mapped_column(Text, default=None)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)

    @property
    def display_name(self) -> str:
        return self.name or (f"@{self.username}" if self.username else self.platform_id)

    @property
    def first_name(self) -> str:
        return (self.name or self.username or "").split(" ")[0]


class Conversation(Model):
    """One DM thread of a channel; `thread_key` identifies it on the platform side."""

    __tablename__ = "conversations"
    __table_args__ = (
        UniqueConstraint("channel_id", "thread_key"),
        CheckConstraint(f"participant_count <= {GROUP_LIMIT}", name="participant_limit"),
        Index("ix_conversations_inbox", "brand_id", "folder", "status", "last_message_at"),
        # The inbox's counts per folder, and its page's sort over the open backlog, read this
        # index alone (an index-only scan on PostgreSQL), not the wide conversation rows.
        Index(
            "ix_conversations_counts",
            "brand_id",
            "status",
            "request_state",
            "folder",
            postgresql_include=["current_ticket_id", "last_message_at", "id"],
        ),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    brand_id: Mapped[int] = mapped_column(ForeignKey("brands.id", ondelete="CASCADE"))
    channel_id: Mapped[int] = mapped_column(ForeignKey("channels.id", ondelete="CASCADE"))
    kind: Mapped[ConversationKind] = mapped_column(value_enum(ConversationKind))
    thread_key: Mapped[str] = mapped_column(String(128))
    title: Mapped[str | None] = mapped_column(String(200), default=None)
    contact_id: Mapped[int | None] = mapped_column(
        ForeignKey("contacts.id", ondelete="CASCADE"), index=True, default=None
    )
    folder: Mapped[Folder] = mapped_column(value_enum(Folder), default=Folder.PRIMARY)
    request_state: Mapped[RequestState] = mapped_column(
        value_enum(RequestState), default=RequestState.NONE
    )
    status: Mapped[ConversationStatus] = mapped_column(
        value_enum(ConversationStatus), default=ConversationStatus.OPEN
    )
    vanish_mode: Mapped[bool] = mapped_column(default=False)
    participant_count: Mapped[int] = mapped_column(default=0)
    last_inbound_at: Mapped[datetime | None] = mapped_column(UTCDateTime, default=None)
    last_message_at: Mapped[datetime | None] = mapped_column(UTCDateTime, default=None)
    last_message_preview: Mapped[str | None] = mapped_column(String(200), default=None)
    brand_seen_at: Mapped[datetime | None] = mapped_column(UTCDateTime, default=None)
    viewer_left_at: Mapped[datetime | None] = mapped_column(UTCDateTime, default=None)
    # An agent confirmed reading the vanish-mode messages seen up to then: they need no answer.
    vanish_read_at: Mapped[datetime | None] = mapped_column(UTCDateTime, default=None)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)

    current_ticket_id: Mapped[int | None] = mapped_column(
        ForeignKey("tickets.id", ondelete="SET NULL", use_alter=True), default=None
    )

    contact: Mapped[Contact | None] = relationship(foreign_keys=[contact_id])

    @property
    def in_inbox(self) -> bool:
        return self.request_state in (
            RequestState.NONE,
            RequestState.ACCEPTED,
            RequestState.PENDING,
        )


class Participant(Model):
    """A member of a conversation; the brand's own account is a row with no contact."""

    __tablename__ = "participants"
    __table_args__ = (UniqueConstraint("conversation_id", "contact_id"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    conversation_id: Mapped[int] = mapped_column(ForeignKey("conversations.id", ondelete="CASCADE"))
    contact_id: Mapped[int | None] = mapped_column(
        ForeignKey("contacts.id", ondelete="CASCADE"), index=True, default=None
    )
    is_brand: Mapped[bool] = mapped_column(default=False)
    added_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class Message(Model):
    __tablename__ = "messages"
    __table_args__ = (
        UniqueConstraint("channel_id", "mid"),
        Index("ix_messages_conversation_sent", "conversation_id", "sent_at", "id"),
        Index("ix_messages_channel_reply_to_mid", "channel_id", "reply_to_mid"),
        Index("ix_messages_due", "status", "send_at"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    brand_id: Mapped[int] = mapped_column(ForeignKey("brands.id", ondelete="CASCADE"), index=True)
    channel_id: Mapped[int] = mapped_column(ForeignKey("channels.id", ondelete="CASCADE"))
    conversation_id: Mapped[int] = mapped_column(ForeignKey("conversations.id", ondelete="CASCADE"))
    contact_id: Mapped[int | None] = mapped_column(
        ForeignKey("contacts.id", ondelete="SET NULL"), index=True, default=None
    )
    author_agent_id: Mapped[int | None] = mapped_column(
        ForeignKey("agents.id", ondelete="SET NULL"), index=True, default=None
    )
    ticket_id: Mapped[int | None] = mapped_column(
        ForeignKey("tickets.id", ondelete="SET NULL", use_alter=True), index=True, default=None
    )
    direction: Mapped[Direction] = mapped_column(value_enum(Direction))
    mid: Mapped[str | None] = mapped_column(String(255), default=None)
    kind: Mapped[MessageKind] = mapped_column(value_enum(MessageKind), default=MessageKind.TEXT)
    text: Mapped[str | None] = mapped_column(Text, default=None)
    attachments: Mapped[list[dict]] = mapped_column(JSON, default=list)
    extra: Mapped[dict] = mapped_column(JSON, default=dict)
    reply_to_id: Mapped[int | None] = mapped_column(
        ForeignKey("messages.id", ondelete="SET NULL"), index=True, default=None
    )
    reply_to_mid: Mapped[str | None] = mapped_column(String(255), default=None)
    status: Mapped[MessageStatus] = mapped_column(value_enum(MessageStatus))
    error: Mapped[str | None] = mapped_column(Text, default=None)
    error_code: Mapped[str | None] = mapped_column(String(32), default=None)
    # Delivery bookkeeping: an attempt is recorded before the Send API call, so a worker that
    # dies mid-send is never followed by a blind second send.
    delivery_attempts: Mapped[int] = mapped_column(default=0)
    last_attempt_at: Mapped[datetime | None] = mapped_column(UTCDateTime, default=None)
    is_echo: Mapped[bool] = mapped_column(default=False)
    is_automated: Mapped[bool] = mapped_column(default=False)
    human_agent_tag: Mapped[bool] = mapped_column(default=False)
    suppressed: Mapped[bool] = mapped_column(default=False)  # from a blocked contact
    vanish: Mapped[bool] = mapped_column(default=False)
    sent_at: Mapped[datetime | None] = mapped_column(UTCDateTime, default=None)
    send_at: Mapped[datetime | None] = mapped_column(UTCDateTime, default=None)
    delivered_at: Mapped[datetime | None] = mapped_column(UTCDateTime, default=None)
    seen_at: Mapped[datetime | None] = mapped_column(UTCDateTime, default=None)
    edited_at: Mapped[datetime | None] = mapped_column(UTCDateTime, default=None)
    edit_count: Mapped[int] = mapped_column(default=0)
    unsent_at: Mapped[datetime | None] = mapped_column(UTCDateTime, default=None)
    purged_at: Mapped[datetime | None] = mapped_column(UTCDateTime, default=None)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)

    reply_to: Mapped[Message | None] = relationship(remote_side=[id], foreign_keys=[reply_to_id])

    @property
    def edited(self) -> bool:
        return self.edit_count > 0

    @property
    def unsent(self) -> bool:
        return self.unsent_at is not None

    @property
    def awaiting_reveal(self) -> bool:
        """A customer's vanish-mode message nobody chose to see yet: shown as a placeholder,
        since seeing it starts the countdown to its purge."""
        return (
            self.vanish
            and self.direction is Direction.INBOUND
            and self.seen_at is None
            and self.purged_at is None
            and self.unsent_at is None
        )


class MessageEdit(Model):
    """The text a message had before an edit; edits keep the previous text."""

    __tablename__ = "message_edits"
    __table_args__ = (UniqueConstraint("message_id", "num_edit"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    message_id: Mapped[int] = mapped_column(ForeignKey("messages.id", ondelete="CASCADE"))
    num_edit: Mapped[int]
    previous_text: Mapped[str | None] = mapped_column(Text, default=None)
    edited_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class Reaction(Model):
    """One emoji per person per message: `reactor` is `brand` or `contact:<id>`."""

    __tablename__ = "reactions"
    __table_args__ = (UniqueConstraint("message_id", "reactor"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    message_id: Mapped[int] = mapped_column(ForeignKey("messages.id", ondelete="CASCADE"))
    reactor: Mapped[str] = mapped_column(String(40))
    contact_id: Mapped[int | None] = mapped_column(
        ForeignKey("contacts.id", ondelete="CASCADE"), index=True, default=None
    )
    agent_id: Mapped[int | None] = mapped_column(
        ForeignKey("agents.id", ondelete="SET NULL"), index=True, default=None
    )
    emoji: Mapped[str] = mapped_column(String(32))
    reacted_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class ReactionRemoval(Model):
    """When a person last took their reaction off a message, by the platform's clock: a react
    delivered late (a retry) that is older than the removal does not bring the reaction back."""

    __tablename__ = "reaction_removals"
    __table_args__ = (UniqueConstraint("message_id", "reactor"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    message_id: Mapped[int] = mapped_column(ForeignKey("messages.id", ondelete="CASCADE"))
    reactor: Mapped[str] = mapped_column(String(40))
    removed_at: Mapped[datetime] = mapped_column(UTCDateTime)


class NotificationSetting(Model):
    __tablename__ = "notification_settings"
    __table_args__ = (UniqueConstraint("agent_id", "conversation_id"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    agent_id: Mapped[int] = mapped_column(ForeignKey("agents.id", ondelete="CASCADE"))
    conversation_id: Mapped[int] = mapped_column(
        ForeignKey("conversations.id", ondelete="CASCADE"), index=True
    )
    level: Mapped[NotificationLevel] = mapped_column(
        value_enum(NotificationLevel), default=NotificationLevel.ALL
    )

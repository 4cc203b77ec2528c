"""Tickets: support episodes of a conversation, with their history, tags, notes and SLA state."""

from __future__ import annotations

import enum
from datetime import datetime

from sqlalchemy import JSON, ForeignKey, Index, String, Text, UniqueConstraint, text
from sqlalchemy.orm import Mapped, mapped_column, validates

from helpdesk.extensions import Model
from helpdesk.types import UTCDateTime, utcnow, value_enum


class TicketStatus(enum.StrEnum):
    OPEN = "open"
    PENDING = "pending"
    SNOOZED = "snoozed"
    RESOLVED = "resolved"
    CLOSED = "closed"


ACTIVE_STATUSES = (TicketStatus.OPEN, TicketStatus.PENDING, TicketStatus.SNOOZED)


class Priority(enum.StrEnum):
    LOW = "low"
    NORMAL = "normal"
    HIGH = "high"
    URGENT = "urgent"


class Ticket(Model):
    __tablename__ = "tickets"
    __table_args__ = (
        # At most one active ticket per conversation, even with two intake processes at once.
        Index(
            "uq_tickets_one_active_per_conversation",
            "conversation_id",
            unique=True,
            sqlite_where=text("status IN ('open', 'pending', 'snoozed')"),
            postgresql_where=text("status IN ('open', 'pending', 'snoozed')"),
        ),
        Index(
            "ix_tickets_sla_check",
            "next_sla_check_at",
            sqlite_where=text("next_sla_check_at IS NOT NULL"),
            postgresql_where=text("next_sla_check_at IS NOT NULL"),
        ),
        Index("ix_tickets_brand_status_assignee", "brand_id", "status", "assignee_id"),
        Index("ix_tickets_snoozed_until", "snoozed_until"),
        Index("ix_tickets_waiting", "brand_id", "team_id", "assignee_id", "status"),
        # Time rules look for tickets in a status since before a moment.
        Index("ix_tickets_status_since", "brand_id", "status", "status_changed_at"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    brand_id: Mapped[int] = mapped_column(ForeignKey("brands.id", ondelete="CASCADE"))
    conversation_id: Mapped[int] = mapped_column(
        ForeignKey("conversations.id", ondelete="CASCADE"), index=True
    )
    channel_id: Mapped[int] = mapped_column(ForeignKey("channels.id", ondelete="CASCADE"))
    status: Mapped[TicketStatus] = mapped_column(
        value_enum(TicketStatus), default=TicketStatus.OPEN
    )
    priority: Mapped[Priority] = mapped_column(value_enum(Priority), default=Priority.NORMAL)
    assignee_id: Mapped[int | None] = mapped_column(
        ForeignKey("agents.id", ondelete="SET NULL"), default=None
    )
    team_id: Mapped[int | None] = mapped_column(
        ForeignKey("teams.id", ondelete="SET NULL"), default=None
    )
    opened_at: Mapped[datetime] = mapped_column(UTCDateTime)
    first_response_at: Mapped[datetime | None] = mapped_column(UTCDateTime, default=None)
    awaiting_since: Mapped[datetime | None] = mapped_column(UTCDateTime, default=None)
    last_response_at: Mapped[datetime | None] = mapped_column(UTCDateTime, default=None)
    resolved_at: Mapped[datetime | None] = mapped_column(UTCDateTime, default=None)
    closed_at: Mapped[datetime | None] = mapped_column(UTCDateTime, default=None)
    snoozed_until: Mapped[datetime | None] = mapped_column(UTCDateTime, default=None)
    paused_at: Mapped[datetime | None] = mapped_column(UTCDateTime, default=None)
    assigned_at: Mapped[datetime | None] = mapped_column(UTCDateTime, default=None)
    reopen_count: Mapped[int] = mapped_column(default=0)
    status_changed_at: Mapped[datetime | None] = mapped_column(UTCDateTime, default=None)

    sla_policy_id: Mapped[int | None] = mapped_column(
        ForeignKey("sla_policies.id", ondelete="SET NULL"), default=None
    )
    first_response_due_at: Mapped[datetime | None] = mapped_column(UTCDateTime, default=None)
    next_response_due_at: Mapped[datetime | None] = mapped_column(UTCDateTime, default=None)
    resolution_due_at: Mapped[datetime | None] = mapped_column(UTCDateTime, default=None)
    first_response_warn_at: Mapped[datetime | None] = mapped_column(UTCDateTime, default=None)
    next_response_warn_at: Mapped[datetime | None] = mapped_column(UTCDateTime, default=None)
    resolution_warn_at: Mapped[datetime | None] = mapped_column(UTCDateTime, default=None)
    # The earliest warning or due time still to act on: the sweep reads only rows due by now.
    next_sla_check_at: Mapped[datetime | None] = mapped_column(UTCDateTime, default=None)
    breached: Mapped[list[str]] = mapped_column(JSON, default=list)

    # CSAT: the survey is due at csat_due_at, sent at csat_sent_at; the answer is kept here.
    csat_due_at: Mapped[datetime | None] = mapped_column(UTCDateTime, default=None, index=True)
    csat_sent_at: Mapped[datetime | None] = mapped_column(UTCDateTime, default=None)
    csat_score: Mapped[int | None] = mapped_column(default=None)
    csat_answered_at: Mapped[datetime | None] = mapped_column(UTCDateTime, default=None)

    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, onupdate=utcnow)

    @property
    def active(self) -> bool:
        return self.status in ACTIVE_STATUSES

    @validates("status")
    def _note_status_change(self, _key: str, status: TicketStatus) -> TicketStatus:
        # Time rules measure how long a ticket has been in its status from here.
        if status != self.status or self.status_changed_at is None:
            self.status_changed_at = utcnow()
        return status


class TicketPause(Model):
    """A period when the SLA clocks stood still (the ticket was pending)."""

    __tablename__ = "ticket_pauses"
    __table_args__ = (
        # One open pause at a time: a ticket is pending once, however many requests say so.
        Index(
            "uq_ticket_pauses_one_open",
            "ticket_id",
            unique=True,
            sqlite_where=text("ended_at IS NULL"),
            postgresql_where=text("ended_at IS NULL"),
        ),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    ticket_id: Mapped[int] = mapped_column(ForeignKey("tickets.id", ondelete="CASCADE"), index=True)
    started_at: Mapped[datetime] = mapped_column(UTCDateTime)
    ended_at: Mapped[datetime | None] = mapped_column(UTCDateTime, default=None)


class TicketEvent(Model):
    """Every change to a ticket (who, what, when), so history and metrics can be rebuilt."""

    __tablename__ = "ticket_events"
    __table_args__ = (Index("ix_ticket_events_ticket_at", "ticket_id", "at"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    brand_id: Mapped[int] = mapped_column(ForeignKey("brands.id", ondelete="CASCADE"), index=True)
    ticket_id: Mapped[int] = mapped_column(ForeignKey("tickets.id", ondelete="CASCADE"))
    actor_id: Mapped[int | None] = mapped_column(
        ForeignKey("agents.id", ondelete="SET NULL"), default=None
    )
    kind: Mapped[str] = mapped_column(String(40))
    data: Mapped[dict] = mapped_column(JSON, default=dict)
    at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class Tag(Model):
    __tablename__ = "tags"
    # `VIP` and `vip` are one tag: the lower-cased key is unique, whatever the case typed.
    __table_args__ = (UniqueConstraint("brand_id", "name_key"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    brand_id: Mapped[int] = mapped_column(ForeignKey("brands.id", ondelete="CASCADE"))
    name: Mapped[str] = mapped_column(String(64))
    name_key: Mapped[str] = mapped_column(String(255))
    colour: Mapped[str] = mapped_column(String(7), default="#6b7280")
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)

    @validates("name")
    def _keep_key(self, _key: str, name: str) -> str:
        self.name_key = name.lower()
        return name


class TicketTag(Model):
    __tablename__ = "ticket_tags"
    __table_args__ = (UniqueConstraint("ticket_id", "tag_id"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    ticket_id: Mapped[int] = mapped_column(ForeignKey("tickets.id", ondelete="CASCADE"))
    tag_id: Mapped[int] = mapped_column(ForeignKey("tags.id", ondelete="CASCADE"), index=True)


class TagRule(Model):
    """Tag a ticket when an incoming message contains the keyword."""

    __tablename__ = "tag_rules"
    __table_args__ = (UniqueConstraint("brand_id", "keyword", "tag_id"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    brand_id: Mapped[int] = mapped_column(ForeignKey("brands.id", ondelete="CASCADE"))
    tag_id: Mapped[int] = mapped_column(ForeignKey("tags.id", ondelete="CASCADE"))
    keyword: Mapped[str] = mapped_column(String(100))


class Note(Model):
    """A private note on a ticket: never sent to the customer."""

    __tablename__ = "notes"

    id: Mapped[int] = mapped_column(primary_key=True)
    brand_id: Mapped[int] = mapped_column(ForeignKey("brands.id", ondelete="CASCADE"))
    ticket_id: Mapped[int] = mapped_column(ForeignKey("tickets.id", ondelete="CASCADE"), index=True)
    author_id: Mapped[int | None] = mapped_column(
        ForeignKey("agents.id", ondelete="SET NULL"), default=None
    )
    body: Mapped[str] = mapped_column(Text)
    mentions: Mapped[list[int]] = mapped_column(JSON, default=list)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class RoutingRule(Model):
    """Route new tickets to a team by channel and/or tag; the first matching rule wins."""

    __tablename__ = "routing_rules"

    id: Mapped[int] = mapped_column(primary_key=True)
    brand_id: Mapped[int] = mapped_column(ForeignKey("brands.id", ondelete="CASCADE"), index=True)
    team_id: Mapped[int] = mapped_column(ForeignKey("teams.id", ondelete="CASCADE"))
    position: Mapped[int] = mapped_column(default=0)
    channel_id: Mapped[int | None] = mapped_column(
        ForeignKey("channels.id", ondelete="CASCADE"), default=None
    )
    tag_id: Mapped[int | None] = mapped_column(
        ForeignKey("tags.id", ondelete="CASCADE"), default=None
    )

from __future__ import annotations

import enum
from datetime import datetime
from typing import Any

from sqlalchemy import JSON, ForeignKey, String, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column, relationship

from helpdesk.extensions import Model
from helpdesk.types import UTCDateTime, utcnow, value_enum


class Role(enum.StrEnum):
    AGENT = "agent"
    MANAGER = "manager"
    ADMIN = "admin"

    @property
    def rank(self) -> int:
        return [Role.AGENT, Role.MANAGER, Role.ADMIN].index(self)


class Availability(enum.StrEnum):
    ONLINE = "online"
    AWAY = "away"
    OFFLINE = "offline"


class Agent(Model):
    """A person who logs in; works for one or more brands through memberships."""

    __tablename__ = "agents"

    id: Mapped[int] = mapped_column(primary_key=True)
    email: Mapped[str] = mapped_column(String(254), unique=True)
    name: Mapped[str] = mapped_column(String(200))
    password_hash: Mapped[str] = mapped_column(String(255))
    active: Mapped[bool] = mapped_column(default=True)
    availability: Mapped[Availability] = mapped_column(
        value_enum(Availability), default=Availability.OFFLINE
    )
    capacity: Mapped[int] = mapped_column(default=10)
    # Part of every session's and remember-me cookie's fingerprint: signing out bumps it, so a
    # copy of a cookie taken before (the cookies themselves are not stored) stops working.
    session_epoch: Mapped[int] = mapped_column(default=0)
    # The agent's own defaults (/account): which notifications reach them, and the availability
    # a sign-in starts with.
    notification_defaults: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    sign_in_availability: Mapped[str] = mapped_column(String(16), default="online")
    # Set when an admin deactivates the agent (`active` is then false too); an agent who is
    # inactive without it was invited and has not accepted yet.
    deactivated_at: Mapped[datetime | None] = mapped_column(UTCDateTime, default=None)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)

    memberships: Mapped[list[Membership]] = relationship(back_populates="agent")

    @property
    def first_name(self) -> str:
        return self.name.split()[0] if self.name else ""


class Membership(Model):
    """An agent's role in one brand."""

    __tablename__ = "memberships"
    __table_args__ = (UniqueConstraint("agent_id", "brand_id"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    agent_id: Mapped[int] = mapped_column(ForeignKey("agents.id", ondelete="CASCADE"))
    brand_id: Mapped[int] = mapped_column(ForeignKey("brands.id", ondelete="CASCADE"), index=True)
    role: Mapped[Role] = mapped_column(value_enum(Role), default=Role.AGENT)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)

    agent: Mapped[Agent] = relationship(back_populates="memberships")


class Team(Model):
    __tablename__ = "teams"
    __table_args__ = (UniqueConstraint("brand_id", "name"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    brand_id: Mapped[int] = mapped_column(ForeignKey("brands.id", ondelete="CASCADE"))
    name: Mapped[str] = mapped_column(String(120))
    capacity: Mapped[int | None] = mapped_column(default=None)
    # How the team's new tickets find an agent: manual, round_robin or balanced.
    assignment: Mapped[str] = mapped_column(String(16), default="round_robin")
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class TeamMember(Model):
    __tablename__ = "team_members"
    __table_args__ = (UniqueConstraint("team_id", "agent_id"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    team_id: Mapped[int] = mapped_column(ForeignKey("teams.id", ondelete="CASCADE"))
    agent_id: Mapped[int] = mapped_column(ForeignKey("agents.id", ondelete="CASCADE"), index=True)
    last_assigned_at: Mapped[datetime | None] = mapped_column(UTCDateTime, default=None)

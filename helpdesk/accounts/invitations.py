"""Invitations and password resets: one-use links that let a person set their own password.

The link's token is shown once (printed, answered or e-mailed) and only its hash is stored, like
an API token's, so a copy of the database signs nobody in. Each link works once: using it is a
conditional update that only one of two simultaneous requests wins.
"""

from __future__ import annotations

import secrets
from datetime import datetime, timedelta
from typing import TypeVar

from sqlalchemy import ForeignKey, String, delete, func, select, update
from sqlalchemy.orm import Mapped, mapped_column

from helpdesk.accounts import passwords
from helpdesk.accounts.actor import Actor
from helpdesk.accounts.models import Agent, Role
from helpdesk.accounts.service import create_agent, hash_password, role_in, sign_out_everywhere
from helpdesk.accounts.tokens import digest
from helpdesk.audit import service as audit
from helpdesk.brands.models import Brand
from helpdesk.database import rows_matched
from helpdesk.errors import AlreadyExists, InvalidField, InvalidState, LinkGone, NotFound
from helpdesk.extensions import Model, db
from helpdesk.types import UTCDateTime, utcnow, value_enum

INVITATION_LIFETIME = timedelta(days=7)
RESET_LIFETIME = timedelta(hours=1)


class Invitation(Model):
    """An invitation to join a brand: the agent exists, inactive, until it is accepted."""

    __tablename__ = "invitations"

    id: Mapped[int] = mapped_column(primary_key=True)
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    agent_id: Mapped[int] = mapped_column(ForeignKey("agents.id", ondelete="CASCADE"), index=True)
    brand_id: Mapped[int] = mapped_column(ForeignKey("brands.id", ondelete="CASCADE"), index=True)
    email: Mapped[str] = mapped_column(String(254))
    role: Mapped[Role] = mapped_column(value_enum(Role), default=Role.AGENT)
    created_by: Mapped[int | None] = mapped_column(
        ForeignKey("agents.id", ondelete="SET NULL"), default=None
    )
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime)
    used_at: Mapped[datetime | None] = mapped_column(UTCDateTime, default=None)


class PasswordReset(Model):
    """A one-hour link to set a new password, made by an administrator with shell access."""

    __tablename__ = "password_resets"

    id: Mapped[int] = mapped_column(primary_key=True)
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    agent_id: Mapped[int] = mapped_column(ForeignKey("agents.id", ondelete="CASCADE"), index=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime)
    used_at: Mapped[datetime | None] = mapped_column(UTCDateTime, default=None)


LinkT = TypeVar("LinkT", "Invitation", "PasswordReset")


def _new_token() -> str:
    return secrets.token_urlsafe(32)


# Invitations -------------------------------------------------------------------------------------


def invite(
    actor: Actor, brand: Brand, email: str, role: Role | str = Role.AGENT, name: str | None = None
) -> tuple[Invitation, str]:
    """An admin invites a person by e-mail: a new agent is created inactive with its membership,
    or one invited before and not yet active is invited again (the older links stop working).
    Anyone already active, or known to another brand only, is AlreadyExists: an invitation must
    not let this brand set the password of someone another brand employs, and a deactivated
    agent is reactivated, not invited (an invitation would let them choose a new password)."""
    actor.require(Role.ADMIN, "inviting an agent", brand.id)
    email = email.strip().lower()
    agent = db.session.scalar(select(Agent).where(func.lower(Agent.email) == email))
    if agent is None:
        agent, _password = create_agent(email, name or email.split("@")[0], brand, role)
        agent.active = False
    elif agent.active or role_in(agent.id, brand.id) is None:
        raise AlreadyExists("an agent with this email already exists")
    elif agent.deactivated_at is not None:
        raise InvalidState("this agent was deactivated: reactivate them instead")
    else:
        create_agent(email, name or agent.name, brand, role)
    return _issue_invitation(actor, agent, brand.id, again=False)


def reinvite(actor: Actor, agent: Agent) -> tuple[Invitation, str]:
    """A new link for an agent of the actor's brand who has not accepted yet."""
    brand_id = actor.brand_id
    actor.require(Role.ADMIN, "inviting an agent", brand_id)
    role = role_in(agent.id, brand_id) if brand_id is not None else None
    if brand_id is None or role is None:
        raise NotFound("no such agent")
    if agent.active:
        raise InvalidState("this agent has already accepted and is active")
    if agent.deactivated_at is not None:
        raise InvalidState("this agent was deactivated: reactivate them instead")
    return _issue_invitation(actor, agent, brand_id, again=True)


def _issue_invitation(
    actor: Actor, agent: Agent, brand_id: int, again: bool
) -> tuple[Invitation, str]:
    role = role_in(agent.id, brand_id) or Role.AGENT
    changes = {"email": [None, agent.email], "role": [None, role]}
    if again:  # the agent and role are as before: only the link is new
        changes = {"invitation": ["replaced", "sent again"]}
    audit.record(actor, brand_id, "agent.invited", "agent", agent.id, changes, agent.email)
    db.session.execute(
        delete(Invitation).where(Invitation.agent_id == agent.id, Invitation.used_at.is_(None))
    )
    token = _new_token()
    now = utcnow()
    row = Invitation(
        token_hash=digest(token),
        agent_id=agent.id,
        brand_id=brand_id,
        email=agent.email,
        role=role,
        created_by=actor.agent_id,
        created_at=now,
        expires_at=now + INVITATION_LIFETIME,
    )
    db.session.add(row)
    db.session.flush()
    return row, token


def open_invitation(token: str, now: datetime | None = None) -> Invitation:
    """The invitation a link names, if it still works: unknown is NotFound, used or expired is
    LinkGone (the page says which words to show)."""
    return _open_link(Invitation, "invitation", token, now)


def _open_link(model: type[LinkT], what: str, token: str, now: datetime | None = None) -> LinkT:
    row = db.session.scalar(select(model).where(model.token_hash == digest(token)))
    if row is None:
        raise NotFound(f"This {what} link is not known. Ask your administrator for a new one.")
    if row.used_at is not None or (now or utcnow()) >= row.expires_at:
        raise LinkGone(
            f"This {what} link has already been used or has expired. "
            "Ask your administrator for a new one."
        )
    return row


def accept(token: str, name: str, password: str) -> Agent:
    """The invited person names themselves and sets a password: the account becomes active.
    A refused name or password changes nothing, and the link still works."""
    invitation = open_invitation(token)
    name = name.strip()
    if not name:
        raise InvalidField("name", "Enter your name.")
    if len(name) > 200:
        raise InvalidField("name", "Use at most 200 characters.")
    passwords.check_password(password)
    _claim(Invitation, invitation.id)
    agent = db.session.get(Agent, invitation.agent_id)
    if agent is None:
        raise NotFound("no such agent")
    agent.name = name
    agent.password_hash = hash_password(password)
    agent.active = True
    db.session.flush()
    return agent


def _claim(model: type[Invitation] | type[PasswordReset], row_id: int) -> None:
    """Mark a link used; of two requests using it at once only one matches the row."""
    claimed = rows_matched(
        update(model)
        .where(model.id == row_id, model.used_at.is_(None))
        .values(used_at=utcnow())
        .execution_options(synchronize_session=False)
    )
    if claimed != 1:
        raise LinkGone("This link has already been used.")


# Password resets ---------------------------------------------------------------------------------


def start_reset(email: str) -> tuple[PasswordReset, str]:
    """A reset link for an active agent (the command line's; an inactive one is invited)."""
    agent = db.session.scalar(select(Agent).where(func.lower(Agent.email) == email.strip().lower()))
    if agent is None:
        raise NotFound("no agent with this email")
    if not agent.active:
        raise InvalidState("this agent is not active: send an invitation instead")
    now = utcnow()
    token = _new_token()
    row = PasswordReset(
        token_hash=digest(token),
        agent_id=agent.id,
        created_at=now,
        expires_at=now + RESET_LIFETIME,
    )
    db.session.add(row)
    db.session.flush()
    return row, token


def open_reset(token: str, now: datetime | None = None) -> PasswordReset:
    return _open_link(PasswordReset, "reset", token, now)


def reset(token: str, password: str) -> Agent:
    """A new password; every session of the agent ends, and so do their other reset links."""
    row = open_reset(token)
    passwords.check_password(password)
    _claim(PasswordReset, row.id)
    agent = db.session.get(Agent, row.agent_id)
    if agent is None:
        raise NotFound("no such agent")
    agent.password_hash = hash_password(password)
    sign_out_everywhere(agent)
    db.session.execute(
        delete(PasswordReset).where(
            PasswordReset.agent_id == agent.id, PasswordReset.used_at.is_(None)
        )
    )
    db.session.flush()
    return agent

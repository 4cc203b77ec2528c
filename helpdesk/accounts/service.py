"""Agents, their brand memberships and teams."""

from __future__ import annotations

import secrets
from datetime import datetime

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from sqlalchemy import select

from helpdesk.accounts.models import Agent, Availability, Membership, Role, Team, TeamMember
from helpdesk.brands.models import Brand
from helpdesk.errors import AlreadyExists, Forbidden, NotFound, ValidationError
from helpdesk.extensions import db

_hasher = PasswordHasher()


def hash_password(password: str) -> str:
    return _hasher.hash(password)


def check_password(agent: Agent, password: str) -> bool:
    try:
        return _hasher.verify(agent.password_hash, password)
    except (VerificationError, InvalidHashError):
        return False


def generate_password() -> str:
    return secrets.token_urlsafe(12)


def create_agent(
    email: str, name: str, brand: Brand, role: Role | str = Role.AGENT, password: str | None = None
) -> tuple[Agent, str | None]:
    """Create an agent, or give an existing one a role in the brand.

    Returns the password only when one was set: a new agent without one gets a generated
    password; an existing agent keeps theirs unless a new one is given.
    """
    email = email.strip().lower()
    if "@" not in email or len(email) > 254:
        raise ValidationError(f"{email!r} is not an email address")
    try:
        role = Role(role)
    except ValueError as exc:
        raise ValidationError(f"unknown role {role!r}") from exc
    if password is not None and len(password) < 8:
        raise ValidationError("a password has at least 8 characters")
    agent = db.session.scalar(select(Agent).where(Agent.email == email))
    if agent is None:
        password = password or generate_password()
        agent = Agent(email=email, name=name, password_hash=hash_password(password))
        db.session.add(agent)
        db.session.flush()
    else:
        agent.name = name
        if password is not None:
            agent.password_hash = hash_password(password)
    membership = db.session.scalar(
        select(Membership).where(Membership.agent_id == agent.id, Membership.brand_id == brand.id)
    )
    if membership is None:
        db.session.add(Membership(agent_id=agent.id, brand_id=brand.id, role=role))
    else:
        membership.role = role
    db.session.flush()
    return agent, password


def role_in(agent_id: int, brand_id: int) -> Role | None:
    return db.session.scalar(
        select(Membership.role).where(
            Membership.agent_id == agent_id, Membership.brand_id == brand_id
        )
    )


def create_team(brand: Brand, name: str, capacity: int | None = None) -> Team:
    if db.session.scalar(select(Team.id).where(Team.brand_id == brand.id, Team.name == name)):
        raise AlreadyExists(f"team {name!r} already exists")
    team = Team(brand_id=brand.id, name=name, capacity=capacity)
    db.session.add(team)
    db.session.flush()
    return team


def add_team_member(team: Team, agent: Agent) -> None:
    if role_in(agent.id, team.brand_id) is None:
        raise ValidationError("the agent is not a member of the team's brand")
    exists = db.session.scalar(
        select(TeamMember.id).where(TeamMember.team_id == team.id, TeamMember.agent_id == agent.id)
    )
    if not exists:
        db.session.add(TeamMember(team_id=team.id, agent_id=agent.id))
        db.session.flush()


def require_role(actor: Agent | None, brand_id: int, minimum: Role) -> Role | None:
    """None is the system (workers, intake). An outsider gets NotFound: brands never leak."""
    if actor is None:
        return None
    role = role_in(actor.id, brand_id)
    if role is None:
        raise NotFound("no such thing in your brands")
    if role.rank < minimum.rank:
        raise Forbidden(f"this needs the {minimum.value} role")
    return role


def brand_agent_ids(brand_id: int, roles: tuple[Role, ...] | None = None) -> list[int]:
    query = select(Membership.agent_id).where(Membership.brand_id == brand_id)
    if roles:
        query = query.where(Membership.role.in_(roles))
    return list(db.session.scalars(query))


def on_sign_in(agent: Agent, now: datetime | None = None) -> Availability:
    """Signing in starts a shift: an offline agent (a new one too) comes online and takes the
    tickets waiting in their teams. "Away" is a choice the agent made in the top bar and is
    stored on the agent, so it is kept across sign-ins and devices until they change it."""
    from helpdesk.assignment.service import set_availability  # assignment builds on accounts

    if agent.availability is Availability.OFFLINE:
        set_availability(agent, Availability.ONLINE, now=now)
    return agent.availability

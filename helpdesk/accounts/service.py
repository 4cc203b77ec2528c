"""Agents, their brand memberships and teams."""

from __future__ import annotations

import secrets
from collections.abc import Callable
from datetime import datetime
from typing import Any

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from sqlalchemy import Select, delete, func, select

from helpdesk import hooks
from helpdesk.accounts import passwords
from helpdesk.accounts.actor import Actor, as_actor
from helpdesk.accounts.models import Agent, Availability, Membership, Role, Team, TeamMember
from helpdesk.audit import service as audit
from helpdesk.brands.models import Brand
from helpdesk.errors import AlreadyExists, DomainError, InvalidField, NotFound, ValidationError
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
    if password is not None:
        passwords.check_password(password)
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


def memberships(agent_id: int) -> list[tuple[Brand, Role]]:
    """The agent's brands with their role in each, by name: the console's brand switcher."""
    rows = db.session.execute(
        select(Brand, Membership.role)
        .join(Membership, Membership.brand_id == Brand.id)
        .where(Membership.agent_id == agent_id)
        .order_by(Brand.name, Brand.id)
    ).all()
    return [(brand, role) for brand, role in rows]


def get_agent(agent_id: int) -> Agent | None:
    return db.session.get(Agent, agent_id)


def role_in(agent_id: int, brand_id: int) -> Role | None:
    return db.session.scalar(
        select(Membership.role).where(
            Membership.agent_id == agent_id, Membership.brand_id == brand_id
        )
    )


def create_team(
    brand: Brand, name: str, capacity: int | None = None, assignment: str = "round_robin"
) -> Team:
    if db.session.scalar(select(Team.id).where(Team.brand_id == brand.id, Team.name == name)):
        raise InvalidField("name", "Another team of this brand already has this name.")
    team = Team(brand_id=brand.id, name=name, capacity=capacity, assignment=assignment)
    db.session.add(team)
    db.session.flush()
    return team


def add_team_member(team: Team, agent: Agent) -> None:
    if role_in(agent.id, team.brand_id) is None:
        raise InvalidField("agent_ids", "Only agents of this brand can join its teams.")
    exists = db.session.scalar(
        select(TeamMember.id).where(TeamMember.team_id == team.id, TeamMember.agent_id == agent.id)
    )
    if not exists:
        db.session.add(TeamMember(team_id=team.id, agent_id=agent.id))
        db.session.flush()


def require_role(actor: Actor | Agent | None, brand_id: int, minimum: Role) -> Role | None:
    """None is the system (workers, intake). An outsider gets NotFound: brands never leak.

    Kept for the services that still take an agent: the check itself is `Actor.require`."""
    return as_actor(actor, brand_id).require(minimum, brand_id=brand_id)


def brand_agent_ids(brand_id: int, roles: tuple[Role, ...] | None = None) -> list[int]:
    query = select(Membership.agent_id).where(Membership.brand_id == brand_id)
    if roles:
        query = query.where(Membership.role.in_(roles))
    return list(db.session.scalars(query))


def sign_out_everywhere(agent: Agent) -> None:
    """A new session epoch: a copy of any of the agent's session cookies no longer signs anyone
    in."""
    agent.session_epoch += 1
    db.session.flush()


def on_sign_in(agent: Agent, now: datetime | None = None) -> Availability:
    """Signing in starts a shift: an offline agent (a new one too) comes online and takes the
    tickets waiting in their teams. "Away" is a choice the agent made in the top bar and is
    stored on the agent, so it is kept across sign-ins and devices until they change it.
    Assignment builds on accounts, so it hears of the sign-in through the hook. An agent whose
    sign-ins start "away" (/account) is away first, so the shift takes no ticket yet."""
    if agent.sign_in_availability == Availability.AWAY and agent.availability != Availability.AWAY:
        hooks.publish(hooks.AVAILABILITY_SET, agent=agent, availability=Availability.AWAY)
    hooks.publish(hooks.AGENT_SIGNED_IN, agent=agent, now=now)
    return agent.availability


# Agent management (the API's /agents; the command line creates agents as the system) ---------


def agents_query(brand_id: int) -> Select:
    """The brand's members, for a listing to order and page."""
    return (
        select(Agent)
        .join(Membership, Membership.agent_id == Agent.id)
        .where(Membership.brand_id == brand_id)
    )


def add_agent(
    actor: Actor,
    brand: Brand,
    email: str,
    name: str,
    role: Role | str = Role.AGENT,
    password: str | None = None,
) -> tuple[Agent, str | None]:
    """A new agent of the brand, by an admin. An email already in use is AlreadyExists: whoever
    adds an agent may not rename, or set the password of, someone another brand may employ."""
    actor.require(Role.ADMIN, "adding an agent", brand.id)
    email = email.strip().lower()
    if db.session.scalar(select(Agent.id).where(func.lower(Agent.email) == email)):
        raise AlreadyExists("an agent with this email already exists")
    return create_agent(email, name, brand, role, password)


def set_teams(agent: Agent, brand_id: int, team_ids: list[int]) -> None:
    """The agent's teams in this brand become exactly these; other brands' teams are untouched."""
    wanted = set(team_ids)
    brand_teams = set(
        db.session.scalars(select(Team.id).where(Team.brand_id == brand_id, Team.id.in_(wanted)))
    )
    if wanted - brand_teams:
        missing = sorted(wanted - brand_teams)
        raise InvalidField("team_ids", f"no such teams in this brand: {missing}")
    db.session.execute(
        delete(TeamMember).where(
            TeamMember.agent_id == agent.id,
            TeamMember.team_id.in_(select(Team.id).where(Team.brand_id == brand_id)),
            TeamMember.team_id.not_in(wanted),
        )
    )
    for team_id in sorted(wanted):
        add_team_member(db.session.get(Team, team_id), agent)


def change_agent(agent: Agent, changes: dict[str, Any], actor: Actor) -> Agent:
    """Availability, capacity and teams need a manager; a role change needs an admin, so a
    manager cannot raise anyone (themselves included) to admin, and the brand's last active
    admin keeps the role. Availability is assignment's (an agent coming online takes waiting
    tickets), which builds on accounts: it hears of the change through the hook."""
    brand_id = actor.brand_id
    actor.require(Role.MANAGER, "changing an agent", brand_id)
    if brand_id is None or role_in(agent.id, brand_id) is None:
        raise NotFound("no such agent")
    if "role" in changes and Role(changes["role"]) is not role_in(agent.id, brand_id):
        actor.require(Role.ADMIN, "changing a role", brand_id)
        _change_role(agent, brand_id, Role(changes["role"]), actor)
    before = {"capacity": agent.capacity, "team_ids": team_ids(agent.id, brand_id)}
    if "capacity" in changes:
        agent.capacity = changes["capacity"]
    if "team_ids" in changes:
        set_teams(agent, brand_id, changes["team_ids"])
    db.session.flush()
    after = {"capacity": agent.capacity, "team_ids": team_ids(agent.id, brand_id)}
    if audit.diff(before, after):
        audit.record(
            actor,
            brand_id,
            "agent.updated",
            "agent",
            agent.id,
            audit.diff(before, after),
            agent.name,
        )
    if "availability" in changes:
        hooks.publish(hooks.AVAILABILITY_SET, agent=agent, availability=changes["availability"])
    return agent


def team_ids(agent_id: int, brand_id: int) -> list[int]:
    return list(
        db.session.scalars(
            select(TeamMember.team_id)
            .join(Team, Team.id == TeamMember.team_id)
            .where(TeamMember.agent_id == agent_id, Team.brand_id == brand_id)
            .order_by(TeamMember.team_id)
        )
    )


def _change_role(agent: Agent, brand_id: int, role: Role, actor: Actor) -> None:
    membership = db.session.scalar(
        select(Membership).where(Membership.agent_id == agent.id, Membership.brand_id == brand_id)
    )
    if membership.role is Role.ADMIN:
        refuse_last_admin(agent, brand_id, lambda message: InvalidField("role", message))
    audit.record(
        actor,
        brand_id,
        "agent.role_changed",
        "agent",
        agent.id,
        {"role": [membership.role, role]},
        agent.name,
    )
    membership.role = role


def refuse_last_admin(agent: Agent, brand_id: int, refusal: Callable[[str], DomainError]) -> None:
    """A brand always keeps an active admin: whoever would leave it without one (demoted or
    deactivated) is refused. The admins' memberships are locked, so two admins demoting each
    other at once cannot both succeed."""
    admins = db.session.scalars(
        select(Membership.agent_id)
        .join(Agent, Agent.id == Membership.agent_id)
        .where(
            Membership.brand_id == brand_id,
            Membership.role == Role.ADMIN,
            Agent.active.is_(True),
        )
        .with_for_update(of=Membership)
    ).all()
    if agent.active and set(admins) <= {agent.id}:
        raise refusal(
            f"{agent.name} is the last admin of this brand; make someone else an admin first."
        )

"""Managing the brand's people and teams: what the settings pages and the API's /agents and
/teams do, with one rule set for both.

Form values arrive as text and API values as numbers: both pass through the same checks here,
so a refusal names its field in the same words wherever it came from. Every change is audited
in its own transaction. An agent's account is shared by every brand they work for, so this brand
may only deactivate, reactivate or reset the password of someone who works for it alone (as an
invitation may not take over someone another brand employs).
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import Select, delete, func, select

from helpdesk import hooks
from helpdesk.accounts import invitations
from helpdesk.accounts.actor import Actor
from helpdesk.accounts.invitations import Invitation, PasswordReset
from helpdesk.accounts.models import Agent, Availability, Membership, Role, Team, TeamMember
from helpdesk.accounts.queries import roles_in, team_ids_of
from helpdesk.accounts.service import (
    add_team_member,
    change_agent,
    create_team,
    refuse_last_admin,
    role_in,
    sign_out_everywhere,
)
from helpdesk.audit import service as audit
from helpdesk.brands.models import Brand
from helpdesk.errors import AlreadyExists, InvalidField, InvalidState, NotFound
from helpdesk.extensions import db
from helpdesk.types import utcnow

TEAM_MODES = ("manual", "round_robin", "balanced")
AGENT_CAPACITY = (0, 1000)
TEAM_CAPACITY = (1, 1000)
TEAM_FIELDS = ("name", "capacity", "assignment")


# Reading ---------------------------------------------------------------------------------------


def status_of(agent: Agent) -> str:
    """active, invited (never signed in: inactive without a deactivation) or deactivated."""
    if agent.active:
        return "active"
    return "invited" if agent.deactivated_at is None else "deactivated"


@dataclass(frozen=True)
class AgentRow:
    agent: Agent
    role: Role
    status: str
    team_ids: list[int]


def brand_agents(brand_id: int) -> list[AgentRow]:
    """The brand's agents by name, with their role, status and teams here: the agents page."""
    agents = db.session.scalars(
        select(Agent)
        .join(Membership, Membership.agent_id == Agent.id)
        .where(Membership.brand_id == brand_id)
        .order_by(func.lower(Agent.name), Agent.id)
    ).all()
    ids = [agent.id for agent in agents]
    roles, teams = roles_in(brand_id, ids), team_ids_of(brand_id, ids)
    return [AgentRow(a, roles[a.id], status_of(a), teams[a.id]) for a in agents]


def brand_agent(actor: Actor, agent_id: int) -> Agent:
    """An agent of the actor's brand, or NotFound (another brand's agent is never told apart)."""
    agent = db.session.get(Agent, agent_id)
    if agent is None or actor.brand_id is None or role_in(agent_id, actor.brand_id) is None:
        raise NotFound("no such agent")
    return agent


def teams_query(brand_id: int) -> Select:
    return select(Team).where(Team.brand_id == brand_id)


def brand_teams(brand_id: int) -> list[Team]:
    return list(db.session.scalars(teams_query(brand_id).order_by(func.lower(Team.name), Team.id)))


def member_ids(team_ids: Iterable[int]) -> dict[int, list[int]]:
    """Each team's agent ids, in id order: one query for a page of teams."""
    members: dict[int, list[int]] = defaultdict(list)
    ids = list(team_ids)
    if ids:
        rows = db.session.execute(
            select(TeamMember.team_id, TeamMember.agent_id)
            .where(TeamMember.team_id.in_(ids))
            .order_by(TeamMember.agent_id)
        )
        for team_id, agent_id in rows:
            members[team_id].append(agent_id)
    return members


def brand_team(actor: Actor, team_id: int) -> Team:
    team = db.session.get(Team, team_id)
    if team is None or actor.brand_id is None or team.brand_id != actor.brand_id:
        raise NotFound("no such team")
    actor.require(Role.AGENT, "seeing a team", team.brand_id)
    return team


# Values from a form or the API ------------------------------------------------------------------


def whole_number(value: Any, field: str, bounds: tuple[int, int], blank_ok: bool) -> int | None:
    """A number typed in a form (text) or sent by the API (an integer), within `bounds`; an
    empty value is None where the field allows "no limit"."""
    if value is None or (isinstance(value, str) and not value.strip()):
        if blank_ok:
            return None
        raise InvalidField(field, "Enter a number.")
    low, high = bounds
    try:
        number = int(value.strip() if isinstance(value, str) else value)
    except (TypeError, ValueError):
        raise InvalidField(field, "Enter a whole number.") from None
    if isinstance(value, bool) or not low <= number <= high:
        hint = ", or leave it empty for no limit" if blank_ok else ""
        raise InvalidField(field, f"Enter a number from {low} to {high}{hint}.")
    return number


def ids_of(values: Any, field: str) -> list[int]:
    """Ids from checkboxes (text) or a JSON list (integers)."""
    if values is None:
        return []
    if isinstance(values, str | int):
        values = [values]
    try:
        return sorted({int(v) for v in values if not isinstance(v, bool)})
    except (TypeError, ValueError):
        raise InvalidField(field, "Choose from the list.") from None


def _role(value: Any) -> Role:
    try:
        return Role(value)
    except ValueError:
        raise InvalidField("role", "Choose agent, manager or admin.") from None


# Agents -------------------------------------------------------------------------------------------


def invite_agent(
    actor: Actor, brand: Brand, email: str, name: str = "", role: Any = Role.AGENT
) -> tuple[Invitation, str]:
    """An invitation from the agents page; the refusals name their field."""
    actor.require(Role.ADMIN, "inviting an agent", brand.id)
    email, name = (email or "").strip(), (name or "").strip()
    if "@" not in email or len(email) > 254 or " " in email:
        raise InvalidField("email", "Enter an email address, such as nina@example.com.")
    if len(name) > 200:
        raise InvalidField("name", "Use at most 200 characters.")
    try:
        return invitations.invite(actor, brand, email, _role(role), name=name or None)
    except AlreadyExists:
        raise InvalidField("email", "An agent with this email already exists.") from None
    except InvalidState as refused:
        raise InvalidField("email", refused.message) from None


def update_agent(actor: Actor, agent: Agent, values: dict[str, Any]) -> Agent:
    """Role, capacity and teams from the agents page (text values), through `change_agent`."""
    changes: dict[str, Any] = {}
    if "role" in values:
        changes["role"] = _role(values["role"])
    if "capacity" in values:
        changes["capacity"] = whole_number(values["capacity"], "capacity", AGENT_CAPACITY, False)
    if "team_ids" in values:
        changes["team_ids"] = ids_of(values["team_ids"], "team_ids")
    return change_agent(agent, changes, actor)


def _only_this_brand(agent: Agent, brand_id: int, what: str) -> None:
    others = db.session.scalar(
        select(func.count())
        .select_from(Membership)
        .where(Membership.agent_id == agent.id, Membership.brand_id != brand_id)
    )
    if others:
        raise InvalidState(
            f"{agent.name} also works for another brand's helpdesk, so {what} is not possible "
            "from here."
        )


def deactivate(actor: Actor, agent: Agent, now: datetime | None = None) -> Agent:
    """The agent can no longer sign in: their sessions end at their next request, they go
    offline, and their open tickets here go back to their teams' queues (assignment hears of it
    through the hook and hands them out again)."""
    brand_id = actor.brand_id
    actor.require(Role.ADMIN, "deactivating an agent", brand_id)
    if brand_id is None or role_in(agent.id, brand_id) is None:
        raise NotFound("no such agent")
    if not agent.active:
        raise InvalidState(f"{agent.name} is not active.")
    _only_this_brand(agent, brand_id, "deactivating their account")
    if role_in(agent.id, brand_id) is Role.ADMIN:
        refuse_last_admin(agent, brand_id, InvalidState)
    now = now or utcnow()
    agent.active = False
    agent.deactivated_at = now
    agent.availability = Availability.OFFLINE
    sign_out_everywhere(agent)
    db.session.execute(delete(PasswordReset).where(PasswordReset.agent_id == agent.id))
    audit.record(
        actor,
        brand_id,
        "agent.deactivated",
        "agent",
        agent.id,
        {"status": ["active", "deactivated"]},
        agent.name,
        at=now,
    )
    hooks.publish(hooks.AGENT_DEACTIVATED, agent=agent, brand_id=brand_id, actor=actor, now=now)
    db.session.flush()
    return agent


def reactivate(actor: Actor, agent: Agent) -> Agent:
    """A deactivated agent may sign in again with their old password; they start offline."""
    brand_id = actor.brand_id
    actor.require(Role.ADMIN, "reactivating an agent", brand_id)
    if brand_id is None or role_in(agent.id, brand_id) is None:
        raise NotFound("no such agent")
    if status_of(agent) != "deactivated":
        raise InvalidState(f"{agent.name} is not deactivated.")
    _only_this_brand(agent, brand_id, "reactivating their account")
    agent.active = True
    agent.deactivated_at = None
    audit.record(
        actor,
        brand_id,
        "agent.reactivated",
        "agent",
        agent.id,
        {"status": ["deactivated", "active"]},
        agent.name,
    )
    db.session.flush()
    return agent


def reset_link(actor: Actor, agent: Agent) -> tuple[PasswordReset, str]:
    """A one-hour link for an active agent to set a new password; the token is never audited."""
    brand_id = actor.brand_id
    actor.require(Role.ADMIN, "making a password reset link", brand_id)
    if brand_id is None or role_in(agent.id, brand_id) is None:
        raise NotFound("no such agent")
    if not agent.active:
        raise InvalidState(f"{agent.name} is not active: send an invitation instead.")
    _only_this_brand(agent, brand_id, "a password reset link")
    row, token = invitations.start_reset(agent.email)
    audit.record(
        actor,
        brand_id,
        "agent.password_reset_link",
        "agent",
        agent.id,
        {"reset_link": [None, "made"]},
        agent.name,
    )
    return row, token


# Teams --------------------------------------------------------------------------------------------


def _team_values(brand_id: int, values: dict[str, Any]) -> dict[str, Any]:
    """The given fields checked: a name, a capacity (none or at least 1), a mode, members."""
    clean: dict[str, Any] = {}
    if "name" in values:
        name = " ".join(str(values["name"] or "").split())
        if not name:
            raise InvalidField("name", "Enter a name.")
        if len(name) > 120:
            raise InvalidField("name", "Use at most 120 characters.")
        clean["name"] = name
    if "capacity" in values:
        clean["capacity"] = whole_number(values["capacity"], "capacity", TEAM_CAPACITY, True)
    if "assignment" in values:
        if values["assignment"] not in TEAM_MODES:
            raise InvalidField("assignment", "Choose manual, round robin or balanced.")
        clean["assignment"] = values["assignment"]
    if "agent_ids" in values:
        ids = ids_of(values["agent_ids"], "agent_ids")
        known = set(roles_in(brand_id, ids))
        if set(ids) - known:
            raise InvalidField("agent_ids", "Choose agents of this brand only.")
        clean["agent_ids"] = ids
    return clean


def _team_state(team: Team) -> dict[str, Any]:
    return {**audit.snapshot(team, TEAM_FIELDS), "agent_ids": member_ids([team.id])[team.id]}


def _unique_name(team: Team | None, brand_id: int, name: str) -> None:
    query = select(Team.id).where(Team.brand_id == brand_id, func.lower(Team.name) == name.lower())
    if team is not None:
        query = query.where(Team.id != team.id)
    if db.session.scalar(query) is not None:
        raise InvalidField("name", "Another team already has this name.")


def _set_members(team: Team, agent_ids: list[int]) -> None:
    db.session.execute(
        delete(TeamMember).where(
            TeamMember.team_id == team.id, TeamMember.agent_id.not_in(agent_ids)
        )
    )
    for agent_id in agent_ids:
        add_team_member(team, db.session.get(Agent, agent_id))


def add_team(actor: Actor, brand: Brand, values: dict[str, Any]) -> Team:
    """A new team (manager). Its mode defaults to round robin: tickets find an agent at once."""
    actor.require(Role.MANAGER, "creating a team", brand.id)
    clean = _team_values(brand.id, {"name": "", **values})
    _unique_name(None, brand.id, clean["name"])
    team = create_team(
        brand, clean["name"], clean.get("capacity"), clean.get("assignment", "round_robin")
    )
    _set_members(team, clean.get("agent_ids", []))
    audit.record(
        actor,
        brand.id,
        "team.created",
        "team",
        team.id,
        audit.created(_team_state(team)),
        team.name,
    )
    return team


def update_team(actor: Actor, team: Team, values: dict[str, Any]) -> Team:
    """Change the given fields; a mode change applies to the team's next waiting tickets."""
    actor.require(Role.MANAGER, "changing a team", team.brand_id)
    clean = _team_values(team.brand_id, values)
    if "name" in clean:
        _unique_name(team, team.brand_id, clean["name"])
    before = _team_state(team)
    for field in TEAM_FIELDS:
        if field in clean:
            setattr(team, field, clean[field])
    if "agent_ids" in clean:
        _set_members(team, clean["agent_ids"])
    db.session.flush()
    changes = audit.diff(before, _team_state(team))
    if changes:
        audit.record(actor, team.brand_id, "team.updated", "team", team.id, changes, team.name)
    if changes.keys() & {"assignment", "capacity", "agent_ids"}:
        hooks.publish(hooks.TICKET_FINISHED, brand_id=team.brand_id)  # room for waiting tickets
    return team


def remove_team(actor: Actor, team: Team) -> None:
    """Its tickets stay, without a team; routing rules that named it go with it."""
    actor.require(Role.MANAGER, "deleting a team", team.brand_id)
    audit.record(
        actor,
        team.brand_id,
        "team.deleted",
        "team",
        team.id,
        audit.removed(_team_state(team)),
        team.name,
    )
    db.session.execute(delete(Team).where(Team.id == team.id))
    db.session.expire_all()

"""The brand's agents: listing, creating (admin) and changing availability, capacity, teams and
role (manager; a role change needs an admin token, so a manager cannot raise anyone to admin)."""

from __future__ import annotations

from typing import Any

from sqlalchemy import delete, func, select

from helpdesk.accounts import service as accounts
from helpdesk.accounts.models import Agent, Membership, Role, Team, TeamMember
from helpdesk.assignment.service import set_availability
from helpdesk.brands.models import Brand
from helpdesk.errors import AlreadyExists
from helpdesk.extensions import db
from helpdesk.web.api import present
from helpdesk.web.api.auth import brand_id, require_token_role, requires
from helpdesk.web.api.blueprint import api_blueprint
from helpdesk.web.api.errors import InvalidField
from helpdesk.web.api.lookups import owned
from helpdesk.web.api.pagination import Order, paginate
from helpdesk.web.api.schemas import (
    AgentCreatedSchema,
    AgentInSchema,
    AgentPatchSchema,
    AgentSchema,
    PageQuerySchema,
    page_of,
)

bp = api_blueprint("agents", "The brand's agents")

AGENTS = Order("agents", Agent.id, descending=False)


def set_teams(agent: Agent, team_ids: list[int]) -> None:
    """The agent's teams in this brand become exactly these; other brands' teams are untouched."""
    wanted = set(team_ids)
    brand_teams = set(
        db.session.scalars(select(Team.id).where(Team.brand_id == brand_id(), Team.id.in_(wanted)))
    )
    if wanted - brand_teams:
        missing = sorted(wanted - brand_teams)
        raise InvalidField("team_ids", f"no such teams in this brand: {missing}")
    db.session.execute(
        delete(TeamMember).where(
            TeamMember.agent_id == agent.id,
            TeamMember.team_id.in_(select(Team.id).where(Team.brand_id == brand_id())),
            TeamMember.team_id.not_in(wanted),
        )
    )
    for team_id in sorted(wanted):
        accounts.add_team_member(db.session.get(Team, team_id), agent)


def change_agent(agent: Agent, changes: dict[str, Any]) -> None:
    """Apply a PATCH; there is no accounts service for these yet, so the rules live here."""
    if "role" in changes:
        if Role(changes["role"]) is not accounts.role_in(agent.id, brand_id()):
            require_token_role(Role.ADMIN, "changing a role")
            membership = db.session.scalar(
                select(Membership).where(
                    Membership.agent_id == agent.id, Membership.brand_id == brand_id()
                )
            )
            membership.role = Role(changes["role"])
    if "capacity" in changes:
        agent.capacity = changes["capacity"]
    if "team_ids" in changes:
        set_teams(agent, changes["team_ids"])
    db.session.flush()
    if "availability" in changes:
        set_availability(agent, changes["availability"])


@bp.route("/agents", methods=["GET"])
@bp.arguments(PageQuerySchema, location="query")
@bp.response(200, page_of(AgentSchema, "AgentPage"))
def list_agents(args: dict[str, Any]) -> dict[str, Any]:
    """Members of the brand, with their role in it and their teams here."""
    query = select(Agent).join(Membership, Membership.agent_id == Agent.id)
    query = query.where(Membership.brand_id == brand_id())
    rows, cursor = paginate(query, AGENTS, args)
    return {"items": present.agents(rows, brand_id()), "next_cursor": cursor}


@bp.route("/agents", methods=["POST"])
@requires(Role.ADMIN)
@bp.arguments(AgentInSchema)
@bp.response(201, AgentCreatedSchema)
def create_agent(data: dict[str, Any]) -> dict[str, Any]:
    """A new agent; a generated password is answered this once. An email already in use is 409:
    a token may not rename, or set the password of, someone another brand may employ."""
    email = data["email"].strip().lower()
    if db.session.scalar(select(Agent.id).where(func.lower(Agent.email) == email)):
        raise AlreadyExists("an agent with this email already exists")
    brand = db.session.get(Brand, brand_id())
    agent, password = accounts.create_agent(
        email, data["name"], brand, data["role"], data.get("password")
    )
    db.session.commit()
    shown = present.agent(agent, brand_id())
    return {**shown, "password": None if "password" in data else password}


@bp.route("/agents/<id:agent_id>", methods=["PATCH"])
@requires(Role.MANAGER)
@bp.arguments(AgentPatchSchema)
@bp.response(200, AgentSchema)
def patch_agent(changes: dict[str, Any], agent_id: int) -> dict[str, Any]:
    """Change availability, capacity, teams or (with an admin token) the role in this brand."""
    agent = owned(Agent, agent_id)
    change_agent(agent, changes)
    db.session.commit()
    return present.agent(agent, brand_id())

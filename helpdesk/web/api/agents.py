"""The brand's agents: listing, creating (admin) and changing availability, capacity, teams and
role (manager; a role change needs an admin token). The rules live in accounts.service."""

from __future__ import annotations

from typing import Any

from marshmallow import fields

from helpdesk import transaction
from helpdesk.accounts import invitations, links, management
from helpdesk.accounts import service as accounts
from helpdesk.accounts.models import Agent, Role
from helpdesk.brands.service import get_brand
from helpdesk.web.api import present
from helpdesk.web.api.auth import actor, brand_id, requires
from helpdesk.web.api.blueprint import api_blueprint
from helpdesk.web.api.inputs import AgentInSchema, AgentPatchSchema
from helpdesk.web.api.lookups import owned
from helpdesk.web.api.pagination import Order, paginate
from helpdesk.web.api.schemas import (
    AgentCreatedSchema,
    AgentSchema,
    InvitationLinkSchema,
    PageQuerySchema,
    page_of,
)

bp = api_blueprint("agents", "The brand's agents")

AGENTS = Order("agents", Agent.id, descending=False)


class AgentChangeSchema(AgentPatchSchema):
    active = fields.Boolean(
        metadata={
            "description": "false deactivates (signed out, open tickets back to their teams), "
            "true reactivates; needs an admin token"
        }
    )


@bp.route("/agents", methods=["GET"])
@bp.arguments(PageQuerySchema, location="query")
@bp.response(200, page_of(AgentSchema, "AgentPage"))
def list_agents(args: dict[str, Any]) -> dict[str, Any]:
    """Members of the brand, with their role in it and their teams here."""
    rows, cursor = paginate(accounts.agents_query(brand_id()), AGENTS, args)
    return {"items": present.agents(rows, brand_id()), "next_cursor": cursor}


@bp.route("/agents", methods=["POST"])
@requires(Role.ADMIN)
@bp.arguments(AgentInSchema)
@bp.response(201, AgentCreatedSchema)
def create_agent(data: dict[str, Any]) -> dict[str, Any]:
    """A new agent; a generated password is answered this once. An email already in use is 409:
    a token may not rename, or set the password of, someone another brand may employ."""
    agent, password = accounts.add_agent(
        actor(),
        get_brand(brand_id()),
        data["email"],
        data["name"],
        data["role"],
        data.get("password"),
    )
    transaction.commit()
    shown = present.agent(agent, brand_id())
    return {**shown, "password": None if "password" in data else password}


@bp.route("/agents/<id:agent_id>", methods=["PATCH"])
@requires(Role.MANAGER)
@bp.arguments(AgentChangeSchema)
@bp.response(200, AgentSchema)
def patch_agent(changes: dict[str, Any], agent_id: int) -> dict[str, Any]:
    """Change availability, capacity, teams or (with an admin token) the role in this brand, or
    deactivate or reactivate the agent (admin token; the brand's last admin is refused, 409)."""
    agent = owned(Agent, agent_id)
    active = changes.pop("active", None)
    if active is False and agent.active:
        management.deactivate(actor(), agent)
    elif active is True and not agent.active:
        management.reactivate(actor(), agent)
    agent = accounts.change_agent(agent, changes, actor())
    transaction.commit()
    return present.agent(agent, brand_id())


@bp.route("/agents/<id:agent_id>/invitation", methods=["POST"])
@requires(Role.ADMIN)
@bp.response(201, InvitationLinkSchema)
def invite_again(agent_id: int) -> dict[str, Any]:
    """A new invitation link for an agent who has not accepted yet (the older links stop
    working); an active agent is 409. It is e-mailed too when SMTP_URL is set."""
    invitation, token = invitations.reinvite(actor(), owned(Agent, agent_id))
    transaction.commit()
    url = links.invitation_url(token)
    emailed = links.mail_invitation(invitation.email, get_brand(brand_id()).name, url)
    return {"url": url, "expires_at": invitation.expires_at, "emailed": emailed}

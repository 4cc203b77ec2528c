"""Settings: the brand's agents (admin). Inviting, roles, capacity, teams, new links, and
deactivation; the rules (the last admin, another brand's people) live in accounts.management.

A new invitation or reset link is shown once, on the page after the redirect: it rides in the
session (`once`), never in a URL, and is e-mailed too when SMTP_URL is set.
"""

from __future__ import annotations

from typing import Any

from flask import flash, g, render_template, request, url_for
from flask.typing import ResponseReturnValue

from helpdesk.accounts import invitations, links, management
from helpdesk.accounts.models import Role
from helpdesk.web.settings import bp, once, page
from helpdesk.web.settings.forms import attempt, submitted

ROLES = (
    ("agent", "Agent: answers conversations"),
    ("manager", "Manager: also teams, hours, SLA policies, tags"),
    ("admin", "Admin: everything, agents and channels included"),
)
INVITATION, RESET = "agent_invitation", "agent_reset"


def _render(errors: dict[str, str], form: dict[str, Any] | None = None, editing: int = 0) -> str:
    return render_template(
        "settings/agents.html",
        rows=management.brand_agents(g.brand.id),
        teams=management.brand_teams(g.brand.id),
        roles=ROLES,
        errors=errors,
        form=form or {},
        editing=editing,
        invitation_url=once.take(INVITATION),
        reset_url=once.take(RESET),
    )


def _back() -> str:
    return url_for("settings.agents")


@bp.get("/settings/agents")
@page(Role.ADMIN)
def agents() -> ResponseReturnValue:
    return _render({})


@bp.post("/settings/agents/invitations")
@page(Role.ADMIN)
def invite_agent() -> ResponseReturnValue:
    form = submitted()
    brand = g.brand

    def sent(result: Any) -> None:
        invitation, token = result
        url = links.invitation_url(token)
        once.keep(INVITATION, url)
        if links.mail_invitation(invitation.email, brand.name, url):
            flash(f"The invitation was e-mailed to {invitation.email}.", "info")

    return attempt(
        lambda: management.invite_agent(
            g.actor, brand, form.get("email", ""), form.get("name", ""), form.get("role", "agent")
        ),
        lambda result: f"{result[0].email} is invited. Send them the link below.",
        _back(),
        lambda errors: _render(errors, {"invite": form}),
        after=sent,
    )


@bp.post("/settings/agents/<int:agent_id>")
@page(Role.ADMIN)
def update_agent(agent_id: int) -> ResponseReturnValue:
    agent = management.brand_agent(g.actor, agent_id)
    values: dict[str, Any] = {
        key: request.form[key] for key in ("role", "capacity") if key in request.form
    }
    if "teams_shown" in request.form:  # the form had team boxes: none ticked means no team
        values["team_ids"] = request.form.getlist("team_ids")
    form = {**submitted(), "team_ids": request.form.getlist("team_ids")}
    return attempt(
        lambda: management.update_agent(g.actor, agent, values),
        f"{agent.name} is saved.",
        _back(),
        lambda errors: _render(errors, {"agent": form}, editing=agent_id),
    )


@bp.post("/settings/agents/<int:agent_id>/invitation")
@page(Role.ADMIN)
def reinvite_agent(agent_id: int) -> ResponseReturnValue:
    agent = management.brand_agent(g.actor, agent_id)
    brand = g.brand

    def sent(result: Any) -> None:
        invitation, token = result
        url = links.invitation_url(token)
        once.keep(INVITATION, url)
        if links.mail_invitation(invitation.email, brand.name, url):
            flash(f"The invitation was e-mailed to {invitation.email}.", "info")

    return attempt(
        lambda: invitations.reinvite(g.actor, agent),
        f"A new invitation for {agent.email} is ready; the older link no longer works.",
        _back(),
        lambda errors: _render(errors, editing=agent_id),
        after=sent,
    )


@bp.post("/settings/agents/<int:agent_id>/password-reset")
@page(Role.ADMIN)
def reset_link(agent_id: int) -> ResponseReturnValue:
    agent = management.brand_agent(g.actor, agent_id)
    email = agent.email

    def made(result: Any) -> None:
        url = links.reset_url(result[1])
        once.keep(RESET, url)
        if links.mail_reset(email, url):
            flash(f"The link was e-mailed to {email}.", "info")

    return attempt(
        lambda: management.reset_link(g.actor, agent),
        f"A password reset link for {agent.name} is ready. It works once, for one hour.",
        _back(),
        lambda errors: _render(errors, editing=agent_id),
        after=made,
    )


@bp.post("/settings/agents/<int:agent_id>/deactivate")
@page(Role.ADMIN)
def deactivate_agent(agent_id: int) -> ResponseReturnValue:
    agent = management.brand_agent(g.actor, agent_id)
    return attempt(
        lambda: management.deactivate(g.actor, agent),
        f"{agent.name} is deactivated: signed out, and their open tickets went back to their "
        "teams.",
        _back(),
        lambda errors: _render(errors, editing=agent_id),
    )


@bp.post("/settings/agents/<int:agent_id>/reactivate")
@page(Role.ADMIN)
def reactivate_agent(agent_id: int) -> ResponseReturnValue:
    agent = management.brand_agent(g.actor, agent_id)
    return attempt(
        lambda: management.reactivate(g.actor, agent),
        f"{agent.name} is active again and can sign in with their password.",
        _back(),
        lambda errors: _render(errors, editing=agent_id),
    )

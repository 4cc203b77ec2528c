"""Settings: teams (manager). Members, capacity, and how each team's tickets find an agent; the
rules (a unique name, a capacity of at least one, members of this brand) are accounts.management's.
"""

from __future__ import annotations

from typing import Any

from flask import g, render_template, request, url_for
from flask.typing import ResponseReturnValue

from helpdesk.accounts import management
from helpdesk.accounts.models import Role
from helpdesk.channels.models import Channel
from helpdesk.extensions import db
from helpdesk.tickets import routing, tag_settings
from helpdesk.web.console.context import parse_id
from helpdesk.web.settings import bp, page
from helpdesk.web.settings.forms import attempt, submitted

# Each mode in the words of the page.
MODES = (
    ("round_robin", "Round robin: each new ticket goes to the member who got one longest ago"),
    ("balanced", "Balanced: each new ticket goes to the member with the fewest open tickets"),
    ("manual", "Manual: tickets wait in the team's queue until someone takes them"),
)
MODE_NAMES = {"round_robin": "Round robin", "balanced": "Balanced", "manual": "Manual"}


def _values() -> dict[str, Any]:
    """The team form's fields; the member boxes count only when the form showed them."""
    values: dict[str, Any] = {
        key: request.form[key] for key in ("name", "capacity", "assignment") if key in request.form
    }
    if "members_shown" in request.form:
        values["agent_ids"] = request.form.getlist("agent_ids")
    return values


def _render(errors: dict[str, str], form: dict[str, Any] | None = None, editing: int = 0) -> str:
    teams = management.brand_teams(g.brand.id)
    return render_template(
        "settings/teams.html",
        teams=teams,
        members=management.member_ids(t.id for t in teams),
        agents=management.brand_agents(g.brand.id),
        modes=MODES,
        mode_names=MODE_NAMES,
        errors=errors,
        form=form or {},
        editing=editing,
        routes=routing.described(g.brand.id),
        team_choices=[(t.id, t.name) for t in teams],
        tag_choices=[(t.id, t.name) for t in tag_settings.list_tags(g.brand.id)],
        channels=[
            (c.id, routing.channel_label(c))
            for c in db.session.scalars(
                db.select(Channel).where(Channel.brand_id == g.brand.id).order_by(Channel.id)
            )
        ],
    )


def _refill() -> dict[str, Any]:
    return {**submitted(), "agent_ids": request.form.getlist("agent_ids")}


@bp.get("/settings/teams")
@page(Role.MANAGER)
def teams() -> ResponseReturnValue:
    return _render({})


@bp.post("/settings/teams")
@page(Role.MANAGER)
def create_team() -> ResponseReturnValue:
    form = _refill()
    return attempt(
        lambda: management.add_team(g.actor, g.brand, _values()),
        lambda team: f"Team {team.name} is created.",
        url_for("settings.teams"),
        lambda errors: _render(errors, {"new": form}),
    )


@bp.post("/settings/teams/<int:team_id>")
@page(Role.MANAGER)
def update_team(team_id: int) -> ResponseReturnValue:
    team = management.brand_team(g.actor, team_id)
    form = _refill()
    return attempt(
        lambda: management.update_team(g.actor, team, _values()),
        lambda saved: f"Team {saved.name} is saved.",
        url_for("settings.teams"),
        lambda errors: _render(errors, {"team": form}, editing=team_id),
    )


@bp.post("/settings/teams/<int:team_id>/delete")
@page(Role.MANAGER)
def delete_team(team_id: int) -> ResponseReturnValue:
    team = management.brand_team(g.actor, team_id)
    name = team.name
    return attempt(
        lambda: management.remove_team(g.actor, team),
        f"Team {name} is deleted. Its tickets stay, without a team.",
        url_for("settings.teams"),
        lambda errors: _render(errors, editing=team_id),
    )


@bp.post("/settings/teams/routing")
@page(Role.MANAGER)
def add_routing_rule() -> ResponseReturnValue:
    form = submitted()
    return attempt(
        lambda: routing.add_rule(
            g.actor,
            g.brand,
            parse_id(request.form.get("team_id"), "team"),
            parse_id(request.form.get("tag_id"), "tag"),
            parse_id(request.form.get("channel_id"), "channel"),
        ),
        "The routing rule is added.",
        url_for("settings.teams") + "#routing",
        lambda errors: _render(errors, {"routing": form}),
    )


@bp.post("/settings/teams/routing/<int:rule_id>/delete")
@page(Role.MANAGER)
def delete_routing_rule(rule_id: int) -> ResponseReturnValue:
    rule = routing.get_rule(g.actor, rule_id)
    return attempt(
        lambda: routing.remove_rule(g.actor, rule),
        "The routing rule is removed.",
        url_for("settings.teams") + "#routing",
        lambda errors: _render(errors),
    )

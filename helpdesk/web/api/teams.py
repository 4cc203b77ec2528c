"""Teams: any token of the brand reads them (an integration routes tickets to them); creating,
changing and deleting one needs a manager token, as the settings page needs a manager. The rules
live in accounts.management, shared with the page."""

from __future__ import annotations

from typing import Any

from marshmallow import Schema, fields, validate

from helpdesk import transaction
from helpdesk.accounts import management
from helpdesk.accounts.models import Role, Team
from helpdesk.brands.service import get_brand
from helpdesk.web.api.auth import actor, brand_id, requires
from helpdesk.web.api.blueprint import api_blueprint
from helpdesk.web.api.lookups import owned
from helpdesk.web.api.pagination import Order, paginate
from helpdesk.web.api.schemas import Id, OneOf, PageQuerySchema, Text, page_of

bp = api_blueprint("teams", "Teams: members, capacity and how their tickets are assigned")

TEAMS = Order("teams", Team.id, descending=False)
MODE_HELP = (
    "manual: tickets wait in the team's queue until someone takes them; round_robin: the member "
    "assigned longest ago; balanced: the member with the fewest open tickets"
)


class TeamSchema(Schema):
    id = fields.Integer()
    name = fields.String()
    agent_ids = fields.List(fields.Integer())
    capacity = fields.Integer(allow_none=True, metadata={"description": "null: no team limit"})
    assignment = fields.String(metadata={"description": MODE_HELP})


class TeamPatchSchema(Schema):
    name = Text(validate=validate.Length(1, 120))
    agent_ids = fields.List(Id(), validate=validate.Length(max=1000))
    capacity = fields.Integer(
        strict=True,
        allow_none=True,
        validate=validate.Range(1, 1000),
        metadata={"description": "open tickets for the whole team at once; null: no limit"},
    )
    assignment = OneOf(management.TEAM_MODES, metadata={"description": MODE_HELP})


class TeamInSchema(TeamPatchSchema):
    name = Text(required=True, validate=validate.Length(1, 120))


def _present(teams: list[Team]) -> list[dict[str, Any]]:
    members = management.member_ids(team.id for team in teams)
    return [
        {
            "id": team.id,
            "name": team.name,
            "agent_ids": members[team.id],
            "capacity": team.capacity,
            "assignment": team.assignment,
        }
        for team in teams
    ]


@bp.route("/teams", methods=["GET"])
@bp.arguments(PageQuerySchema, location="query")
@bp.response(200, page_of(TeamSchema, "TeamPage"))
def list_teams(args: dict[str, Any]) -> dict[str, Any]:
    """The brand's teams in the order they were made."""
    rows, cursor = paginate(management.teams_query(brand_id()), TEAMS, args)
    return {"items": _present(rows), "next_cursor": cursor}


@bp.route("/teams", methods=["POST"])
@requires(Role.MANAGER)
@bp.arguments(TeamInSchema)
@bp.response(201, TeamSchema)
def create_team(data: dict[str, Any]) -> dict[str, Any]:
    """A new team; `assignment` defaults to round_robin. A name another team has is 422."""
    team = management.add_team(actor(), get_brand(brand_id()), data)
    transaction.commit()
    return _present([team])[0]


@bp.route("/teams/<id:team_id>", methods=["GET"])
@bp.response(200, TeamSchema)
def get_team(team_id: int) -> dict[str, Any]:
    """One team."""
    return _present([owned(Team, team_id)])[0]


@bp.route("/teams/<id:team_id>", methods=["PATCH"])
@requires(Role.MANAGER)
@bp.arguments(TeamPatchSchema)
@bp.response(200, TeamSchema)
def patch_team(data: dict[str, Any], team_id: int) -> dict[str, Any]:
    """Change the given fields; `agent_ids` becomes the whole member list."""
    team = management.update_team(actor(), owned(Team, team_id), data)
    transaction.commit()
    return _present([team])[0]


@bp.route("/teams/<id:team_id>", methods=["DELETE"])
@requires(Role.MANAGER)
@bp.response(204)
def delete_team(team_id: int) -> None:
    """Its tickets stay, without a team; routing rules naming it are removed."""
    management.remove_team(actor(), owned(Team, team_id))
    transaction.commit()

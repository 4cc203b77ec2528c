"""Bulk reads of agents' standing in a brand, for a page of agents: one query per kind."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable

from sqlalchemy import select

from helpdesk.accounts.models import Membership, Role, Team, TeamMember
from helpdesk.extensions import db


def roles_in(brand_id: int, agent_ids: Iterable[int]) -> dict[int, Role]:
    """Each agent's role in the brand (members only)."""
    ids = list(agent_ids)
    if not ids:
        return {}
    return dict(
        db.session.execute(
            select(Membership.agent_id, Membership.role).where(
                Membership.brand_id == brand_id, Membership.agent_id.in_(ids)
            )
        ).all()
    )


def team_ids_of(brand_id: int, agent_ids: Iterable[int]) -> dict[int, list[int]]:
    """The ids of the brand's teams each agent belongs to, in id order."""
    teams: dict[int, list[int]] = defaultdict(list)
    ids = list(agent_ids)
    if not ids:
        return teams
    pairs = db.session.execute(
        select(TeamMember.agent_id, TeamMember.team_id)
        .join(Team, Team.id == TeamMember.team_id)
        .where(Team.brand_id == brand_id, TeamMember.agent_id.in_(ids))
        .order_by(TeamMember.team_id)
    )
    for agent_id, team_id in pairs:
        teams[agent_id].append(team_id)
    return teams

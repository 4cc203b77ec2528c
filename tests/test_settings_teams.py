"""/settings/teams and /api/v1/teams (issue 15): members, capacity, a unique name, and the team's
own assignment mode (manual: tickets wait to be taken; round robin and balanced: handed out)."""

from __future__ import annotations

import pytest
from sqlalchemy import select

from helpdesk.accounts.models import Availability, Role, Team, TeamMember
from helpdesk.accounts.service import add_team_member, create_team
from helpdesk.accounts.tokens import create_token
from helpdesk.assignment import service as assignment
from helpdesk.audit.models import AuditEvent
from helpdesk.dm.models import Conversation
from helpdesk.extensions import db
from helpdesk.tickets.models import Ticket
from helpdesk.types import utcnow
from tests.helpers.console import post, signed_in
from tests.helpers.rows import PAGE_VIEW_COLUMNS, changed
from tests.helpers.rows import snapshot as all_rows
from tests.helpers.world import World


@pytest.fixture
def world() -> World:
    return World()


def manager_client(app, world: World):
    return signed_in(app.test_client(), world.manager)


def snapshot() -> dict:
    """Every row, but for when a token was last used (reading with it is no change)."""
    return all_rows(PAGE_VIEW_COLUMNS | {("api_tokens", "last_used_at")})


def unchanged_since(before: dict) -> dict:
    after = snapshot()
    after.pop("login_attempts", None)
    before.pop("login_attempts", None)
    return changed(before, after)


def team_named(brand_id: int, name: str) -> Team | None:
    db.session.rollback()
    return db.session.scalar(select(Team).where(Team.brand_id == brand_id, Team.name == name))


def members_of(team_id: int) -> list[int]:
    db.session.rollback()
    return sorted(
        db.session.scalars(select(TeamMember.agent_id).where(TeamMember.team_id == team_id))
    )


def audited(brand_id: int) -> list[str]:
    db.session.rollback()
    return list(
        db.session.scalars(
            select(AuditEvent.action).where(AuditEvent.brand_id == brand_id).order_by(AuditEvent.id)
        )
    )


# The page -----------------------------------------------------------------------------------------


def test_a_manager_creates_edits_and_deletes_a_team(app, world):
    client = manager_client(app, world)
    response = post(
        client,
        "/settings/teams",
        {
            "name": "  Billing ",
            "capacity": "5",
            "assignment": "balanced",
            "members_shown": "1",
            "agent_ids": [str(world.agent.id), str(world.manager.id)],
        },
    )
    assert response.status_code == 303
    team = team_named(world.brand.id, "Billing")
    assert (team.capacity, team.assignment) == (5, "balanced")
    assert members_of(team.id) == sorted([world.agent.id, world.manager.id])
    page = client.get("/settings/teams").get_data(as_text=True)
    assert "Billing" in page and "Balanced" in page and "Acme Agent" in page
    assert "Manual: tickets wait in the team" in page  # each mode explained

    team_id = team.id
    response = post(
        client,
        f"/settings/teams/{team_id}",
        {
            "name": "Payments",
            "capacity": "",
            "assignment": "manual",
            "members_shown": "1",
            "agent_ids": str(world.agent.id),
        },
    )
    assert response.status_code == 303
    team = db.session.get(Team, team_id)
    assert (team.name, team.capacity, team.assignment) == ("Payments", None, "manual")
    assert members_of(team_id) == [world.agent.id]

    assert post(client, f"/settings/teams/{team_id}/delete").status_code == 303
    assert db.session.get(Team, team_id) is None
    assert audited(world.brand.id) == ["team.created", "team.updated", "team.deleted"]
    event = db.session.scalar(select(AuditEvent).where(AuditEvent.action == "team.updated"))
    assert event.changes["assignment"] == ["balanced", "manual"]


def test_a_duplicate_team_name_is_refused_next_to_the_field(app, world):
    create_team(world.brand, "Support")
    db.session.commit()
    client = manager_client(app, world)
    before = snapshot()
    response = post(client, "/settings/teams", {"name": "support", "assignment": "manual"})
    assert response.status_code == 422
    html = response.get_data(as_text=True)
    assert "Another team already has this name" in html and 'id="name-new-error"' in html
    assert unchanged_since(before) == {}


@pytest.mark.parametrize(
    ("data", "field", "message"),
    [
        ({"name": "Billing", "capacity": "0"}, "capacity", "Enter a number from 1 to 1000"),
        ({"name": "Billing", "capacity": "lots"}, "capacity", "Enter a whole number"),
        ({"name": "   "}, "name", "Enter a name"),
        ({"name": "Billing", "assignment": "random"}, "assignment", "Choose manual, round robin"),
    ],
)
def test_bad_team_values_are_refused_and_nothing_changes(app, world, data, field, message):
    client = manager_client(app, world)
    before = snapshot()
    response = post(client, "/settings/teams", data)
    assert response.status_code == 422
    html = response.get_data(as_text=True)
    assert message in html and f'id="{field}-new-error"' in html
    assert unchanged_since(before) == {}


def test_a_bad_edit_leaves_the_team_as_it_was(app, world):
    team = create_team(world.brand, "Support", capacity=3)
    db.session.commit()
    team_id = team.id
    client = manager_client(app, world)
    before = snapshot()
    response = post(client, f"/settings/teams/{team_id}", {"name": "Sales", "capacity": "0"})
    assert response.status_code == 422
    assert "Enter a number from 1 to 1000" in response.get_data(as_text=True)
    assert unchanged_since(before) == {}


def test_only_the_brands_agents_can_be_members(app, world):
    rival = World("rival")
    client = manager_client(app, world)
    before = snapshot()
    response = post(
        client,
        "/settings/teams",
        {"name": "Mixed", "members_shown": "1", "agent_ids": str(rival.agent.id)},
    )
    assert response.status_code == 422
    assert "Choose agents of this brand only" in response.get_data(as_text=True)
    assert unchanged_since(before) == {}


def test_another_brands_team_is_not_found(app, world):
    rival = World("rival")
    theirs = create_team(rival.brand, "Theirs")
    db.session.commit()
    theirs_id = theirs.id
    client = manager_client(app, world)
    before = snapshot()
    assert post(client, f"/settings/teams/{theirs_id}", {"name": "Mine"}).status_code == 404
    assert post(client, f"/settings/teams/{theirs_id}/delete").status_code == 404
    assert unchanged_since(before) == {}


def test_an_agent_may_not_open_the_teams_page(app, world):
    client = signed_in(app.test_client(), world.agent)
    assert client.get("/settings/teams").status_code == 403


# The team's assignment mode ---------------------------------------------------------------------


def _waiting_ticket(world: World, team: Team) -> int:
    conversation = db.session.get(Conversation, world.conversation.id)
    ticket = db.session.get(Ticket, conversation.current_ticket_id)
    ticket.team_id, ticket.assignee_id = team.id, None
    db.session.flush()
    return ticket.id


def _online_team(world: World, mode: str) -> Team:
    team = create_team(world.brand, "Support", assignment=mode)
    add_team_member(team, world.agent)
    world.agent.availability = Availability.ONLINE
    db.session.flush()
    return team


def test_a_manual_team_gets_no_automatic_assignment(world):
    team = _online_team(world, "manual")
    ticket = db.session.get(Ticket, _waiting_ticket(world, team))
    assert assignment.auto_assign(ticket, utcnow()) is None
    assert assignment.assign_waiting(world.brand.id) == 0
    assert ticket.assignee_id is None


def test_a_round_robin_team_hands_its_tickets_out(world):
    team = _online_team(world, "round_robin")
    ticket = db.session.get(Ticket, _waiting_ticket(world, team))
    assert assignment.auto_assign(ticket, utcnow()) == world.agent


def test_switching_a_manual_team_to_round_robin_hands_out_its_waiting_tickets(app, world):
    team = _online_team(world, "manual")
    ticket_id = _waiting_ticket(world, team)
    team_id = team.id
    db.session.commit()
    client = manager_client(app, world)
    response = post(client, f"/settings/teams/{team_id}", {"assignment": "round_robin"})
    assert response.status_code == 303
    db.session.rollback()
    assert db.session.get(Ticket, ticket_id).assignee_id == world.agent.id


# The API ------------------------------------------------------------------------------------------


def _token(world: World, role: Role) -> dict[str, str]:
    _row, secret = create_token(world.brand, f"{role.value} token", role)
    db.session.commit()
    return {"Authorization": f"Bearer {secret}"}


def test_the_api_creates_lists_changes_and_deletes_teams(client, world):
    manager = _token(world, Role.MANAGER)
    created = client.post(
        "/api/v1/teams",
        json={"name": "Billing", "agent_ids": [world.agent.id], "capacity": 4},
        headers=manager,
    )
    assert created.status_code == 201, created.get_json()
    body = created.get_json()
    assert body["name"] == "Billing" and body["agent_ids"] == [world.agent.id]
    assert (body["capacity"], body["assignment"]) == (4, "round_robin")
    team_id = body["id"]

    listed = client.get("/api/v1/teams", headers=_token(world, Role.AGENT))
    assert listed.status_code == 200
    assert [t["id"] for t in listed.get_json()["items"]] == [team_id]

    patched = client.patch(
        f"/api/v1/teams/{team_id}",
        json={"assignment": "manual", "capacity": None, "agent_ids": []},
        headers=manager,
    )
    assert patched.status_code == 200
    assert patched.get_json() == {
        "id": team_id,
        "name": "Billing",
        "agent_ids": [],
        "capacity": None,
        "assignment": "manual",
    }
    assert client.delete(f"/api/v1/teams/{team_id}", headers=manager).status_code == 204
    assert client.get(f"/api/v1/teams/{team_id}", headers=manager).status_code == 404
    assert audited(world.brand.id) == ["team.created", "team.updated", "team.deleted"]


def test_the_api_refuses_bad_team_values_in_the_error_shape(client, world):
    create_team(world.brand, "Support")
    manager = _token(world, Role.MANAGER)
    before = snapshot()
    duplicate = client.post("/api/v1/teams", json={"name": "Support"}, headers=manager)
    assert duplicate.status_code == 422
    assert "name" in duplicate.get_json()["error"]["fields"]
    for body in ({"name": "X", "capacity": 0}, {"name": "X", "assignment": "random"}):
        response = client.post("/api/v1/teams", json=body, headers=manager)
        assert response.status_code == 422, body
    assert unchanged_since(before) == {}


def test_the_api_needs_a_manager_token_to_change_teams(client, world):
    team = create_team(world.brand, "Support")
    db.session.commit()
    team_id = team.id
    agent = _token(world, Role.AGENT)
    assert client.get(f"/api/v1/teams/{team_id}", headers=agent).status_code == 200
    assert client.post("/api/v1/teams", json={"name": "X"}, headers=agent).status_code == 403
    assert client.patch(f"/api/v1/teams/{team_id}", json={}, headers=agent).status_code == 403
    assert client.delete(f"/api/v1/teams/{team_id}", headers=agent).status_code == 403


def test_the_api_answers_404_for_another_brands_team(client, world):
    rival = World("rival")
    theirs = create_team(rival.brand, "Theirs")
    db.session.commit()
    theirs_id = theirs.id
    manager = _token(world, Role.MANAGER)
    before = snapshot()
    assert client.get(f"/api/v1/teams/{theirs_id}", headers=manager).status_code == 404
    assert (
        client.patch(f"/api/v1/teams/{theirs_id}", json={"name": "Y"}, headers=manager).status_code
        == 404
    )
    assert client.delete(f"/api/v1/teams/{theirs_id}", headers=manager).status_code == 404
    member_of_theirs = client.post(
        "/api/v1/teams", json={"name": "Z", "agent_ids": [rival.agent.id]}, headers=manager
    )
    assert member_of_theirs.status_code == 422
    assert unchanged_since(before) == {}

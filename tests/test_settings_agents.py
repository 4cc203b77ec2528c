"""/settings/agents (issue 15): inviting from the page, roles, the brand's last admin,
deactivation (sessions end, open tickets go back to the team) and the API's `active`."""

from __future__ import annotations

import re

import pytest
from sqlalchemy import select

from helpdesk.accounts.models import Agent, Availability, Membership, Role, Team
from helpdesk.accounts.service import add_team_member, create_team
from helpdesk.accounts.tokens import create_token
from helpdesk.audit.models import AuditEvent
from helpdesk.dm.models import Conversation
from helpdesk.extensions import db
from helpdesk.tickets.models import Ticket, TicketEvent
from tests.factories import PASSWORD, AgentFactory, member
from tests.helpers.console import csrf_token, login, post, signed_in
from tests.helpers.rows import changed, snapshot
from tests.helpers.world import World, known_contact, receive

LINK_RE = re.compile(r'value="(http://[^"]+/invitations/[\w-]+)"')
RESET_RE = re.compile(r'value="(http://[^"]+/password-reset/[\w-]+)"')
NEW_PASSWORD = "a quiet harbour at dawn"


@pytest.fixture
def world() -> World:
    return World()


def admin_client(app, world: World):
    return signed_in(app.test_client(), world.admin)


def fresh(model, row_id):
    db.session.rollback()
    return db.session.get(model, row_id)


def role_of(agent_id: int, brand_id: int) -> Role:
    db.session.rollback()
    return db.session.scalar(
        select(Membership.role).where(
            Membership.agent_id == agent_id, Membership.brand_id == brand_id
        )
    )


def actions(brand_id: int) -> list[str]:
    db.session.rollback()
    return list(
        db.session.scalars(
            select(AuditEvent.action).where(AuditEvent.brand_id == brand_id).order_by(AuditEvent.id)
        )
    )


def snapshot_without_logins() -> dict:
    rows = snapshot()
    rows.pop("login_attempts", None)
    return rows


# The page -----------------------------------------------------------------------------------------


def test_the_page_lists_the_brands_agents_with_their_status(app, world):
    invited = AgentFactory(name="Nina Invited", active=False)
    gone = AgentFactory(name="Olga Gone", active=False, deactivated_at=world.brand.created_at)
    member(invited, world.brand)
    member(gone, world.brand)
    stranger = AgentFactory(name="Somebody Else")
    member(stranger, World("rival").brand)
    db.session.commit()
    html = admin_client(app, world).get("/settings/agents").get_data(as_text=True)
    for text in ("Acme Agent", "Acme Manager", "Acme Admin", world.agent.email):
        assert text in html
    assert "Nina Invited" in html and "invited" in html
    assert "Olga Gone" in html and "deactivated" in html
    assert "Somebody Else" not in html


def test_an_invitation_from_the_page_shows_its_link_once_and_the_link_works(app, world):
    client = admin_client(app, world)
    response = post(
        client,
        "/settings/agents/invitations",
        {"email": "Nina@Example.test", "name": "Nina", "role": "manager"},
    )
    assert response.status_code == 303 and "/settings/agents" in response.headers["Location"]
    assert "invitations" not in response.headers["Location"]  # the link is never in a URL
    page = client.get("/settings/agents").get_data(as_text=True)
    link = LINK_RE.search(page)
    assert link, page
    assert "it will not be shown again" in page
    assert not LINK_RE.search(client.get("/settings/agents").get_data(as_text=True))

    invited = db.session.scalar(select(Agent).where(Agent.email == "nina@example.test"))
    assert not invited.active and invited.deactivated_at is None
    assert role_of(invited.id, world.brand.id) is Role.MANAGER
    assert "agent.invited" in actions(world.brand.id)

    path = "/" + link.group(1).split("/", 3)[3]
    newcomer = app.test_client()
    accepted = newcomer.post(
        path,
        data={
            "csrf_token": csrf_token(newcomer, path),
            "name": "Nina Berg",
            "password": NEW_PASSWORD,
        },
    )
    assert accepted.status_code == 302
    assert fresh(Agent, invited.id).active
    assert login(app.test_client(), "nina@example.test", NEW_PASSWORD).status_code == 302


@pytest.mark.parametrize(
    ("data", "field", "message"),
    [
        ({"email": "not an address", "role": "agent"}, "email", "Enter an email address"),
        ({"email": "x@example.test", "role": "owner"}, "role", "Choose agent, manager or admin"),
    ],
)
def test_a_bad_invitation_is_refused_next_to_its_field(app, world, data, field, message):
    client = admin_client(app, world)
    before = snapshot_without_logins()
    response = post(client, "/settings/agents/invitations", data)
    assert response.status_code == 422
    html = response.get_data(as_text=True)
    assert message in html and f'id="{field}-error"' in html
    assert changed(before, snapshot_without_logins()) == {}


def test_inviting_an_existing_agent_is_refused_next_to_the_email(app, world):
    client = admin_client(app, world)
    before = snapshot_without_logins()
    response = post(
        client, "/settings/agents/invitations", {"email": world.agent.email, "role": "agent"}
    )
    assert response.status_code == 422
    assert "An agent with this email already exists" in response.get_data(as_text=True)
    assert changed(before, snapshot_without_logins()) == {}


def test_an_invited_agent_gets_a_new_link_and_the_old_one_stops(app, world):
    client = admin_client(app, world)
    post(client, "/settings/agents/invitations", {"email": "nina@example.test", "role": "agent"})
    first = LINK_RE.search(client.get("/settings/agents").get_data(as_text=True)).group(1)
    invited = db.session.scalar(select(Agent.id).where(Agent.email == "nina@example.test"))
    assert post(client, f"/settings/agents/{invited}/invitation").status_code == 303
    second = LINK_RE.search(client.get("/settings/agents").get_data(as_text=True)).group(1)
    assert first != second
    assert app.test_client().get("/" + first.split("/", 3)[3]).status_code == 404
    # An active agent has accepted already: no new invitation, in words.
    refused = post(client, f"/settings/agents/{world.agent.id}/invitation")
    assert refused.status_code == 422
    assert "already accepted" in refused.get_data(as_text=True)


def test_a_password_reset_link_is_shown_once_and_never_audited(app, world):
    client = admin_client(app, world)
    assert post(client, f"/settings/agents/{world.agent.id}/password-reset").status_code == 303
    page = client.get("/settings/agents").get_data(as_text=True)
    link = RESET_RE.search(page).group(1)
    assert not RESET_RE.search(client.get("/settings/agents").get_data(as_text=True))
    event = db.session.scalar(
        select(AuditEvent).where(AuditEvent.action == "agent.password_reset_link")
    )
    assert event.target_id == world.agent.id
    assert link.rsplit("/", 1)[1] not in repr(event.changes)


# Roles and the last admin ---------------------------------------------------------------------


def test_an_admin_changes_a_role_capacity_and_teams(app, world):
    team = create_team(world.brand, "Support")
    db.session.commit()
    team_id = team.id
    response = post(
        admin_client(app, world),
        f"/settings/agents/{world.agent.id}",
        {"role": "manager", "capacity": "4", "teams_shown": "1", "team_ids": str(team_id)},
    )
    assert response.status_code == 303
    assert role_of(world.agent.id, world.brand.id) is Role.MANAGER
    assert fresh(Agent, world.agent.id).capacity == 4
    assert actions(world.brand.id)[-2:] == ["agent.role_changed", "agent.updated"]
    event = db.session.scalar(select(AuditEvent).where(AuditEvent.action == "agent.role_changed"))
    assert event.changes == {"role": ["agent", "manager"]}


def test_a_bad_capacity_is_refused_next_to_the_field(app, world):
    client = admin_client(app, world)
    before = snapshot_without_logins()
    response = post(client, f"/settings/agents/{world.agent.id}", {"capacity": "-1"})
    assert response.status_code == 422
    assert "Enter a number from 0 to 1000" in response.get_data(as_text=True)
    assert changed(before, snapshot_without_logins()) == {}


def test_the_last_admin_cannot_demote_themselves(app, world):
    client = admin_client(app, world)
    before = snapshot_without_logins()
    response = post(client, f"/settings/agents/{world.admin.id}", {"role": "manager"})
    assert response.status_code == 422
    html = response.get_data(as_text=True)
    assert "is the last admin of this brand; make someone else an admin first" in html
    assert f'id="role-{world.admin.id}-error"' in html  # next to the role field
    assert changed(before, snapshot_without_logins()) == {}
    assert role_of(world.admin.id, world.brand.id) is Role.ADMIN


def test_with_a_second_admin_one_may_step_down_and_the_other_then_may_not(app, world):
    client = admin_client(app, world)
    assert (
        post(client, f"/settings/agents/{world.manager.id}", {"role": "admin"}).status_code == 303
    )
    assert post(client, f"/settings/agents/{world.admin.id}", {"role": "agent"}).status_code == 303
    assert role_of(world.admin.id, world.brand.id) is Role.AGENT
    other = signed_in(app.test_client(), world.manager)
    refused = post(other, f"/settings/agents/{world.manager.id}", {"role": "manager"})
    assert refused.status_code == 422
    assert role_of(world.manager.id, world.brand.id) is Role.ADMIN


def test_the_last_admin_cannot_be_deactivated(app, world):
    client = admin_client(app, world)
    before = snapshot_without_logins()
    response = post(client, f"/settings/agents/{world.admin.id}/deactivate")
    assert response.status_code == 422
    html = response.get_data(as_text=True)
    assert "is the last admin of this brand" in html and 'class="form-error"' in html
    assert changed(before, snapshot_without_logins()) == {}


def test_a_deactivated_admin_does_not_count_as_the_brands_admin(app, world):
    other_admin = AgentFactory(name="Second Admin")
    member(other_admin, world.brand, Role.ADMIN)
    db.session.commit()
    client = admin_client(app, world)
    assert post(client, f"/settings/agents/{other_admin.id}/deactivate").status_code == 303
    refused = post(client, f"/settings/agents/{world.admin.id}", {"role": "manager"})
    assert refused.status_code == 422


# Deactivation -------------------------------------------------------------------------------------


def _support_team(world: World, mode: str = "round_robin") -> Team:
    team = create_team(world.brand, "Support", assignment=mode)
    add_team_member(team, world.agent)
    add_team_member(team, world.manager)
    return team


def _ticket_of(world: World, conversation_id: int) -> Ticket:
    conversation = db.session.get(Conversation, conversation_id)
    return db.session.get(Ticket, conversation.current_ticket_id)


def _tickets_assigned_to_the_agent(world: World, team: Team) -> list[int]:
    second = receive(world.channel, known_contact(world.channel).platform_id, "Hi again")
    ids = []
    for conversation_id in (world.conversation.id, second.conversation_id):
        ticket = _ticket_of(world, conversation_id)
        ticket.team_id = team.id
        ticket.assignee_id = world.agent.id
        ids.append(ticket.id)
    db.session.commit()
    return ids


def test_deactivation_signs_the_agent_out_and_hands_their_tickets_to_the_team(app, world):
    agent_client = signed_in(app.test_client(), world.agent)
    assert agent_client.get("/inbox").status_code == 200
    team = _support_team(world)
    world.manager.availability = Availability.ONLINE
    ticket_ids = _tickets_assigned_to_the_agent(world, team)
    admin = admin_client(app, world)
    db.session.rollback()
    db.session.get(Agent, world.manager.id).availability = Availability.ONLINE
    db.session.commit()

    response = post(admin, f"/settings/agents/{world.agent.id}/deactivate")
    assert response.status_code == 303

    gone = fresh(Agent, world.agent.id)
    assert not gone.active and gone.deactivated_at is not None
    assert gone.availability is Availability.OFFLINE
    next_request = agent_client.get("/inbox")
    assert next_request.status_code == 302 and "/login" in next_request.headers["Location"]
    for ticket_id in ticket_ids:  # unassigned, then taken by the team's online member
        assert fresh(Ticket, ticket_id).assignee_id == world.manager.id
        kinds = list(
            db.session.scalars(
                select(TicketEvent.kind)
                .where(TicketEvent.ticket_id == ticket_id)
                .order_by(TicketEvent.id)
            )
        )
        assert kinds[-2:] == ["unassigned", "assigned"]
    assert "agent.deactivated" in actions(world.brand.id)
    page = admin.get("/settings/agents").get_data(as_text=True)
    assert "Reactivate Acme Agent" in page


def test_with_nobody_online_the_released_tickets_wait_in_the_queue(app, world):
    team = _support_team(world)
    ticket_ids = _tickets_assigned_to_the_agent(world, team)
    assert (
        post(admin_client(app, world), f"/settings/agents/{world.agent.id}/deactivate").status_code
        == 303
    )
    for ticket_id in ticket_ids:
        ticket = fresh(Ticket, ticket_id)
        assert ticket.assignee_id is None and ticket.team_id == team.id


def test_a_deactivated_agent_cannot_sign_in_until_reactivated(app, world):
    client = admin_client(app, world)
    post(client, f"/settings/agents/{world.agent.id}/deactivate")
    refused = login(app.test_client(), world.agent.email, PASSWORD)
    assert refused.status_code == 401
    assert "Your account has been deactivated" in refused.get_data(as_text=True)
    wrong = login(app.test_client(), world.agent.email, "not the password")
    assert "deactivated" not in wrong.get_data(as_text=True)  # only the password tells
    assert post(client, f"/settings/agents/{world.agent.id}/reactivate").status_code == 303
    back = fresh(Agent, world.agent.id)
    assert back.active and back.deactivated_at is None
    assert login(app.test_client(), world.agent.email, PASSWORD).status_code == 302
    assert actions(world.brand.id)[-2:] == ["agent.deactivated", "agent.reactivated"]


def test_a_deactivated_agent_is_no_candidate_for_assignment(app, world):
    from helpdesk.assignment.service import eligible_agents

    team = _support_team(world)
    world.agent.availability = Availability.ONLINE
    db.session.commit()
    team_id = team.id
    post(admin_client(app, world), f"/settings/agents/{world.agent.id}/deactivate")
    db.session.rollback()
    candidates = eligible_agents(db.session.get(Team, team_id))
    assert world.agent.id not in [c.agent.id for c in candidates]


def test_another_brands_agent_is_not_found(app, world):
    rival = World("rival")
    client = admin_client(app, world)
    before = snapshot_without_logins()
    for suffix in ("", "/deactivate", "/reactivate", "/password-reset", "/invitation"):
        response = post(client, f"/settings/agents/{rival.agent.id}{suffix}", {"role": "admin"})
        assert response.status_code == 404, suffix
    assert changed(before, snapshot_without_logins()) == {}


def test_an_agent_of_two_brands_is_not_deactivated_by_one_of_them(app, world):
    rival = World("rival")
    member(rival.agent, world.brand)
    db.session.commit()
    client = admin_client(app, world)
    before = snapshot_without_logins()
    response = post(client, f"/settings/agents/{rival.agent.id}/deactivate")
    assert response.status_code == 422
    assert "also works for another brand" in response.get_data(as_text=True)
    assert changed(before, snapshot_without_logins()) == {}


# The API: `active` on PATCH /agents/{id} --------------------------------------------------------


def _token(world: World, role: Role) -> dict[str, str]:
    _row, secret = create_token(world.brand, f"{role.value} token", role)
    db.session.commit()
    return {"Authorization": f"Bearer {secret}"}


def test_the_api_deactivates_and_reactivates_with_an_admin_token(client, world):
    path = f"/api/v1/agents/{world.agent.id}"
    refused = client.patch(path, json={"active": False}, headers=_token(world, Role.MANAGER))
    assert refused.status_code == 403
    assert fresh(Agent, world.agent.id).active
    admin = _token(world, Role.ADMIN)
    response = client.patch(path, json={"active": False}, headers=admin)
    assert response.status_code == 200 and response.get_json()["active"] is False
    assert fresh(Agent, world.agent.id).deactivated_at is not None
    response = client.patch(path, json={"active": True}, headers=admin)
    assert response.status_code == 200 and response.get_json()["active"] is True
    last = client.patch(f"/api/v1/agents/{world.admin.id}", json={"active": False}, headers=admin)
    assert last.status_code == 409
    assert "last admin" in last.get_json()["error"]["message"]
    demote = client.patch(f"/api/v1/agents/{world.admin.id}", json={"role": "agent"}, headers=admin)
    assert demote.status_code == 422
    assert "last admin" in demote.get_json()["error"]["fields"]["role"][0]

"""/account: every agent's own name, password, notification defaults and sign-in availability."""

from __future__ import annotations

from sqlalchemy import select

from helpdesk.accounts import invitations
from helpdesk.accounts.models import Agent, Availability, Team
from helpdesk.accounts.service import add_team_member, create_team
from helpdesk.audit.models import AuditEvent
from helpdesk.brands.models import Brand
from helpdesk.extensions import db
from helpdesk.logins.models import LoginAttempt, LoginOutcome
from helpdesk.notifications import service as notifications
from helpdesk.notifications.models import Notification, NotificationKind
from tests.conftest import table_counts
from tests.factories import PASSWORD, AgentFactory, BrandFactory, ChannelFactory, member
from tests.helpers.console import login, post, signed_in
from tests.helpers.world import World

NEW_PASSWORD = "a brand new passphrase"
ALL_KINDS = [kind.value for kind in NotificationKind]


def _agent(agent_id: int) -> Agent:
    db.session.expire_all()
    return db.session.get(Agent, agent_id)


def _profile(**overrides) -> dict:
    return {
        "name": "Jane Agent",
        "notifications": ALL_KINDS,
        "sign_in_availability": "online",
        **overrides,
    }


def _password(current=PASSWORD, new=NEW_PASSWORD, again=None) -> dict:
    return {
        "current_password": current,
        "password": new,
        "password_confirmation": new if again is None else again,
    }


def _audit_rows(action: str) -> list[AuditEvent]:
    db.session.expire_all()
    return list(
        db.session.scalars(
            select(AuditEvent).where(AuditEvent.action == action).order_by(AuditEvent.brand_id)
        )
    )


# The page ----------------------------------------------------------------------------------------


def test_every_role_opens_its_account_page(client):
    world = World()
    for person in (world.agent, world.manager, world.admin):
        other = client.application.test_client()
        signed_in(other, person)
        page = other.get("/account")
        assert page.status_code == 200
        html = page.get_data(as_text=True)
        assert person.name in html
        assert 'name="current_password"' in html


def test_signed_out_is_sent_to_sign_in(client):
    response = client.get("/account")
    assert response.status_code == 302
    assert "/login" in response.headers["Location"]


# Name ------------------------------------------------------------------------------------------


def test_an_agent_renames_themselves_and_each_of_their_brands_audits_it(client):
    world = World()
    second = BrandFactory(slug="second")
    member(world.agent, second)
    db.session.commit()
    signed_in(client, world.agent)

    response = post(client, "/account", _profile(name="  Jane   Doe "))

    assert response.status_code == 303
    assert _agent(world.agent.id).name == "Jane Doe"
    rows = _audit_rows("agent.updated")
    assert [row.brand_id for row in rows] == sorted([world.brand.id, second.id])
    assert rows[0].changes["name"] == ["Acme Agent", "Jane Doe"]
    assert rows[0].actor_type == "agent" and rows[0].actor_id == world.agent.id
    assert "Your account is saved" in client.get("/account").get_data(as_text=True)


def test_saving_without_a_change_records_nothing(client):
    world = World()
    signed_in(client, world.agent)

    post(client, "/account", _profile(name=world.agent.name))

    assert _audit_rows("agent.updated") == []


def test_a_blank_or_too_long_name_is_refused_next_to_the_field(client):
    world = World()
    signed_in(client, world.agent)
    before = table_counts()

    for name, message in (("   ", "Enter your name."), ("x" * 201, "at most 200 characters")):
        response = post(client, "/account", _profile(name=name, sign_in_availability="away"))

        assert response.status_code == 422
        html = response.get_data(as_text=True)
        assert message in html
        assert 'id="name-error"' in html
        agent = _agent(world.agent.id)
        assert agent.name == "Acme Agent"
        assert agent.sign_in_availability == "online"
        assert table_counts() == before


def test_an_unknown_notification_kind_or_availability_is_refused(client):
    world = World()
    signed_in(client, world.agent)
    before = table_counts()

    bad_kind = post(client, "/account", _profile(notifications=["mention", "gossip"]))
    bad_availability = post(client, "/account", _profile(sign_in_availability="offline"))

    assert bad_kind.status_code == 422
    assert "Choose among the kinds" in bad_kind.get_data(as_text=True)
    assert bad_availability.status_code == 422
    assert "Choose online or away." in bad_availability.get_data(as_text=True)
    assert _agent(world.agent.id).notification_defaults == {}
    assert table_counts() == before


# Password --------------------------------------------------------------------------------------


def test_changing_the_password_signs_out_other_devices_and_keeps_this_one(client, app):
    world = World()
    signed_in(client, world.agent)
    phone = app.test_client()
    signed_in(phone, world.agent)
    assert phone.get("/account").status_code == 200

    response = post(client, "/account/password", _password())

    assert response.status_code == 303
    assert client.get("/account").status_code == 200  # this browser is still signed in
    assert phone.get("/account").status_code == 302  # the other device is signed out
    assert login(app.test_client(), world.agent.email, PASSWORD).status_code != 302
    assert login(app.test_client(), world.agent.email, NEW_PASSWORD).status_code == 302
    rows = _audit_rows("agent.password_changed")
    assert [row.brand_id for row in rows] == [world.brand.id]
    assert rows[0].changes == {}
    assert PASSWORD not in str(rows[0].changes) and NEW_PASSWORD not in str(rows[0].changes)


def test_a_reset_link_asked_for_before_the_change_stops_working(client):
    world = World()
    _row, token = invitations.start_reset(world.agent.email)
    db.session.commit()
    assert client.get(f"/password-reset/{token}").status_code == 200
    signed_in(client, world.agent)

    post(client, "/account/password", _password())

    assert client.get(f"/password-reset/{token}").status_code in (404, 410)


def test_a_remembered_browser_stays_remembered_after_the_change(client):
    world = World()
    login(client, world.agent.email, remember=True)

    post(client, "/account/password", _password())

    cookie = client.get_cookie("remember_token")
    assert cookie is not None
    client.delete_cookie("session")  # the browser restarts: only the remember-me cookie is left
    assert client.get("/account").status_code == 200


def test_each_bad_password_change_is_refused_and_changes_nothing(client):
    world = World()
    signed_in(client, world.agent)
    cases = [
        (_password(current="not my password"), "current_password", "not your current password"),
        (_password(current=""), "current_password", "not your current password"),
        (_password(new="short"), "password", "at least 10 characters"),
        (_password(new="password123"), "password", "most common passwords"),
        (_password(again="something else entirely"), "password_confirmation", "does not match"),
        (_password(new=PASSWORD), "password", "your current password"),
    ]
    hash_before = _agent(world.agent.id).password_hash
    epoch_before = _agent(world.agent.id).session_epoch
    before = table_counts()

    for data, field, message in cases:
        response = post(client, "/account/password", data)

        assert response.status_code == 422, data
        html = response.get_data(as_text=True)
        assert f'id="{field}-error"' in html, (data, html[:200])
        assert message in html
        assert NEW_PASSWORD not in html  # a typed password is never sent back
        agent = _agent(world.agent.id)
        assert agent.password_hash == hash_before
        assert agent.session_epoch == epoch_before
        after = table_counts()
        assert after.pop("login_attempts") > before["login_attempts"]  # each check is counted
        assert after == {k: v for k, v in before.items() if k != "login_attempts"}
    outcomes = db.session.scalars(
        select(LoginAttempt.outcome)
        .where(LoginAttempt.email == world.agent.email)
        .order_by(LoginAttempt.id)
    ).all()
    assert outcomes[-6:] == [LoginOutcome.FAILURE] * 2 + [LoginOutcome.SUCCESS] * 4
    assert client.get("/account").status_code == 200


def test_guessing_the_current_password_is_throttled_as_a_sign_in_is(client, app):
    """A session left open (or stolen) cannot be used to guess the password: five wrong current
    passwords lock the email, for the password change and for signing in."""
    world = World()
    signed_in(client, world.agent)
    limit = app.config["LOGIN_MAX_FAILURES_PER_EMAIL"]
    hash_before = _agent(world.agent.id).password_hash
    for n in range(1, limit + 1):
        response = post(client, "/account/password", _password(current=f"guess number {n}"))
        assert response.status_code == (422 if n < limit else 429)  # the last one locks

    response = post(client, "/account/password", _password())  # the right one, too late

    assert response.status_code == 429
    html = response.get_data(as_text=True)
    assert 'id="current_password-error"' in html and "Too many wrong passwords" in html
    assert _agent(world.agent.id).password_hash == hash_before
    other = app.test_client()
    refused = login(other, world.agent.email)
    assert refused.status_code == 429


# Notification defaults -------------------------------------------------------------------------


def test_all_notification_kinds_are_on_until_the_agent_turns_one_off(client):
    world = World()
    signed_in(client, world.agent)
    html = client.get("/account").get_data(as_text=True)
    assert html.count('name="notifications"') == len(ALL_KINDS)
    assert html.count("checked") >= len(ALL_KINDS)

    kept = [kind for kind in ALL_KINDS if kind != "mention"]
    assert post(client, "/account", _profile(notifications=kept)).status_code == 303

    stored = _agent(world.agent.id).notification_defaults
    assert stored == {kind: kind != "mention" for kind in ALL_KINDS}
    assert 'value="mention" id="notify-mention" >' in client.get("/account").get_data(as_text=True)


def test_a_kind_turned_off_is_not_stored_for_that_agent_and_still_for_others(client):
    world = World()
    signed_in(client, world.agent)
    post(client, "/account", _profile(notifications=["assignment", "sla_breach"]))
    brand_id = world.brand.id

    for agent in (world.agent, world.manager):
        for kind in (NotificationKind.MENTION, NotificationKind.ASSIGNMENT):
            notifications.notify(agent.id, brand_id, kind, f"{kind.value} for {agent.name}")
    db.session.commit()

    stored = db.session.execute(
        select(Notification.agent_id, Notification.kind).order_by(Notification.id)
    ).all()
    assert (world.agent.id, NotificationKind.MENTION) not in stored
    assert (world.agent.id, NotificationKind.ASSIGNMENT) in stored
    assert (world.manager.id, NotificationKind.MENTION) in stored
    assert (world.manager.id, NotificationKind.ASSIGNMENT) in stored


# Availability at sign-in -----------------------------------------------------------------------


def _on_a_team(agent: Agent, brand: Brand) -> Team:
    team = create_team(brand, "Support")
    add_team_member(team, agent)
    db.session.commit()
    return team


def test_an_agent_whose_sign_ins_start_away_is_away_after_signing_in(client, app):
    channel = ChannelFactory()
    brand = db.session.get(Brand, channel.brand_id)
    agent = AgentFactory()
    member(agent, brand)
    _on_a_team(agent, brand)
    signed_in(client, agent)
    assert _agent(agent.id).availability is Availability.ONLINE

    assert post(client, "/account", _profile(sign_in_availability="away")).status_code == 303
    assert _agent(agent.id).sign_in_availability == "away"

    signed_in(app.test_client(), agent)
    assert _agent(agent.id).availability is Availability.AWAY


def test_a_new_agent_whose_sign_ins_start_away_never_comes_online_at_sign_in(client):
    agent = AgentFactory(sign_in_availability="away")
    member(agent, BrandFactory())
    db.session.commit()

    signed_in(client, agent)

    assert _agent(agent.id).availability is Availability.AWAY


def test_the_default_online_keeps_todays_sign_in(client):
    agent = AgentFactory()
    member(agent, BrandFactory())
    db.session.commit()
    assert _agent(agent.id).sign_in_availability == "online"

    signed_in(client, agent)

    assert _agent(agent.id).availability is Availability.ONLINE

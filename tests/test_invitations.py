"""Invitations, password resets and the password policy (issue 15): a link printed by the command
line (or answered by the API, or e-mailed), used once, within its time, with a password nobody
guesses first."""

from __future__ import annotations

import re
from datetime import timedelta

import pytest
from sqlalchemy import select

from helpdesk.accounts.invitations import Invitation, PasswordReset
from helpdesk.accounts.models import Agent, Membership, Role
from helpdesk.accounts.tokens import create_token
from helpdesk.extensions import db
from tests.conftest import table_counts
from tests.factories import PASSWORD, AgentFactory, BrandFactory, member
from tests.helpers.console import csrf_token, login, signed_in
from tests.helpers.mail import read_mail as _read
from tests.helpers.rows import changed, snapshot

NEW_PASSWORD = "a quiet harbour at dawn"
LINK_RE = re.compile(r"http://\S+/(?:invitations|password-reset)/[\w-]+")


@pytest.fixture
def brand():
    row = BrandFactory(slug="acme", name="Acme")
    db.session.commit()
    return row


def invite(runner, email: str = "nina@example.test", role: str = "agent") -> str:
    result = runner.invoke(args=["invite-agent", email, "--brand", "acme", "--role", role])
    assert result.exit_code == 0, result.output
    url = result.output.strip()
    assert result.output == url + "\n" and LINK_RE.fullmatch(url), result.output
    return url


def path_of(url: str) -> str:
    return "/" + url.split("/", 3)[3]


def accept(client, url: str, name: str = "Nina Berg", password: str = NEW_PASSWORD):
    token = csrf_token(client, path_of(url))
    return client.post(path_of(url), data={"csrf_token": token, "name": name, "password": password})


def agent_by_email(email: str) -> Agent:
    db.session.rollback()
    return db.session.scalar(select(Agent).where(Agent.email == email))


# Invitations --------------------------------------------------------------------------------------


def test_an_invited_agent_sets_a_name_and_password_and_is_signed_in(app, runner, brand):
    url = invite(runner, role="manager")
    invited = agent_by_email("nina@example.test")
    assert not invited.active
    membership = db.session.scalar(select(Membership).where(Membership.agent_id == invited.id))
    assert membership.role is Role.MANAGER and membership.brand_id == brand.id
    stored = db.session.scalar(select(Invitation.token_hash))
    assert stored not in url  # only the hash is kept
    db.session.rollback()

    client = app.test_client()
    page = client.get(path_of(url))
    assert page.status_code == 200
    html = page.get_data(as_text=True)
    assert 'name="name"' in html and 'name="password"' in html and "Acme" in html
    response = accept(client, url)
    assert response.status_code == 302 and response.headers["Location"].endswith("/inbox")
    assert client.get("/inbox").status_code == 200  # signed in

    agent = agent_by_email("nina@example.test")
    assert agent.active and agent.name == "Nina Berg"
    assert login(app.test_client(), "nina@example.test", NEW_PASSWORD).status_code == 302


def test_an_invitation_works_once(app, runner, brand):
    url = invite(runner)
    assert accept(app.test_client(), url).status_code == 302
    before = snapshot()
    again = app.test_client()
    assert again.get(path_of(url)).status_code == 410
    response = again.post(
        path_of(url),
        data={"csrf_token": csrf_token(again), "name": "Someone", "password": "another long one"},
    )
    assert response.status_code == 410
    assert "already been used or has expired" in response.get_data(as_text=True)
    assert changed(before, snapshot()) == {}
    assert login(app.test_client(), "nina@example.test", "another long one").status_code == 401


def test_an_invitation_older_than_seven_days_is_refused(app, runner, brand):
    url = invite(runner)
    for row in db.session.scalars(select(Invitation)):  # sent seven days and a second ago
        row.created_at -= timedelta(days=7, seconds=1)
        row.expires_at -= timedelta(days=7, seconds=1)
    db.session.commit()
    before = snapshot()
    client = app.test_client()
    page = client.get(path_of(url))
    assert page.status_code == 410 and "expired" in page.get_data(as_text=True)
    response = client.post(
        path_of(url),
        data={"csrf_token": csrf_token(client), "name": "Nina", "password": NEW_PASSWORD},
    )
    assert response.status_code == 410
    assert changed(before, snapshot()) == {}
    assert not agent_by_email("nina@example.test").active


def test_an_unknown_invitation_link_says_so_and_changes_nothing(app, brand):
    client = app.test_client()
    before = table_counts()
    page = client.get("/invitations/not-a-real-token")
    assert page.status_code == 404 and "not known" in page.get_data(as_text=True)
    response = client.post(
        "/invitations/not-a-real-token",
        data={"csrf_token": csrf_token(client), "name": "X", "password": NEW_PASSWORD},
    )
    assert response.status_code == 404
    assert table_counts() == before


@pytest.mark.parametrize(
    ("password", "words"),
    [
        ("short1", "at least 10 characters"),
        ("Password123", "most common passwords"),  # compared whatever the case
        ("QWERTYUIOP", "most common passwords"),
        ("iloveyou123", "most common passwords"),
        (" " * 12, "spaces"),
        ("x" * 201, "at most 200"),
    ],
)
def test_a_weak_or_common_password_is_refused_next_to_the_field(
    app, runner, brand, password, words
):
    url = invite(runner)
    client = app.test_client()
    before, counts = snapshot(), table_counts()
    response = accept(client, url, password=password)
    assert response.status_code == 422
    html = response.get_data(as_text=True)
    assert 'id="password-error"' in html and words in html
    assert table_counts() == counts and changed(before, snapshot()) == {}
    assert client.get("/inbox").status_code == 302  # not signed in
    assert accept(client, url).status_code == 302  # the link still works with a good one


def test_an_empty_name_is_refused_next_to_the_field(app, runner, brand):
    url = invite(runner)
    before = snapshot()
    response = accept(app.test_client(), url, name="   ")
    assert response.status_code == 422 and 'id="name-error"' in response.get_data(as_text=True)
    assert changed(before, snapshot()) == {}


def test_inviting_again_ends_the_older_link(app, runner, brand):
    first = invite(runner)
    second = invite(runner)
    assert app.test_client().get(path_of(first)).status_code == 404
    assert accept(app.test_client(), second).status_code == 302


def test_an_active_agent_cannot_be_invited(runner, brand):
    member(AgentFactory(email="kept@example.test"), brand)
    db.session.commit()
    before = snapshot()
    result = runner.invoke(args=["invite-agent", "kept@example.test", "--brand", "acme"])
    assert result.exit_code != 0 and "already exists" in result.output
    assert changed(before, snapshot()) == {}


def test_create_agent_refuses_a_common_password(runner, brand):
    before = table_counts()
    result = runner.invoke(
        args=["create-agent", "x@example.test", "--name", "X", "--brand", "acme"]
        + ["--password", "Password1234"]
    )
    assert result.exit_code != 0 and "common" in result.output
    assert table_counts() == before


# The API: a new link for an agent not yet active -------------------------------------------------


def _token(brand, role: Role) -> dict[str, str]:
    _row, token = create_token(brand, f"{role.value} token", role)
    db.session.commit()
    return {"Authorization": f"Bearer {token}"}


def test_the_api_answers_a_new_invitation_link_for_an_agent_not_yet_active(
    app, client, runner, brand
):
    first = invite(runner)
    invited = agent_by_email("nina@example.test").id
    response = client.post(
        f"/api/v1/agents/{invited}/invitation", headers=_token(brand, Role.ADMIN)
    )
    assert response.status_code == 201, response.get_json()
    body = response.get_json()
    assert LINK_RE.fullmatch(body["url"]) and body["emailed"] is False
    assert app.test_client().get(path_of(first)).status_code == 404  # the older link ends
    assert accept(app.test_client(), body["url"]).status_code == 302
    again = client.post(f"/api/v1/agents/{invited}/invitation", headers=_token(brand, Role.ADMIN))
    assert again.status_code == 409  # active now


def test_the_invitation_endpoint_needs_an_admin_token_of_the_agents_brand(client, runner, brand):
    invite(runner)
    invited = agent_by_email("nina@example.test").id
    other = BrandFactory(slug="rival")
    stranger = AgentFactory(active=False)
    member(stranger, other)
    db.session.commit()
    stranger_id = stranger.id
    before = table_counts()
    for role in (Role.AGENT, Role.MANAGER):
        refused = client.post(f"/api/v1/agents/{invited}/invitation", headers=_token(brand, role))
        assert refused.status_code == 403, role
    after_tokens = table_counts()
    foreign = client.post(
        f"/api/v1/agents/{stranger_id}/invitation", headers=_token(brand, Role.ADMIN)
    )
    assert foreign.status_code == 404
    counts = table_counts()
    assert counts["invitations"] == before["invitations"] == after_tokens["invitations"]


# Password reset -----------------------------------------------------------------------------------


def test_a_reset_sets_a_new_password_and_ends_the_other_sessions(app, runner, brand):
    agent = AgentFactory(email="omar@example.test")
    member(agent, brand)
    db.session.commit()
    elsewhere = signed_in(app.test_client(), agent)
    assert elsewhere.get("/inbox").status_code == 200

    result = runner.invoke(args=["reset-password", "omar@example.test"])
    assert result.exit_code == 0, result.output
    url = result.output.strip()
    assert result.output == url + "\n" and "/password-reset/" in url
    client = app.test_client()
    page = client.get(path_of(url))
    assert page.status_code == 200 and 'name="password"' in page.get_data(as_text=True)
    response = client.post(
        path_of(url),
        data={"csrf_token": csrf_token(client, path_of(url)), "password": NEW_PASSWORD},
    )
    assert response.status_code == 302 and "/login" in response.headers["Location"]

    assert elsewhere.get("/inbox").status_code == 302  # the other session has ended
    assert login(app.test_client(), "omar@example.test", PASSWORD).status_code == 401
    assert login(app.test_client(), "omar@example.test", NEW_PASSWORD).status_code == 302
    assert app.test_client().get(path_of(url)).status_code == 410  # used


def test_a_reset_link_lasts_one_hour_and_refuses_a_weak_password(app, runner, brand):
    member(AgentFactory(email="omar@example.test"), brand)
    db.session.commit()
    url = runner.invoke(args=["reset-password", "omar@example.test"]).output.strip()
    client = app.test_client()
    before = snapshot()
    weak = client.post(
        path_of(url), data={"csrf_token": csrf_token(client, path_of(url)), "password": "letmein"}
    )
    assert weak.status_code == 422 and 'id="password-error"' in weak.get_data(as_text=True)
    assert changed(before, snapshot()) == {}
    for row in db.session.scalars(select(PasswordReset)):  # made an hour and a second ago
        row.created_at -= timedelta(hours=1, seconds=1)
        row.expires_at -= timedelta(hours=1, seconds=1)
    db.session.commit()
    before = snapshot()
    late = client.post(
        path_of(url), data={"csrf_token": csrf_token(client), "password": NEW_PASSWORD}
    )
    assert late.status_code == 410
    assert changed(before, snapshot()) == {}
    assert login(app.test_client(), "omar@example.test", PASSWORD).status_code == 302


def test_reset_password_for_an_unknown_email_fails(runner, brand):
    result = runner.invoke(args=["reset-password", "nobody@example.test"])
    assert result.exit_code != 0 and "no agent" in result.output


# E-mail -------------------------------------------------------------------------------------------


def test_the_invitation_and_reset_links_are_emailed_when_smtp_is_set(app, runner, brand, smtp):
    url = invite(runner)
    assert len(smtp) == 1
    to, subject, body = _read(smtp[0])
    assert to == "nina@example.test" and "Acme" in subject and url in body
    assert accept(app.test_client(), url).status_code == 302
    reset = runner.invoke(args=["reset-password", "nina@example.test"]).output.strip()
    assert len(smtp) == 2
    to, _subject, body = _read(smtp[1])
    assert to == "nina@example.test" and reset in body


def test_without_smtp_nothing_is_sent(app, runner, brand, smtp):
    app.config["SMTP_URL"] = None
    invite(runner)
    assert smtp == []

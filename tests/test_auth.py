"""Console sign-in: passwords, throttling, sessions, remember-me, sign-out and the brand switcher.

The helpers these tests sign in with live in tests/helpers/console.py, shared by the console test
modules.
"""

from __future__ import annotations

from datetime import timedelta

import pytest
from sqlalchemy import func, select

from config import ProductionConfig
from helpdesk.accounts.models import Role
from helpdesk.accounts.service import hash_password
from helpdesk.extensions import db
from helpdesk.logins.models import LoginAttempt, LoginOutcome
from tests.factories import PASSWORD, AgentFactory, member
from tests.helpers.console import csrf_token, login, post, signed_in
from tests.helpers.world import World

# Sign in ------------------------------------------------------------------------------------------


def test_login_form_has_the_documented_fields(client):
    html = client.get("/login").get_data(as_text=True)
    for field in ('name="email"', 'name="password"', 'name="csrf_token"', 'name="remember"'):
        assert field in html


def test_right_password_signs_in_and_lands_in_the_inbox(client, world):
    response = login(client, world.agent.email)
    assert response.status_code == 302
    assert response.headers["Location"].endswith("/inbox")
    page = client.get("/inbox")
    assert page.status_code == 200
    assert world.agent.name in page.get_data(as_text=True)


def test_home_sends_a_signed_in_agent_to_the_inbox(client, world):
    signed_in(client, world.agent)
    assert client.get("/").headers["Location"].endswith("/inbox")


def test_email_is_matched_whatever_its_case(client, world):
    assert login(client, world.agent.email.upper()).status_code == 302


def test_wrong_password_is_refused_with_a_flash(client, world):
    response = login(client, world.agent.email, "wrong password")
    assert response.status_code == 401
    assert "Wrong email or password" in response.get_data(as_text=True)
    assert client.get("/inbox").status_code == 302


def test_unknown_email_is_refused_like_a_wrong_password(client, world):
    response = login(client, "nobody@example.test", "whatever")
    assert response.status_code == 401
    assert "Wrong email or password" in response.get_data(as_text=True)


def test_inactive_agent_cannot_sign_in(client, world):
    world.agent.active = False
    db.session.commit()
    assert login(client, world.agent.email).status_code == 401


def test_login_without_csrf_token_is_refused(client, world):
    response = client.post("/login", data={"email": world.agent.email, "password": PASSWORD})
    assert response.status_code == 400
    assert client.get("/inbox").status_code == 302


def test_next_returns_to_the_page_asked_for(client, world):
    path = f"/conversations/{world.conversation.id}"
    redirect = client.get(path)
    assert redirect.status_code == 302 and "/login?next=" in redirect.headers["Location"]
    token = csrf_token(client)
    response = client.post(
        f"/login?next={path}",
        data={"email": world.agent.email, "password": PASSWORD, "csrf_token": token},
    )
    assert response.headers["Location"].endswith(path)


@pytest.mark.parametrize("target", ["https://evil.example/", "//evil.example/x", "/\\evil.example"])
def test_next_never_leaves_the_site(client, world, target):
    token = csrf_token(client)
    response = client.post(
        "/login",
        query_string={"next": target},
        data={"email": world.agent.email, "password": PASSWORD, "csrf_token": token},
    )
    assert response.headers["Location"].endswith("/inbox")


# Throttling ---------------------------------------------------------------------------------------


@pytest.mark.slow
def test_five_failures_lock_the_email_even_for_the_right_password(client, world):
    for _ in range(4):
        assert login(client, world.agent.email, "nope").status_code == 401
    fifth = login(client, world.agent.email, "nope")
    assert fifth.status_code == 429
    assert "Too many failed sign-ins" in fifth.get_data(as_text=True)

    refused = login(client, world.agent.email)  # the right password
    assert refused.status_code == 429
    assert "Try again in 15 minutes" in refused.get_data(as_text=True)
    assert client.get("/inbox").status_code == 302
    throttled = db.session.scalar(
        select(func.count()).where(LoginAttempt.outcome == LoginOutcome.THROTTLED)
    )
    assert throttled == 1


@pytest.mark.slow
def test_the_lock_lifts_after_fifteen_minutes(client, world):
    for _ in range(5):
        login(client, world.agent.email, "nope")
    assert login(client, world.agent.email).status_code == 429
    for attempt in db.session.scalars(select(LoginAttempt)):
        attempt.at -= timedelta(minutes=16)
    db.session.commit()
    assert login(client, world.agent.email).status_code == 302


@pytest.mark.slow
def test_a_lock_is_shared_through_the_database(client, app, world):
    """Another web process (another client, another session) sees the same failures."""
    for _ in range(5):
        login(client, world.agent.email, "nope")
    other = app.test_client()
    assert login(other, world.agent.email).status_code == 429


@pytest.mark.slow
def test_a_success_starts_the_count_again(client, world):
    for _ in range(4):
        login(client, world.agent.email, "nope")
    assert login(client, world.agent.email).status_code == 302
    post(client, "/logout")
    for _ in range(4):
        assert login(client, world.agent.email, "nope").status_code == 401
    assert login(client, world.agent.email).status_code == 302


def test_failures_from_one_address_lock_every_email(client, app, world, monkeypatch):
    monkeypatch.setitem(app.config, "LOGIN_MAX_FAILURES_PER_IP", 3)
    spray = {"REMOTE_ADDR": "203.0.113.7"}
    for n in range(3):
        login(client, f"guess{n}@example.test", "nope", environ_base=spray)
    assert login(client, world.agent.email, environ_base=spray).status_code == 429
    assert login(app.test_client(), world.agent.email).status_code == 302  # other address


# Sessions -----------------------------------------------------------------------------------------


def _cookie(response, name: str) -> str | None:
    for header in response.headers.getlist("Set-Cookie"):
        if header.startswith(f"{name}="):
            return header
    return None


def test_session_cookie_is_httponly_and_samesite_lax(client, world):
    response = login(client, world.agent.email)
    cookie = _cookie(response, "session")
    assert cookie and "HttpOnly" in cookie and "SameSite=Lax" in cookie


def test_production_cookies_are_secure():
    assert ProductionConfig.SESSION_COOKIE_SECURE is True
    assert ProductionConfig.REMEMBER_COOKIE_SECURE is True


def test_the_session_is_renewed_at_sign_in(client, world):
    """Session fixation: nothing from before sign-in survives it, the CSRF token included."""
    before_token = csrf_token(client)
    with client.session_transaction() as session:
        session["planted"] = "by an attacker"
    before_cookie = client.get_cookie("session").value
    login(client, world.agent.email)
    assert client.get_cookie("session").value != before_cookie
    with client.session_transaction() as session:
        assert "planted" not in session
        assert session.get("_user_id", "").startswith(f"{world.agent.id}.")
    assert csrf_token(client, "/inbox") != before_token


def test_a_password_change_ends_other_sessions(client, world):
    signed_in(client, world.agent)
    world.agent.password_hash = hash_password("a brand new password")
    db.session.commit()
    assert client.get("/inbox").status_code == 302


def test_remember_me_keeps_the_agent_signed_in_after_the_browser_closes(client, world):
    response = login(client, world.agent.email, remember=True)
    cookie = _cookie(response, "remember_token")
    assert cookie and "HttpOnly" in cookie and "Expires=" in cookie
    client.delete_cookie("session")  # the browser closed: session cookies are gone
    assert client.get("/inbox").status_code == 200


def test_without_remember_me_closing_the_browser_signs_out(client, world):
    response = login(client, world.agent.email)
    assert _cookie(response, "remember_token") is None
    client.delete_cookie("session")
    assert client.get("/inbox").status_code == 302


# Sign out -----------------------------------------------------------------------------------------


def test_logout_get_asks_for_confirmation_and_post_signs_out(client, world):
    signed_in(client, world.agent, remember=True)
    confirm = client.get("/logout")
    assert confirm.status_code == 200 and 'action="/logout"' in confirm.get_data(as_text=True)
    assert client.get("/inbox").status_code == 200
    response = post(client, "/logout")
    assert response.status_code == 302 and response.headers["Location"].endswith("/login")
    assert _cookie(response, "remember_token") is not None  # deleted (expired) by the response
    assert client.get("/inbox").status_code == 302


def test_logout_without_csrf_is_refused(client, world):
    signed_in(client, world.agent)
    assert client.post("/logout").status_code == 400
    assert client.get("/inbox").status_code == 200


# Brand switcher -----------------------------------------------------------------------------------


def test_an_agent_of_two_brands_switches_between_them(client):
    alpha, beta = World("alpha"), World("beta")
    member(alpha.agent, beta.brand, Role.AGENT)
    db.session.commit()
    signed_in(client, alpha.agent)
    page = client.get("/inbox").get_data(as_text=True)
    assert "Jane Doe" in page and f'value="{beta.brand.id}"' in page
    assert client.get(f"/conversations/{beta.conversation.id}").status_code == 404

    response = post(client, "/brand", {"brand_id": beta.brand.id})
    assert response.status_code == 302
    assert client.get(f"/conversations/{beta.conversation.id}").status_code == 200
    assert client.get(f"/conversations/{alpha.conversation.id}").status_code == 404


def test_switching_to_a_brand_one_is_not_a_member_of_is_a_404(client):
    alpha, beta = World("alpha"), World("beta")
    signed_in(client, alpha.agent)
    assert post(client, "/brand", {"brand_id": beta.brand.id}).status_code == 404
    assert client.get(f"/conversations/{alpha.conversation.id}").status_code == 200


def test_an_agent_without_any_brand_is_told_so(client):
    lonely = AgentFactory()
    db.session.commit()
    signed_in(client, lonely)
    response = client.get("/inbox")
    assert response.status_code == 403
    assert "not a member of any brand" in response.get_data(as_text=True)

"""API tokens: the settings page (/settings/api-tokens) and /api/v1/tokens, one service behind
both. A secret is shown once and works as a Bearer token; revoked, it is refused; admins only;
another brand's token is not found; the audit log names tokens and never holds a secret."""

from __future__ import annotations

import html
import json
import re

import pytest
from sqlalchemy import select

from helpdesk.accounts.models import Role
from helpdesk.accounts.tokens import ApiToken, create_token
from helpdesk.audit.models import AuditEvent
from helpdesk.extensions import db
from tests.conftest import table_counts
from tests.helpers.api import Client, token_for
from tests.helpers.console import post, signed_in
from tests.helpers.world import World

PAGE = "/settings/api-tokens"
SECRET_RE = re.compile(r'class="secret"[^>]*value="([^"]+)"|value="([^"]+)"[^>]*class="secret"')


@pytest.fixture
def world() -> World:
    return World()


def shown_secret(page: str) -> str | None:
    match = SECRET_RE.search(page)
    return html.unescape(match.group(1) or match.group(2)) if match else None


def tokens() -> list[ApiToken]:
    db.session.expire_all()
    return list(db.session.scalars(select(ApiToken).order_by(ApiToken.id)))


def audit_rows(action_prefix: str = "api_token.") -> list[AuditEvent]:
    db.session.expire_all()
    return list(
        db.session.scalars(
            select(AuditEvent)
            .where(AuditEvent.action.startswith(action_prefix))
            .order_by(AuditEvent.id)
        )
    )


def create_on_page(client, name: str = "CRM sync", role: str = "agent") -> str:
    response = post(client, PAGE, {"name": name, "role": role})
    assert response.status_code == 303, response.get_data(as_text=True)[:500]
    assert response.headers["Location"].endswith(PAGE)
    page = client.get(PAGE).get_data(as_text=True)
    secret = shown_secret(page)
    assert secret and secret.startswith("hd_")
    return secret


# The page ---------------------------------------------------------------------------------------


def test_a_token_made_on_the_page_is_shown_once_and_works_as_a_bearer_token(client, world):
    signed_in(client, world.admin)
    response = post(client, PAGE, {"name": "CRM sync", "role": "agent"})
    assert response.status_code == 303
    assert "hd_" not in response.headers["Location"]

    first = client.get(PAGE).get_data(as_text=True)
    secret = shown_secret(first)
    assert secret and "it will not be shown again" in first
    again = client.get(PAGE).get_data(as_text=True)
    assert shown_secret(again) is None and secret not in again
    assert "CRM sync" in again and "Active" in again

    (row,) = tokens()
    assert (row.name, row.role, row.brand_id) == ("CRM sync", Role.AGENT, world.brand.id)
    assert row.token_hash != secret and secret not in row.token_hash
    answer = Client(client, secret).get("/conversations")
    assert answer.status_code == 200
    assert [item["id"] for item in answer.get_json()["items"]] == [world.conversation.id]


def test_the_secret_rides_in_the_session_encrypted(app, client, world):
    signed_in(client, world.admin)
    post(client, PAGE, {"name": "bot", "role": "admin"})
    cookie = client.get_cookie("session")
    assert cookie is not None
    stored = app.session_interface.get_signing_serializer(app).loads(cookie.value)
    (row,) = tokens()
    secret = shown_secret(client.get(PAGE).get_data(as_text=True))
    assert secret and secret[-4:] == row.hint
    assert secret not in json.dumps(stored)


def test_a_revoked_token_is_refused(client, world):
    signed_in(client, world.admin)
    secret = create_on_page(client, "Zapier", "manager")
    (row,) = tokens()
    assert Client(client, secret).get("/conversations").status_code == 200

    response = post(client, f"{PAGE}/{row.id}/revoke")
    assert response.status_code == 303
    assert tokens()[0].revoked_at is not None
    assert Client(client, secret).get("/conversations").status_code == 401
    page = client.get(PAGE).get_data(as_text=True)
    assert "Revoked" in page and f"{PAGE}/{row.id}/revoke" not in page


@pytest.mark.parametrize(
    ("name", "role", "field", "message"),
    [
        ("", "agent", "name", "A token needs a name."),
        ("   ", "agent", "name", "A token needs a name."),
        ("x" * 121, "agent", "name", "A token name has at most 120 characters."),
        ("bot", "owner", "role", "Choose agent, manager or admin."),
    ],
)
def test_bad_input_is_refused_next_to_its_field(client, world, name, role, field, message):
    signed_in(client, world.admin)
    before = table_counts()
    response = post(client, PAGE, {"name": name, "role": role})
    assert response.status_code == 422
    page = response.get_data(as_text=True)
    assert f'id="{field}-error"' in page and message in page
    assert table_counts() == before


@pytest.mark.parametrize("role", ["agent", "manager"])
def test_the_page_and_its_forms_are_for_admins(client, world, role):
    signed_in(client, getattr(world, role))
    row, _secret = create_token(world.brand, "existing", Role.AGENT)
    db.session.commit()
    before = table_counts()
    assert client.get(PAGE).status_code == 403
    assert post(client, PAGE, {"name": "mine", "role": "admin"}).status_code == 403
    assert post(client, f"{PAGE}/{row.id}/revoke").status_code == 403
    assert table_counts() == before and tokens()[0].revoked_at is None


def test_another_brands_token_is_not_found(client, world):
    other = World("other")
    theirs, secret = create_token(other.brand, "theirs", Role.ADMIN)
    db.session.commit()
    signed_in(client, world.admin)
    assert post(client, f"{PAGE}/{theirs.id}/revoke").status_code == 404
    assert tokens()[0].revoked_at is None
    assert "theirs" not in client.get(PAGE).get_data(as_text=True)
    assert Client(client, secret).get("/conversations").status_code == 200


def test_the_audit_log_names_each_token_and_never_its_secret(client, world):
    signed_in(client, world.admin)
    secret = create_on_page(client, "Reporting", "manager")
    (row,) = tokens()
    post(client, f"{PAGE}/{row.id}/revoke")
    post(client, f"{PAGE}/{row.id}/revoke")  # again: nothing more to record

    created, revoked = audit_rows()
    assert (created.action, created.target_type, created.target_id) == (
        "api_token.created",
        "api_token",
        row.id,
    )
    assert created.changes == {"name": [None, "Reporting"], "role": [None, "manager"]}
    assert (created.actor_type, created.actor_id) == ("agent", world.admin.id)
    assert revoked.action == "api_token.revoked" and revoked.target_label == "Reporting"
    for event in (created, revoked):
        stored = json.dumps([event.changes, event.target_label, event.actor_name])
        assert secret not in stored and row.token_hash not in stored


# The API ----------------------------------------------------------------------------------------


def test_admin_tokens_list_create_and_revoke_tokens(client, world):
    api = Client(client, token_for(world.brand, Role.ADMIN))

    response = api.post("/tokens", json={"name": "Warehouse", "role": "agent"})
    assert response.status_code == 201
    made = response.get_json()
    secret = made.pop("token")
    assert secret.startswith("hd_")
    assert made["name"] == "Warehouse" and made["role"] == "agent"
    assert made["last_used_at"] is None and made["revoked_at"] is None
    assert Client(client, secret).get("/conversations").status_code == 200

    listed = api.get("/tokens").get_json()
    assert [item["name"] for item in listed["items"]] == ["Warehouse", "admin token"]
    assert secret not in json.dumps(listed)
    assert listed["items"][0]["last_used_at"] is not None  # used just above

    assert api.delete(f"/tokens/{made['id']}").status_code == 204
    assert Client(client, secret).get("/conversations").status_code == 401
    assert api.delete(f"/tokens/{made['id']}").status_code == 204  # revoking again: same
    (warehouse,) = [i for i in api.get("/tokens").get_json()["items"] if i["id"] == made["id"]]
    assert warehouse["revoked_at"] is not None
    actions = [event.action for event in audit_rows()]
    assert actions[-2:] == ["api_token.created", "api_token.revoked"]
    assert all(secret not in json.dumps(event.changes) for event in audit_rows())


@pytest.mark.parametrize("role", [Role.AGENT, Role.MANAGER])
def test_only_admin_tokens_manage_tokens(client, world, role):
    api = Client(client, token_for(world.brand, role))
    (row,) = tokens()
    before = table_counts()
    assert api.get("/tokens").status_code == 403
    assert api.post("/tokens", json={"name": "escalate", "role": "admin"}).status_code == 403
    assert api.delete(f"/tokens/{row.id}").status_code == 403
    assert table_counts() == before and tokens()[0].revoked_at is None


def test_another_brands_token_id_is_404_in_the_api(client, world):
    theirs, _secret = create_token(World("other").brand, "theirs", Role.ADMIN)
    db.session.commit()
    api = Client(client, token_for(world.brand, Role.ADMIN))
    response = api.delete(f"/tokens/{theirs.id}")
    assert response.status_code == 404
    assert response.get_json()["error"]["code"] == "not_found"
    assert db.session.get(ApiToken, theirs.id).revoked_at is None
    assert "theirs" not in json.dumps(api.get("/tokens").get_json())


def test_a_token_may_revoke_itself(client, world):
    secret = token_for(world.brand, Role.ADMIN)
    (row,) = tokens()
    api = Client(client, secret)
    assert api.delete(f"/tokens/{row.id}").status_code == 204
    assert api.get("/tokens").status_code == 401


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"name": "   ", "role": "agent"}, "name"),
        ({"name": "", "role": "agent"}, "name"),
        ({"name": "bot", "role": "owner"}, "role"),
        ({"name": "bot"}, "role"),
    ],
)
def test_the_api_refuses_bad_input_with_422_and_saves_nothing(client, world, body, field):
    api = Client(client, token_for(world.brand, Role.ADMIN))
    before = table_counts()
    response = api.post("/tokens", json=body)
    assert response.status_code == 422
    assert field in response.get_json()["error"]["fields"]
    assert table_counts() == before


def test_tokens_made_and_revoked_on_the_command_line_are_audited_as_the_system(runner, world):
    made = runner.invoke(args=["create-token", "--brand", world.brand.slug, "--name", "deploy"])
    assert made.exit_code == 0, made.output
    secret = made.output.strip()
    revoked = runner.invoke(args=["revoke-token", "--brand", world.brand.slug, "--name", "deploy"])
    assert revoked.exit_code == 0, revoked.output

    created, gone = audit_rows()
    assert (created.action, gone.action) == ("api_token.created", "api_token.revoked")
    assert {created.actor_type, gone.actor_type} == {"system"}
    assert created.changes == {"name": [None, "deploy"], "role": [None, "admin"]}
    assert all(secret not in json.dumps(row.changes) for row in (created, gone))

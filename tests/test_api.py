"""REST API v1 (docs/rest-api.md): tokens, roles, brand isolation, shapes, errors, pagination,
OpenAPI."""

from __future__ import annotations

import base64
import json
import re
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import timedelta
from typing import Any

import pytest
from sqlalchemy import event, func, select
from werkzeug.routing import IntegerConverter

from helpdesk.accounts.models import Agent, Availability, Role, TeamMember
from helpdesk.accounts.service import create_team
from helpdesk.accounts.tokens import ApiToken, create_token, revoke_token
from helpdesk.automations.models import AutomationRule
from helpdesk.canned import service as canned
from helpdesk.dm import service as dm
from helpdesk.dm.models import Conversation, Message, MessageStatus, Reaction
from helpdesk.extensions import db
from helpdesk.inbox import service as inbox
from helpdesk.media.models import MediaObject
from helpdesk.outgoing import service as outgoing
from helpdesk.queueing import DELIVER_MESSAGE as DELIVER_TASK
from helpdesk.queueing import DELIVER_REACTION as REACTION_TASK
from helpdesk.sla import service as sla
from helpdesk.sla.models import SlaPolicy
from helpdesk.tickets import service as tickets
from helpdesk.tickets import tags
from helpdesk.tickets.models import Note, Ticket, TicketStatus
from helpdesk.types import utcnow
from tests.conftest import drain_broker, table_counts
from tests.factories import AgentFactory, ContactFactory, member
from tests.helpers.api import API, Client, Desk, error_of, make_desk, token_for, write

PUBLIC_IP_URL = "https://93.184.216.34/hooks"  # an address literal: no DNS needed in tests


# Fixtures ----------------------------------------------------------------------------------------


@pytest.fixture
def desk() -> Desk:
    return make_desk("acme")


@pytest.fixture
def other() -> Desk:
    return make_desk("rival")


@pytest.fixture
def api(client, desk) -> Client:
    return Client(client, token_for(desk.brand, Role.ADMIN))


@pytest.fixture
def agent_api(client, desk) -> Client:
    return Client(client, token_for(desk.brand, Role.AGENT))


@pytest.fixture
def manager_api(client, desk) -> Client:
    return Client(client, token_for(desk.brand, Role.MANAGER))


def api_rules(app) -> list:
    return [
        rule
        for rule in app.url_map.iter_rules()
        if rule.rule.startswith(API + "/") and rule.rule != f"{API}/openapi.json"
    ]


# The document -------------------------------------------------------------------------------------


def test_openapi_document_lists_exactly_the_api_routes(app, client):
    response = client.get(f"{API}/openapi.json")
    assert response.status_code == 200 and response.is_json
    document = response.get_json()
    documented = {
        (path, method.upper())
        for path, operations in document["paths"].items()
        for method in operations
        if method in ("get", "post", "put", "patch", "delete")
    }
    routed = {
        (re.sub(r"<(?:[^:<>]+:)?([^<>]+)>", r"{\1}", rule.rule), m)
        for rule in api_rules(app)
        for m in rule.methods - {"HEAD", "OPTIONS"}
    }
    assert routed and documented == routed
    assert document["components"]["securitySchemes"]["bearer"]["scheme"] == "bearer"


def test_no_swagger_ui_is_served(client):
    assert client.get(f"{API}/swagger-ui").status_code == 404


# Tokens -------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "header",
    [None, "Bearer", "Bearer hd_not-a-real-token", "Basic dXNlcjpwYXNz", "hd_raw-token-no-scheme"],
)
def test_requests_without_a_valid_token_are_401(client, desk, header):
    headers = {"Authorization": header} if header else {}
    response = client.get(f"{API}/conversations", headers=headers)
    assert response.status_code == 401
    assert error_of(response)["code"] == "unauthorized"


def test_a_revoked_token_is_401(client, desk):
    row, token = create_token(desk.brand, "soon revoked")
    db.session.commit()
    assert Client(client, token).get("/tickets").status_code == 200
    revoke_token(desk.brand.id, row.id)
    db.session.commit()
    response = Client(client, token).get("/tickets")
    assert response.status_code == 401 and error_of(response)["code"] == "unauthorized"


def test_last_used_at_is_written_at_most_once_a_minute(client, desk):
    row, token = create_token(desk.brand, "usage")
    db.session.commit()
    Client(client, token).get("/tickets")
    first = db.session.get(ApiToken, row.id).last_used_at
    assert first is not None
    Client(client, token).get("/tickets")
    db.session.expire_all()
    assert db.session.get(ApiToken, row.id).last_used_at == first
    db.session.get(ApiToken, row.id).last_used_at = first - timedelta(minutes=2)
    db.session.commit()
    Client(client, token).get("/tickets")
    db.session.expire_all()
    assert db.session.get(ApiToken, row.id).last_used_at > first - timedelta(minutes=2)


def test_create_token_prints_only_the_token_and_it_works(runner, client, desk):
    result = runner.invoke(args=["create-token", "--brand", "acme", "--name", "zapier"])
    assert result.exit_code == 0, result.output
    token = result.output.strip()
    assert result.output == token + "\n" and token.startswith("hd_")
    row = db.session.scalar(select(ApiToken).where(ApiToken.name == "zapier"))
    assert row.role is Role.ADMIN and row.brand_id == desk.brand.id
    assert token not in (row.token_hash, row.hint)
    assert Client(client, token).get("/agents").status_code == 200


def test_create_token_with_a_role_and_for_an_unknown_brand(runner, client, desk):
    result = runner.invoke(
        args=["create-token", "--brand", "acme", "--name", "bot", "--role", "agent"]
    )
    assert result.exit_code == 0
    response = Client(client, result.output.strip()).post("/agents", json={})
    assert response.status_code == 403
    missing = runner.invoke(args=["create-token", "--brand", "nope", "--name", "x"])
    assert missing.exit_code != 0 and "hd_" not in missing.output


# Roles --------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("method", "path", "body"),
    [
        ("GET", "/sla-policies", None),
        ("POST", "/sla-policies", {"name": "x"}),
        ("PUT", "/business-hours", {"timezone": "UTC"}),
        ("POST", "/agents", {"email": "new@example.test", "name": "New"}),
        ("POST", "/canned-replies", {"shortcode": "hi", "body": "Hi"}),
        ("GET", "/webhook-subscriptions", None),
    ],
)
def test_an_agent_token_is_refused_settings(agent_api, method, path, body):
    before = table_counts()
    response = agent_api.open(method, path, json=body)
    assert response.status_code == 403 and error_of(response)["code"] == "forbidden"
    assert table_counts() == before


def test_a_manager_token_manages_settings_but_not_agents_or_roles(manager_api, desk):
    assert manager_api.get("/sla-policies").status_code == 200
    assert manager_api.post("/agents", json={"email": "a@b.test", "name": "A"}).status_code == 403
    patch = manager_api.patch(f"/agents/{desk.agent.id}", json={"role": "admin"})
    assert patch.status_code == 403 and error_of(patch)["code"] == "forbidden"
    ok = manager_api.patch(f"/agents/{desk.agent.id}", json={"capacity": 3})
    assert ok.status_code == 200 and ok.get_json()["capacity"] == 3


def test_an_agent_token_cannot_change_agents(agent_api, desk):
    response = agent_api.patch(f"/agents/{desk.agent.id}", json={"capacity": 1})
    assert response.status_code == 403


# Brand isolation ----------------------------------------------------------------------------------


def foreign_ids(other: Desk) -> dict[str, int]:
    """One row of the other brand for each kind of id a path can carry."""
    reply = canned.create(other.brand, None, "theirs", "Theirs", "Hello", shared=True)
    policy = sla.create_policy(other.brand, None, "theirs", 0, {}, {"resolution_min": 60})
    subscription, _secret = outgoing.create_subscription(
        other.brand, None, PUBLIC_IP_URL, ["ticket.created"]
    )
    team = create_team(other.brand, "Their team")
    tag = tags.create_tag(other.brand, None, "theirs")
    token, _secret = create_token(other.brand, "theirs", Role.ADMIN)
    automation = AutomationRule(brand_id=other.brand.id, name="theirs", event="ticket_created")
    db.session.add(automation)
    db.session.commit()
    return {
        "automation_id": automation.id,
        "conversation_id": other.conversation.id,
        "message_id": other.message.id,
        "ticket_id": other.ticket.id,
        "reply_id": reply.id,
        "policy_id": policy.id,
        "agent_id": other.agent.id,
        "subscription_id": subscription.id,
        "team_id": team.id,
        "tag_id": tag.id,
        "token_id": token.id,
        "contact_id": other.conversation.contact_id,
    }


def test_every_route_with_an_id_answers_404_for_another_brands_id(app, api, desk, other):
    """Walks the url map, so a new route with an id is covered (or fails) automatically."""
    ids = foreign_ids(other)
    tags.add_tag(other.ticket, "vip", None)
    db.session.commit()
    before = table_counts()
    checked = 0
    for rule in api_rules(app):
        id_params = [
            name for name, conv in rule._converters.items() if isinstance(conv, IntegerConverter)
        ]
        if not id_params:
            continue
        unknown = set(id_params) - set(ids)
        assert not unknown, f"{rule.rule}: add a foreign row for {unknown} to this test"
        values = {name: ids.get(name, "vip") for name in rule.arguments}
        path = rule.build(values)[1]
        for method in rule.methods - {"HEAD", "OPTIONS"}:
            response = api.client.open(
                path,
                method=method,
                headers={"Authorization": f"Bearer {api.token}"},
                json={},
            )
            assert response.status_code == 404, (method, path, response.get_json())
            assert error_of(response)["code"] == "not_found"
            checked += 1
    assert checked >= 15
    assert table_counts() == before


def test_lists_show_only_the_tokens_brand(api, desk, other):
    conversations = api.get("/conversations").get_json()["items"]
    assert [c["id"] for c in conversations] == [desk.conversation.id]
    assert [t["id"] for t in api.get("/tickets").get_json()["items"]] == [desk.ticket.id]
    assert [a["id"] for a in api.get("/agents").get_json()["items"]] == [desk.agent.id]


def test_inbound_refuses_another_brands_channel_and_an_instagram_channel(api, desk, other):
    body = {"sender": {"id": "x1"}, "mid": "in-1", "timestamp": 1_790_000_000_000, "text": "hi"}
    before = table_counts()
    for channel in (other.api_channel, desk.channel):
        response = api.post("/inbound", json={**body, "channel_id": channel.id})
        assert response.status_code == 422
        assert "channel_id" in error_of(response)["fields"]
    assert table_counts() == before


# Errors -------------------------------------------------------------------------------------------


def test_unknown_paths_and_wrong_methods_answer_json(api):
    missing = api.get("/no-such-thing")
    assert missing.status_code == 404 and error_of(missing)["code"] == "not_found"
    wrong = api.put("/tickets")
    assert wrong.status_code == 405 and error_of(wrong)["code"] == "method_not_allowed"
    assert "GET" in wrong.headers["Allow"]
    assert api.client.get("/api/v2/anything").is_json


def test_api_posts_need_no_csrf_token(app, api, desk):
    """The console's forms carry CSRF tokens; the API authenticates by bearer token instead."""
    assert app.config["WTF_CSRF_ENABLED"]
    response = api.post(f"/tickets/{desk.ticket.id}/notes", json={"body": "no CSRF here"})
    assert response.status_code == 201


def test_the_console_keeps_its_own_error_pages(client):
    response = client.get("/no-such-page")
    assert response.status_code == 404 and not response.is_json


def test_malformed_json_is_400_bad_json(api, desk):
    before = table_counts()
    response = api.post(
        f"/tickets/{desk.ticket.id}/notes",
        data=b'{"body": "unterminated',
        content_type="application/json",
    )
    assert response.status_code == 400 and error_of(response)["code"] == "bad_json"
    form = api.post(f"/tickets/{desk.ticket.id}/notes", data={"body": "as a form"})
    assert form.status_code == 400 and error_of(form)["code"] == "bad_json"
    assert table_counts() == before


@pytest.mark.parametrize(
    "raw",
    [b"[" * 100_000, b'{"body": NaN}', b'{"body": Infinity}', b'{"body": "\xff\xfe"}', b"  "],
)
def test_hostile_json_is_400_bad_json(api, desk, raw):
    before = table_counts()
    response = api.post(
        f"/tickets/{desk.ticket.id}/notes", data=raw, content_type="application/json"
    )
    assert response.status_code == 400 and error_of(response)["code"] == "bad_json"
    assert table_counts() == before


def test_a_body_over_the_limit_is_413(app, api, desk):
    big = json.dumps({"body": "x" * (app.config["MAX_CONTENT_LENGTH"] + 10)})
    response = api.post(
        f"/tickets/{desk.ticket.id}/notes", data=big, content_type="application/json"
    )
    assert response.status_code == 413 and error_of(response)["code"] == "too_large"


@pytest.mark.parametrize(
    ("method", "path", "body"),
    [
        ("POST", "/conversations/{conversation}/messages", {}),
        ("POST", "/conversations/{conversation}/messages", {"text": "hi", "extra": 1}),
        ("POST", "/conversations/{conversation}/messages", {"text": "x" * 1001}),
        ("POST", "/conversations/{conversation}/messages", {"text": "nul \x00 byte"}),
        (
            "POST",
            "/conversations/{conversation}/messages",
            {"attachments": [{"type": "image", "url": "javascript:alert(1)"}]},
        ),
        ("POST", "/conversations/{conversation}/messages", {"text": "hi", "send_at": "yesterday"}),
        ("POST", "/conversations/{conversation}/request", {"action": "archive"}),
        ("PATCH", "/tickets/{ticket}", {"status": "done"}),
        ("PATCH", "/tickets/{ticket}", {"priority": 3}),
        ("PATCH", "/tickets/{ticket}", {"assignee_id": "me"}),
        ("PATCH", "/tickets/{ticket}", {"status": "snoozed"}),
        ("PATCH", "/tickets/{ticket}", {"snoozed_until": "2030-01-01T00:00:00Z"}),
        ("PATCH", "/tickets/{ticket}", {"team_id": 99999}),
        ("PATCH", "/tickets/{ticket}", {"assignee_id": 99999}),
        ("POST", "/tickets/{ticket}/tags", {"name": ""}),
        ("POST", "/tickets/{ticket}/notes", {"body": "   "}),
        ("POST", "/canned-replies", {"shortcode": "bad code!", "body": "x"}),
        ("POST", "/canned-replies", {"shortcode": "evil", "body": "{{ ''.__class__ }}"}),
        ("POST", "/sla-policies", {"name": "x", "targets": {"resolution_min": 0}}),
        ("POST", "/sla-policies", {"name": "x", "conditions": {"tag": "no-such-tag"}}),
        ("PUT", "/business-hours", {"timezone": "Mars/Olympus"}),
        ("PUT", "/business-hours", {"timezone": "UTC", "weekly": {"mon": [["17:00", "09:00"]]}}),
        ("POST", "/agents", {"email": "not-an-email", "name": "X"}),
        ("POST", "/agents", {"email": "x@example.test", "name": "X", "role": "owner"}),
        ("POST", "/inbound", {"mid": "m"}),
        ("POST", "/inbound", {"channel_id": 1, "sender": {"id": "s"}, "mid": "m", "timestamp": 1}),
        ("POST", "/webhook-subscriptions", {"url": "http://127.0.0.1/x", "events": ["x"]}),
        (
            "POST",
            "/webhook-subscriptions",
            {"url": "http://10.0.0.1/x", "events": ["sla.breached"]},
        ),
        ("GET", "/tickets?limit=0", None),
        ("GET", "/tickets?limit=101", None),
        ("GET", "/tickets?cursor=not-a-cursor", None),
        ("GET", "/tickets?assignee=me", None),
        ("GET", "/conversations?assignee=me", None),
        ("GET", "/conversations?folder=spam", None),
    ],
)
def test_invalid_input_is_422_and_changes_nothing(api, desk, method, path, body):
    path = path.format(conversation=desk.conversation.id, ticket=desk.ticket.id)
    before = table_counts()
    response = api.open(method, path, json=body)
    assert response.status_code == 422, response.get_json()
    assert error_of(response)["code"] == "invalid"
    assert table_counts() == before


def test_hostile_values_outside_the_schemas_are_4xx(api, desk):
    """Path text with NUL (PostgreSQL refuses it) and cursors with huge numbers (SQLite does)."""
    assert api.delete(f"/tickets/{desk.ticket.id}/tags/a%00b").status_code == 404
    assert api.get(f"/tickets/{2**40}").status_code == 404
    for listing, values in (("tickets", [10**30]), ("sla_policies", [10**30, 1])):
        raw = json.dumps([listing, *values]).encode()
        cursor = base64.urlsafe_b64encode(raw).decode()
        path = "/tickets" if listing == "tickets" else "/sla-policies"
        assert api.get(f"{path}?cursor={cursor}").status_code == 422


def test_validation_errors_name_the_fields(api, desk):
    response = api.patch(f"/tickets/{desk.ticket.id}", json={"status": "done", "priority": 3})
    error = error_of(response)
    assert set(error["fields"]) == {"status", "priority"}
    assert "status" in error["message"]


def test_a_cursor_of_another_listing_is_refused(api, desk):
    for n in range(3):
        write(desk.channel, f"more-{n}", f"new-person-{n}", minutes_ago=1)
    db.session.commit()
    cursor = api.get("/conversations?limit=1&request_state=pending").get_json()["next_cursor"]
    assert cursor
    response = api.get(f"/tickets?cursor={cursor}")
    assert response.status_code == 422 and "cursor" in error_of(response)["fields"]


# Conversations ------------------------------------------------------------------------------------


CONTACT_KEYS = {
    "id", "platform_id", "username", "name", "follows_brand", "followed_by_brand", "blocked"
}  # fmt: skip
MESSAGE_KEYS = {
    "id", "mid", "direction", "kind", "text", "attachments", "reply_to", "reactions", "sent_at",
    "status", "error", "edited", "unsent", "conversation_id", "contact_id", "send_at",
    "story", "quick_reply", "referral", "postback",
}  # fmt: skip
TICKET_KEYS = {
    "id", "conversation_id", "status", "priority", "assignee_id", "team_id", "tags", "opened_at",
    "first_response_at", "resolved_at", "snoozed_until", "sla", "csat",
}  # fmt: skip
SLA_KEYS = {
    "policy_id", "first_response_due_at", "next_response_due_at", "resolution_due_at", "breached"
}  # fmt: skip


def test_conversation_detail_shape(api, desk):
    body = api.get(f"/conversations/{desk.conversation.id}").get_json()
    assert body["id"] == desk.conversation.id and body["kind"] == "direct"
    assert set(body["contact"]) == CONTACT_KEYS
    assert body["contact"]["platform_id"] == "acme-known"
    assert body["contact"]["followed_by_brand"] is True
    assert [c["id"] for c in body["contacts"]] == [body["contact"]["id"]]
    assert body["folder"] == "primary" and body["request_state"] == "none"
    assert body["vanish_mode"] is False and body["preview"] == "where is my order?"
    assert body["window_closes_at"].endswith(("Z", "+00:00"))
    assert body["last_message_at"].endswith(("Z", "+00:00"))
    assert set(body["current_ticket"]) == TICKET_KEYS
    assert set(body["current_ticket"]["sla"]) == SLA_KEYS
    assert body["current_ticket"]["id"] == desk.ticket.id
    listed = api.get("/conversations").get_json()["items"][0]
    assert listed == body


def test_conversation_filters(api, desk):
    stranger = write(
        desk.channel, "req-1", "stranger", text="hi, a question", sender_username="curious"
    )
    second = write(desk.channel, "known-2", "acme-known-2", text="refund please")
    ContactFactory(channel=desk.channel, platform_id="acme-friend", followed_by_brand=True)
    third = write(desk.channel, "friend-1", "acme-friend", text="thanks!")
    third_ticket = db.session.get(Conversation, third.conversation_id).current_ticket_id
    tickets.assign(db.session.get(Ticket, third_ticket), desk.agent.id, None)
    tags.add_tag(desk.ticket, "VIP", None)
    db.session.commit()

    def ids(query: str) -> list[int]:
        response = api.get(f"/conversations?{query}")
        assert response.status_code == 200, response.get_json()
        return [c["id"] for c in response.get_json()["items"]]

    assert set(ids("folder=requests")) == {second.conversation_id, stranger.conversation_id}
    assert desk.conversation.id in ids("folder=primary")
    assert ids("tag=vip") == [desk.conversation.id]
    assert ids(f"assignee={desk.agent.id}") == [third.conversation_id]
    assert third.conversation_id not in ids("assignee=none")
    assert desk.conversation.id in ids("assignee=none")
    assert ids("q=CURIOUS") == ids("q=question")
    assert len(ids("q=curious")) == 1
    assert ids("q=acme_fan") == [desk.conversation.id]
    assert ids("status=resolved") == []
    assert ids("q=%25") == []  # a wildcard is searched for, not expanded


def test_declined_and_blocked_threads_leave_the_listing(api, desk):
    message = write(desk.channel, "req-1", "stranger")
    db.session.commit()
    path = f"/conversations/{message.conversation_id}/request"
    declined = api.post(path, json={"action": "decline"})
    assert declined.status_code == 200 and declined.get_json()["request_state"] == "declined"
    listed = [c["id"] for c in api.get("/conversations").get_json()["items"]]
    assert message.conversation_id not in listed
    shown = api.get("/conversations?request_state=declined").get_json()["items"]
    assert [c["id"] for c in shown] == [message.conversation_id]


def test_accepting_a_request_opens_a_ticket(api, desk):
    message = write(desk.channel, "req-1", "stranger", minutes_ago=30)
    db.session.commit()
    response = api.post(
        f"/conversations/{message.conversation_id}/request", json={"action": "accept"}
    )
    body = response.get_json()
    assert response.status_code == 200
    assert body["request_state"] == "accepted" and body["folder"] == "primary"
    assert body["current_ticket"]["status"] == "open"
    again = api.post(f"/conversations/{message.conversation_id}/request", json={"action": "accept"})
    assert again.status_code == 409 and error_of(again)["code"] == "invalid_state"


def test_blocking_a_request_blocks_the_contact(api, desk):
    message = write(desk.channel, "req-1", "stranger")
    db.session.commit()
    response = api.post(
        f"/conversations/{message.conversation_id}/request", json={"action": "block"}
    )
    assert response.status_code == 200
    assert response.get_json()["request_state"] == "blocked"
    assert response.get_json()["contact"]["blocked"] is True


# Messages -----------------------------------------------------------------------------------------


def test_messages_newest_first_with_reactions_and_quotes(api, desk):
    second = write(desk.channel, "acme-m2", "acme-known", minutes_ago=3, reply_to_mid="acme-m1")
    dm.react(desk.message, "❤️")
    db.session.commit()
    items = api.get(f"/conversations/{desk.conversation.id}/messages").get_json()["items"]
    assert [m["id"] for m in items] == [second.id, desk.message.id]
    assert set(items[0]) == MESSAGE_KEYS
    assert items[0]["reply_to"] == {"id": desk.message.id, "mid": "acme-m1"}
    assert items[1]["reactions"][0]["emoji"] == "❤️"
    assert items[1]["reactions"][0]["reactor"] == "brand"
    assert items[1]["direction"] == "inbound" and items[1]["kind"] == "text"
    assert items[1]["sent_at"].endswith(("Z", "+00:00"))


def test_reply_is_queued_and_handed_to_delivery(app, api, desk):
    drain_broker(app)
    response = api.post(
        f"/conversations/{desk.conversation.id}/messages",
        json={"text": "On its way!", "reply_to": desk.message.id},
    )
    assert response.status_code == 202, response.get_json()
    body = response.get_json()
    assert set(body) == MESSAGE_KEYS
    assert body["status"] == "queued" and body["direction"] == "outbound"
    assert body["reply_to"]["id"] == desk.message.id
    assert drain_broker(app) == [(DELIVER_TASK, [body["id"]])]
    db.session.expire_all()
    assert db.session.get(Message, body["id"]).status is MessageStatus.QUEUED
    assert db.session.get(Ticket, desk.ticket.id).first_response_at is not None


def test_a_scheduled_reply_waits_for_its_time(app, api, desk):
    drain_broker(app)
    send_at = (utcnow() + timedelta(hours=2)).isoformat()
    response = api.post(
        f"/conversations/{desk.conversation.id}/messages",
        json={"text": "Later", "send_at": send_at},
    )
    assert response.status_code == 202
    assert response.get_json()["status"] == "scheduled" and response.get_json()["send_at"]
    assert drain_broker(app) == []


def test_a_reply_outside_the_window_is_409_and_stores_nothing(api, desk):
    old = write(desk.channel, "old-1", "acme-old", minutes_ago=8 * 24 * 60)
    db.session.commit()
    before = table_counts()
    response = api.post(f"/conversations/{old.conversation_id}/messages", json={"text": "Sorry!"})
    assert response.status_code == 409 and error_of(response)["code"] == "reply_window_closed"
    assert table_counts() == before


def test_a_canned_reply_is_rendered_for_the_conversation(app, api, desk):
    reply = canned.create(
        desk.brand,
        None,
        "thanks",
        "Thanks",
        "Thanks {{ contact.username }}, from {{ brand.name }}",
        attachments=[{"type": "image", "url": "https://cdn.example.test/a.png"}],
        shared=True,
    )
    db.session.commit()
    response = api.post(
        f"/conversations/{desk.conversation.id}/messages", json={"canned_reply": reply.id}
    )
    assert response.status_code == 202, response.get_json()
    body = response.get_json()
    assert body["text"] == "Thanks acme_fan, from Acme"
    assert body["attachments"] == [{"type": "image", "url": "https://cdn.example.test/a.png"}]
    drain_broker(app)


def test_a_reply_may_not_quote_or_use_another_brands_rows(api, desk, other):
    reply = canned.create(other.brand, None, "theirs", "T", "Hi", shared=True)
    db.session.commit()
    before = table_counts()
    path = f"/conversations/{desk.conversation.id}/messages"
    quoted = api.post(path, json={"text": "hi", "reply_to": other.message.id})
    assert quoted.status_code == 422 and "reply_to" in error_of(quoted)["fields"]
    used = api.post(path, json={"canned_reply": reply.id})
    assert used.status_code == 422 and "canned_reply" in error_of(used)["fields"]
    assert table_counts() == before


def test_react_and_unreact_as_the_brand(app, api, desk):
    drain_broker(app)
    path = f"/messages/{desk.message.id}/reactions"
    first = api.post(path, json={"emoji": "👍"})
    assert first.status_code == 200
    assert first.get_json()["reactions"] == [
        {
            "emoji": "👍",
            "reactor": "brand",
            "contact_id": None,
            "reacted_at": first.get_json()["reactions"][0]["reacted_at"],
        }
    ]
    replaced = api.post(path, json={"emoji": "❤️"}).get_json()["reactions"]
    assert [r["emoji"] for r in replaced] == ["❤️"]
    assert api.delete(path).status_code == 204
    assert db.session.scalar(select(func.count()).select_from(Reaction)) == 0
    again = api.delete(path)
    assert again.status_code == 404 and error_of(again)["code"] == "not_found"
    assert drain_broker(app) == [
        (REACTION_TASK, [desk.message.id, "👍"]),
        (REACTION_TASK, [desk.message.id, "❤️"]),
        (REACTION_TASK, [desk.message.id, None]),
    ]


# Inbound ------------------------------------------------------------------------------------------


def test_inbound_stores_a_message_once(api, desk):
    body = {
        "channel_id": desk.api_channel.id,
        "sender": {"id": "web-42", "username": "webby", "name": "Web Visitor"},
        "mid": "web-msg-1",
        "timestamp": int((utcnow() - timedelta(minutes=1)).timestamp() * 1000),
        "text": "Hello from the site",
        "attachments": [{"type": "image", "url": "https://cdn.example.test/p.jpg"}],
    }
    created = api.post("/inbound", json=body)
    assert created.status_code == 201, created.get_json()
    message = created.get_json()
    assert set(message) == MESSAGE_KEYS
    assert message["kind"] == "image" and message["direction"] == "inbound"
    counts = table_counts()
    again = api.post("/inbound", json=body)
    assert again.status_code == 200 and again.get_json() == message
    assert table_counts() == counts
    assert db.session.scalar(select(func.count()).where(Message.mid == "web-msg-1")) == 1
    # Its image is to be copied into the media store, once, like a webhook's.
    (copy,) = db.session.scalars(select(MediaObject)).all()
    assert (copy.message_id, copy.kind, copy.source_url) == (
        message["id"],
        "image",
        "https://cdn.example.test/p.jpg",
    )


def test_inbound_accepts_iso_timestamps_and_seconds(api, desk):
    base = {"channel_id": desk.api_channel.id, "sender": {"id": "web-1"}, "text": "hi"}
    iso = api.post("/inbound", json={**base, "mid": "a", "timestamp": "2026-11-16T09:00:00Z"})
    assert iso.status_code == 201 and iso.get_json()["sent_at"].startswith("2026-11-16T09:00:00")
    seconds = api.post("/inbound", json={**base, "mid": "b", "timestamp": 1_790_000_000})
    assert seconds.status_code == 201
    assert seconds.get_json()["sent_at"].startswith("2026-09-21")


# Tickets ------------------------------------------------------------------------------------------


def test_ticket_detail_shape(api, desk):
    body = api.get(f"/tickets/{desk.ticket.id}").get_json()
    assert set(body) == TICKET_KEYS and set(body["sla"]) == SLA_KEYS
    assert body["conversation_id"] == desk.conversation.id
    assert body["status"] == "open" and body["priority"] == "normal"
    assert body["opened_at"].endswith(("Z", "+00:00"))


def test_patch_ticket_status_priority_and_snooze(api, desk):
    path = f"/tickets/{desk.ticket.id}"
    body = api.patch(path, json={"priority": "urgent", "status": "pending"}).get_json()
    assert body["priority"] == "urgent" and body["status"] == "pending"
    until = (utcnow() + timedelta(hours=3)).isoformat()
    snoozed = api.patch(path, json={"status": "snoozed", "snoozed_until": until})
    assert snoozed.status_code == 200 and snoozed.get_json()["snoozed_until"]
    resolved = api.patch(path, json={"status": "resolved"}).get_json()
    assert resolved["status"] == "resolved" and resolved["resolved_at"]


def test_assigning_follows_the_already_assigned_rule(api, desk):
    colleague = AgentFactory()
    member(colleague, desk.brand)
    db.session.commit()
    path = f"/tickets/{desk.ticket.id}"
    taken = api.patch(path, json={"assignee_id": desk.agent.id})
    assert taken.status_code == 200 and taken.get_json()["assignee_id"] == desk.agent.id
    assert api.patch(path, json={"assignee_id": desk.agent.id}).status_code == 200
    before = table_counts()
    refused = api.patch(path, json={"assignee_id": colleague.id, "priority": "high"})
    assert refused.status_code == 409 and error_of(refused)["code"] == "already_assigned"
    assert table_counts() == before
    assert db.session.get(Ticket, desk.ticket.id).priority.value == "normal"
    freed = api.patch(path, json={"assignee_id": None})
    assert freed.get_json()["assignee_id"] is None
    moved = api.patch(path, json={"assignee_id": colleague.id})
    assert moved.get_json()["assignee_id"] == colleague.id


def test_an_agent_of_another_brand_cannot_be_assigned(api, desk, other):
    response = api.patch(f"/tickets/{desk.ticket.id}", json={"assignee_id": other.agent.id})
    assert response.status_code == 422


def test_ticket_list_filters(api, desk):
    sla.create_policy(
        desk.brand, None, "fast", 0, {}, {"first_response_min": 100}, business_hours=False
    )
    risky = write(desk.channel, "r-1", "acme-r", minutes_ago=90)
    late = write(desk.channel, "l-1", "acme-l", minutes_ago=120)
    fresh = write(desk.channel, "f-1", "acme-f", minutes_ago=10)
    for message in (risky, late, fresh):
        inbox.accept(db.session.get(Conversation, message.conversation_id), None)

    def ticket_id(message: Message) -> int:
        return db.session.get(Conversation, message.conversation_id).current_ticket_id

    tickets.assign(db.session.get(Ticket, ticket_id(fresh)), desk.agent.id, None)
    tags.add_tag(db.session.get(Ticket, ticket_id(late)), "Refund", None)
    db.session.commit()

    def ids(query: str) -> set[int]:
        response = api.get(f"/tickets?{query}")
        assert response.status_code == 200, response.get_json()
        return {t["id"] for t in response.get_json()["items"]}

    assert ids("sla=breached") == {ticket_id(late)}
    assert ids("sla=at_risk") == {ticket_id(risky)}
    assert ids(f"assignee={desk.agent.id}") == {ticket_id(fresh)}
    assert ticket_id(fresh) not in ids("assignee=none")
    assert ids("tag=refund") == {ticket_id(late)}
    assert ids("status=open") == ids("")


def test_tags_and_notes(api, desk):
    path = f"/tickets/{desk.ticket.id}"
    tagged = api.post(f"{path}/tags", json={"name": "Needs Review"})
    assert tagged.status_code == 200 and tagged.get_json()["tags"] == ["Needs Review"]
    assert api.post(f"{path}/tags", json={"name": "needs review"}).get_json()["tags"] == [
        "Needs Review"
    ]
    assert api.delete(f"{path}/tags/needs%20review").status_code == 204
    assert api.get(path).get_json()["tags"] == []
    assert api.delete(f"{path}/tags/needs%20review").status_code == 404
    slashed = api.post(f"{path}/tags", json={"name": "a/b"})
    assert slashed.status_code == 200
    assert api.delete(f"{path}/tags/a%2Fb").status_code == 204
    note = api.post(f"{path}/notes", json={"body": "Call them back"})
    assert note.status_code == 201
    body = note.get_json()
    assert body["body"] == "Call them back" and body["ticket_id"] == desk.ticket.id
    assert body["author_id"] is None and body["created_at"]
    assert db.session.scalar(select(func.count()).select_from(Note)) == 1


# Pagination ---------------------------------------------------------------------------------------


def test_pagination_walks_every_item_once_while_new_ones_arrive(api, desk):
    for n in range(11):
        write(desk.channel, f"p-{n}", f"person-{n}", minutes_ago=60 - n)
    db.session.commit()
    expected = {c["id"] for c in api.get("/conversations?limit=100").get_json()["items"]}
    assert len(expected) == 12
    seen: list[int] = []
    cursor, pages = None, 0
    while True:
        query = "limit=5" + (f"&cursor={cursor}" if cursor else "")
        page = api.get(f"/conversations?{query}").get_json()
        seen += [c["id"] for c in page["items"]]
        write(desk.channel, f"new-{pages}", f"late-person-{pages}", minutes_ago=0)
        db.session.commit()
        pages += 1
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert len(seen) == len(set(seen)) and set(seen) == expected and pages == 3


def test_message_pages_are_stable_under_new_messages(api, desk):
    for n in range(6):
        write(desk.channel, f"acme-more-{n}", "acme-known", minutes_ago=4 - n * 0.1)
    db.session.commit()
    path = f"/conversations/{desk.conversation.id}/messages"
    first = api.get(f"{path}?limit=4").get_json()
    write(desk.channel, "acme-newest", "acme-known", minutes_ago=0)
    db.session.commit()
    second = api.get(f"{path}?limit=4&cursor={first['next_cursor']}").get_json()
    ids = [m["id"] for m in first["items"] + second["items"]]
    assert len(ids) == 7 == len(set(ids)) and second["next_cursor"] is None


@contextmanager
def counted_queries() -> Iterator[list[int]]:
    count = [0]

    def count_one(*_args: Any) -> None:
        count[0] += 1

    event.listen(db.engine, "before_cursor_execute", count_one)
    try:
        yield count
    finally:
        event.remove(db.engine, "before_cursor_execute", count_one)


def test_listings_read_a_page_in_a_fixed_number_of_queries(api, desk):
    """No query per row: a page of 2 and a page of 8 cost the same."""
    for n in range(8):
        message = write(desk.channel, f"n-{n}", f"acme-known-{n}", minutes_ago=30 - n)
        conversation = db.session.get(Conversation, message.conversation_id)
        inbox.accept(conversation, None)
        tags.add_tag(db.session.get(Ticket, conversation.current_ticket_id), f"tag{n}", None)
        dm.react(message, "👍")
        dm.react(write(desk.channel, f"m-{n}", "acme-known", minutes_ago=2), "👍")
        member(AgentFactory(), desk.brand)
    db.session.commit()
    messages = f"/conversations/{desk.conversation.id}/messages"
    api.get("/tickets")  # the token's first use writes last_used_at
    for path in ("/conversations", "/tickets", messages, "/agents"):
        costs = []
        for limit in (2, 8):
            with counted_queries() as count:
                response = api.get(f"{path}?limit={limit}")
            assert len(response.get_json()["items"]) == limit
            costs.append(count[0])
        assert costs[0] == costs[1], (path, costs)


# Canned replies -----------------------------------------------------------------------------------


def test_canned_replies_crud_and_render(api, desk):
    created = api.post(
        "/canned-replies",
        json={"shortcode": "/Refund", "title": "Refund", "body": "Hi {{ contact.username }}!"},
    )
    assert created.status_code == 201, created.get_json()
    reply = created.get_json()
    assert reply["shortcode"] == "refund" and reply["shared"] is True
    assert api.get(f"/canned-replies/{reply['id']}").get_json() == reply
    listed = api.get("/canned-replies?q=/ref").get_json()
    assert [r["id"] for r in listed["items"]] == [reply["id"]] and listed["next_cursor"] is None
    patched = api.patch(f"/canned-replies/{reply['id']}", json={"title": "Refunds"})
    assert patched.get_json()["title"] == "Refunds"
    duplicate = api.post("/canned-replies", json={"shortcode": "refund", "body": "x"})
    assert duplicate.status_code == 409 and error_of(duplicate)["code"] == "already_exists"
    rendered = api.post(
        f"/canned-replies/{reply['id']}/render", json={"conversation_id": desk.conversation.id}
    )
    assert rendered.status_code == 200
    assert rendered.get_json() == {"text": "Hi acme_fan!", "missing": [], "too_long": False}
    assert api.delete(f"/canned-replies/{reply['id']}").status_code == 204
    assert api.get(f"/canned-replies/{reply['id']}").status_code == 404


def test_agents_personal_replies_are_not_the_tokens(api, desk):
    personal = canned.create(desk.brand, desk.agent, "mine", "Mine", "Hello")
    db.session.commit()
    assert api.get(f"/canned-replies/{personal.id}").status_code == 404
    assert api.get("/canned-replies").get_json()["items"] == []


def test_render_for_another_brands_conversation_is_refused(api, desk, other):
    reply = canned.create(desk.brand, None, "hi", "Hi", "Hi", shared=True)
    db.session.commit()
    response = api.post(
        f"/canned-replies/{reply.id}/render", json={"conversation_id": other.conversation.id}
    )
    assert response.status_code == 422


# SLA policies and business hours ------------------------------------------------------------------


def test_sla_policies_crud(api, desk):
    tags.add_tag(desk.ticket, "VIP", None)
    db.session.commit()
    created = api.post(
        "/sla-policies",
        json={
            "name": "VIP",
            "position": 1,
            "conditions": {"priority": "high", "tag": "VIP"},
            "targets": {"first_response_min": 15, "resolution_min": 240},
            "business_hours": False,
        },
    )
    assert created.status_code == 201, created.get_json()
    policy = created.get_json()
    assert policy["conditions"]["tag"] == "VIP" and policy["conditions"]["priority"] == "high"
    assert policy["targets"] == {
        "first_response_min": 15,
        "next_response_min": None,
        "resolution_min": 240,
    }
    assert api.get(f"/sla-policies/{policy['id']}").get_json() == policy
    patched = api.patch(
        f"/sla-policies/{policy['id']}", json={"targets": {"next_response_min": 30}}
    )
    assert patched.get_json()["targets"]["next_response_min"] == 30
    assert patched.get_json()["targets"]["first_response_min"] == 15
    assert [p["id"] for p in api.get("/sla-policies").get_json()["items"]] == [policy["id"]]
    assert api.delete(f"/sla-policies/{policy['id']}").status_code == 204
    assert db.session.scalar(select(func.count()).select_from(SlaPolicy)) == 0


def test_a_new_policy_sets_due_times_on_open_tickets(api, desk):
    api.post("/sla-policies", json={"name": "all", "targets": {"first_response_min": 30}})
    ticket = api.get(f"/tickets/{desk.ticket.id}").get_json()
    assert ticket["sla"]["policy_id"] is not None
    assert ticket["sla"]["first_response_due_at"] is not None


def test_business_hours_round_trip(api, manager_api, agent_api):
    assert agent_api.get("/business-hours").get_json()["timezone"] == "Europe/Berlin"
    calendar = {
        "timezone": "Europe/Paris",
        "weekly": {"mon": [["09:00", "17:00"]], "tue": [["09:00", "12:00"], ["13:00", "17:00"]]},
        "holidays": ["2026-12-25"],
    }
    response = manager_api.put("/business-hours", json=calendar)
    assert response.status_code == 200, response.get_json()
    stored = api.get("/business-hours").get_json()
    assert stored["timezone"] == "Europe/Paris" and stored["holidays"] == ["2026-12-25"]
    assert stored["weekly"]["tue"] == [["09:00", "12:00"], ["13:00", "17:00"]]
    assert stored["weekly"]["sun"] == []
    closed = manager_api.put("/business-hours", json={"timezone": "UTC", "weekly": {}})
    assert closed.status_code == 422
    assert api.get("/business-hours").get_json() == stored


# Agents -------------------------------------------------------------------------------------------


def test_agents_list_create_and_patch(api, desk):
    listed = api.get("/agents").get_json()["items"]
    assert listed[0]["email"] == desk.agent.email and listed[0]["role"] == "agent"
    created = api.post("/agents", json={"email": "New@Example.test", "name": "New Person"})
    assert created.status_code == 201, created.get_json()
    body = created.get_json()
    assert body["email"] == "new@example.test" and body["role"] == "agent"
    assert len(body["password"]) >= 12
    chosen = api.post(
        "/agents", json={"email": "b@example.test", "name": "B", "password": "long enough pw"}
    )
    assert chosen.get_json()["password"] is None
    taken = api.post("/agents", json={"email": desk.agent.email.upper(), "name": "Dup"})
    assert taken.status_code == 409

    team = create_team(desk.brand, "Tier 1")
    db.session.commit()
    patched = api.patch(
        f"/agents/{body['id']}",
        json={"availability": "online", "capacity": 4, "team_ids": [team.id], "role": "manager"},
    )
    assert patched.status_code == 200, patched.get_json()
    assert patched.get_json() | {"id": 0} == {
        "id": 0,
        "email": "new@example.test",
        "name": "New Person",
        "role": "manager",
        "availability": "online",
        "capacity": 4,
        "team_ids": [team.id],
        "active": True,
    }
    cleared = api.patch(f"/agents/{body['id']}", json={"team_ids": []})
    assert cleared.get_json()["team_ids"] == []
    assert db.session.scalar(select(func.count()).select_from(TeamMember)) == 0
    assert db.session.get(Agent, body["id"]).availability is Availability.ONLINE


def test_agent_teams_must_be_the_brands(api, desk, other):
    theirs = create_team(other.brand, "Theirs")
    db.session.commit()
    before = table_counts()
    response = api.patch(f"/agents/{desk.agent.id}", json={"team_ids": [theirs.id]})
    assert response.status_code == 422 and "team_ids" in error_of(response)["fields"]
    assert table_counts() == before


# Webhook subscriptions ----------------------------------------------------------------------------


def test_webhook_subscriptions(api, desk, manager_api):
    created = api.post(
        "/webhook-subscriptions", json={"url": PUBLIC_IP_URL, "events": ["ticket.created"]}
    )
    assert created.status_code == 201, created.get_json()
    body = created.get_json()
    assert body["secret"].startswith("whsec_") and body["events"] == ["ticket.created"]
    listed = api.get("/webhook-subscriptions").get_json()["items"]
    assert [s["id"] for s in listed] == [body["id"]] and "secret" not in listed[0]
    assert manager_api.get("/webhook-subscriptions").status_code == 403
    assert api.delete(f"/webhook-subscriptions/{body['id']}").status_code == 204
    assert api.get("/webhook-subscriptions").get_json()["items"] == []


def test_changes_are_committed_by_the_request(api, desk):
    """A missing commit hides in a shared session; a new session must see the rows."""
    api.post(f"/tickets/{desk.ticket.id}/notes", json={"body": "durable"})
    api.patch(f"/tickets/{desk.ticket.id}", json={"status": "resolved"})
    db.session.remove()
    assert db.session.scalar(select(Note.body)) == "durable"
    assert db.session.get(Ticket, desk.ticket.id).status is TicketStatus.RESOLVED

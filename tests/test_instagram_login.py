"""Connecting an account with Instagram Login through the simulator, refusals that change
nothing, disconnecting, and GET /api/v1/channels."""

from __future__ import annotations

from datetime import timedelta
from urllib.parse import parse_qs, urlencode, urlsplit

import httpx
import pytest
from sqlalchemy import select, update

from helpdesk import hooks
from helpdesk.accounts.models import Role
from helpdesk.audit.models import AuditEvent
from helpdesk.channels import lifecycle
from helpdesk.channels.models import Backfill, Channel, ChannelKind, ChannelStatus, OAuthState
from helpdesk.dm.models import Message
from helpdesk.extensions import db
from helpdesk.types import utcnow
from tests.helpers.api import Client, token_for
from tests.helpers.console import post, signed_in
from tests.helpers.rows import changed, snapshot
from tests.helpers.world import World, receive

PUBLIC = "https://desk.example"
BIG_ID = "17841400000000000123"  # beyond 2**53: a float would make it ...0000128
OUTLET_ID = "17841400000000000456"
FIELDS = "messages,messaging_postbacks,messaging_seen,message_reactions,messaging_referral"


@pytest.fixture
def world():
    return World()


@pytest.fixture
def login_sim(app, sim, monkeypatch):
    """The simulator as instagram.com, api.instagram.com and graph.instagram.com."""
    monkeypatch.setitem(app.config, "INSTAGRAM_AUTH_BASE", sim.root_url)
    monkeypatch.setitem(app.config, "INSTAGRAM_TOKEN_BASE", sim.root_url)
    monkeypatch.setitem(app.config, "PUBLIC_BASE_URL", PUBLIC)
    return sim


def steer(sim, **data) -> dict:
    response = httpx.post(f"{sim.root_url}/_sim/oauth", json=data)
    assert response.status_code == 200, response.text
    return response.json()


def start(client) -> str:
    response = client.get("/settings/channels/instagram/connect")
    assert response.status_code == 302, response.get_data(as_text=True)[:300]
    return response.headers["Location"]


def consent(sim, authorize_url: str, decision: str = "allow", account: str | None = None) -> str:
    """The admin's choice on the simulator's authorize page: where Instagram sends them back."""
    args = {k: v[0] for k, v in parse_qs(urlsplit(authorize_url).query).items()}
    page = httpx.get(authorize_url)
    assert "Allow DM Helpdesk to manage this account's messages?" in page.text
    form = {**args, "decision": decision, **({"account": account} if account else {})}
    answer = httpx.post(f"{sim.root_url}/oauth/authorize", data=form)
    assert answer.status_code == 302
    return answer.headers["Location"]


def come_back(client, location: str, **override):
    """Follow Instagram's redirect to the callback (the browser drops the `#_` fragment)."""
    parts = urlsplit(location)
    assert f"{parts.scheme}://{parts.netloc}{parts.path}" == f"{PUBLIC}/oauth/instagram/callback"
    args = {k: v[0] for k, v in parse_qs(parts.query).items()} | override
    return client.get(f"{parts.path}?{urlencode(args)}")


def connect(client, sim, account: str | None = None):
    return come_back(client, consent(sim, start(client), account=account))


def ig_channels() -> list[Channel]:
    db.session.expire_all()
    query = select(Channel).where(Channel.kind == ChannelKind.INSTAGRAM)
    return list(db.session.scalars(query.order_by(Channel.id)))


def by_account(account_id: str) -> Channel | None:
    db.session.expire_all()
    return db.session.scalar(select(Channel).where(Channel.account_id == account_id))


def text_of(response) -> str:
    return response.get_data(as_text=True)


def without_states(rows: dict) -> dict:
    """Every row but the login attempts (a presented state is spent, whatever follows)."""
    return {name: value for name, value in rows.items() if name != "oauth_states"}


# --- connecting ---------------------------------------------------------------------------------


def test_the_connect_button_sends_the_admin_to_instagrams_authorize_url(client, world, login_sim):
    url = start(signed_in(client, world.admin))
    base, _, query = url.partition("?")
    assert base == f"{login_sim.root_url}/oauth/authorize"
    state = parse_qs(query)["state"][0]
    assert query == (
        "client_id=555000111222333"
        f"&redirect_uri={PUBLIC}/oauth/instagram/callback"
        "&response_type=code"
        "&scope=instagram_business_basic,instagram_business_manage_messages"
        f"&state={state}"
    )
    (row,) = db.session.scalars(select(OAuthState)).all()
    assert state not in (row.state_hash, row.session_hash)
    assert row.brand_id == world.brand.id and row.agent_id == world.admin.id
    assert row.used_at is None
    assert timedelta(minutes=9) < row.expires_at - utcnow() <= timedelta(minutes=10)


@pytest.mark.parametrize("who", ["agent", "manager"])
def test_only_an_admin_may_connect_or_disconnect(client, world, login_sim, who):
    signed_in(client, getattr(world, who))
    assert client.get("/settings/channels/instagram/connect").status_code == 403
    assert post(client, f"/settings/channels/{world.channel.id}/disconnect").status_code == 403
    assert db.session.scalars(select(OAuthState)).all() == []


def test_connecting_end_to_end_stores_the_account_with_its_token_encrypted(
    client, world, login_sim
):
    signed_in(client, world.admin)
    response = connect(client, login_sim)
    assert response.status_code == 302 and response.headers["Location"].endswith(
        "/settings/channels#channels"
    )
    channel = by_account(BIG_ID)
    assert channel is not None and channel.brand_id == world.brand.id
    assert channel.account_id == BIG_ID  # exact, though the JSON had it as a big number
    assert (channel.username, channel.name, channel.status) == (
        "sim_business",
        "Sim Business",
        ChannelStatus.ACTIVE,
    )
    assert channel.access_token.startswith("IGQVJlong")  # the long-lived one
    assert channel.access_token not in channel.access_token_encrypted
    assert timedelta(days=59) < channel.token_expires_at - utcnow() <= timedelta(days=60)
    assert channel.connected_at is not None
    html = text_of(client.get("/settings/channels"))
    assert "Connected @sim_business" in html and "@sim_business" in html
    # What the simulator was asked, in order, with Meta's parameters.
    calls = login_sim.requests()
    endpoints = [c["endpoint"] for c in calls if c["endpoint"] != "history"]
    assert endpoints[:4] == ["oauth_token", "exchange_token", "me", "subscribed_apps"]
    exchange = calls[0]["form"]
    assert exchange["grant_type"] == "authorization_code"
    assert exchange["redirect_uri"] == f"{PUBLIC}/oauth/instagram/callback"
    assert exchange["client_id"] == "555000111222333"
    assert calls[1]["path"] == "/access_token"  # the graph origin, without /v25.0
    assert calls[1]["args"]["grant_type"] == "ig_exchange_token"
    assert calls[2]["args"]["fields"] == "user_id,username,name,profile_picture_url,account_type"
    subscribe = calls[3]
    assert subscribe["method"] == "POST"
    assert subscribe["path"] == f"/v25.0/{BIG_ID}/subscribed_apps"
    assert subscribe["args"]["subscribed_fields"] == FIELDS
    assert "access_token" not in subscribe["args"]  # the token travels in a header
    assert subscribe["token_hint"] == "..." + channel.access_token[-4:]
    assert steer(login_sim)["subscriptions"][BIG_ID] == FIELDS.split(",")
    (event,) = db.session.scalars(
        select(AuditEvent).where(AuditEvent.action == "channel.connected")
    ).all()
    assert event.target_id == channel.id and event.actor_id == world.admin.id
    assert event.changes["status"] == [None, "active"]
    assert channel.access_token not in repr(event.changes)


def test_the_data_wrapped_answer_with_comma_permissions_connects_too(client, world, login_sim):
    steer(login_sim, wrapped=True)
    signed_in(client, world.admin)
    assert connect(client, login_sim).status_code == 302
    exchange = login_sim.requests("oauth_token")[0]["response"]
    assert isinstance(exchange["data"][0]["permissions"], str)
    assert by_account(BIG_ID).status is ChannelStatus.ACTIVE


def test_a_code_with_instagrams_trailing_hash_underscore_still_works(client, world, login_sim):
    signed_in(client, world.admin)
    location = consent(login_sim, start(client))
    assert location.endswith("#_")
    code = parse_qs(urlsplit(location).query)["code"][0]
    # A copied URL keeps the fragment: it arrives inside the code.
    response = come_back(client, location.removesuffix("#_"), code=code + "#_")
    assert response.status_code == 302
    assert by_account(BIG_ID) is not None


def test_a_second_account_is_chosen_on_the_authorize_page(client, world, login_sim):
    signed_in(client, world.admin)
    connect(client, login_sim)
    assert connect(client, login_sim, account=OUTLET_ID).status_code == 302
    assert [c.account_id for c in ig_channels() if c.brand_id == world.brand.id][-2:] == [
        BIG_ID,
        OUTLET_ID,
    ]
    assert by_account(OUTLET_ID).username == "sim_outlet"


# --- refusals change nothing ----------------------------------------------------------------------


def assert_refused(response, words: str, before: dict, states_too: bool = True):
    assert response.status_code in (400, 401), response.status_code
    html = text_of(response)
    assert words in html, html[:800]
    after = snapshot()
    if states_too:
        assert changed(before, after) == {}
    else:
        assert changed(without_states(before), without_states(after)) == {}


def test_a_state_that_was_never_issued_is_refused(client, world, login_sim):
    signed_in(client, world.admin)
    location = consent(login_sim, start(client))
    before = snapshot()
    response = come_back(client, location, state="forged-state")
    assert_refused(response, "was not started here", before)


def test_a_state_from_another_session_is_refused(app, client, world, login_sim):
    signed_in(client, world.admin)
    location = consent(login_sim, start(client))
    other = signed_in(app.test_client(), world.admin)  # the same admin, another browser
    before = snapshot()
    assert_refused(come_back(other, location), "started in another browser session", before)
    assert by_account(BIG_ID) is None


def test_an_expired_state_is_refused(client, world, login_sim):
    signed_in(client, world.admin)
    location = consent(login_sim, start(client))
    db.session.execute(update(OAuthState).values(expires_at=utcnow() - timedelta(seconds=1)))
    db.session.commit()
    before = snapshot()
    assert_refused(come_back(client, location), "took more than 10 minutes", before)


def test_a_state_is_used_once(client, world, login_sim):
    signed_in(client, world.admin)
    location = consent(login_sim, start(client))
    assert come_back(client, location).status_code == 302
    before = snapshot()
    assert_refused(come_back(client, location), "was already used", before)


def test_a_code_used_twice_is_refused(client, world, login_sim):
    signed_in(client, world.admin)
    first = consent(login_sim, start(client))
    assert come_back(client, first).status_code == 302
    code = parse_qs(urlsplit(first).query)["code"][0]
    second = consent(login_sim, start(client))
    before = snapshot()
    response = come_back(client, second, code=code)
    assert_refused(response, "This authorization code was already used", before)


def test_instagrams_refusal_of_a_used_code_is_shown_in_words(client, world, login_sim):
    signed_in(client, world.admin)
    location = consent(login_sim, start(client))
    code = parse_qs(urlsplit(location).query)["code"][0]
    spent = httpx.post(
        f"{login_sim.root_url}/oauth/access_token",
        data={
            "client_id": "555000111222333",
            "client_secret": "x",
            "grant_type": "authorization_code",
            "redirect_uri": f"{PUBLIC}/oauth/instagram/callback",
            "code": code,
        },
    )
    assert spent.status_code == 200
    before = snapshot()
    response = come_back(client, location)
    assert_refused(response, "This authorization code has been used", before, states_too=False)
    assert by_account(BIG_ID) is None


def test_a_denial_is_shown_in_words_and_changes_nothing(client, world, login_sim):
    signed_in(client, world.admin)
    location = consent(login_sim, start(client), decision="deny")
    assert "error=access_denied" in location
    before = snapshot()
    response = come_back(client, location)
    assert_refused(response, "permission was not given", before)
    assert "The user denied your request." in text_of(response)


def test_a_signed_out_callback_asks_to_sign_in_and_changes_nothing(app, client, world, login_sim):
    signed_in(client, world.admin)
    location = consent(login_sim, start(client))
    before = snapshot()
    response = come_back(app.test_client(), location)
    assert_refused(response, "Sign in, then connect it again", before)


def test_an_account_another_brand_holds_is_refused(client, world, login_sim):
    other = World("other")
    other.channel.account_id = BIG_ID
    db.session.commit()
    signed_in(client, world.admin)
    location = consent(login_sim, start(client))
    before = snapshot()
    response = come_back(client, location)
    assert_refused(response, "@sim_business is connected to another brand", before, False)
    assert by_account(BIG_ID).brand_id == other.brand.id
    assert login_sim.requests("subscribed_apps") == []


def test_a_subscription_that_does_not_succeed_is_refused(client, world, login_sim):
    steer(login_sim, subscribe_succeeds=False)
    signed_in(client, world.admin)
    location = consent(login_sim, start(client))
    before = snapshot()
    assert_refused(come_back(client, location), "did not confirm it", before, False)


def test_the_simulator_refuses_unknown_subscribed_fields(login_sim):
    response = httpx.post(
        f"{login_sim.base_url}/{BIG_ID}/subscribed_apps",
        params={"subscribed_fields": "messages,message_everything", "access_token": "t"},
    )
    assert response.status_code == 400
    error = response.json()["error"]
    assert error["code"] == 100 and '"message_everything"' in error["message"]


def test_a_refused_token_exchange_is_shown_in_words(client, world, login_sim):
    httpx.post(
        f"{login_sim.root_url}/_sim/oauth/errors",
        json={"endpoint": "exchange_token", "code": 190, "message": "Invalid OAuth access token"},
    )
    signed_in(client, world.admin)
    location = consent(login_sim, start(client))
    before = snapshot()
    response = come_back(client, location)
    assert_refused(response, "Getting a long-lived token", before, False)
    assert "Invalid OAuth access token" in text_of(response)


# --- reconnecting and disconnecting -------------------------------------------------------------


def test_reconnecting_a_channel_that_needs_it_makes_it_active(
    client, world, login_sim, monkeypatch
):
    signed_in(client, world.admin)
    connect(client, login_sim)
    channel = by_account(BIG_ID)
    old_token = channel.access_token
    lifecycle.mark_needs_reconnect(channel, "code 190")
    db.session.commit()
    html = text_of(client.get("/settings/channels"))
    assert "Needs reconnect" in html and ">Reconnect</a>" in html
    seen = []
    handlers = hooks._handlers.get(hooks.CHANNEL_RECONNECTED, [])
    monkeypatch.setitem(
        hooks._handlers,
        hooks.CHANNEL_RECONNECTED,
        [*handlers, lambda channel, **_: seen.append(channel.id)],
    )
    assert connect(client, login_sim).status_code == 302
    channel = by_account(BIG_ID)
    assert channel.status is ChannelStatus.ACTIVE and channel.access_token != old_token
    assert seen == [channel.id]
    assert len(ig_channels()) == 2  # the World's own and this one: no second row


def test_disconnecting_unsubscribes_forgets_the_token_and_keeps_the_history(
    client, world, login_sim
):
    signed_in(client, world.admin)
    connect(client, login_sim)
    channel = by_account(BIG_ID)
    message = receive(channel, "5550001", "Hi from history")
    db.session.commit()
    login_sim.clear()
    response = post(client, f"/settings/channels/{channel.id}/disconnect")
    assert response.status_code == 303
    (call,) = login_sim.requests("subscribed_apps")
    assert call["method"] == "DELETE" and call["path"] == f"/v25.0/{BIG_ID}/subscribed_apps"
    channel = by_account(BIG_ID)
    assert channel.status is ChannelStatus.DISCONNECTED
    assert channel.access_token_encrypted is None and channel.token_expires_at is None
    assert db.session.get(Message, message.id) is not None
    assert BIG_ID not in steer(login_sim)["subscriptions"]
    html = text_of(client.get("/settings/channels"))
    assert "Disconnected @sim_business" in html and "Disconnected" in html


def test_a_failed_unsubscribe_still_disconnects(client, world, login_sim):
    signed_in(client, world.admin)
    connect(client, login_sim)
    channel = by_account(BIG_ID)
    httpx.post(
        f"{login_sim.root_url}/_sim/oauth/errors", json={"endpoint": "subscribed_apps", "code": 190}
    )
    assert post(client, f"/settings/channels/{channel.id}/disconnect").status_code == 303
    assert by_account(BIG_ID).status is ChannelStatus.DISCONNECTED


def test_another_brands_channel_cannot_be_disconnected(client, world, login_sim):
    other = World("other")
    signed_in(client, world.admin)
    before = snapshot()
    assert post(client, f"/settings/channels/{other.channel.id}/disconnect").status_code == 404
    assert changed(before, snapshot()) == {}


def test_the_page_shows_backfill_progress(client, world):
    row = Backfill(channel_id=world.channel.id, status="running", conversations_done=3)
    db.session.add(row)
    row.messages_stored = 41
    db.session.commit()
    html = text_of(signed_in(client, world.admin).get("/settings/channels"))
    assert "History: being read, 3 conversations and 41 messages so far" in html
    assert "Connect an Instagram account" in html


# --- GET /api/v1/channels -------------------------------------------------------------------------


def test_the_channels_api_lists_the_brands_channels(client, world):
    other = World("other")
    world.channel.username = "acme_shop"
    world.channel.account_id = BIG_ID
    world.channel.token_expires_at = utcnow() + timedelta(days=30)
    world.channel.connected_at = utcnow() - timedelta(days=1)
    db.session.commit()
    api = Client(client, token_for(world.brand, Role.MANAGER))
    body = api.get("/channels").get_json()
    (item,) = body["items"]
    assert body["next_cursor"] is None
    keys = "id kind account_id username name status token_expires_at connected_at last_event_at"
    assert set(item) == set(keys.split())
    assert item["id"] == world.channel.id and item["account_id"] == BIG_ID
    assert (item["kind"], item["status"], item["username"]) == ("instagram", "active", "acme_shop")
    assert item["last_event_at"] is not None and item["token_expires_at"] is not None
    assert other.channel.id not in [i["id"] for i in body["items"]]
    assert "token" not in repr({k: v for k, v in item.items() if k != "token_expires_at"})


def test_the_channels_api_needs_a_manager_token(client, world):
    response = Client(client, token_for(world.brand, Role.AGENT)).get("/channels")
    assert response.status_code == 403
    assert Client(client, token_for(world.brand, Role.ADMIN)).get("/channels").status_code == 200


def test_without_an_app_id_the_connect_button_says_so_and_changes_nothing(
    app, client, world, monkeypatch
):
    monkeypatch.setitem(app.config, "INSTAGRAM_APP_ID", "")
    signed_in(client, world.admin)
    before = snapshot()
    response = client.get("/settings/channels/instagram/connect", follow_redirects=True)
    assert "Instagram Login is not set up on this server" in text_of(response)
    assert changed(before, snapshot()) == {}


def test_the_simulator_refreshes_tokens_and_records_each_call(login_sim):
    answers = [
        httpx.get(
            f"{login_sim.root_url}/refresh_access_token",
            params={"grant_type": "ig_refresh_token", "access_token": "any-old-token"},
        ).json()
        for _ in range(2)
    ]
    assert answers[0]["access_token"] != answers[1]["access_token"]
    assert answers[0]["expires_in"] == 5184000 and answers[0]["token_type"] == "bearer"
    calls = login_sim.requests("refresh_token")
    assert len(calls) == 2 and calls[0]["args"]["access_token"] == "<redacted>"
    httpx.post(
        f"{login_sim.root_url}/_sim/oauth/errors", json={"endpoint": "refresh_token", "code": 190}
    )
    refused = httpx.get(
        f"{login_sim.root_url}/refresh_access_token",
        params={"grant_type": "ig_refresh_token", "access_token": "t"},
    )
    assert refused.status_code == 401 and refused.json()["error"]["code"] == 190


def test_the_simulators_me_answers_user_id_as_a_string(login_sim):
    me = httpx.get(
        f"{login_sim.base_url}/me",
        params={"fields": "user_id,username,account_type"},
        headers={"Authorization": "Bearer t"},
    ).json()
    assert me["user_id"] == BIG_ID and me["username"] == "sim_business"
    assert me["account_type"] == "BUSINESS" and me["id"] != BIG_ID

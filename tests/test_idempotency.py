"""One composition, one message: the `Idempotency-Key` of the API's writes and the console's
compose token, one after the other and at once; and a reply that someone else's newer reply
makes stale answers 409 `newer_reply` until it is confirmed."""

from __future__ import annotations

import re
import threading
from datetime import timedelta

import httpx
import pytest
from sqlalchemy import func, select

from helpdesk.accounts.models import Role
from helpdesk.delivery import service as delivery
from helpdesk.dm.models import Direction, Message, Reaction
from helpdesk.extensions import db
from helpdesk.idempotency.models import IdempotencyKey
from helpdesk.idempotency.service import KEY_LIFETIME
from helpdesk.inbox import service as inbox
from helpdesk.tickets.models import Note
from helpdesk.types import utcnow
from tests.conftest import drain_broker, serving, table_counts
from tests.factories import PASSWORD
from tests.helpers.api import API, error_of, make_desk, token_for
from tests.helpers.console import csrf_token, post, signed_in
from tests.helpers.workers import TOKEN, purge_broker
from tests.helpers.world import World


def outbound_count() -> int:
    db.session.expire_all()
    return db.session.scalar(
        select(func.count()).select_from(Message).where(Message.direction == Direction.OUTBOUND)
    )


def deliver_what_was_queued(app) -> None:
    """Play the worker's part for every delivery task in the real broker."""
    for name, args in drain_broker(app):
        if name.endswith("deliver_message"):
            delivery.deliver(args[0])


@pytest.fixture
def desk(app):
    desk = make_desk("acme")
    desk.channel.access_token = TOKEN
    db.session.commit()
    purge_broker(app)
    drain_broker(app)
    return desk


@pytest.fixture
def token(desk) -> str:
    return token_for(desk.brand, Role.AGENT)


def send(client, token: str, conversation_id: int, key: str | None = None, **body):
    headers = {"Authorization": f"Bearer {token}"}
    if key is not None:
        headers["Idempotency-Key"] = key
    return client.post(
        f"{API}/conversations/{conversation_id}/messages", json=body, headers=headers
    )


# The API ------------------------------------------------------------------------------------------


def test_the_same_key_twice_makes_one_message_and_one_send(app, client, sim, desk, token):
    first = send(client, token, desk.conversation.id, "order-42-reply", text="It ships today")
    again = send(client, token, desk.conversation.id, "order-42-reply", text="It ships today")
    assert first.status_code == again.status_code == 202
    assert again.get_json() == first.get_json()
    assert again.headers.get("Idempotent-Replayed") == "true"
    assert outbound_count() == 1

    deliver_what_was_queued(app)
    assert [s["json"]["message"] for s in sim.sends()] == [{"text": "It ships today"}]


def test_json_spacing_and_key_order_are_the_same_request(client, desk, token):
    path = f"{API}/conversations/{desk.conversation.id}/messages"
    headers = {"Authorization": f"Bearer {token}", "Idempotency-Key": "k1"}
    one = client.post(path, data='{"text": "Hi", "reply_to": null}', headers=headers,
                      content_type="application/json")  # fmt: skip
    two = client.post(path, data='{ "reply_to":null,"text":"Hi" }', headers=headers,
                      content_type="application/json")  # fmt: skip
    assert one.status_code == two.status_code == 202
    assert one.get_json()["id"] == two.get_json()["id"]
    assert outbound_count() == 1


def test_a_key_reused_with_another_body_is_422_and_changes_nothing(client, desk, token):
    send(client, token, desk.conversation.id, "same-key", text="First answer")
    before = table_counts()
    response = send(client, token, desk.conversation.id, "same-key", text="Another answer")
    assert response.status_code == 422
    assert error_of(response)["code"] == "idempotency_key_reused"
    assert table_counts() == before


def test_without_a_key_each_post_is_a_new_message(client, desk, token):
    send(client, token, desk.conversation.id, text="One")
    send(client, token, desk.conversation.id, text="One")
    assert outbound_count() == 2


def test_keys_belong_to_their_token(client, desk, token):
    other_token = token_for(desk.brand, Role.ADMIN)
    a = send(client, token, desk.conversation.id, "shared-name", text="Hello")
    b = send(client, other_token, desk.conversation.id, "shared-name", text="Hello")
    assert a.get_json()["id"] != b.get_json()["id"]
    assert outbound_count() == 2


@pytest.mark.parametrize("key", ["", "x" * 256, "tab\there", "é-non-ascii"])
def test_a_malformed_key_is_refused_and_changes_nothing(client, desk, token, key):
    before = table_counts()
    response = send(client, token, desk.conversation.id, key, text="Hello")
    assert response.status_code == 422
    assert "Idempotency-Key" in error_of(response)["message"]
    assert table_counts() == before


def test_a_key_of_255_printable_characters_is_taken(client, desk, token):
    key = ("~ !" * 85)[:255]
    assert send(client, token, desk.conversation.id, key, text="Hello").status_code == 202


def test_a_refused_first_request_keeps_nothing_so_a_retry_can_succeed(client, desk, token):
    response = send(client, token, desk.conversation.id, "retry-me", text="/")
    assert response.status_code == 422
    assert db.session.scalar(select(func.count()).select_from(IdempotencyKey)) == 0


def test_a_key_older_than_a_day_is_forgotten(client, desk, token):
    first = send(client, token, desk.conversation.id, "daily", text="Hello").get_json()
    row = db.session.scalar(select(IdempotencyKey))
    row.created_at = utcnow() - KEY_LIFETIME - timedelta(minutes=1)
    db.session.commit()
    again = send(client, token, desk.conversation.id, "daily", text="Hello").get_json()
    assert again["id"] != first["id"]


def test_reactions_notes_and_inbound_replay_their_first_answer(client, desk, token):
    headers = {"Authorization": f"Bearer {token}", "Idempotency-Key": "react-1"}
    path = f"{API}/messages/{desk.message.id}/reactions"
    one = client.post(path, json={"emoji": "❤️"}, headers=headers)
    two = client.post(path, json={"emoji": "❤️"}, headers=headers)
    assert one.status_code == two.status_code == 200 and one.get_json() == two.get_json()
    assert db.session.scalar(select(func.count()).select_from(Reaction)) == 1

    headers["Idempotency-Key"] = "note-1"
    path = f"{API}/tickets/{desk.ticket.id}/notes"
    one = client.post(path, json={"body": "Called the courier"}, headers=headers)
    two = client.post(path, json={"body": "Called the courier"}, headers=headers)
    assert one.status_code == two.status_code == 201 and one.get_json() == two.get_json()
    assert db.session.scalar(select(func.count()).select_from(Note)) == 1

    headers["Idempotency-Key"] = "inbound-1"
    body = {
        "channel_id": desk.api_channel.id,
        "sender": {"id": "crm-77", "name": "Ann"},
        "mid": "crm-message-1",
        "timestamp": utcnow().isoformat(),
        "text": "Hello from the shop's own chat",
    }
    one = client.post(f"{API}/inbound", json=body, headers=headers)
    two = client.post(f"{API}/inbound", json=body, headers=headers)
    assert one.status_code == two.status_code == 201
    assert one.get_json() == two.get_json()
    assert (
        db.session.scalar(
            select(func.count()).select_from(Message).where(Message.mid == "crm-message-1")
        )
        == 1
    )


def _at_once(count: int, work) -> list:
    barrier = threading.Barrier(count)
    results: list = [None] * count

    def run(index: int) -> None:
        barrier.wait()
        results[index] = work()

    threads = [threading.Thread(target=run, args=(i,)) for i in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    return results


@pytest.fixture
def postgres_only(is_postgres):
    if not is_postgres:
        pytest.skip("two concurrent writers need PostgreSQL (SQLite has one writer at a time)")


def test_concurrent_posts_with_one_key_make_one_message_and_one_send(
    app, postgres_only, sim, desk, token
):
    with serving(app) as base:
        url = f"{base}{API}/conversations/{desk.conversation.id}/messages"
        headers = {"Authorization": f"Bearer {token}", "Idempotency-Key": "burst-1"}

        def post_it():
            with httpx.Client(timeout=30) as http:
                return http.post(url, json={"text": "Only once"}, headers=headers)

        responses = _at_once(4, post_it)
    assert [r.status_code for r in responses] == [202] * 4
    assert len({r.json()["id"] for r in responses}) == 1
    assert outbound_count() == 1
    deliver_what_was_queued(app)
    assert len(sim.sends()) == 1


# The console's compose token ----------------------------------------------------------------------


@pytest.fixture
def world(app):
    world = World()
    world.channel.access_token = TOKEN
    db.session.commit()
    purge_broker(app)
    drain_broker(app)
    return world


def compose_form(client, conversation_id: int) -> dict[str, str]:
    page = client.get(f"/conversations/{conversation_id}").get_data(as_text=True)
    token = re.search(r'name="compose_token" value="([^"]+)"', page).group(1)
    seen = re.search(r'name="last_seen_message_id" id="last-seen" value="(\d*)"', page).group(1)
    return {"compose_token": token, "last_seen_message_id": seen}


def test_a_composition_submitted_twice_sends_one_message(app, client, sim, world):
    agent = signed_in(client, world.agent)
    form = compose_form(agent, world.conversation.id) | {"text": "On its way!"}
    path = f"/conversations/{world.conversation.id}/reply"
    first = post(agent, path, form)
    second = post(agent, path, form, follow_redirects=True)
    assert first.status_code == 302
    assert "already sent" in second.get_data(as_text=True)
    assert outbound_count() == 1
    deliver_what_was_queued(app)
    assert [s["json"]["message"] for s in sim.sends()] == [{"text": "On its way!"}]


def test_each_page_load_gives_a_new_compose_token(client, world):
    agent = signed_in(client, world.agent)
    one = compose_form(agent, world.conversation.id)["compose_token"]
    two = compose_form(agent, world.conversation.id)["compose_token"]
    assert one != two


def test_concurrent_submissions_of_one_composition_send_once(app, postgres_only, sim, world):
    with serving(app) as base:
        with httpx.Client(base_url=base, timeout=30) as http:
            page = http.get("/login").text
            csrf = re.search(r'name="csrf_token"[^>]*value="([^"]+)"', page).group(1)
            http.post("/login", data={"email": world.agent.email, "password": PASSWORD,
                                      "csrf_token": csrf})  # fmt: skip
            page = http.get(f"/conversations/{world.conversation.id}").text
            cookies = dict(http.cookies)
        form = {
            "csrf_token": re.search(r'name="csrf-token" content="([^"]+)"', page).group(1),
            "compose_token": re.search(r'name="compose_token" value="([^"]+)"', page).group(1),
            "text": "Refund approved",
        }

        def submit():
            with httpx.Client(base_url=base, cookies=cookies, timeout=30) as http:
                return http.post(f"/conversations/{world.conversation.id}/reply", data=form)

        responses = _at_once(3, submit)
    assert [r.status_code for r in responses] == [302] * 3
    assert outbound_count() == 1
    deliver_what_was_queued(app)
    assert len(sim.sends()) == 1


# Someone else replied first -----------------------------------------------------------------------


def test_api_reply_over_a_newer_colleague_reply_is_409_until_confirmed(client, desk, token):
    seen = desk.message.id
    colleague = inbox.reply(desk.conversation, desk.agent, text="I'm on it")
    db.session.commit()
    before = table_counts()
    response = send(client, token, desk.conversation.id, text="Hello!", last_seen_message_id=seen)
    assert response.status_code == 409
    assert error_of(response)["code"] == "newer_reply"
    assert table_counts() == before

    up_to_date = send(client, token, desk.conversation.id, text="Adding a detail",
                      last_seen_message_id=colleague.id)  # fmt: skip
    assert up_to_date.status_code == 202
    confirmed = send(client, token, desk.conversation.id, text="Hello!",
                     last_seen_message_id=seen, confirm=True)  # fmt: skip
    assert confirmed.status_code == 202


def test_console_asks_before_sending_over_a_colleagues_reply(client, world):
    agent = signed_in(client, world.agent)
    form = compose_form(agent, world.conversation.id) | {"text": "Let me check <that>"}
    inbox.reply(world.conversation, world.manager, text="Refund sent, sorry for the trouble")
    db.session.commit()
    path = f"/conversations/{world.conversation.id}/reply"
    refused = post(agent, path, form)
    assert refused.status_code == 409
    page = refused.get_data(as_text=True)
    assert "Acme Manager replied after you opened this conversation" in page
    assert "Let me check &lt;that&gt;</textarea>" in page
    assert "Send mine anyway" in page
    assert outbound_count() == 1

    confirm = compose_form(agent, world.conversation.id)
    form |= {"compose_token": confirm["compose_token"], "confirm": "1"}
    assert post(agent, path, form).status_code == 302
    assert outbound_count() == 2


def test_an_echo_from_the_brands_phone_counts_as_a_newer_reply(client, desk, token):
    from helpdesk.dm import service as dm

    seen = desk.message.id
    dm.record_echo(desk.channel, "acme-known", "echo-mid-1", utcnow(), text="Sent from my phone")
    db.session.commit()
    response = send(client, token, desk.conversation.id, text="Hi", last_seen_message_id=seen)
    assert response.status_code == 409
    assert "brand's Instagram app" in error_of(response)["message"]


def test_the_agents_own_earlier_reply_does_not_block_them(client, world):
    agent = signed_in(client, world.agent)
    form = compose_form(agent, world.conversation.id)
    inbox.reply(world.conversation, world.agent, text="First part")
    db.session.commit()
    response = post(agent, f"/conversations/{world.conversation.id}/reply",
                    form | {"text": "Second part"})  # fmt: skip
    assert response.status_code == 302
    assert csrf_token  # the helpers above sign in through the real form

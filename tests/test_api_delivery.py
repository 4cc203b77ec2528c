"""A reply posted to the REST API, carried by a real worker to the Graph API simulator."""

from __future__ import annotations

from typing import Any

import pytest

from helpdesk.accounts.models import Role
from helpdesk.extensions import db
from tests.conftest import fresh, table_counts, wait_for
from tests.helpers.api import API, error_of, make_desk, token_for, write
from tests.helpers.workers import TOKEN, WORKER, purge_broker

pytestmark = pytest.mark.worker


@pytest.fixture
def worker_env(sim_worker_env: dict[str, str]) -> dict[str, str]:
    """The worker sends to `sim`."""
    return sim_worker_env


@pytest.fixture
def desk(app):
    desk = make_desk("acme")
    desk.channel.access_token = TOKEN
    db.session.commit()
    purge_broker(app)
    return desk


@pytest.fixture
def headers(desk) -> dict[str, str]:
    return {"Authorization": f"Bearer {token_for(desk.brand, Role.AGENT)}"}


def reply(client, headers, conversation_id: int, **body: Any):
    path = f"{API}/conversations/{conversation_id}/messages"
    return client.post(path, json=body, headers=headers)


def message_via_api(client, headers, conversation_id: int, message_id: int) -> dict:
    path = f"{API}/conversations/{conversation_id}/messages?limit=50"
    items = client.get(path, headers=headers).get_json()["items"]
    return next(item for item in items if item["id"] == message_id)


def settled(client, headers, desk, message_id: int, timeout: float = 60) -> dict | None:
    """The message as the API shows it once delivery is over (sent or failed)."""

    def done() -> dict | None:
        db.session.rollback()  # no transaction of ours may hold SQLite's lock meanwhile
        item = message_via_api(client, headers, desk.conversation.id, message_id)
        return item if item["status"] in ("sent", "failed") else None

    return wait_for(lambda: fresh(done), timeout=timeout)


def test_an_api_reply_reaches_the_simulator_once_with_the_right_body(
    client, sim, desk, headers, celery_process
):
    celery_process(*WORKER)
    response = reply(
        client, headers, desk.conversation.id, text="Your parcel ships today 📦",
        reply_to=desk.message.id,
    )  # fmt: skip
    assert response.status_code == 202, response.get_json()
    queued = response.get_json()

    item = settled(client, headers, desk, queued["id"])
    assert item is not None, "the worker did not deliver the reply"
    sends = sim.sends()
    assert len(sends) == 1
    assert sends[0]["path"] == f"/v25.0/{desk.channel.account_id}/messages"
    assert sends[0]["json"] == {
        "recipient": {"id": "acme-known"},
        "message": {"text": "Your parcel ships today 📦"},
        "reply_to": {"mid": "acme-m1"},
    }
    assert item["status"] == "sent" and item["error"] is None
    assert item["mid"] == sends[0]["response"]["message_id"]


def test_outside_the_window_the_api_refuses_and_nothing_reaches_the_simulator(
    client, sim, desk, headers, celery_process
):
    old = write(desk.channel, "old-1", "acme-old", minutes_ago=8 * 24 * 60)
    db.session.commit()
    celery_process(*WORKER)
    before = table_counts()
    response = reply(client, headers, old.conversation_id, text="Sorry for the wait")
    assert response.status_code == 409
    assert error_of(response)["code"] == "reply_window_closed"
    assert table_counts() == before
    # A reply that does go out afterwards is the only send: the refused one was never queued.
    sent = reply(client, headers, desk.conversation.id, text="Still here").get_json()
    assert settled(client, headers, desk, sent["id"]) is not None
    assert [send["json"]["message"] for send in sim.sends()] == [{"text": "Still here"}]


def test_a_retryable_error_is_retried_by_the_worker_and_sent_once(
    client, sim, desk, headers, celery_process
):
    sim.fail_next(2)  # Meta's "temporary issue": retry after a backoff
    celery_process(*WORKER)
    queued = reply(client, headers, desk.conversation.id, text="Retry me").get_json()

    item = settled(client, headers, desk, queued["id"])
    assert item is not None and item["status"] == "sent", item
    first, second = sim.sends()
    assert first["status"] >= 400 and second["status"] == 200
    assert (
        first["json"]
        == second["json"]
        == {
            "recipient": {"id": "acme-known"},
            "message": {"text": "Retry me"},
        }
    )
    assert item["mid"] == second["response"]["message_id"]


def test_a_permanent_error_surfaces_its_reason_and_is_not_retried(
    client, sim, desk, headers, celery_process
):
    sim.fail_next(551)  # "This person isn't available right now"
    celery_process(*WORKER)
    queued = reply(client, headers, desk.conversation.id, text="Hello?").get_json()

    item = settled(client, headers, desk, queued["id"])
    assert item is not None and item["status"] == "failed", item
    assert "This person isn't available right now" in item["error"]
    assert len(sim.sends()) == 1

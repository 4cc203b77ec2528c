"""Outgoing webhooks on the settings page (/settings/webhooks): the signing secret shown once,
internal targets and empty event lists refused next to their field with nothing saved, the latest
deliveries of each subscription, and "Send test" through the real delivery path to a real HTTP
receiver on 127.0.0.1 (the allow-private setting is on for those tests only)."""

from __future__ import annotations

import hashlib
import hmac
import html
import json
import re
import threading
from collections.abc import Iterator

import pytest
from sqlalchemy import select
from werkzeug.wrappers import Request, Response

from helpdesk import queueing
from helpdesk.accounts.models import Role
from helpdesk.accounts.tokens import create_token
from helpdesk.audit.models import AuditEvent
from helpdesk.extensions import db
from helpdesk.outgoing import service as outgoing
from helpdesk.outgoing.models import WebhookDelivery, WebhookSubscription
from helpdesk.web.settings import webhooks as webhooks_page
from tests.conftest import drain_broker, serving, table_counts
from tests.helpers.api import Client
from tests.helpers.console import post, signed_in
from tests.helpers.world import World

PAGE = "/settings/webhooks"
PUBLIC = "https://93.184.216.34/hooks"  # a global address: accepted without the setting
SECRET_RE = re.compile(r'value="([^"]+)"[^>]*class="secret"')


class Receiver:
    """A real HTTP server on 127.0.0.1 recording each request, answering as told."""

    def __init__(self) -> None:
        self.requests: list[dict] = []
        self.answers: list[int] = []
        self.lock = threading.Lock()
        self.url = ""

    def __call__(self, environ, start_response):
        request = Request(environ)
        with self.lock:
            self.requests.append({"headers": dict(request.headers), "body": request.get_data()})
            status = self.answers.pop(0) if self.answers else 200
        return Response("ok", status=status)(environ, start_response)


@pytest.fixture
def world() -> World:
    return World()


@pytest.fixture
def allow_private(app, monkeypatch) -> None:
    monkeypatch.setitem(app.config, "OUTGOING_WEBHOOKS_ALLOW_PRIVATE", True)


@pytest.fixture
def receiver(allow_private) -> Iterator[Receiver]:
    handler = Receiver()
    with serving(handler) as base_url:
        handler.url = f"{base_url}/hook"
        yield handler


@pytest.fixture
def wakes(monkeypatch) -> list[int]:
    """Each wake-up of the delivery worker the page asks for (after its commit)."""
    asked: list[int] = []

    def wake() -> bool:
        asked.append(len(deliveries()))  # the delivery is committed by the time it is asked
        return True

    monkeypatch.setattr(webhooks_page, "wake_outgoing", wake)
    return asked


def shown_secret(page: str) -> str | None:
    match = SECRET_RE.search(page)
    return html.unescape(match.group(1)) if match else None


def subscriptions() -> list[WebhookSubscription]:
    db.session.expire_all()
    return list(db.session.scalars(select(WebhookSubscription).order_by(WebhookSubscription.id)))


def deliveries() -> list[WebhookDelivery]:
    db.session.expire_all()
    return list(db.session.scalars(select(WebhookDelivery).order_by(WebhookDelivery.id)))


def audit_rows() -> list[AuditEvent]:
    db.session.expire_all()
    query = select(AuditEvent).where(AuditEvent.target_type == "webhook").order_by(AuditEvent.id)
    return list(db.session.scalars(query))


def add_on_page(client, url: str, events: list[str]) -> str:
    response = post(client, PAGE, {"url": url, "events": events})
    assert response.status_code == 303, response.get_data(as_text=True)[:800]
    secret = shown_secret(client.get(PAGE).get_data(as_text=True))
    assert secret and secret.startswith("whsec_")
    return secret


# Making and removing ----------------------------------------------------------------------------


def test_a_webhook_made_on_the_page_shows_its_secret_once(client, world):
    signed_in(client, world.admin)
    response = post(client, PAGE, {"url": PUBLIC, "events": ["ticket.created", "sla.breached"]})
    assert response.status_code == 303 and "whsec_" not in response.headers["Location"]

    first = client.get(PAGE).get_data(as_text=True)
    secret = shown_secret(first)
    assert secret and "it will not be shown again" in first
    again = client.get(PAGE).get_data(as_text=True)
    assert shown_secret(again) is None and secret not in again
    assert PUBLIC in again and "Nothing sent yet." in again

    (subscription,) = subscriptions()
    assert subscription.brand_id == world.brand.id
    assert subscription.events == ["ticket.created", "sla.breached"]
    assert secret not in subscription.secret_encrypted


@pytest.mark.parametrize(
    ("url", "resolves_to"),
    [
        ("https://hooks.example.test/in", "10.0.0.1"),
        ("http://127.0.0.1:8080/hook", None),
        ("http://localhost/hook", None),
        ("http://[::1]/hook", None),
    ],
)
def test_an_internal_url_is_refused_next_to_the_url_field(client, world, dns, url, resolves_to):
    if resolves_to:
        dns["hooks.example.test"] = [resolves_to]
    signed_in(client, world.admin)
    before = table_counts()
    response = post(client, PAGE, {"url": url, "events": ["ticket.created"]})
    assert response.status_code == 422
    page = response.get_data(as_text=True)
    assert 'id="url-error"' in page
    assert "inside the network" in page or "may not point at this server" in page
    assert 'value="ticket.created" id="event-2" checked' in page  # the form keeps the choice
    assert table_counts() == before


@pytest.mark.parametrize(
    ("data", "messages"),
    [
        ({"url": PUBLIC}, {"events": "Choose at least one event."}),
        ({"url": PUBLIC, "events": ["ticket.exploded"]}, {"events": "Unknown events"}),
        ({"url": "", "events": ["ticket.created"]}, {"url": "A webhook needs a URL."}),
        ({"url": "ftp://93.184.216.34/x"}, {"url": "must start with http", "events": "Choose"}),
    ],
)
def test_bad_input_is_refused_next_to_its_field(client, world, data, messages):
    signed_in(client, world.admin)
    before = table_counts()
    response = post(client, PAGE, data)
    assert response.status_code == 422
    page = response.get_data(as_text=True)
    for field, message in messages.items():
        assert f'id="{field}-error"' in page and message in page
    assert table_counts() == before


def test_deleting_a_webhook_stops_its_deliveries(client, world):
    signed_in(client, world.admin)
    add_on_page(client, PUBLIC, ["ticket.created"])
    (subscription,) = subscriptions()
    outgoing.emit(world.brand.id, "ticket.created", {"ticket_id": 1})
    db.session.commit()

    response = post(client, f"{PAGE}/{subscription.id}/delete")
    assert response.status_code == 303
    assert subscriptions() == [] and deliveries() == []
    assert "No webhooks yet." in client.get(PAGE).get_data(as_text=True)


# Sending a test ---------------------------------------------------------------------------------


def test_send_test_reaches_the_receiver_signed_and_the_page_shows_it_delivered(
    client, world, receiver, wakes
):
    signed_in(client, world.admin)
    secret = add_on_page(client, receiver.url, ["ticket.created"])
    add_on_page(client, PUBLIC, ["ticket.created"])  # another subscription: not tested
    tested, other = subscriptions()

    response = post(client, f"{PAGE}/{tested.id}/test")
    assert response.status_code == 303
    assert response.headers["Location"].endswith(f"{PAGE}#webhook-{tested.id}")
    (delivery,) = deliveries()
    assert (delivery.subscription_id, delivery.event, delivery.status) == (
        tested.id,
        "ping",
        "pending",
    )
    assert delivery.payload["test"] is True
    assert wakes == [1]  # the worker was asked once the delivery was committed
    assert "Waiting to be sent" in client.get(PAGE).get_data(as_text=True)

    assert outgoing.deliver_due() == 1

    (request,) = receiver.requests
    body, headers = request["body"], request["headers"]
    expected = "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()
    assert headers["X-Helpdesk-Signature"] == expected
    assert headers["X-Helpdesk-Event"] == "ping"
    assert headers["X-Helpdesk-Delivery"] == str(delivery.id)
    sent = json.loads(body)
    assert sent["event"] == "ping" and sent["data"]["test"] is True
    assert sent["data"]["subscription_id"] == tested.id

    page = client.get(PAGE).get_data(as_text=True)
    section = page.split(f'id="webhook-{tested.id}"')[1].split(f'id="webhook-{other.id}"')[0]
    assert "Delivered" in section and "HTTP 200" in section
    assert "<code>ping</code>" in section


def test_a_failing_receiver_shows_its_status_and_the_retry(client, world, receiver, wakes):
    receiver.answers = [503]
    signed_in(client, world.admin)
    add_on_page(client, receiver.url, ["ticket.created"])
    (subscription,) = subscriptions()
    post(client, f"{PAGE}/{subscription.id}/test")

    assert outgoing.deliver_due() == 1

    (delivery,) = deliveries()
    assert (delivery.status, delivery.attempts, delivery.last_status_code) == ("pending", 1, 503)
    page = client.get(PAGE).get_data(as_text=True)
    assert "Failed, will retry" in page and "HTTP 503" in page


def test_send_test_asks_the_delivery_worker_through_the_broker(app, client, world):
    subscription, _secret = outgoing.create_subscription(
        world.brand, None, PUBLIC, ["ticket.created"]
    )
    db.session.commit()
    queueing.reset()
    queueing.kicked(queueing.DELIVER_OUTGOING_WEBHOOKS)  # no wake-up left over from a test before
    drain_broker(app)
    signed_in(client, world.admin)

    assert post(client, f"{PAGE}/{subscription.id}/test").status_code == 303

    assert (queueing.DELIVER_OUTGOING_WEBHOOKS, []) in drain_broker(app)


# Who may ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("role", ["agent", "manager"])
def test_the_page_and_its_forms_are_for_admins(client, world, role, wakes):
    subscription, _secret = outgoing.create_subscription(
        world.brand, None, PUBLIC, ["ticket.created"]
    )
    db.session.commit()
    signed_in(client, getattr(world, role))
    before = table_counts()
    assert client.get(PAGE).status_code == 403
    assert post(client, PAGE, {"url": PUBLIC, "events": ["ticket.created"]}).status_code == 403
    assert post(client, f"{PAGE}/{subscription.id}/test").status_code == 403
    assert post(client, f"{PAGE}/{subscription.id}/delete").status_code == 403
    assert table_counts() == before and wakes == []


def test_another_brands_webhook_is_not_found(client, world, wakes):
    other = World("other")
    theirs, _secret = outgoing.create_subscription(other.brand, None, PUBLIC, ["ticket.created"])
    db.session.commit()
    signed_in(client, world.admin)
    before = table_counts()
    assert post(client, f"{PAGE}/{theirs.id}/test").status_code == 404
    assert post(client, f"{PAGE}/{theirs.id}/delete").status_code == 404
    assert table_counts() == before and wakes == []
    assert PUBLIC not in client.get(PAGE).get_data(as_text=True)


# The audit log ----------------------------------------------------------------------------------


def test_the_audit_log_records_each_change_and_never_a_secret(client, world, wakes):
    signed_in(client, world.admin)
    url = "https://hook-user:hook-pass@93.184.216.34/hooks"
    secret = add_on_page(client, url, ["ticket.resolved"])
    (subscription,) = subscriptions()
    post(client, f"{PAGE}/{subscription.id}/test")
    post(client, f"{PAGE}/{subscription.id}/delete")

    created, tested, deleted = audit_rows()
    assert [created.action, tested.action, deleted.action] == [
        "webhook.created",
        "webhook.test_sent",
        "webhook.deleted",
    ]
    assert {row.target_id for row in (created, tested, deleted)} == {subscription.id}
    assert created.changes["events"] == [None, ["ticket.resolved"]]
    assert created.changes["url"] == [None, "https://hook-user:***@93.184.216.34/hooks"]
    assert deleted.changes["events"] == [["ticket.resolved"], None]
    assert tested.changes["event"] == [None, "ping"]
    for row in (created, tested, deleted):
        stored = json.dumps([row.changes, row.target_label, row.actor_name])
        assert secret not in stored and "hook-pass" not in stored
        assert (row.actor_type, row.actor_id) == ("agent", world.admin.id)


def test_the_api_audits_subscriptions_too_and_names_the_refused_field(client, world, dns):
    dns["intranet.example.test"] = ["10.0.0.1"]
    _row, token = create_token(world.brand, "hooks", Role.ADMIN)
    db.session.commit()
    api = Client(client, token)
    before = table_counts()
    refused = api.post(
        "/webhook-subscriptions",
        json={"url": "https://intranet.example.test/in", "events": ["ticket.created"]},
    )
    assert refused.status_code == 422 and "url" in refused.get_json()["error"]["fields"]
    assert table_counts() == before

    made = api.post("/webhook-subscriptions", json={"url": PUBLIC, "events": ["ticket.created"]})
    assert made.status_code == 201
    assert api.delete(f"/webhook-subscriptions/{made.get_json()['id']}").status_code == 204
    rows = audit_rows()
    assert [row.action for row in rows] == ["webhook.created", "webhook.deleted"]
    assert all(row.actor_type == "token" for row in rows)
    assert all(made.get_json()["secret"] not in json.dumps(row.changes) for row in rows)

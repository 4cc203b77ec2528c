"""Outgoing webhooks (docs/webhook.md): safe targets, events per subscription, and signed deliveries
retried with backoff, checked against a real HTTP receiver on 127.0.0.1."""

from __future__ import annotations

import hashlib
import hmac
import itertools
import json
import socket
import threading
from collections.abc import Iterator
from datetime import timedelta

import pytest
from sqlalchemy import select
from werkzeug.wrappers import Request, Response

from helpdesk.accounts.models import Availability, Role
from helpdesk.accounts.service import add_team_member, create_team
from helpdesk.brands.models import Brand
from helpdesk.channels.models import Channel
from helpdesk.crypto import decrypt
from helpdesk.dm.models import Conversation, Message
from helpdesk.dm.service import InboundMessage
from helpdesk.errors import Forbidden, NotFound, ValidationError
from helpdesk.extensions import db
from helpdesk.inbox import service as inbox
from helpdesk.outgoing import service as outgoing
from helpdesk.outgoing.models import EVENTS, WebhookDelivery, WebhookSubscription
from helpdesk.sla import service as sla
from helpdesk.tickets import service as tickets
from helpdesk.tickets.models import RoutingRule, Ticket
from helpdesk.types import utcnow
from tests.conftest import race, serving, table_counts
from tests.factories import AgentFactory, BrandFactory, ChannelFactory, ContactFactory, at, member
from workers.tasks.outgoing import deliver_outgoing_webhooks

T0 = at("2026-11-16 09:00")
ALLOW_PRIVATE = "OUTGOING_WEBHOOKS_ALLOW_PRIVATE"
_mids = itertools.count(1)

INTERNAL_URLS = [
    "http://127.0.0.1/hook",
    "http://127.1/hook",
    "http://2130706433/hook",
    "http://10.1.2.3/hook",
    "http://172.16.5.4/hook",
    "http://172.31.255.255/hook",
    "http://192.168.1.10/hook",
    "http://169.254.169.254/latest/meta-data/",
    "http://0.0.0.0:8080/hook",
    "http://[::1]/hook",
    "http://[fc00::1]/hook",
    "http://[fd12:3456::1]/hook",
    "http://[fe80::1]/hook",
    "http://[::ffff:127.0.0.1]/hook",
    "http://localhost:5000/hook",
    "http://LOCALHOST/hook",
    "http://api.localhost/hook",
]


# Fixtures ---------------------------------------------------------------------------------------


class Receiver:
    """A real HTTP server on 127.0.0.1 that records every request and answers as told."""

    def __init__(self) -> None:
        self.requests: list[dict] = []
        self.answers: list[int] = []
        self.lock = threading.Lock()

    def __call__(self, environ, start_response):
        request = Request(environ)
        with self.lock:
            self.requests.append(
                {"path": request.path, "headers": dict(request.headers), "body": request.get_data()}
            )
            status = self.answers.pop(0) if self.answers else 200
        response = Response("ok", status=status)
        if 300 <= status < 400:
            response.headers["Location"] = "/elsewhere"
        return response(environ, start_response)


@pytest.fixture
def allow_private(app, monkeypatch) -> None:
    monkeypatch.setitem(app.config, ALLOW_PRIVATE, True)


@pytest.fixture
def receiver(allow_private) -> Iterator[Receiver]:
    handler = Receiver()
    with serving(handler) as base_url:
        handler.url = f"{base_url}/hook"
        yield handler


@pytest.fixture
def dns(dns) -> dict[str, list[str]]:
    """The suite's answers (tests/conftest.py), api.localhost among them."""
    dns["api.localhost"] = ["127.0.0.1"]
    return dns


@pytest.fixture
def brand() -> Brand:
    return BrandFactory()


def subscribe(brand: Brand, url: str, events=EVENTS) -> tuple[WebhookSubscription, str]:
    return outgoing.create_subscription(brand, None, url, list(events))


def deliveries(**where) -> list[WebhookDelivery]:
    db.session.expire_all()
    query = select(WebhookDelivery).order_by(WebhookDelivery.id)
    for key, value in where.items():
        query = query.where(getattr(WebhookDelivery, key) == value)
    return list(db.session.scalars(query))


def queued_event(brand: Brand, url: str) -> WebhookDelivery:
    """One committed delivery of a ticket.created event, due now."""
    subscribe(brand, url)
    outgoing.emit(brand.id, "ticket.created", {"ticket_id": 1})
    db.session.commit()
    (delivery,) = deliveries()
    return delivery


def write(channel: Channel, sender: str, text: str = "hello") -> Message:
    return inbox.receive(
        channel,
        InboundMessage(mid=f"out-{next(_mids)}", sender_id=sender, sent_at=T0, text=text),
        now=T0,
    )


def followed_channel() -> tuple[Channel, str]:
    channel = ChannelFactory()
    contact = ContactFactory(channel=channel, followed_by_brand=True)
    return channel, contact.platform_id


# Targets ----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "url",
    [
        "file:///etc/passwd",
        "ftp://hooks.example.test/in",
        "javascript:alert(1)",
        "gopher://hooks.example.test/",
        "hooks.example.test/in",
        "http:///no-host",
        "",
        None,
        "https://hooks.example.test/" + "a" * 2100,
    ],
)
def test_only_http_and_https_urls_with_a_host_are_accepted(brand, allow_private, url):
    before = table_counts()
    with pytest.raises(ValidationError):
        subscribe(brand, url)
    assert table_counts() == before


@pytest.mark.parametrize("url", INTERNAL_URLS)
def test_internal_targets_are_refused_by_default(brand, dns, url):
    with pytest.raises(ValidationError):
        subscribe(brand, url)
    assert deliveries() == [] and outgoing.list_subscriptions(brand, None) == []


@pytest.mark.parametrize("url", INTERNAL_URLS)
def test_the_allow_private_flag_lets_internal_targets_through(brand, dns, allow_private, url):
    subscription, _secret = subscribe(brand, url)
    assert subscription.id is not None


def test_a_host_is_refused_when_any_of_its_addresses_is_internal(brand, dns):
    dns["mixed.example.test"] = ["93.184.216.34", "10.0.0.7"]
    dns["rebind.example.test"] = ["2606:2800:220:1::1", "fd00::7"]
    dns["metadata.example.test"] = ["169.254.169.254"]
    for host in ("mixed", "rebind", "metadata"):
        with pytest.raises(ValidationError, match="inside the network"):
            subscribe(brand, f"https://{host}.example.test/hook")


def test_a_public_host_is_accepted(brand, dns):
    dns["hooks.example.test"] = ["93.184.216.34", "2606:2800:220:1::1"]
    subscription, _secret = subscribe(brand, "https://hooks.example.test/in?source=helpdesk")
    assert subscription.url == "https://hooks.example.test/in?source=helpdesk"


def test_an_unresolvable_host_is_refused(brand):
    with pytest.raises(ValidationError, match="cannot be resolved"):
        subscribe(brand, "https://nowhere.invalid/hook")


# Subscriptions ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "events", [[], ["ticket.deleted"], ["message.created", "nope"], "ticket.created", None]
)
def test_events_must_be_a_non_empty_list_of_known_events(brand, allow_private, events):
    with pytest.raises(ValidationError):
        outgoing.create_subscription(brand, None, "http://127.0.0.1/hook", events)


def test_repeated_events_are_stored_once(brand, allow_private):
    subscription, _secret = subscribe(brand, "http://127.0.0.1/hook", ["sla.breached"] * 2)
    assert subscription.events == ["sla.breached"]


def test_only_admins_of_the_brand_manage_subscriptions(brand, allow_private):
    agent, manager, admin, outsider = AgentFactory.create_batch(4)
    member(agent, brand, Role.AGENT)
    member(manager, brand, Role.MANAGER)
    member(admin, brand, Role.ADMIN)
    member(outsider, BrandFactory(), Role.ADMIN)
    for actor in (agent, manager):
        with pytest.raises(Forbidden):
            outgoing.create_subscription(brand, actor, "http://127.0.0.1/hook", ["ticket.created"])
        with pytest.raises(Forbidden):
            outgoing.list_subscriptions(brand, actor)
    with pytest.raises(NotFound):
        outgoing.create_subscription(brand, outsider, "http://127.0.0.1/hook", ["ticket.created"])
    subscription, _ = outgoing.create_subscription(
        brand, admin, "http://127.0.0.1/hook", ["ticket.created"]
    )
    with pytest.raises(Forbidden):
        outgoing.delete_subscription(subscription, agent)
    with pytest.raises(NotFound):
        outgoing.get_subscription(subscription.id, BrandFactory().id)
    assert outgoing.list_subscriptions(brand, admin) == [subscription]


def test_the_secret_is_returned_once_and_stored_encrypted(brand, allow_private):
    subscription, secret = subscribe(brand, "http://127.0.0.1/hook", ["ticket.created"])
    assert len(secret) > 30
    assert secret not in subscription.secret_encrypted
    assert decrypt(subscription.secret_encrypted) == secret
    shown = outgoing.to_dict(subscription)
    assert set(shown) == {"id", "url", "events", "active", "created_at"}
    assert secret not in json.dumps(shown)
    assert subscription.secret_encrypted not in json.dumps(shown)
    assert outgoing.to_dict(outgoing.list_subscriptions(brand, None)[0]) == shown


def test_a_deleted_subscription_takes_its_pending_deliveries_with_it(brand, allow_private):
    subscription, _ = subscribe(brand, "http://127.0.0.1/hook")
    kept, _ = subscribe(brand, "http://127.0.0.1/other")
    outgoing.emit(brand.id, "ticket.created", {"ticket_id": 1})
    outgoing.delete_subscription(subscription, None)
    db.session.commit()
    assert [d.subscription_id for d in deliveries()] == [kept.id]
    assert db.session.get(WebhookSubscription, subscription.id) is None


# Events -----------------------------------------------------------------------------------------


def test_emit_reaches_only_matching_active_subscriptions_of_the_brand(brand, allow_private):
    wants, _ = subscribe(brand, "http://127.0.0.1/a", ["message.created", "ticket.created"])
    subscribe(brand, "http://127.0.0.1/b", ["ticket.resolved"])
    disabled, _ = subscribe(brand, "http://127.0.0.1/c", ["message.created"])
    disabled.active = False
    subscribe(BrandFactory(), "http://127.0.0.1/d", ["message.created"])

    assert outgoing.emit(brand.id, "message.created", {"message_id": 7}) == 1

    (delivery,) = deliveries()
    assert (delivery.subscription_id, delivery.brand_id) == (wants.id, brand.id)
    assert (delivery.event, delivery.payload, delivery.status) == (
        "message.created",
        {"message_id": 7},
        "pending",
    )


def test_emit_without_subscriptions_creates_nothing(brand):
    assert outgoing.emit(brand.id, "ticket.created", {"ticket_id": 1}) == 0
    assert deliveries() == []


def test_emit_refuses_unknown_events_and_payloads_that_are_not_json(brand, allow_private):
    subscribe(brand, "http://127.0.0.1/hook")
    with pytest.raises(ValueError):
        outgoing.emit(brand.id, "ticket.deleted", {})
    with pytest.raises(TypeError):
        outgoing.emit(brand.id, "ticket.created", {"at": T0})


def test_vanish_mode_content_is_never_sent(allow_private):
    channel, sender = followed_channel()
    message = write(channel, sender, text="a secret")
    message.vanish = True
    data = outgoing.message_data(message)
    assert data["text"] is None and data["attachments"] == [] and data["vanish"] is True


# Delivery ---------------------------------------------------------------------------------------


def test_a_delivery_is_a_signed_json_post(brand, receiver):
    subscription, secret = subscribe(brand, receiver.url, ["ticket.created"])
    outgoing.emit(brand.id, "ticket.created", {"ticket_id": 41, "status": "open"})
    db.session.commit()

    assert outgoing.deliver_due() == 1

    (request,) = receiver.requests
    (delivery,) = deliveries()
    body, headers = request["body"], request["headers"]
    expected = hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()
    assert headers["X-Helpdesk-Signature"] == f"sha256={expected}"
    assert headers["X-Helpdesk-Event"] == "ticket.created"
    assert headers["X-Helpdesk-Delivery"] == str(delivery.id)
    assert headers["Content-Type"] == "application/json"
    assert headers["Host"] == receiver.url.split("/")[2]
    assert request["path"] == "/hook"
    sent = json.loads(body)
    assert sent == {
        "id": delivery.id,
        "event": "ticket.created",
        "created_at": delivery.created_at.isoformat(),
        "data": {"ticket_id": 41, "status": "open"},
    }
    assert (delivery.status, delivery.attempts, delivery.last_status_code) == ("delivered", 1, 200)
    assert delivery.delivered_at is not None and delivery.next_attempt_at is None
    assert delivery.last_error is None
    assert outgoing.deliver_due() == 0


def test_a_failing_receiver_is_retried_with_backoff_until_it_answers(brand, receiver, caplog):
    caplog.set_level("INFO", logger="helpdesk.outgoing.service")
    receiver.answers = [500]
    delivery = queued_event(brand, receiver.url)
    now = utcnow()

    assert outgoing.deliver_due(now=now) == 1
    (delivery,) = deliveries()
    assert (delivery.status, delivery.attempts) == ("pending", 1)
    assert (delivery.last_status_code, delivery.last_error) == (500, "HTTP 500")
    assert delivery.next_attempt_at == now + timedelta(seconds=60)

    assert outgoing.deliver_due(now=now + timedelta(seconds=59)) == 0
    assert len(receiver.requests) == 1

    assert outgoing.deliver_due(now=now + timedelta(seconds=60)) == 1
    (delivery,) = deliveries()
    assert (delivery.status, delivery.attempts, delivery.last_status_code) == ("delivered", 2, 200)
    first, second = receiver.requests
    assert first["body"] == second["body"]
    logged = [(r.levelname, r.getMessage()) for r in caplog.records if r.name == outgoing.log.name]
    assert [level for level, _message in logged] == ["WARNING", "INFO"]
    assert "attempt 1: failed, will retry" in logged[0][1] and "HTTP 500" in logged[0][1]
    assert "attempt 2: delivered" in logged[1][1]
    assert not any(receiver.url in message for _level, message in logged)
    assert first["headers"]["X-Helpdesk-Delivery"] == second["headers"]["X-Helpdesk-Delivery"]


def test_delivery_is_given_up_after_eight_attempts(brand, receiver):
    receiver.answers = [503] * outgoing.MAX_ATTEMPTS
    queued_event(brand, receiver.url)
    clock = utcnow()
    waits = []
    for _attempt in range(outgoing.MAX_ATTEMPTS):
        assert outgoing.deliver_due(now=clock) == 1
        (delivery,) = deliveries()
        if delivery.next_attempt_at is not None:
            waits.append((delivery.next_attempt_at - clock).total_seconds())
            clock = delivery.next_attempt_at

    assert waits == [60, 120, 240, 480, 960, 1920, 3600]
    (delivery,) = deliveries()
    assert (delivery.status, delivery.attempts, delivery.last_status_code) == ("failed", 8, 503)
    assert delivery.next_attempt_at is None
    assert outgoing.deliver_due(now=clock + timedelta(days=1)) == 0
    assert len(receiver.requests) == outgoing.MAX_ATTEMPTS


def test_redirects_are_not_followed(brand, receiver):
    receiver.answers = [302]
    queued_event(brand, receiver.url)
    outgoing.deliver_due()
    (delivery,) = deliveries()
    assert (delivery.status, delivery.last_status_code) == ("pending", 302)
    assert [request["path"] for request in receiver.requests] == ["/hook"]


def test_an_unreachable_receiver_is_retried(brand, allow_private):
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    queued_event(brand, f"http://127.0.0.1:{port}/hook")
    outgoing.deliver_due()
    (delivery,) = deliveries()
    assert (delivery.status, delivery.attempts, delivery.last_status_code) == ("pending", 1, None)
    assert delivery.last_error.startswith("ConnectError")


def test_the_target_is_checked_again_at_send_time(app, brand, receiver, monkeypatch):
    queued_event(brand, receiver.url)
    monkeypatch.setitem(app.config, ALLOW_PRIVATE, False)
    assert outgoing.deliver_due() == 1
    (delivery,) = deliveries()
    assert receiver.requests == []
    assert (delivery.status, delivery.attempts) == ("pending", 1)
    assert "inside the network" in delivery.last_error


def test_a_disabled_subscription_gets_no_more_deliveries(brand, receiver):
    delivery = queued_event(brand, receiver.url)
    db.session.get(WebhookSubscription, delivery.subscription_id).active = False
    db.session.commit()
    assert outgoing.deliver_due() == 1
    (delivery,) = deliveries()
    assert (delivery.status, delivery.last_error) == ("failed", "subscription disabled")
    assert receiver.requests == []


def test_a_claim_whose_lease_ran_out_is_sent_again(brand, receiver):
    """At least once: a worker that died mid-send leaves a claim that expires, then a resend."""
    delivery = queued_event(brand, receiver.url)
    now = utcnow()
    delivery.status, delivery.attempts = "sending", 1
    delivery.next_attempt_at = now + outgoing.LEASE
    db.session.commit()

    assert outgoing.deliver_due(now=now + outgoing.LEASE - timedelta(seconds=1)) == 0
    assert outgoing.deliver_due(now=now + outgoing.LEASE) == 1
    (delivery,) = deliveries()
    assert (delivery.status, delivery.attempts) == ("delivered", 2)
    assert len(receiver.requests) == 1


def test_two_workers_at_once_send_each_delivery_once(app, brand, receiver):
    subscribe(brand, receiver.url, ["ticket.created"])
    for ticket_id in range(6):
        outgoing.emit(brand.id, "ticket.created", {"ticket_id": ticket_id})
    db.session.commit()

    handled = race(app, outgoing.deliver_due)

    assert sum(handled) == 6
    sent = sorted(int(r["headers"]["X-Helpdesk-Delivery"]) for r in receiver.requests)
    assert sent == [d.id for d in deliveries()]
    assert {d.status for d in deliveries()} == {"delivered"}


def test_the_worker_task_delivers_everything_due(brand, receiver):
    subscribe(brand, receiver.url, ["ticket.created"])
    for ticket_id in range(3):
        outgoing.emit(brand.id, "ticket.created", {"ticket_id": ticket_id})
    db.session.commit()

    assert deliver_outgoing_webhooks.apply(kwargs={"limit": 2}).get() == 3
    assert len(receiver.requests) == 3
    assert {d.status for d in deliveries()} == {"delivered"}


# The events of the product ----------------------------------------------------------------------


def test_an_inbound_message_announces_its_ticket_and_itself(receiver):
    channel, sender = followed_channel()
    brand = db.session.get(Brand, channel.brand_id)
    subscribe(brand, receiver.url, ["message.created", "ticket.created"])

    message = write(channel, sender, text="where is my order?")
    db.session.commit()

    created, received = deliveries()
    ticket = db.session.get(Ticket, message.ticket_id)
    assert created.event == "ticket.created"
    assert created.payload["ticket_id"] == ticket.id
    assert created.payload["status"] == "open"
    assert created.payload["assignee_id"] is None
    assert created.payload["conversation_id"] == message.conversation_id
    assert received.event == "message.created"
    assert received.payload["message_id"] == message.id
    assert received.payload["ticket_id"] == ticket.id
    assert received.payload["direction"] == "inbound"
    assert received.payload["kind"] == "text"
    assert received.payload["text"] == "where is my order?"
    assert received.payload["sent_at"] == T0.isoformat()

    assert outgoing.deliver_due() == 2
    events = [r["headers"]["X-Helpdesk-Event"] for r in receiver.requests]
    assert events == ["ticket.created", "message.created"]


def test_a_blocked_contacts_messages_are_not_announced(allow_private):
    channel = ChannelFactory()
    brand = db.session.get(Brand, channel.brand_id)
    subscribe(brand, "http://127.0.0.1/hook", ["message.created"])
    request = write(channel, "6129999999999999")
    inbox.block(db.session.get(Conversation, request.conversation_id), None)
    write(channel, "6129999999999999")
    assert [d.payload["message_id"] for d in deliveries()] == [request.id]


def test_reply_assignment_and_resolution_are_announced(allow_private):
    channel, sender = followed_channel()
    brand = db.session.get(Brand, channel.brand_id)
    agent = AgentFactory()
    member(agent, brand)
    message = write(channel, sender)
    subscribe(
        brand, "http://127.0.0.1/hook", ["message.created", "ticket.assigned", "ticket.resolved"]
    )
    ticket = db.session.get(Ticket, message.ticket_id)
    conversation = db.session.get(Conversation, message.conversation_id)

    tickets.assign(ticket, agent.id, agent, now=T0)
    answer = inbox.reply(conversation, agent, text="on its way", now=T0 + timedelta(minutes=2))
    tickets.unassign(ticket, agent, now=T0 + timedelta(minutes=3))
    tickets.set_status(ticket, "resolved", agent, now=T0 + timedelta(minutes=4))
    tickets.set_status(ticket, "resolved", agent, now=T0 + timedelta(minutes=5))

    assigned, replied, resolved = deliveries()
    assert assigned.event == "ticket.assigned"
    assert assigned.payload["assignee_id"] == agent.id
    assert assigned.payload["actor_id"] == agent.id
    assert replied.event == "message.created"
    assert replied.payload["message_id"] == answer.id
    assert replied.payload["direction"] == "outbound"
    assert replied.payload["author_agent_id"] == agent.id
    assert resolved.event == "ticket.resolved"
    assert resolved.payload["status"] == "resolved"
    assert resolved.payload["resolved_at"] == (T0 + timedelta(minutes=4)).isoformat()


def test_automatic_assignment_is_announced(allow_private):
    channel, sender = followed_channel()
    brand = db.session.get(Brand, channel.brand_id)
    team = create_team(brand, "Support")
    agent = AgentFactory(availability=Availability.ONLINE)
    member(agent, brand)
    add_team_member(team, agent)
    db.session.add(RoutingRule(brand_id=brand.id, team_id=team.id))
    subscribe(brand, "http://127.0.0.1/hook", ["ticket.created", "ticket.assigned"])

    write(channel, sender)

    created, assigned = deliveries()
    assert created.event == "ticket.created" and created.payload["team_id"] == team.id
    assert assigned.event == "ticket.assigned"
    assert assigned.payload["assignee_id"] == agent.id and assigned.payload["auto"] is True


def test_an_sla_breach_is_announced_once(allow_private):
    channel, sender = followed_channel()
    brand = db.session.get(Brand, channel.brand_id)
    sla.create_policy(brand, None, "Fast", 0, {}, {"first_response_min": 5}, False, now=T0)
    message = write(channel, sender)
    subscribe(brand, "http://127.0.0.1/hook", ["sla.breached"])

    sla.sweep_sla(T0 + timedelta(minutes=10))
    sla.sweep_sla(T0 + timedelta(minutes=20))

    (breach,) = deliveries()
    assert breach.event == "sla.breached"
    assert breach.payload["ticket_id"] == message.ticket_id
    assert breach.payload["target"] == "first_response"
    assert breach.payload["due_at"] == (T0 + timedelta(minutes=5)).isoformat()

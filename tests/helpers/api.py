"""Driving the REST API (docs/rest-api.md): a client with a bearer token, a brand's desk of rows,
and the error shape every refusal has."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from helpdesk.accounts.models import Agent, Role
from helpdesk.accounts.tokens import create_token
from helpdesk.brands.models import Brand
from helpdesk.canned import service as canned
from helpdesk.channels.models import Channel, ChannelKind
from helpdesk.dm.models import Conversation, Message
from helpdesk.dm.service import InboundMessage
from helpdesk.extensions import db
from helpdesk.inbox import service as inbox
from helpdesk.outgoing import service as outgoing
from helpdesk.sla import service as sla
from helpdesk.tickets import tags
from helpdesk.tickets.models import Ticket
from helpdesk.types import utcnow
from tests.factories import AgentFactory, BrandFactory, ChannelFactory, ContactFactory, member

API = "/api/v1"


class Client:
    """The test client with a bearer token on every request."""

    def __init__(self, client, token: str | None):
        self.client, self.token = client, token

    def open(self, method: str, path: str, **kwargs: Any):
        headers = dict(kwargs.pop("headers", {}))
        if self.token is not None:
            headers.setdefault("Authorization", f"Bearer {self.token}")
        return self.client.open(API + path, method=method, headers=headers, **kwargs)

    def get(self, path: str, **kwargs: Any):
        return self.open("GET", path, **kwargs)

    def post(self, path: str, **kwargs: Any):
        return self.open("POST", path, **kwargs)

    def patch(self, path: str, **kwargs: Any):
        return self.open("PATCH", path, **kwargs)

    def put(self, path: str, **kwargs: Any):
        return self.open("PUT", path, **kwargs)

    def delete(self, path: str, **kwargs: Any):
        return self.open("DELETE", path, **kwargs)


def token_for(brand: Brand, role: Role = Role.ADMIN) -> str:
    _row, token = create_token(brand, f"{role.value} token", role)
    db.session.commit()
    return token


def write(
    channel: Channel,
    mid: str,
    sender: str,
    minutes_ago: float = 5,
    text: str | None = "hello",
    **more: Any,
) -> Message:
    """A customer's message through the inbox, as the intake would store it."""
    when = utcnow() - timedelta(minutes=minutes_ago)
    incoming = InboundMessage(mid=mid, sender_id=sender, sent_at=when, text=text, **more)
    return inbox.receive(channel, incoming, now=when)


def error_of(response) -> dict[str, Any]:
    assert response.is_json, response.data[:200]
    body = response.get_json()
    assert set(body) == {"error"}, body
    assert body["error"]["code"] and body["error"]["message"]
    return body["error"]


@dataclass
class Desk:
    """One brand's data: a channel with a known contact's conversation and ticket, an agent."""

    brand: Brand
    channel: Channel
    api_channel: Channel
    agent: Agent
    conversation: Conversation
    message: Message
    ticket: Ticket


def make_desk(slug: str) -> Desk:
    brand = BrandFactory(slug=slug)
    channel = ChannelFactory(brand=brand)
    api_channel = ChannelFactory(brand=brand, kind=ChannelKind.API, account_id=f"api-{slug}")
    ContactFactory(
        channel=channel, platform_id=f"{slug}-known", username=f"{slug}_fan", followed_by_brand=True
    )
    agent = AgentFactory(name=f"Agent {slug}")
    member(agent, brand)
    message = write(channel, f"{slug}-m1", f"{slug}-known", text="where is my order?")
    conversation = db.session.get(Conversation, message.conversation_id)
    ticket = db.session.get(Ticket, conversation.current_ticket_id)
    db.session.commit()
    return Desk(brand, channel, api_channel, agent, conversation, message, ticket)


def seed_every_kind() -> dict[str, Any]:
    """A brand with a few rows of every kind the API names by id, and another brand whose ids
    must answer 404: the ids of the first, and its admin token."""
    desk = make_desk("fuzz")
    ChannelFactory(brand=desk.brand, kind=ChannelKind.API, account_id="api-fuzz-2")
    ContactFactory(channel=desk.channel, platform_id="fuzz-2", followed_by_brand=True)
    for n in range(3):
        write(desk.channel, f"fuzz-more-{n}", "fuzz-known", minutes_ago=4 - n)
        write(desk.channel, f"fuzz-req-{n}", f"stranger-{n}", minutes_ago=3)
    write(desk.channel, "fuzz-other-1", "fuzz-2", minutes_ago=60 * 24 * 2)
    tags.add_tag(desk.ticket, "vip", None)
    reply = canned.create(
        desk.brand, None, "hello", "Hello", "Hi {{ contact.username }}", shared=True
    )
    policy = sla.create_policy(desk.brand, None, "default", 0, {}, {"first_response_min": 30})
    subscription, _ = outgoing.create_subscription(
        desk.brand, None, "https://hooks.example.test/in", ["ticket.created"]
    )
    db.session.commit()
    make_desk("elsewhere")
    return {
        "token": token_for(desk.brand, Role.ADMIN),
        "ids": {
            "conversation_id": desk.conversation.id,
            "message_id": desk.message.id,
            "ticket_id": desk.ticket.id,
            "reply_id": reply.id,
            "policy_id": policy.id,
            "agent_id": desk.agent.id,
            "subscription_id": subscription.id,
            "channel_id": desk.api_channel.id,
            "name": "vip",
        },
    }

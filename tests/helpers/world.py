"""A small brand to act in: its people, a followed customer and one open conversation."""

from __future__ import annotations

import itertools

from helpdesk.accounts.models import Role
from helpdesk.dm.models import Conversation, MessageKind
from helpdesk.dm.service import InboundMessage
from helpdesk.extensions import db
from helpdesk.inbox import service as inbox
from helpdesk.types import utcnow
from tests.factories import AgentFactory, BrandFactory, ChannelFactory, ContactFactory, member

_mids = itertools.count(1)


def receive(channel, platform_id: str, text: str | None = "Hello", at=None, **fields):
    """A customer's message through the inbox service, as the webhook would store it."""
    at = at or utcnow()
    return inbox.receive(
        channel,
        InboundMessage(
            mid=f"mid-{next(_mids)}",
            sender_id=platform_id,
            sent_at=at,
            text=text,
            kind=fields.pop("kind", MessageKind.TEXT),
            **fields,
        ),
        now=at,
    )


def known_contact(channel, **fields):
    """A contact the brand follows: their messages go straight to Primary with a ticket."""
    return ContactFactory(channel=channel, followed_by_brand=True, **fields)


class World:
    """One brand with a channel, an agent, a manager, an admin and one open conversation."""

    def __init__(self, name: str = "acme"):
        self.brand = BrandFactory(slug=f"{name}{next(_mids)}", name=name.title())
        self.channel = ChannelFactory(brand=self.brand)
        self.agent = AgentFactory(name=f"{name.title()} Agent")
        self.manager = AgentFactory(name=f"{name.title()} Manager")
        self.admin = AgentFactory(name=f"{name.title()} Admin")
        member(self.agent, self.brand, Role.AGENT)
        member(self.manager, self.brand, Role.MANAGER)
        member(self.admin, self.brand, Role.ADMIN)
        self.contact = known_contact(self.channel, username="jane.doe", name="Jane Doe")
        self.message = receive(self.channel, self.contact.platform_id, "Where is my order?")
        self.conversation = db.session.get(Conversation, self.message.conversation_id)
        db.session.commit()

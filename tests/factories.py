"""factory_boy factories for the core model; rows are flushed into the test's session.

Each row is consistent with its brand: a conversation's channel and contact, a message's
conversation and a ticket's conversation all belong to one brand, as the services would make them.
Prefer the services where a test is about their rules; a factory is for the rows a test stands on.
"""

from __future__ import annotations

from datetime import UTC, datetime

import factory
from factory.alchemy import SQLAlchemyModelFactory

from helpdesk.accounts.models import Agent, Membership, Role
from helpdesk.accounts.service import hash_password
from helpdesk.brands.models import Brand
from helpdesk.canned.models import CannedReply
from helpdesk.channels.models import Channel, ChannelKind
from helpdesk.dm.models import (
    Contact,
    Conversation,
    ConversationKind,
    Direction,
    Message,
    MessageStatus,
    Participant,
)
from helpdesk.extensions import db
from helpdesk.sla.models import SlaPolicy
from helpdesk.tickets.models import Tag, Ticket
from helpdesk.types import utcnow

PASSWORD = "correct horse battery"
_HASH = None


def _password_hash() -> str:
    global _HASH
    if _HASH is None:
        _HASH = hash_password(PASSWORD)
    return _HASH


class _Base(SQLAlchemyModelFactory):
    class Meta:
        abstract = True
        sqlalchemy_session_factory = lambda: db.session  # noqa: E731
        sqlalchemy_session_persistence = "flush"


class BrandFactory(_Base):
    class Meta:
        model = Brand

    slug = factory.Sequence(lambda n: f"brand{n}")
    name = factory.LazyAttribute(lambda o: o.slug.title())
    timezone = "Europe/Berlin"
    hidden_words = factory.LazyFunction(list)


class ChannelFactory(_Base):
    class Meta:
        model = Channel
        exclude = ("brand",)

    brand = factory.SubFactory(BrandFactory)
    brand_id = factory.SelfAttribute("brand.id")
    kind = ChannelKind.INSTAGRAM
    account_id = factory.Sequence(lambda n: f"1784140000{n:07d}")
    access_token = "test-page-token"

    @classmethod
    def _create(cls, model_class, *args, **kwargs):
        token = kwargs.pop("access_token", None)
        obj = model_class(*args, **kwargs)
        obj.access_token = token
        db.session.add(obj)
        db.session.flush()
        return obj


class ContactFactory(_Base):
    class Meta:
        model = Contact
        exclude = ("channel",)

    channel = factory.SubFactory(ChannelFactory)
    channel_id = factory.SelfAttribute("channel.id")
    brand_id = factory.SelfAttribute("channel.brand_id")
    platform_id = factory.Sequence(lambda n: f"61200000{n:08d}")
    username = factory.Sequence(lambda n: f"customer{n}")
    name = factory.Sequence(lambda n: f"Customer {n}")


class AgentFactory(_Base):
    class Meta:
        model = Agent

    email = factory.Sequence(lambda n: f"agent{n}@example.test")
    name = factory.Sequence(lambda n: f"Agent {n}")
    password_hash = factory.LazyFunction(_password_hash)


class ConversationFactory(_Base):
    """A direct thread with one contact, in Primary, as the intake opens it for a followed
    contact; its channel and brand are the contact's."""

    class Meta:
        model = Conversation
        exclude = ("contact",)

    contact = factory.SubFactory(ContactFactory, followed_by_brand=True)
    contact_id = factory.SelfAttribute("contact.id")
    channel_id = factory.SelfAttribute("contact.channel_id")
    brand_id = factory.SelfAttribute("contact.brand_id")
    kind = ConversationKind.DIRECT
    thread_key = factory.LazyAttribute(lambda o: f"direct:{o.contact.platform_id}")
    participant_count = 1

    @factory.post_generation
    def participants(obj, create, extracted, **kwargs):  # noqa: N805 - factory_boy's hook
        """The brand's own account and the contact, as the DM service adds them."""
        if create:
            db.session.add(Participant(conversation_id=obj.id, is_brand=True))
            db.session.add(Participant(conversation_id=obj.id, contact_id=obj.contact_id))
            db.session.flush()


class MessageFactory(_Base):
    """The contact's text message in its conversation, received just now."""

    class Meta:
        model = Message
        exclude = ("conversation",)

    conversation = factory.SubFactory(ConversationFactory)
    conversation_id = factory.SelfAttribute("conversation.id")
    channel_id = factory.SelfAttribute("conversation.channel_id")
    brand_id = factory.SelfAttribute("conversation.brand_id")
    contact_id = factory.SelfAttribute("conversation.contact_id")
    direction = Direction.INBOUND
    status = MessageStatus.RECEIVED
    mid = factory.Sequence(lambda n: f"m_factory_{n}")
    text = factory.Sequence(lambda n: f"Message {n}")
    sent_at = factory.LazyFunction(utcnow)


class TicketFactory(_Base):
    """An open ticket, made the conversation's current one."""

    class Meta:
        model = Ticket
        exclude = ("conversation",)

    conversation = factory.SubFactory(ConversationFactory)
    conversation_id = factory.SelfAttribute("conversation.id")
    channel_id = factory.SelfAttribute("conversation.channel_id")
    brand_id = factory.SelfAttribute("conversation.brand_id")
    opened_at = factory.LazyFunction(utcnow)

    @factory.post_generation
    def current(obj, create, extracted, **kwargs):  # noqa: N805 - factory_boy's hook
        if create:
            conversation = db.session.get(Conversation, obj.conversation_id)
            conversation.current_ticket_id = obj.id
            db.session.flush()


class TagFactory(_Base):
    class Meta:
        model = Tag
        exclude = ("brand",)

    brand = factory.SubFactory(BrandFactory)
    brand_id = factory.SelfAttribute("brand.id")
    name = factory.Sequence(lambda n: f"Tag {n}")
    name_key = factory.LazyAttribute(lambda o: o.name.lower())


class CannedReplyFactory(_Base):
    """A reply shared with the whole brand (no owner), with a placeholder in its body."""

    class Meta:
        model = CannedReply
        exclude = ("brand",)

    brand = factory.SubFactory(BrandFactory)
    brand_id = factory.SelfAttribute("brand.id")
    shortcode = factory.Sequence(lambda n: f"reply{n}")
    title = factory.Sequence(lambda n: f"Reply {n}")
    body = "Hi {{ contact.username }}, thanks for writing."


class SlaPolicyFactory(_Base):
    """A catch-all policy: first response within 60 business minutes, resolution within 480."""

    class Meta:
        model = SlaPolicy
        exclude = ("brand",)

    brand = factory.SubFactory(BrandFactory)
    brand_id = factory.SelfAttribute("brand.id")
    name = factory.Sequence(lambda n: f"Policy {n}")
    first_response_min = 60
    resolution_min = 480


def member(agent: Agent, brand: Brand, role: Role = Role.AGENT) -> Membership:
    membership = Membership(agent_id=agent.id, brand_id=brand.id, role=role)
    db.session.add(membership)
    db.session.flush()
    return membership


def at(text: str) -> datetime:
    """An aware UTC datetime from '2026-11-20 10:00'."""
    return datetime.fromisoformat(text).replace(tzinfo=UTC)

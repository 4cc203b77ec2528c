"""factory_boy factories for the core model; rows are flushed into the test's session."""

from __future__ import annotations

from datetime import UTC, datetime

import factory
from factory.alchemy import SQLAlchemyModelFactory

from helpdesk.accounts.models import Agent, Membership, Role
from helpdesk.accounts.service import hash_password
from helpdesk.brands.models import Brand
from helpdesk.channels.models import Channel, ChannelKind
from helpdesk.dm.models import Contact
from helpdesk.extensions import db

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


def member(agent: Agent, brand: Brand, role: Role = Role.AGENT) -> Membership:
    membership = Membership(agent_id=agent.id, brand_id=brand.id, role=role)
    db.session.add(membership)
    db.session.flush()
    return membership


def at(text: str) -> datetime:
    """An aware UTC datetime from '2026-11-20 10:00'."""
    return datetime.fromisoformat(text).replace(tzinfo=UTC)

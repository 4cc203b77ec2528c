"""One actor, one rule: a role rule lives in the service and refuses a console agent and an API
token of the same role alike, asked straight at the service (no view in between)."""

from __future__ import annotations

import pytest
from sqlalchemy import select

from helpdesk.accounts import service as accounts
from helpdesk.accounts.actor import Actor, as_actor
from helpdesk.accounts.models import Role
from helpdesk.accounts.tokens import create_token
from helpdesk.dm.models import Conversation, MessageKind
from helpdesk.dm.service import InboundMessage
from helpdesk.errors import Forbidden, NotFound
from helpdesk.extensions import db
from helpdesk.inbox import service as inbox
from helpdesk.tickets import changes
from helpdesk.tickets import service as tickets
from helpdesk.tickets.models import TicketEvent, TicketStatus
from helpdesk.types import utcnow
from tests.factories import AgentFactory, BrandFactory, ChannelFactory, ContactFactory, member


@pytest.fixture
def desk():
    """A brand with an agent, a manager, an agent-role and a manager-role token, and a followed
    customer's conversation with its open ticket."""
    brand = BrandFactory(slug="actors", name="Actors")
    channel = ChannelFactory(brand=brand)
    agent, manager = AgentFactory(name="Agent"), AgentFactory(name="Manager")
    member(agent, brand, Role.AGENT)
    member(manager, brand, Role.MANAGER)
    contact = ContactFactory(channel=channel, followed_by_brand=True)
    message = inbox.receive(
        channel,
        InboundMessage(
            mid="mid-actor-1",
            sender_id=contact.platform_id,
            sent_at=utcnow(),
            text="Hello",
            kind=MessageKind.TEXT,
        ),
    )
    agent_token, _ = create_token(brand, "agent bot", Role.AGENT)
    manager_token, _ = create_token(brand, "manager bot", Role.MANAGER)
    db.session.commit()
    conversation = db.session.get(Conversation, message.conversation_id)
    return {
        "brand": brand,
        "agent": agent,
        "manager": manager,
        "contact": contact,
        "conversation": conversation,
        "ticket": tickets.current_ticket(conversation),
        "agent_actors": [
            Actor.for_agent(agent, brand.id),
            Actor.for_token(agent_token),
        ],
        "manager_actors": [
            Actor.for_agent(manager, brand.id),
            Actor.for_token(manager_token),
        ],
    }


@pytest.mark.parametrize("who", [0, 1], ids=["console agent", "api token"])
def test_an_agent_role_may_not_change_an_agent(desk, who):
    with pytest.raises(Forbidden):
        accounts.change_agent(desk["agent"], {"capacity": 1}, desk["agent_actors"][who])
    assert desk["agent"].capacity != 1


@pytest.mark.parametrize("who", [0, 1], ids=["console agent", "api token"])
def test_a_manager_changes_capacity_but_not_a_role(desk, who):
    actor = desk["manager_actors"][who]
    accounts.change_agent(desk["agent"], {"capacity": 3}, actor)
    assert desk["agent"].capacity == 3
    with pytest.raises(Forbidden):
        accounts.change_agent(desk["agent"], {"role": "admin"}, actor)
    assert accounts.role_in(desk["agent"].id, desk["brand"].id) is Role.AGENT


@pytest.mark.parametrize("who", [0, 1], ids=["console agent", "api token"])
def test_an_agent_role_may_not_add_an_agent(desk, who):
    with pytest.raises(Forbidden):
        accounts.add_agent(desk["agent_actors"][who], desk["brand"], "new@example.test", "New")


@pytest.mark.parametrize("who", [0, 1], ids=["console agent", "api token"])
def test_an_agent_role_may_not_unblock_but_a_manager_may(desk, who):
    contact = desk["contact"]
    inbox.block(desk["conversation"], desk["agent_actors"][who])
    assert contact.blocked
    with pytest.raises(Forbidden):
        inbox.unblock(contact, desk["agent_actors"][who])
    assert contact.blocked
    inbox.unblock(contact, desk["manager_actors"][who])
    assert not contact.blocked


@pytest.mark.parametrize("who", [0, 1], ids=["console agent", "api token"])
def test_a_ticket_change_answers_both_actors_alike(desk, who):
    ticket = desk["ticket"]
    changes.change_ticket(ticket, {"priority": "high"}, desk["agent_actors"][who])
    assert ticket.priority.value == "high"
    changes.change_ticket(ticket, {"status": TicketStatus.PENDING}, desk["agent_actors"][who])
    assert ticket.status is TicketStatus.PENDING


def test_another_brands_actor_finds_nothing(desk):
    other = BrandFactory(slug="elsewhere", name="Elsewhere")
    stranger, _ = create_token(other, "their bot", Role.ADMIN)
    with pytest.raises(NotFound):
        changes.change_ticket(desk["ticket"], {"priority": "low"}, Actor.for_token(stranger))
    with pytest.raises(NotFound):
        inbox.unblock(desk["contact"], Actor.for_token(stranger))


def test_a_ticket_change_by_an_agent_is_recorded_as_theirs_and_by_a_token_as_nobodys(desk):
    ticket = desk["ticket"]
    console, token = desk["agent_actors"]
    tickets.set_priority(ticket, "urgent", console)
    tickets.set_priority(ticket, "low", token)
    authors = db.session.scalars(
        select(TicketEvent.actor_id)
        .where(TicketEvent.ticket_id == ticket.id, TicketEvent.kind == "priority_changed")
        .order_by(TicketEvent.id)
    ).all()
    assert authors == [desk["agent"].id, None]


def test_the_system_is_refused_nothing_and_an_agent_adapts_to_an_actor(desk):
    system = Actor.system(desk["brand"].id)
    assert system.require(Role.ADMIN) is None
    adapted = as_actor(desk["agent"], desk["brand"].id)
    assert (adapted.agent_id, adapted.role) == (desk["agent"].id, Role.AGENT)
    assert as_actor(None, desk["brand"].id).is_system

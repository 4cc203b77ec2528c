"""Signing in starts the agent's shift: an offline agent comes online, a chosen "away" is kept."""

from __future__ import annotations

from sqlalchemy import select

from helpdesk.accounts.models import Agent, Availability, Team
from helpdesk.accounts.service import add_team_member, create_team
from helpdesk.brands.models import Brand
from helpdesk.channels.models import Channel
from helpdesk.extensions import db
from helpdesk.tickets.models import Ticket
from tests.factories import AgentFactory, ChannelFactory, ContactFactory, member
from tests.helpers.console import login, post
from tests.helpers.world import receive


def _agent_on_a_team(**fields) -> tuple[Agent, Channel, Team]:
    channel = ChannelFactory()
    brand = db.session.get(Brand, channel.brand_id)
    agent = AgentFactory(**fields)
    member(agent, brand)
    team = create_team(brand, "Support")
    add_team_member(team, agent)
    db.session.commit()
    return agent, channel, team


def _availability(agent_id: int) -> Availability:
    db.session.expire_all()
    return db.session.scalar(select(Agent.availability).where(Agent.id == agent_id))


def test_a_new_agent_is_offline_until_signing_in_and_online_after(client):
    agent, _channel, _team = _agent_on_a_team()
    assert _availability(agent.id) is Availability.OFFLINE

    response = login(client, agent.email)

    assert response.status_code == 302
    assert _availability(agent.id) is Availability.ONLINE


def test_signing_in_takes_the_tickets_waiting_in_the_agents_team(client):
    agent, channel, team = _agent_on_a_team(availability=Availability.OFFLINE)
    contact = ContactFactory(channel=channel, followed_by_brand=True)
    message = receive(channel, contact.platform_id, "Where is my order?")
    ticket = db.session.get(Ticket, message.ticket_id)
    ticket.team_id = team.id
    db.session.commit()
    assert ticket.assignee_id is None

    login(client, agent.email)

    db.session.expire_all()
    assert db.session.get(Ticket, ticket.id).assignee_id == agent.id


def test_an_agent_who_chose_away_is_still_away_at_the_next_sign_in(client):
    agent, _channel, _team = _agent_on_a_team()
    login(client, agent.email)
    assert post(client, "/availability", {"availability": "away"}).status_code == 302
    post(client, "/logout")

    login(client, agent.email)

    assert _availability(agent.id) is Availability.AWAY


def test_a_refused_sign_in_changes_no_availability(client):
    agent, _channel, _team = _agent_on_a_team()

    response = login(client, agent.email, "not the password")

    assert response.status_code != 302
    assert _availability(agent.id) is Availability.OFFLINE

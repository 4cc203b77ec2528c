"""Automatic assignment: who gets the ticket, who is skipped, and capacity under concurrency."""

from __future__ import annotations

import itertools
import threading
from datetime import datetime, timedelta

import pytest
from sqlalchemy import event, func, select, update

from helpdesk.accounts.models import Agent, Availability, Team, TeamMember
from helpdesk.accounts.service import add_team_member, create_team
from helpdesk.assignment import service
from helpdesk.brands.models import Brand
from helpdesk.channels.models import Channel
from helpdesk.dm.service import InboundMessage, receive_inbound
from helpdesk.errors import ValidationError
from helpdesk.extensions import db
from helpdesk.notifications.models import Notification, NotificationKind
from helpdesk.tickets.models import Ticket, TicketEvent, TicketStatus
from tests.conftest import race as _race
from tests.factories import AgentFactory, ChannelFactory, at, member
from workers.tasks.assignment import assign_waiting_tickets

NOW = at("2026-11-20 10:00")
_senders = itertools.count(1)


def _desk(mode: str = "round_robin", agents: int = 3, capacity: int = 10, team_capacity=None):
    """A brand with one channel and one team of online agents."""
    channel = ChannelFactory()
    brand = db.session.get(Brand, channel.brand_id)
    team = create_team(brand, "Support", capacity=team_capacity, assignment=mode)
    staff = [_agent(brand, team, capacity=capacity) for _ in range(agents)]
    return channel, team, staff


def _agent(brand: Brand, team: Team, capacity: int = 10, **fields) -> Agent:
    fields.setdefault("availability", Availability.ONLINE)
    agent = AgentFactory(capacity=capacity, **fields)
    member(agent, brand)
    add_team_member(team, agent)
    return agent


def _ticket(channel: Channel, team: Team | None, opened: datetime = NOW, **fields) -> Ticket:
    """A ticket on a conversation of its own: only one active ticket per conversation."""
    n = next(_senders)
    message = receive_inbound(
        channel,
        InboundMessage(mid=f"assign-{n}", sender_id=f"6199{n:012d}", sent_at=opened, text="hi"),
    )
    ticket = Ticket(
        brand_id=channel.brand_id,
        conversation_id=message.conversation_id,
        channel_id=channel.id,
        opened_at=opened,
        team_id=team.id if team else None,
        **fields,
    )
    db.session.add(ticket)
    db.session.flush()
    return ticket


def _last_assigned(team: Team, agent: Agent) -> None | datetime:
    return db.session.scalar(
        select(TeamMember.last_assigned_at).where(
            TeamMember.team_id == team.id, TeamMember.agent_id == agent.id
        )
    )


def _set_last_assigned(team: Team, agent: Agent, when: datetime) -> None:
    db.session.execute(
        update(TeamMember)
        .where(TeamMember.team_id == team.id, TeamMember.agent_id == agent.id)
        .values(last_assigned_at=when)
    )


# Round-robin and balanced -------------------------------------------------------------------


def test_round_robin_rotates_through_three_agents():
    channel, team, (a, b, c) = _desk()
    assigned = [
        service.auto_assign(_ticket(channel, team), NOW + timedelta(minutes=i)) for i in range(6)
    ]
    assert assigned == [a, b, c, a, b, c]


def test_round_robin_starts_with_never_assigned_then_least_recent():
    channel, team, (a, b, c) = _desk()
    _set_last_assigned(team, a, NOW - timedelta(minutes=1))
    _set_last_assigned(team, b, NOW - timedelta(minutes=5))
    assigned = [
        service.auto_assign(_ticket(channel, team), NOW + timedelta(minutes=i)) for i in range(3)
    ]
    assert assigned == [c, b, a]


def test_balanced_picks_the_agent_with_fewest_open_tickets():
    channel, team, (a, b, c) = _desk(mode="balanced")
    for agent, count in ((a, 2), (b, 0), (c, 1)):
        for _ in range(count):
            _ticket(channel, team, assignee_id=agent.id)
    for _ in range(3):
        _ticket(channel, team, assignee_id=b.id, status=TicketStatus.RESOLVED)
    assert service.auto_assign(_ticket(channel, team), NOW) == b


def test_balanced_tie_goes_to_the_least_recently_assigned():
    channel, team, (a, b, c) = _desk(mode="balanced")
    _ticket(channel, team, assignee_id=a.id)
    _set_last_assigned(team, b, NOW - timedelta(minutes=1))
    _set_last_assigned(team, c, NOW - timedelta(minutes=9))
    assert service.auto_assign(_ticket(channel, team), NOW) == c
    assert service.auto_assign(_ticket(channel, team), NOW + timedelta(minutes=1)) == b


def test_unknown_mode_is_refused():
    _, team, _ = _desk()
    with pytest.raises(ValidationError):
        service.choose_agent(team, "lottery")


# Who is eligible ----------------------------------------------------------------------------


def test_offline_away_and_deactivated_agents_are_skipped():
    channel, team, (online,) = _desk(agents=1)
    brand = db.session.get(Brand, channel.brand_id)
    _agent(brand, team, availability=Availability.OFFLINE)
    _agent(brand, team, availability=Availability.AWAY)
    _agent(brand, team, active=False)
    assert [c.agent for c in service.eligible_agents(team)] == [online]
    assert service.auto_assign(_ticket(channel, team), NOW) == online


def test_team_member_outside_the_brand_is_skipped():
    channel, team, _ = _desk(agents=0)
    outsider = AgentFactory(availability=Availability.ONLINE)
    db.session.add(TeamMember(team_id=team.id, agent_id=outsider.id))
    db.session.flush()
    assert service.eligible_agents(team) == []


def test_agent_at_capacity_is_skipped_counting_every_team_of_the_brand():
    channel, team, (full, free) = _desk(agents=2, capacity=2)
    brand = db.session.get(Brand, channel.brand_id)
    other_team = create_team(brand, "Billing")
    _ticket(channel, team, assignee_id=full.id)
    _ticket(channel, other_team, assignee_id=full.id)
    _ticket(channel, team, assignee_id=free.id)
    _ticket(channel, team, assignee_id=free.id, status=TicketStatus.CLOSED)
    candidates = service.eligible_agents(team)
    assert [(c.agent, c.load) for c in candidates] == [(free, 1)]
    assert service.auto_assign(_ticket(channel, team), NOW) == free


def test_team_capacity_caps_each_agents_tickets_of_that_team():
    channel, team, (busy, elsewhere) = _desk(agents=2, team_capacity=1)
    brand = db.session.get(Brand, channel.brand_id)
    other_team = create_team(brand, "Billing")
    _ticket(channel, team, assignee_id=busy.id)
    _ticket(channel, other_team, assignee_id=elsewhere.id)
    _ticket(channel, other_team, assignee_id=elsewhere.id)
    candidates = service.eligible_agents(team)
    assert [(c.agent, c.load, c.team_load) for c in candidates] == [(elsewhere, 2, 0)]
    assert service.auto_assign(_ticket(channel, team), NOW) == elsewhere
    assert service.auto_assign(_ticket(channel, team), NOW) is None


def test_eligible_agents_reads_loads_in_one_query():
    channel, team, staff = _desk(agents=6)
    for agent in staff:
        _ticket(channel, team, assignee_id=agent.id)
    statements: list[str] = []

    def count(conn, cursor, statement, *args):
        statements.append(statement)

    event.listen(db.engine, "before_cursor_execute", count)
    try:
        candidates = service.eligible_agents(team)
    finally:
        event.remove(db.engine, "before_cursor_execute", count)
    assert len(candidates) == 6
    assert all(c.load == 1 for c in candidates)
    assert len(statements) == 1


# auto_assign --------------------------------------------------------------------------------


def test_auto_assign_records_the_event_notifies_and_stamps_the_rotation():
    channel, team, (agent,) = _desk(agents=1)
    ticket = _ticket(channel, team)
    assert service.auto_assign(ticket, NOW) == agent
    assert ticket.assignee_id == agent.id
    assert ticket.assigned_at == NOW
    assert _last_assigned(team, agent) == NOW
    events = db.session.scalars(select(TicketEvent).where(TicketEvent.ticket_id == ticket.id))
    assert [(e.kind, e.data, e.actor_id) for e in events] == [
        ("assigned", {"assignee_id": agent.id, "auto": True}, None)
    ]
    notification = db.session.scalar(select(Notification))
    assert notification.agent_id == agent.id
    assert notification.kind is NotificationKind.ASSIGNMENT
    assert notification.ticket_id == ticket.id
    assert notification.conversation_id == ticket.conversation_id


def test_auto_assign_leaves_tickets_it_should_not_touch():
    channel, team, (agent,) = _desk(agents=1)
    resolved = _ticket(channel, team, status=TicketStatus.RESOLVED)
    no_team = _ticket(channel, None)
    assigned = _ticket(channel, team, assignee_id=agent.id)
    for ticket in (resolved, no_team, assigned):
        assert service.auto_assign(ticket, NOW) is None
    team.assignment = "manual"  # the team's tickets wait to be taken by hand
    assert service.auto_assign(_ticket(channel, team), NOW) is None
    assert db.session.scalar(select(TicketEvent)) is None


def test_auto_assign_never_overwrites_a_take_between_choice_and_update():
    channel, team, (agent, taker) = _desk(agents=2)
    ticket = _ticket(channel, team)
    # Another process takes the ticket; this session's object still shows it unassigned.
    db.session.execute(
        update(Ticket)
        .where(Ticket.id == ticket.id)
        .values(assignee_id=taker.id)
        .execution_options(synchronize_session=False)
    )
    assert ticket.assignee_id is None
    assert service.auto_assign(ticket, NOW) is None
    db.session.refresh(ticket)
    assert ticket.assignee_id == taker.id
    assert _last_assigned(team, agent) is None
    assert db.session.scalar(select(TicketEvent)) is None
    assert db.session.scalar(select(Notification)) is None


# Waiting tickets ----------------------------------------------------------------------------


def test_nobody_eligible_leaves_the_ticket_waiting_until_an_agent_comes_online():
    channel, team, (agent,) = _desk(agents=1)
    service.set_availability(agent, Availability.OFFLINE)
    ticket = _ticket(channel, team)
    assert service.auto_assign(ticket, NOW) is None
    assert ticket.assignee_id is None
    assert service.set_availability(agent, Availability.AWAY) == 0
    assert ticket.assignee_id is None
    assert service.set_availability(agent, "online", now=NOW) == 1
    assert agent.availability is Availability.ONLINE
    assert ticket.assignee_id == agent.id


def test_unknown_availability_is_refused():
    _, _, (agent,) = _desk(agents=1)
    with pytest.raises(ValidationError):
        service.set_availability(agent, "busy")


def test_resolving_a_ticket_frees_capacity_for_the_next_waiting_one():
    channel, team, (agent,) = _desk(agents=1, capacity=1)
    first = _ticket(channel, team, opened=NOW - timedelta(hours=2))
    assert service.auto_assign(first, NOW) == agent
    waiting = _ticket(channel, team, opened=NOW - timedelta(hours=1))
    assert service.auto_assign(waiting, NOW) is None
    assert service.assign_waiting(now=NOW) == 0
    first.status = TicketStatus.RESOLVED
    db.session.flush()
    assert service.assign_waiting(now=NOW) == 1
    assert waiting.assignee_id == agent.id


def test_assign_waiting_takes_the_oldest_first_until_nobody_is_eligible():
    channel, team, (agent,) = _desk(agents=1, capacity=2)
    service.set_availability(agent, Availability.OFFLINE)
    newest = _ticket(channel, team, opened=NOW - timedelta(minutes=1))
    oldest = _ticket(channel, team, opened=NOW - timedelta(minutes=30))
    middle = _ticket(channel, team, opened=NOW - timedelta(minutes=10))
    agent.availability = Availability.ONLINE
    assert service.assign_waiting(now=NOW) == 2
    assert [oldest.assignee_id, middle.assignee_id] == [agent.id, agent.id]
    assert newest.assignee_id is None


def test_assign_waiting_keeps_to_the_brand_and_its_setting():
    channel, team, (agent,) = _desk(agents=1)
    other_channel, other_team, (other_agent,) = _desk(agents=1)
    service.set_availability(agent, Availability.OFFLINE)
    service.set_availability(other_agent, Availability.OFFLINE)
    ours, theirs = _ticket(channel, team), _ticket(other_channel, other_team)
    agent.availability = other_agent.availability = Availability.ONLINE
    other_team.assignment = "manual"
    assert service.assign_waiting(other_channel.brand_id, now=NOW) == 0
    assert service.assign_waiting(channel.brand_id, now=NOW) == 1
    assert (ours.assignee_id, theirs.assignee_id) == (agent.id, None)


def test_worker_task_assigns_waiting_tickets_and_commits():
    channel, team, (agent,) = _desk(agents=1)
    service.set_availability(agent, Availability.OFFLINE)
    ticket_id = _ticket(channel, team).id
    agent.availability = Availability.ONLINE
    db.session.commit()
    assert assign_waiting_tickets() == 1
    db.session.rollback()
    assert db.session.get(Ticket, ticket_id).assignee_id == agent.id


# Concurrency (PostgreSQL) -------------------------------------------------------------------


@pytest.fixture
def pg_only(is_postgres):
    if not is_postgres:
        pytest.skip(
            "needs concurrent writers; SQLite serialises transactions (BEGIN IMMEDIATE): "
            "runs when DATABASE_URL names PostgreSQL"
        )


def _race_after_choosing(app, monkeypatch, ticket_ids: list[int]) -> list[object]:
    """Two workers each auto-assign a ticket, made to collide deterministically: both choose
    before either locks, and both try their first lock before either goes on."""
    chosen = threading.Barrier(2, timeout=10)
    tried = threading.Barrier(2, timeout=10)
    first_try = threading.local()
    eligible_agents, lock = service.eligible_agents, service._lock

    def eligible_then_wait(team):
        candidates = eligible_agents(team)
        chosen.wait()
        return candidates

    def lock_then_wait(team, agent_id, wait):
        locked = lock(team, agent_id, wait)
        if not getattr(first_try, "done", False):
            first_try.done = True
            tried.wait()
        return locked

    monkeypatch.setattr(service, "eligible_agents", eligible_then_wait)
    monkeypatch.setattr(service, "_lock", lock_then_wait)
    works = iter(ticket_ids)

    def assign():
        agent = service.auto_assign(db.session.get(Ticket, next(works)), NOW)
        return agent.id if agent else None

    return _race(app, assign, count=2)


def test_two_workers_never_overfill_the_last_seat(app, pg_only, monkeypatch):
    channel, team, (agent,) = _desk(agents=1, capacity=2)
    _ticket(channel, team, assignee_id=agent.id)
    ticket_ids = [_ticket(channel, team).id, _ticket(channel, team).id]
    agent_id = agent.id
    db.session.commit()
    outcomes = _race_after_choosing(app, monkeypatch, ticket_ids)
    assert sorted(outcomes, key=str) == [agent_id, None]
    db.session.expire_all()
    assignees = [db.session.get(Ticket, i).assignee_id for i in ticket_ids]
    assert sorted(assignees, key=str) == [agent_id, None]


def test_two_teams_never_overfill_a_shared_agent(app, pg_only, monkeypatch):
    channel, team, (agent,) = _desk(agents=1, capacity=1)
    brand = db.session.get(Brand, channel.brand_id)
    other_team = create_team(brand, "Billing")
    add_team_member(other_team, agent)
    ticket_ids = [_ticket(channel, team).id, _ticket(channel, other_team).id]
    agent_id = agent.id
    db.session.commit()
    outcomes = _race_after_choosing(app, monkeypatch, ticket_ids)
    assert sorted(outcomes, key=str) == [agent_id, None]


def test_two_tickets_at_once_go_to_different_agents(app, pg_only, monkeypatch):
    channel, team, (a, b) = _desk(agents=2)
    ticket_ids = [_ticket(channel, team).id, _ticket(channel, team).id]
    agent_ids = [a.id, b.id]
    db.session.commit()
    outcomes = _race_after_choosing(app, monkeypatch, ticket_ids)
    assert sorted(outcomes) == agent_ids


def test_two_sweeps_at_once_never_overfill_and_the_next_one_finishes(app, pg_only):
    channel, team, (a, b) = _desk(agents=2, capacity=3)
    for minute in range(8):
        _ticket(channel, team, opened=NOW - timedelta(minutes=minute))
    db.session.commit()
    outcomes = _race(app, lambda: service.assign_waiting(now=NOW), count=2)
    assert all(isinstance(o, int) for o in outcomes), outcomes
    assert service.assign_waiting(now=NOW) == 6 - sum(outcomes)
    loads = db.session.execute(
        select(Ticket.assignee_id, func.count()).group_by(Ticket.assignee_id)
    ).all()
    assert sorted(loads, key=str) == sorted([(a.id, 3), (b.id, 3), (None, 2)], key=str)

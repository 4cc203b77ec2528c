"""Tickets (docs/concepts.md): episodes, reopening, snoozing, pending, history and the concurrent
take."""

from __future__ import annotations

from datetime import timedelta

import pytest
from sqlalchemy import func, select

from helpdesk.accounts.models import Agent
from helpdesk.channels.models import Channel
from helpdesk.dm.models import Conversation, ConversationStatus, Message, MessageStatus
from helpdesk.dm.service import InboundMessage
from helpdesk.errors import AlreadyAssigned, NotFound, ReplyWindowClosed, ValidationError
from helpdesk.extensions import db
from helpdesk.inbox import service as inbox
from helpdesk.tickets import service as tickets
from helpdesk.tickets.models import Ticket, TicketEvent, TicketPause, TicketStatus
from tests.conftest import race as _race
from tests.conftest import table_counts
from tests.factories import AgentFactory, BrandFactory, ChannelFactory, ContactFactory, at, member

T0 = at("2026-11-16 09:00")  # a Monday


@pytest.fixture
def channel() -> Channel:
    channel = ChannelFactory()
    ContactFactory(channel=channel, platform_id="6120000000000001", followed_by_brand=True)
    return channel


@pytest.fixture
def agent(channel) -> Agent:
    agent = AgentFactory()
    member(agent, brand_of(channel))
    return agent


def brand_of(channel):
    from helpdesk.brands.models import Brand

    return db.session.get(Brand, channel.brand_id)


def write(channel, mid, when, sender="6120000000000001", text="hello") -> Message:
    return inbox.receive(
        channel, InboundMessage(mid=mid, sender_id=sender, sent_at=when, text=text), now=when
    )


def ticket_of(message: Message) -> Ticket:
    conversation = db.session.get(Conversation, message.conversation_id)
    return db.session.get(Ticket, conversation.current_ticket_id)


def event_kinds(ticket: Ticket) -> list[str]:
    return list(
        db.session.scalars(
            select(TicketEvent.kind)
            .where(TicketEvent.ticket_id == ticket.id)
            .order_by(TicketEvent.id)
        )
    )


def test_known_contact_message_opens_a_ticket_at_the_platform_time(channel):
    message = write(channel, "m1", T0)
    ticket = ticket_of(message)
    assert ticket.status is TicketStatus.OPEN
    assert ticket.opened_at == T0 and ticket.awaiting_since == T0
    assert message.ticket_id == ticket.id
    assert event_kinds(ticket) == ["created"]


def test_follow_up_messages_continue_the_same_ticket(channel):
    first = write(channel, "m1", T0)
    second = write(channel, "m2", T0 + timedelta(minutes=2))
    assert ticket_of(first).id == ticket_of(second).id
    assert db.session.scalar(select(func.count()).select_from(Ticket)) == 1
    assert ticket_of(second).awaiting_since == T0


def test_request_gets_its_ticket_on_acceptance_dated_from_the_first_message():
    channel = ChannelFactory()
    message = write(channel, "m1", T0, sender="6120000000000077")
    conversation = db.session.get(Conversation, message.conversation_id)
    assert conversation.current_ticket_id is None
    write(channel, "m2", T0 + timedelta(hours=1), sender="6120000000000077")
    ticket = inbox.accept(conversation, None, now=T0 + timedelta(hours=5))
    assert ticket.opened_at == T0
    assert (
        db.session.scalar(
            select(func.count()).select_from(Message).where(Message.ticket_id == ticket.id)
        )
        == 2
    )


def test_brand_reply_to_a_request_accepts_it_and_counts_as_first_response():
    channel = ChannelFactory()
    message = write(channel, "m1", T0, sender="6120000000000077")
    conversation = db.session.get(Conversation, message.conversation_id)
    agent = AgentFactory()
    member(agent, brand_of(channel))
    reply = inbox.reply(conversation, agent, text="Hi!", now=T0 + timedelta(minutes=30))
    ticket = ticket_of(message)
    assert ticket.opened_at == T0
    assert ticket.first_response_at == T0 + timedelta(minutes=30)
    assert ticket.awaiting_since is None
    assert reply.ticket_id == ticket.id


def test_new_message_within_the_reopen_period_reopens_the_ticket(channel, agent):
    ticket = ticket_of(write(channel, "m1", T0))
    tickets.set_status(ticket, "resolved", agent, now=T0 + timedelta(hours=1))
    later = write(channel, "m2", T0 + timedelta(days=6))
    assert ticket_of(later).id == ticket.id
    assert ticket.status is TicketStatus.OPEN and ticket.reopen_count == 1
    assert "reopened" in event_kinds(ticket)


def test_new_message_after_the_reopen_period_opens_a_new_ticket(channel, agent):
    ticket = ticket_of(write(channel, "m1", T0))
    tickets.set_status(ticket, "resolved", agent, now=T0 + timedelta(hours=1))
    later = write(channel, "m2", T0 + timedelta(days=7, hours=2))
    new = ticket_of(later)
    assert new.id != ticket.id and new.opened_at == T0 + timedelta(days=7, hours=2)
    assert ticket.status is TicketStatus.RESOLVED


def test_reopen_period_is_a_brand_setting(channel, agent):
    brand_of(channel).reopen_days = 1
    ticket = ticket_of(write(channel, "m1", T0))
    tickets.set_status(ticket, "resolved", agent, now=T0 + timedelta(hours=1))
    assert ticket_of(write(channel, "m2", T0 + timedelta(days=2))).id != ticket.id


def test_closed_ticket_is_never_reopened(channel, agent):
    ticket = ticket_of(write(channel, "m1", T0))
    tickets.set_status(ticket, "closed", agent, now=T0 + timedelta(hours=1))
    assert ticket_of(write(channel, "m2", T0 + timedelta(hours=2))).id != ticket.id


def test_snoozed_ticket_wakes_at_its_time(channel, agent):
    ticket = ticket_of(write(channel, "m1", T0))
    until = T0 + timedelta(hours=3)
    tickets.set_status(ticket, "snoozed", agent, snoozed_until=until, now=T0 + timedelta(minutes=5))
    assert tickets.wake_snoozed(now=until - timedelta(seconds=1)) == 0
    assert ticket.status is TicketStatus.SNOOZED
    assert tickets.wake_snoozed(now=until) == 1
    assert ticket.status is TicketStatus.OPEN and ticket.snoozed_until is None
    conversation = db.session.get(Conversation, ticket.conversation_id)
    assert conversation.status is ConversationStatus.OPEN


def test_snoozed_ticket_wakes_on_a_new_message(channel, agent):
    ticket = ticket_of(write(channel, "m1", T0))
    tickets.set_status(
        ticket,
        "snoozed",
        agent,
        snoozed_until=T0 + timedelta(days=1),
        now=T0 + timedelta(minutes=1),
    )
    write(channel, "m2", T0 + timedelta(minutes=30))
    assert ticket.status is TicketStatus.OPEN


def test_snooze_needs_a_future_time(channel, agent):
    ticket = ticket_of(write(channel, "m1", T0))
    db.session.commit()
    before = table_counts()
    with pytest.raises(ValidationError):
        tickets.set_status(
            ticket, "snoozed", agent, snoozed_until=T0, now=T0 + timedelta(minutes=1)
        )
    db.session.rollback()
    assert table_counts() == before


def test_pending_records_a_pause_and_a_customer_message_ends_it(channel, agent):
    ticket = ticket_of(write(channel, "m1", T0))
    tickets.set_status(ticket, "pending", agent, now=T0 + timedelta(minutes=10))
    assert ticket.paused_at == T0 + timedelta(minutes=10)
    write(channel, "m2", T0 + timedelta(hours=2))
    assert ticket.status is TicketStatus.OPEN
    pause = db.session.scalar(select(TicketPause).where(TicketPause.ticket_id == ticket.id))
    assert (pause.started_at, pause.ended_at) == (
        T0 + timedelta(minutes=10),
        T0 + timedelta(hours=2),
    )


def test_every_change_is_a_ticket_event(channel, agent):
    ticket = ticket_of(write(channel, "m1", T0))
    conversation = db.session.get(Conversation, ticket.conversation_id)
    tickets.take(ticket, agent, now=T0 + timedelta(minutes=1))
    tickets.set_priority(ticket, "urgent", agent, now=T0 + timedelta(minutes=2))
    inbox.reply(conversation, agent, text="on it", now=T0 + timedelta(minutes=3))
    tickets.set_status(ticket, "resolved", agent, now=T0 + timedelta(minutes=4))
    assert event_kinds(ticket) == [
        "created",
        "assigned",
        "priority_changed",
        "first_response",
        "response",
        "status_changed",
    ]
    events = db.session.scalars(select(TicketEvent).where(TicketEvent.ticket_id == ticket.id)).all()
    assert all(e.actor_id == agent.id for e in events[1:])


def test_take_twice_by_the_same_agent_is_fine_but_another_agent_is_refused(channel, agent):
    ticket = ticket_of(write(channel, "m1", T0))
    tickets.take(ticket, agent)
    tickets.take(ticket, agent)
    other = AgentFactory()
    member(other, brand_of(channel))
    with pytest.raises(AlreadyAssigned):
        tickets.take(ticket, other)
    assert ticket.assignee_id == agent.id


def test_concurrent_take_has_exactly_one_winner(app, is_postgres):
    if not is_postgres:
        pytest.skip("needs two concurrent writers: runs when DATABASE_URL names PostgreSQL")
    channel = ChannelFactory()
    ContactFactory(channel=channel, platform_id="6120000000000001", followed_by_brand=True)
    ticket_id = ticket_of(write(channel, "m1", T0)).id
    agents = [AgentFactory(), AgentFactory()]
    for a in agents:
        member(a, brand_of(channel))
    agent_ids = iter([a.id for a in agents])
    db.session.commit()

    def take():
        agent = db.session.get(Agent, next(agent_ids))
        tickets.take(db.session.get(Ticket, ticket_id), agent)
        return agent.id

    outcomes = _race(app, take, count=2)
    winners = [o for o in outcomes if isinstance(o, int)]
    assert len(winners) == 1
    assert sum(isinstance(o, AlreadyAssigned) for o in outcomes) == 1
    db.session.expire_all()
    assert db.session.get(Ticket, ticket_id).assignee_id == winners[0]
    assigned_events = db.session.scalar(
        select(func.count()).select_from(TicketEvent).where(TicketEvent.kind == "assigned")
    )
    assert assigned_events == 1


def test_assignee_must_belong_to_the_brand(channel, agent):
    ticket = ticket_of(write(channel, "m1", T0))
    stranger = AgentFactory()
    member(stranger, BrandFactory())
    with pytest.raises(ValidationError):
        tickets.assign(ticket, stranger.id, agent)
    with pytest.raises(NotFound):
        tickets.set_status(ticket, "resolved", stranger)


def test_scheduled_message_is_released_when_due_and_counts_as_the_response(channel, agent):
    message = write(channel, "m1", T0)
    conversation = db.session.get(Conversation, message.conversation_id)
    scheduled = inbox.reply(
        conversation,
        agent,
        text="later",
        send_at=T0 + timedelta(hours=2),
        now=T0 + timedelta(minutes=1),
    )
    ticket = ticket_of(message)
    assert scheduled.status is MessageStatus.SCHEDULED and ticket.first_response_at is None
    assert inbox.release_scheduled(now=T0 + timedelta(hours=1)) == []
    assert inbox.release_scheduled(now=T0 + timedelta(hours=2)) == [scheduled.id]
    assert scheduled.status is MessageStatus.QUEUED
    assert ticket.first_response_at == T0 + timedelta(hours=2)


def test_scheduled_message_released_after_the_window_closed_fails_unsent(channel, agent):
    message = write(channel, "m1", T0)
    conversation = db.session.get(Conversation, message.conversation_id)
    scheduled = inbox.reply(
        conversation,
        agent,
        text="later",
        send_at=T0 + timedelta(days=6),
        now=T0 + timedelta(minutes=1),
    )
    # The workers were down until after the window closed: the window is judged again at release.
    assert inbox.release_scheduled(now=T0 + timedelta(days=7, minutes=1)) == []
    assert scheduled.status is MessageStatus.FAILED
    assert scheduled.error_code == ReplyWindowClosed.code

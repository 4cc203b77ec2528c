"""Invariants two processes could break at once, exercised with two real database sessions."""

from __future__ import annotations

import pytest
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from helpdesk.channels.models import Channel
from helpdesk.dm import service
from helpdesk.dm.models import Conversation, Message, Participant
from helpdesk.dm.service import InboundMessage
from helpdesk.errors import DuplicateMessage, GroupFull
from helpdesk.extensions import db
from tests.conftest import race as _race
from tests.factories import ChannelFactory, ContactFactory, at


@pytest.fixture
def pg_only(is_postgres):
    if not is_postgres:
        pytest.skip("needs concurrent writers: runs when DATABASE_URL names PostgreSQL")


def test_same_mid_delivered_twice_at_once_is_stored_once(app, pg_only):
    channel_id = ChannelFactory().id
    db.session.commit()

    def deliver():
        channel = db.session.get(Channel, channel_id)
        return service.receive_inbound(
            channel,
            InboundMessage(
                mid="race", sender_id="6120000000000001", sent_at=at("2026-11-20 10:00")
            ),
        ).id

    outcomes = _race(app, deliver, count=4)
    stored = [o for o in outcomes if isinstance(o, int)]
    assert len(stored) == 1
    assert all(isinstance(o, DuplicateMessage) for o in outcomes if not isinstance(o, int))
    db.session.expire_all()
    assert db.session.scalar(select(func.count()).select_from(Message)) == 1
    assert db.session.scalar(select(func.count()).select_from(Conversation)) == 1


def test_two_adds_for_the_last_seat_give_one_seat(app, pg_only):
    channel = ChannelFactory()
    contacts = [ContactFactory(channel=channel) for _ in range(32)]
    group = service.create_group(channel, "race", contacts[:30])
    db.session.commit()
    ids = (group.id, contacts[30].id, contacts[31].id)

    def adder(contact_id):
        def add():
            from helpdesk.dm.models import Contact

            conversation = db.session.get(Conversation, ids[0])
            return service.add_participant(conversation, db.session.get(Contact, contact_id)).id

        return add

    works = iter([adder(ids[1]), adder(ids[2])])
    outcomes = _race(app, lambda: next(works)(), count=2)
    assert sum(isinstance(o, int) for o in outcomes) == 1
    assert sum(isinstance(o, GroupFull) for o in outcomes) == 1
    db.session.expire_all()
    rows = db.session.scalar(
        select(func.count()).select_from(Participant).where(Participant.conversation_id == ids[0])
    )
    assert rows == 32 == db.session.get(Conversation, ids[0]).participant_count


def test_session_is_independent_per_thread(app):
    """Guard for the race helper itself: each thread gets its own session."""
    sessions: list[Session] = []
    _race(app, lambda: sessions.append(db.session()) or None)
    assert sessions[0] is not sessions[1]

"""The SLA sweep as it runs in production: beat schedules it, a real worker runs it, on whichever
database and broker the suite uses."""

from __future__ import annotations

import os
import time
from datetime import timedelta

import pytest
from sqlalchemy import func, select

from helpdesk.accounts.models import Role
from helpdesk.brands.models import Brand
from helpdesk.dm.models import Conversation, ConversationKind
from helpdesk.extensions import db
from helpdesk.notifications.models import Notification, NotificationKind
from helpdesk.sla import service as sla
from helpdesk.sla.models import SlaReminder
from helpdesk.tickets.models import Ticket
from helpdesk.types import utcnow
from tests.conftest import DATABASE_URL, REDIS_URL, fresh, wait_for
from tests.factories import AgentFactory, ChannelFactory, member


@pytest.fixture
def worker_env() -> dict[str, str]:
    """The environment of tests/test_worker.py with a sweep every second."""
    env = dict(os.environ, DATABASE_URL=DATABASE_URL, HELPDESK_ENV="test", SLA_SWEEP_SECONDS="1")
    if REDIS_URL:
        env["REDIS_URL"] = REDIS_URL
    return env


def _breach_notifications() -> int:
    return db.session.scalar(
        select(func.count())
        .select_from(Notification)
        .where(Notification.kind == NotificationKind.SLA_BREACH)
    )


@pytest.mark.worker
def test_beat_and_worker_send_an_overdue_breach_once(app, celery_process, tmp_path):
    channel = ChannelFactory()
    brand = db.session.get(Brand, channel.brand_id)
    agent = AgentFactory()
    member(agent, brand, Role.AGENT)
    conversation = Conversation(
        brand_id=channel.brand_id,
        channel_id=channel.id,
        kind=ConversationKind.DIRECT,
        thread_key="overdue",
    )
    db.session.add(conversation)
    db.session.flush()
    sla.create_policy(
        brand, None, "Standard", 0, {}, {"first_response_min": 30}, business_hours=False
    )
    opened = utcnow() - timedelta(hours=1)
    ticket = Ticket(
        brand_id=channel.brand_id,
        conversation_id=conversation.id,
        channel_id=channel.id,
        opened_at=opened,
        awaiting_since=opened,
        assignee_id=agent.id,
        breached=[],
    )
    db.session.add(ticket)
    db.session.flush()
    sla.refresh_ticket_sla(ticket, utcnow())
    ticket_id = ticket.id
    assert ticket.first_response_due_at < utcnow()
    db.session.commit()

    celery_process("worker", "--pool=solo", "--without-mingle", "--without-gossip")
    celery_process("beat", "--schedule", str(tmp_path / "beat-schedule"))
    assert wait_for(lambda: _breach_notifications() >= 1, timeout=60), "no breach was sent"

    time.sleep(3)  # several more sweeps at one per second
    assert fresh(_breach_notifications) == 1
    assert fresh(lambda: db.session.scalar(select(func.count()).select_from(SlaReminder))) == 1
    assert fresh(lambda: db.session.get(Ticket, ticket_id).breached) == ["first_response"]

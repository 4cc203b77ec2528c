"""SLA policies and reminders (docs/concepts.md): due times stored on tickets in business or
calendar hours, paused while pending, and each warning and breach sent exactly once however the
sweeps overlap. Every expected instant is worked out by hand in a comment."""

from __future__ import annotations

import itertools
from datetime import datetime, timedelta

import pytest
from sqlalchemy import func, select

from helpdesk.accounts.models import Role, Team, TeamMember
from helpdesk.brands.models import Brand
from helpdesk.channels.models import Channel
from helpdesk.dm.models import Conversation, ConversationKind, NotificationLevel
from helpdesk.dm.service import InboundMessage, receive_inbound, set_notification_level
from helpdesk.errors import Forbidden, NotFound, ValidationError
from helpdesk.extensions import db
from helpdesk.notifications.models import Notification, NotificationKind
from helpdesk.sla import service as sla
from helpdesk.sla.models import BusinessHours, ReminderKind, SlaPolicy, SlaReminder, SlaTarget
from helpdesk.tickets.models import (
    Priority,
    Ticket,
    TicketEvent,
    TicketPause,
    TicketStatus,
    TicketTag,
)
from helpdesk.types import utcnow
from tests.conftest import race, table_counts
from tests.factories import AgentFactory, BrandFactory, ChannelFactory, TagFactory, at, member

WEEKDAYS = ("mon", "tue", "wed", "thu", "fri")
_threads = itertools.count()


def office(timezone: str, holidays: tuple[str, ...] = ()) -> dict:
    """Monday to Friday, 09:00-17:00 local time, in the API shape."""
    return {
        "timezone": timezone,
        "weekly": {day: [["09:00", "17:00"]] for day in WEEKDAYS},
        "holidays": list(holidays),
    }


def conversation_of(channel: Channel) -> Conversation:
    conversation = Conversation(
        brand_id=channel.brand_id,
        channel_id=channel.id,
        kind=ConversationKind.DIRECT,
        thread_key=f"sla-{next(_threads)}",
    )
    db.session.add(conversation)
    db.session.flush()
    return conversation


def open_ticket(
    channel: Channel,
    opened_at: datetime,
    conversation: Conversation | None = None,
    **fields,
) -> Ticket:
    """A ticket as the tickets service leaves it after creation: awaiting since it opened."""
    conversation = conversation or conversation_of(channel)
    fields.setdefault("awaiting_since", opened_at)
    ticket = Ticket(
        brand_id=channel.brand_id,
        conversation_id=conversation.id,
        channel_id=channel.id,
        opened_at=opened_at,
        breached=[],
        **fields,
    )
    db.session.add(ticket)
    db.session.flush()
    sla.refresh_ticket_sla(ticket, opened_at)
    return ticket


def policy(
    brand: Brand,
    position: int = 0,
    conditions: dict | None = None,
    business_hours: bool = True,
    name: str = "Standard",
    **targets: int,
) -> SlaPolicy:
    return sla.create_policy(brand, None, name, position, conditions or {}, targets, business_hours)


def refresh(ticket: Ticket, now: datetime, **changes) -> Ticket:
    for key, value in changes.items():
        setattr(ticket, key, value)
    sla.refresh_ticket_sla(ticket, now)
    return ticket


def sweep(now: datetime) -> sla.SweepReport:
    """One sweep as the worker runs it: the service, then a commit."""
    report = sla.sweep_sla(now)
    db.session.commit()
    return report


def reminders(ticket: Ticket) -> list[tuple[str, str, str]]:
    rows = db.session.execute(
        select(SlaReminder.target, SlaReminder.kind, SlaReminder.cycle)
        .where(SlaReminder.ticket_id == ticket.id)
        .order_by(SlaReminder.id)
    )
    return [(target.value, kind.value, cycle) for target, kind, cycle in rows]


def notified(kind: NotificationKind | None = None) -> list[tuple[int, str, bool]]:
    query = select(Notification).order_by(Notification.id)
    if kind is not None:
        query = query.where(Notification.kind == kind)
    return [(n.agent_id, n.kind.value, n.alert) for n in db.session.scalars(query)]


def events(ticket: Ticket, kind: str) -> list[dict]:
    return list(
        db.session.scalars(
            select(TicketEvent.data)
            .where(TicketEvent.ticket_id == ticket.id, TicketEvent.kind == kind)
            .order_by(TicketEvent.id)
        )
    )


@pytest.fixture
def channel() -> Channel:
    return ChannelFactory()


@pytest.fixture
def brand(channel) -> Brand:
    return db.session.get(Brand, channel.brand_id)


@pytest.fixture
def manager(brand):
    agent = AgentFactory()
    member(agent, brand, Role.MANAGER)
    return agent


@pytest.fixture
def assignee(brand):
    agent = AgentFactory()
    member(agent, brand, Role.AGENT)
    return agent


# Due times in business hours ---------------------------------------------------------------------


def test_due_times_skip_a_weekend_and_two_holidays_in_berlin(brand, channel, manager):
    sla.set_calendar(brand, manager, office("Europe/Berlin", ("2026-04-03", "2026-04-06")))
    policy(brand, first_response_min=60, resolution_min=600)
    # Thu 2026-04-02 16:30 CEST = 14:30 UTC. Good Friday, the weekend and Easter Monday are shut.
    ticket = open_ticket(channel, at("2026-04-02 14:30"))
    # First response, 60 min: 30 on Thursday, 30 from Tue 04-07 09:00 CEST -> 09:30 CEST.
    assert ticket.first_response_due_at == at("2026-04-07 07:30")
    # Warning at 80 % = 48 min: 30 on Thursday, 18 on Tuesday -> 09:18 CEST.
    assert ticket.first_response_warn_at == at("2026-04-07 07:18")
    # Resolution, 10 h: 0.5 Thursday, 8 on Tuesday, 1.5 from Wed 09:00 CEST -> 10:30 CEST.
    assert ticket.resolution_due_at == at("2026-04-08 08:30")
    # Its warning at 8 h: 0.5 Thursday + 7.5 Tuesday -> Tue 16:30 CEST.
    assert ticket.resolution_warn_at == at("2026-04-07 14:30")
    assert ticket.next_response_due_at is None
    assert ticket.next_sla_check_at == at("2026-04-07 07:18")


@pytest.mark.parametrize(
    ("timezone", "holidays", "opened", "minutes", "due", "warn"),
    [
        # Berlin springs forward on Sun 2026-03-29. Fri 03-27 16:00 CET (15:00 UTC) + 2 h:
        # 1 h on Friday, 1 h from Mon 03-30 09:00 CEST = 07:00 UTC -> 08:00 UTC.
        # Warning at 96 min: 60 Friday + 36 Monday -> 07:36 UTC.
        ("Europe/Berlin", (), "2026-03-27 15:00", 120, "2026-03-30 08:00", "2026-03-30 07:36"),
        # Berlin falls back on Sun 2026-10-25. Fri 10-23 16:00 CEST (14:00 UTC) + 2 h:
        # 1 h Friday, 1 h from Mon 10-26 09:00 CET = 08:00 UTC -> 09:00 UTC; warning 08:36 UTC.
        ("Europe/Berlin", (), "2026-10-23 14:00", 120, "2026-10-26 09:00", "2026-10-26 08:36"),
        # New York springs forward on Sun 2026-03-08. Fri 03-06 16:00 EST (21:00 UTC) + 2 h:
        # 1 h Friday, 1 h from Mon 03-09 09:00 EDT = 13:00 UTC -> 14:00 UTC; warning 13:36 UTC.
        ("America/New_York", (), "2026-03-06 21:00", 120, "2026-03-09 14:00", "2026-03-09 13:36"),
        # New York falls back on Sun 2026-11-01. Fri 10-30 15:00 EDT (19:00 UTC) + 3 h:
        # 2 h Friday, 1 h from Mon 11-02 09:00 EST = 14:00 UTC -> 15:00 UTC.
        # Warning at 144 min: 120 Friday + 24 Monday -> 14:24 UTC.
        ("America/New_York", (), "2026-10-30 19:00", 180, "2026-11-02 15:00", "2026-11-02 14:24"),
        # Thanksgiving, Thu 2026-11-26, is a holiday. Wed 11-25 16:00 EST (21:00 UTC) + 2 h:
        # 1 h Wednesday, 1 h from Fri 11-27 09:00 EST = 14:00 UTC -> 15:00 UTC; warning 14:36.
        (
            "America/New_York",
            ("2026-11-26",),
            "2026-11-25 21:00",
            120,
            "2026-11-27 15:00",
            "2026-11-27 14:36",
        ),
    ],
)
def test_due_times_follow_daylight_saving_changes_and_holidays(
    brand, channel, manager, timezone, holidays, opened, minutes, due, warn
):
    sla.set_calendar(brand, manager, office(timezone, holidays))
    policy(brand, first_response_min=minutes)
    ticket = open_ticket(channel, at(opened))
    assert ticket.first_response_due_at == at(due)
    assert ticket.first_response_warn_at == at(warn)


def test_calendar_hours_policy_ignores_the_business_hours(brand, channel, manager):
    sla.set_calendar(brand, manager, office("Europe/Berlin"))
    policy(brand, business_hours=False, first_response_min=240)
    # Fri 2026-06-05 14:30 UTC + 4 h on the clock -> 18:30 UTC, though the office shut at 15:00.
    ticket = open_ticket(channel, at("2026-06-05 14:30"))
    assert ticket.first_response_due_at == at("2026-06-05 18:30")
    # 80 % of 4 h = 192 min -> 17:42 UTC.
    assert ticket.first_response_warn_at == at("2026-06-05 17:42")


def test_brand_without_business_hours_is_open_around_the_clock(brand, channel):
    assert db.session.scalar(select(func.count()).select_from(BusinessHours)) == 0
    policy(brand, business_hours=True, first_response_min=60)
    # Sat 2026-06-06 10:00 UTC: no calendar means 24/7, so a Saturday counts -> 11:00.
    ticket = open_ticket(channel, at("2026-06-06 10:00"))
    assert ticket.first_response_due_at == at("2026-06-06 11:00")
    assert sla.get_calendar(brand).timezone == brand.timezone


# Which policy -------------------------------------------------------------------------------------


def test_first_matching_policy_wins_by_position(brand, channel):
    other_channel = ChannelFactory(brand=brand)
    vip = TagFactory(brand=brand, name="vip")
    catch_all = policy(brand, position=9, name="Everyone", first_response_min=600)
    urgent = policy(
        brand, position=2, name="Urgent", conditions={"priority": "urgent"}, first_response_min=30
    )
    vips = policy(brand, position=1, name="VIP", conditions={"tag": "vip"}, first_response_min=15)
    by_channel = policy(
        brand,
        position=3,
        name="Second account",
        conditions={"channel_id": other_channel.id},
        first_response_min=45,
    )
    opened = at("2026-06-08 10:00")

    urgent_vip = open_ticket(channel, opened, priority=Priority.URGENT)
    db.session.add(TicketTag(ticket_id=urgent_vip.id, tag_id=vip.id))
    refresh(urgent_vip, opened)
    assert urgent_vip.sla_policy_id == vips.id
    assert urgent_vip.first_response_due_at == opened + timedelta(minutes=15)

    assert open_ticket(channel, opened, priority=Priority.URGENT).sla_policy_id == urgent.id
    assert open_ticket(other_channel, opened).sla_policy_id == by_channel.id
    plain = open_ticket(channel, opened)
    assert plain.sla_policy_id == catch_all.id
    assert plain.first_response_due_at == opened + timedelta(minutes=600)

    # A tie on position goes to the older policy.
    tie = policy(
        brand, position=1, name="Also VIP", conditions={"tag_id": vip.id}, first_response_min=5
    )
    refresh(urgent_vip, opened)
    assert urgent_vip.sla_policy_id == vips.id != tie.id


def test_no_matching_policy_means_no_clocks(brand, channel):
    policy(brand, conditions={"priority": "urgent"}, first_response_min=30)
    ticket = open_ticket(channel, at("2026-06-08 10:00"))
    assert ticket.sla_policy_id is None
    assert ticket.first_response_due_at is ticket.resolution_due_at is None
    assert ticket.next_sla_check_at is None


def test_a_target_left_empty_runs_no_clock(brand, channel):
    policy(brand, business_hours=False, resolution_min=120)
    ticket = open_ticket(channel, at("2026-06-08 10:00"))
    assert ticket.first_response_due_at is None and ticket.first_response_warn_at is None
    assert ticket.resolution_due_at == at("2026-06-08 12:00")


# Pauses, responses, resolution ------------------------------------------------------------------


def test_pending_stops_the_clock_and_the_rest_counts_from_the_resume(brand, channel):
    policy(brand, business_hours=False, first_response_min=60)
    ticket = open_ticket(channel, at("2026-11-20 10:00"))
    pause = TicketPause(ticket_id=ticket.id, started_at=at("2026-11-20 10:20"))
    db.session.add(pause)
    refresh(ticket, at("2026-11-20 10:20"), status=TicketStatus.PENDING)
    # While pending there is nothing to count towards and nothing for the sweep.
    assert ticket.first_response_due_at is ticket.first_response_warn_at is None
    assert ticket.next_sla_check_at is None

    pause.ended_at = at("2026-11-20 11:00")
    refresh(ticket, at("2026-11-20 11:00"), status=TicketStatus.OPEN)
    # 20 min used before the pause stay used; the other 40 count from 11:00 -> 11:40.
    assert ticket.first_response_due_at == at("2026-11-20 11:40")
    # Warning at 48 min: 20 before + 28 after -> 11:28.
    assert ticket.first_response_warn_at == at("2026-11-20 11:28")


def test_pause_in_business_hours_keeps_the_time_used(brand, channel, manager):
    sla.set_calendar(brand, manager, office("Europe/Berlin"))
    policy(brand, first_response_min=120, resolution_min=600)
    # Opened Mon 2026-06-08 09:00 CEST (07:00 UTC); pending from 10:00 CEST to Tue 10:00 CEST.
    ticket = open_ticket(channel, at("2026-06-08 07:00"))
    db.session.add(
        TicketPause(
            ticket_id=ticket.id, started_at=at("2026-06-08 08:00"), ended_at=at("2026-06-09 08:00")
        )
    )
    refresh(ticket, at("2026-06-09 08:00"))
    # 60 min used on Monday; the other 60 from Tue 10:00 CEST -> 11:00 CEST = 09:00 UTC.
    assert ticket.first_response_due_at == at("2026-06-09 09:00")
    # Resolution, 10 h: 1 Monday, 7 on Tuesday from 10:00 to 17:00, 2 from Wed 09:00 -> 11:00 CEST.
    assert ticket.resolution_due_at == at("2026-06-10 09:00")


def test_next_response_clock_runs_only_after_the_first_response(brand, channel):
    policy(brand, business_hours=False, first_response_min=60, next_response_min=30)
    ticket = open_ticket(channel, at("2026-11-20 10:00"))
    # Awaiting since it opened, but that wait is the first response's, not a next response's.
    assert ticket.awaiting_since is not None
    assert ticket.next_response_due_at is None
    assert ticket.first_response_due_at == at("2026-11-20 11:00")

    refresh(
        ticket,
        at("2026-11-20 10:10"),
        first_response_at=at("2026-11-20 10:10"),
        awaiting_since=None,
    )
    assert ticket.first_response_due_at is ticket.first_response_warn_at is None
    assert ticket.next_response_due_at is None

    refresh(ticket, at("2026-11-20 11:00"), awaiting_since=at("2026-11-20 11:00"))
    assert ticket.next_response_due_at == at("2026-11-20 11:30")
    assert ticket.next_response_warn_at == at("2026-11-20 11:24")
    assert ticket.next_sla_check_at == at("2026-11-20 11:24")


def test_resolved_ticket_has_no_clocks(brand, channel):
    policy(brand, business_hours=False, first_response_min=60, resolution_min=240)
    ticket = open_ticket(channel, at("2026-11-20 10:00"))
    refresh(
        ticket,
        at("2026-11-20 10:30"),
        status=TicketStatus.RESOLVED,
        resolved_at=at("2026-11-20 10:30"),
    )
    assert ticket.resolution_due_at is ticket.first_response_due_at is None
    assert ticket.next_sla_check_at is None


# Changes of policy and calendar -----------------------------------------------------------------


def test_policy_change_moves_the_due_times_of_open_tickets(brand, channel, manager):
    standard = policy(brand, business_hours=False, first_response_min=60)
    opened = at("2026-11-20 10:00")
    ticket = open_ticket(channel, opened)
    resolved = open_ticket(channel, opened)
    refresh(resolved, opened, status=TicketStatus.RESOLVED, resolved_at=opened)
    db.session.commit()

    sla.update_policy(standard, manager, targets={"first_response_min": 120})
    db.session.commit()
    db.session.expire_all()
    assert ticket.first_response_due_at == at("2026-11-20 12:00")
    assert resolved.first_response_due_at is None

    faster = sla.create_policy(
        brand, manager, "Faster", -1, {}, {"first_response_min": 15}, business_hours=False
    )
    assert ticket.sla_policy_id == faster.id
    assert ticket.first_response_due_at == at("2026-11-20 10:15")

    sla.delete_policy(faster, manager)
    assert ticket.sla_policy_id == standard.id
    assert ticket.first_response_due_at == at("2026-11-20 12:00")


def test_calendar_change_moves_the_due_times_of_open_tickets(brand, channel, manager):
    policy(brand, first_response_min=120)
    # Fri 2026-06-05 14:00 UTC (16:00 CEST), open 24/7 for now -> 16:00 UTC.
    ticket = open_ticket(channel, at("2026-06-05 14:00"))
    assert ticket.first_response_due_at == at("2026-06-05 16:00")
    db.session.commit()

    sla.set_calendar(brand, manager, office("Europe/Berlin"))
    db.session.commit()
    db.session.expire_all()
    # 1 h until 17:00 CEST Friday, 1 h from Mon 06-08 09:00 CEST -> 10:00 CEST = 08:00 UTC.
    assert ticket.first_response_due_at == at("2026-06-08 08:00")

    sla.set_calendar(brand, manager, office("America/New_York"))
    # Fri 10:00 EDT: 7 h left that day, so 2 h -> 12:00 EDT = 16:00 UTC.
    assert ticket.first_response_due_at == at("2026-06-05 16:00")
    assert sla.get_calendar(brand).timezone == "America/New_York"


# The sweep ----------------------------------------------------------------------------------------


def test_warning_and_breach_each_fire_once_over_repeated_sweeps(brand, channel, assignee, manager):
    policy(brand, business_hours=False, first_response_min=60, resolution_min=240)
    ticket = open_ticket(channel, at("2026-11-20 10:00"), assignee_id=assignee.id)
    db.session.commit()
    # First response: warning 10:48, due 11:00. Resolution: warning 13:12, due 14:00.
    assert ticket.next_sla_check_at == at("2026-11-20 10:48")

    assert sweep(at("2026-11-20 10:47")).checked == 0
    report = sweep(at("2026-11-20 10:48"))
    assert (report.checked, report.warnings, report.breaches) == (1, 1, 0)
    for moment in ("10:48", "10:50", "10:59"):
        assert sweep(at(f"2026-11-20 {moment}")).checked == 0
    assert ticket.next_sla_check_at == at("2026-11-20 11:00")

    report = sweep(at("2026-11-20 11:00"))
    assert (report.warnings, report.breaches) == (0, 1)
    assert sweep(at("2026-11-20 11:05")).checked == 0
    assert ticket.next_sla_check_at == at("2026-11-20 13:12")

    assert sweep(at("2026-11-20 13:12")).warnings == 1
    assert sweep(at("2026-11-20 14:00")).breaches == 1
    for hour in (14, 15, 18):
        report = sweep(at(f"2026-11-20 {hour}:30"))
        assert (report.checked, report.warnings, report.breaches) == (0, 0, 0)
    assert ticket.next_sla_check_at is None

    assert reminders(ticket) == [
        ("first_response", "warning", "first"),
        ("first_response", "breach", "first"),
        ("resolution", "warning", "r0"),
        ("resolution", "breach", "r0"),
    ]
    # Warnings go to the assignee; breaches to the assignee and the brand's managers.
    assert notified(NotificationKind.SLA_WARNING) == [
        (assignee.id, "sla_warning", True),
        (assignee.id, "sla_warning", True),
    ]
    assert sorted(notified(NotificationKind.SLA_BREACH)) == sorted(
        [(assignee.id, "sla_breach", True), (manager.id, "sla_breach", True)] * 2
    )
    assert ticket.breached == ["first_response", "resolution"]
    assert [e["target"] for e in events(ticket, "sla_warning")] == ["first_response", "resolution"]
    assert [e["target"] for e in events(ticket, "sla_breached")] == [
        "first_response",
        "resolution",
    ]
    # 11:00 UTC is 12:00 in Berlin, where the brand reads its times.
    body = db.session.scalar(
        select(Notification.body).where(Notification.kind == NotificationKind.SLA_WARNING)
    )
    assert body == f"SLA warning: first response due 12:00 on ticket #{ticket.id}"


def test_a_late_sweep_sends_only_the_breach(brand, channel, assignee):
    policy(brand, business_hours=False, first_response_min=60)
    ticket = open_ticket(channel, at("2026-11-20 10:00"), assignee_id=assignee.id)
    db.session.commit()
    report = sweep(at("2026-11-20 11:30"))
    assert (report.warnings, report.breaches) == (0, 1)
    assert ticket.next_sla_check_at is None
    assert sweep(at("2026-11-20 12:00")).checked == 0
    assert reminders(ticket) == [("first_response", "breach", "first")]
    assert notified() == [(assignee.id, "sla_breach", True)]


def test_a_sweep_that_dies_before_commit_is_redone_by_the_next(brand, channel, assignee):
    policy(brand, business_hours=False, first_response_min=60)
    ticket = open_ticket(channel, at("2026-11-20 10:00"), assignee_id=assignee.id)
    db.session.commit()
    sla.sweep_sla(at("2026-11-20 11:00"))
    db.session.rollback()  # the worker died: nothing of that sweep is kept
    assert reminders(ticket) == [] and notified() == []
    assert ticket.next_sla_check_at == at("2026-11-20 10:48")

    assert sweep(at("2026-11-20 11:01")).breaches == 1
    assert reminders(ticket) == [("first_response", "breach", "first")]
    assert notified() == [(assignee.id, "sla_breach", True)]


def test_each_awaited_message_starts_a_new_next_response_clock(brand, channel, assignee):
    policy(brand, business_hours=False, first_response_min=60, next_response_min=30)
    ticket = open_ticket(channel, at("2026-11-20 10:00"), assignee_id=assignee.id)
    refresh(
        ticket,
        at("2026-11-20 10:10"),
        first_response_at=at("2026-11-20 10:10"),
        awaiting_since=None,
    )
    refresh(ticket, at("2026-11-20 11:00"), awaiting_since=at("2026-11-20 11:00"))
    db.session.commit()

    assert sweep(at("2026-11-20 11:24")).warnings == 1  # 80 % of 30 min after 11:00
    refresh(ticket, at("2026-11-20 11:26"), awaiting_since=None)  # answered in time
    assert ticket.next_sla_check_at is None
    refresh(ticket, at("2026-11-20 12:00"), awaiting_since=at("2026-11-20 12:00"))
    db.session.commit()
    assert ticket.next_sla_check_at == at("2026-11-20 12:24")
    assert sweep(at("2026-11-20 12:40")).breaches == 1
    assert sweep(at("2026-11-20 13:00")).checked == 0

    assert reminders(ticket) == [
        ("next_response", "warning", "2026-11-20T11:00:00+00:00"),
        ("next_response", "breach", "2026-11-20T12:00:00+00:00"),
    ]
    assert ticket.breached == ["next_response"]


def test_a_reopened_ticket_runs_a_new_resolution_cycle(brand, channel, assignee):
    policy(brand, business_hours=False, resolution_min=60)
    ticket = open_ticket(channel, at("2026-11-20 10:00"), assignee_id=assignee.id)
    db.session.commit()
    assert sweep(at("2026-11-20 11:00")).breaches == 1
    refresh(
        ticket,
        at("2026-11-20 11:10"),
        status=TicketStatus.RESOLVED,
        resolved_at=at("2026-11-20 11:10"),
    )
    # Reopened at 12:00: the resolved stretch is a pause, as the tickets service records it.
    db.session.add(
        TicketPause(
            ticket_id=ticket.id, started_at=at("2026-11-20 11:10"), ended_at=at("2026-11-20 12:00")
        )
    )
    refresh(
        ticket,
        at("2026-11-20 12:00"),
        status=TicketStatus.OPEN,
        resolved_at=None,
        reopen_count=1,
        awaiting_since=at("2026-11-20 12:00"),
    )
    db.session.commit()
    assert sweep(at("2026-11-20 12:01")).breaches == 1
    assert sweep(at("2026-11-20 12:02")).checked == 0
    assert [r[2] for r in reminders(ticket)] == ["r0", "r1"]


def test_pending_ticket_is_not_swept(brand, channel, assignee):
    policy(brand, business_hours=False, first_response_min=60)
    ticket = open_ticket(channel, at("2026-11-20 10:00"), assignee_id=assignee.id)
    db.session.add(TicketPause(ticket_id=ticket.id, started_at=at("2026-11-20 10:30")))
    refresh(ticket, at("2026-11-20 10:30"), status=TicketStatus.PENDING)
    db.session.commit()
    assert sweep(at("2026-11-20 15:00")).checked == 0
    assert reminders(ticket) == []


def test_a_reminder_another_sweep_already_sent_is_skipped_silently(
    brand, channel, assignee, monkeypatch
):
    policy(brand, business_hours=False, first_response_min=60)
    ticket = open_ticket(channel, at("2026-11-20 10:00"), assignee_id=assignee.id)
    # Another sweep stored the breach after this one read what had fired (here: nothing).
    db.session.add(
        SlaReminder(
            brand_id=brand.id,
            ticket_id=ticket.id,
            target=SlaTarget.FIRST_RESPONSE,
            kind=ReminderKind.BREACH,
            cycle="first",
            due_at=at("2026-11-20 11:00"),
        )
    )
    db.session.commit()
    monkeypatch.setattr(sla, "fired_reminders", lambda ids: {ticket_id: set() for ticket_id in ids})

    report = sweep(at("2026-11-20 11:30"))
    assert (report.checked, report.breaches) == (1, 0)
    assert len(reminders(ticket)) == 1
    assert notified() == []
    assert events(ticket, "sla_breached") == []
    assert ticket.next_sla_check_at is None


def test_the_worker_task_sweeps_in_batches(brand, channel, assignee):
    from workers.tasks.sla import sweep_sla

    policy(brand, business_hours=False, first_response_min=60)
    opened = utcnow() - timedelta(hours=2)
    tickets = [open_ticket(channel, opened, assignee_id=assignee.id) for _ in range(5)]
    db.session.commit()
    assert sweep_sla(limit=2) == {"checked": 5, "warnings": 0, "breaches": 5}
    assert sweep_sla(limit=2) == {"checked": 0, "warnings": 0, "breaches": 0}
    assert all(reminders(t) == [("first_response", "breach", "first")] for t in tickets)


def test_overlapping_sweeps_send_each_reminder_once(app, brand, channel, assignee, manager):
    from workers.tasks.sla import sweep_sla

    policy(brand, business_hours=False, first_response_min=60, resolution_min=140)
    # Opened 2 h ago: first response (60 min) is breached, resolution (140 min) is past its
    # warning at 112 min but not due.
    opened = utcnow() - timedelta(hours=2)
    ids = [open_ticket(channel, opened, assignee_id=assignee.id).id for _ in range(12)]
    db.session.commit()  # and read nothing more here: on SQLite a read would hold the lock

    outcomes = race(app, lambda: sweep_sla(limit=3), count=4)
    assert not [o for o in outcomes if isinstance(o, Exception)], outcomes
    assert sum(o["breaches"] for o in outcomes) == 12
    assert sum(o["warnings"] for o in outcomes) == 12

    db.session.expire_all()
    rows = db.session.execute(
        select(SlaReminder.ticket_id, SlaReminder.target, SlaReminder.kind, func.count()).group_by(
            SlaReminder.ticket_id, SlaReminder.target, SlaReminder.kind
        )
    ).all()
    assert sorted(r[:3] for r in rows) == sorted(
        [(i, SlaTarget.FIRST_RESPONSE, ReminderKind.BREACH) for i in ids]
        + [(i, SlaTarget.RESOLUTION, ReminderKind.WARNING) for i in ids]
    )
    assert {r[3] for r in rows} == {1}
    sent = db.session.execute(
        select(
            Notification.ticket_id, Notification.agent_id, Notification.kind, func.count()
        ).group_by(Notification.ticket_id, Notification.agent_id, Notification.kind)
    ).all()
    assert len(sent) == 12 * 3  # warning to the assignee; breach to the assignee and manager
    assert {r[3] for r in sent} == {1}


# Who is told --------------------------------------------------------------------------------------


def test_notification_settings_are_honoured(brand, channel, assignee, manager):
    muting = AgentFactory()
    member(muting, brand, Role.MANAGER)
    message = receive_inbound(
        channel,
        InboundMessage(mid="m1", sender_id="6120000000000001", sent_at=at("2026-11-20 10:00")),
    )
    conversation = db.session.get(Conversation, message.conversation_id)
    set_notification_level(assignee, conversation, NotificationLevel.OFF)
    set_notification_level(muting, conversation, NotificationLevel.MUTED)
    policy(brand, business_hours=False, first_response_min=60)
    ticket = open_ticket(
        channel, at("2026-11-20 10:00"), conversation=conversation, assignee_id=assignee.id
    )
    db.session.commit()

    assert sweep(at("2026-11-20 10:50")).warnings == 1
    assert sweep(at("2026-11-20 11:00")).breaches == 1
    # Off: nothing stored for the assignee; muted: stored without an alert.
    assert sorted(notified()) == sorted(
        [(muting.id, "sla_breach", False), (manager.id, "sla_breach", True)]
    )
    assert len(reminders(ticket)) == 2


def test_breach_alerts_the_assignee_and_the_team_managers(brand, channel, assignee, manager):
    team = Team(brand_id=brand.id, name="Tier 1")
    db.session.add(team)
    db.session.flush()
    admin, teammate, outsider_manager = AgentFactory(), AgentFactory(), AgentFactory()
    member(admin, brand, Role.ADMIN)
    member(teammate, brand, Role.AGENT)
    member(outsider_manager, brand, Role.MANAGER)  # a manager, but not of this team
    elsewhere = AgentFactory()  # a manager in another brand, only an agent in this one
    member(elsewhere, brand, Role.AGENT)
    member(elsewhere, BrandFactory(), Role.MANAGER)
    for agent in (assignee, manager, admin, teammate, elsewhere):
        db.session.add(TeamMember(team_id=team.id, agent_id=agent.id))
    policy(brand, business_hours=False, first_response_min=60)
    opened = at("2026-11-20 10:00")
    ticket = open_ticket(channel, opened, assignee_id=assignee.id, team_id=team.id)
    by_manager = open_ticket(channel, opened, assignee_id=manager.id, team_id=team.id)
    no_team = open_ticket(channel, opened)
    db.session.commit()

    sweep(at("2026-11-20 10:50"))
    assert notified(NotificationKind.SLA_WARNING) == [
        (assignee.id, "sla_warning", True),
        (manager.id, "sla_warning", True),
    ]
    sweep(at("2026-11-20 11:00"))

    def breach_recipients(t: Ticket) -> set[int]:
        return set(
            db.session.scalars(
                select(Notification.agent_id).where(
                    Notification.ticket_id == t.id, Notification.kind == NotificationKind.SLA_BREACH
                )
            )
        )

    assert breach_recipients(ticket) == {assignee.id, manager.id, admin.id}
    # An assignee who manages the team is told once.
    assert breach_recipients(by_manager) == {manager.id, admin.id}
    assert (
        db.session.scalar(
            select(func.count()).where(
                Notification.ticket_id == by_manager.id,
                Notification.kind == NotificationKind.SLA_BREACH,
            )
        )
        == 2
    )
    # Without a team, the brand's managers and admins.
    assert breach_recipients(no_team) == {manager.id, admin.id, outsider_manager.id}


# Settings: roles and validation -----------------------------------------------------------------


def test_an_agent_cannot_change_sla_settings(brand, assignee, manager):
    standard = policy(brand, first_response_min=60)
    db.session.commit()
    before = table_counts()
    with pytest.raises(Forbidden):
        sla.create_policy(brand, assignee, "Mine", 0, {}, {"first_response_min": 5}, True)
    with pytest.raises(Forbidden):
        sla.update_policy(standard, assignee, targets={"first_response_min": 5})
    with pytest.raises(Forbidden):
        sla.delete_policy(standard, assignee)
    with pytest.raises(Forbidden):
        sla.set_calendar(brand, assignee, office("Europe/Berlin"))
    db.session.rollback()
    assert table_counts() == before
    assert db.session.get(SlaPolicy, standard.id).first_response_min == 60


def test_another_brands_agent_gets_not_found(brand):
    standard = policy(brand, first_response_min=60)
    stranger = AgentFactory()
    member(stranger, BrandFactory(), Role.ADMIN)
    db.session.commit()
    before = table_counts()
    with pytest.raises(NotFound):
        sla.create_policy(brand, stranger, "Theirs", 0, {}, {"first_response_min": 5}, True)
    with pytest.raises(NotFound):
        sla.update_policy(standard, stranger, name="Theirs")
    with pytest.raises(NotFound):
        sla.set_calendar(brand, stranger, office("Europe/Berlin"))
    with pytest.raises(NotFound):
        sla.get_policy(standard.id, stranger.memberships[0].brand_id)
    db.session.rollback()
    assert table_counts() == before


@pytest.mark.parametrize(
    "calendar",
    [
        {"timezone": "Mars/Olympus_Mons", "weekly": {"mon": [["09:00", "17:00"]]}},
        {"weekly": {"mon": [["09:00", "17:00"]]}},
        {"timezone": "Europe/Berlin", "weekly": {"mon": [["09:00", "13:00"], ["12:00", "17:00"]]}},
        {"timezone": "Europe/Berlin", "weekly": {"mon": [["17:00", "09:00"]]}},
        {"timezone": "Europe/Berlin", "weekly": {"monday": [["09:00", "17:00"]]}},
        {"timezone": "Europe/Berlin", "weekly": {"mon": [["9am", "5pm"]]}},
        {"timezone": "Europe/Berlin", "weekly": {}},
        {"timezone": "Europe/Berlin", "weekly": {"mon": [["09:00", "17:00"]]}, "holidays": ["x"]},
        {"timezone": "Europe/Berlin", "weekly": {"mon": [["09:00", "17:00"]]}, "colour": "red"},
        ["Europe/Berlin"],
    ],
)
def test_an_invalid_calendar_is_refused_and_nothing_changes(brand, channel, manager, calendar):
    sla.set_calendar(brand, manager, office("Europe/Berlin"))
    policy(brand, first_response_min=120)
    ticket = open_ticket(channel, at("2026-06-05 14:00"))
    db.session.commit()
    before, due = table_counts(), ticket.first_response_due_at
    with pytest.raises(ValidationError):
        sla.set_calendar(brand, manager, calendar)
    db.session.rollback()
    assert table_counts() == before
    assert sla.get_calendar(brand).to_dict()["weekly"]["mon"] == [["09:00", "17:00"]]
    assert db.session.get(Ticket, ticket.id).first_response_due_at == due


@pytest.mark.parametrize(
    ("conditions", "targets", "extra"),
    [
        ({}, {"first_response_min": 0}, {}),
        ({}, {"first_response_min": -5}, {}),
        ({}, {"first_response_min": "30"}, {}),
        ({}, {"first_response_min": 1.5}, {}),
        ({}, {"first_response_min": True}, {}),
        ({}, {"first_reply_min": 30}, {}),
        ({"priority": "blocker"}, {"first_response_min": 30}, {}),
        ({"tag": "no such tag"}, {"first_response_min": 30}, {}),
        ({"channel_id": 999999}, {"first_response_min": 30}, {}),
        ({"language": "de"}, {"first_response_min": 30}, {}),
        ({}, {"first_response_min": 30}, {"name": "  "}),
        ({}, {"first_response_min": 30}, {"warning_pct": 100}),
        ({}, {"first_response_min": 30}, {"business_hours": "yes"}),
    ],
)
def test_invalid_policy_is_refused_and_nothing_is_written(
    brand, channel, manager, conditions, targets, extra
):
    db.session.commit()
    before = table_counts()
    args = {"name": "Standard", "business_hours": True} | extra
    with pytest.raises(ValidationError):
        sla.create_policy(
            brand,
            manager,
            args.pop("name"),
            0,
            conditions,
            targets,
            args.pop("business_hours"),
            **args,
        )
    db.session.rollback()
    assert table_counts() == before


def test_a_channel_of_another_brand_is_not_a_condition(brand, manager):
    foreign = ChannelFactory()
    db.session.commit()
    with pytest.raises(ValidationError):
        sla.create_policy(
            brand, manager, "X", 0, {"channel_id": foreign.id}, {"first_response_min": 5}, True
        )


def test_invalid_update_leaves_the_policy_as_it_was(brand, manager):
    standard = policy(brand, first_response_min=60, resolution_min=600)
    db.session.commit()
    with pytest.raises(ValidationError):
        sla.update_policy(standard, manager, name="Renamed", targets={"resolution_min": 0})
    db.session.rollback()
    assert (standard.name, standard.resolution_min) == ("Standard", 600)


def test_policies_in_the_api_shape(brand, channel, manager):
    vip = TagFactory(brand=brand, name="vip")
    later = sla.create_policy(brand, manager, "Later", 5, {}, {"resolution_min": 480}, False)
    first = sla.create_policy(
        brand,
        manager,
        "VIP urgent",
        1,
        {"priority": "urgent", "tag": "vip", "channel_id": channel.id},
        {"first_response_min": 15, "next_response_min": 30, "resolution_min": None},
        True,
    )
    assert sla.list_policies(brand.id) == [first, later]
    assert sla.policy_to_dict(first) == {
        "id": first.id,
        "name": "VIP urgent",
        "position": 1,
        "conditions": {
            "priority": "urgent",
            "tag": "vip",
            "tag_id": vip.id,
            "channel_id": channel.id,
        },
        "targets": {"first_response_min": 15, "next_response_min": 30, "resolution_min": None},
        "business_hours": True,
        "warning_pct": 80,
    }
    sla.update_policy(first, manager, conditions={"tag": None}, targets={"resolution_min": 600})
    shape = sla.policy_to_dict(first)
    assert shape["conditions"] == {
        "priority": "urgent",
        "tag": None,
        "tag_id": None,
        "channel_id": channel.id,
    }
    assert shape["targets"]["resolution_min"] == 600
    assert shape["targets"]["first_response_min"] == 15

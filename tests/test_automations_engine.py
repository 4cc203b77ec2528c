"""Automation rules run by the services: every event, condition field, operator and action, the
loop guard, failing actions, once per ticket, and the away message (sent once outside business
hours, never inside, and never a human first response)."""

from __future__ import annotations

from datetime import timedelta

import pytest
from sqlalchemy import func, select

from helpdesk.accounts.actor import Actor
from helpdesk.accounts.models import Role, Team, TeamMember
from helpdesk.automations import engine
from helpdesk.automations.models import AutomationRule, AutomationRun
from helpdesk.delivery import service as delivery
from helpdesk.dm.models import Conversation, Direction, Message
from helpdesk.extensions import db
from helpdesk.notifications.models import Notification
from helpdesk.sla.models import BusinessHours
from helpdesk.tickets import service as tickets
from helpdesk.tickets import tags
from helpdesk.tickets.models import Note, Tag, Ticket, TicketEvent, TicketStatus
from tests.conftest import race
from tests.factories import (
    AgentFactory,
    CannedReplyFactory,
    ChannelFactory,
    SlaPolicyFactory,
    TagFactory,
    at,
    member,
)
from tests.helpers.world import World, known_contact, receive

FRIDAY_10 = at("2026-11-20 10:00")  # inside Mon-Fri 09:00-17:00 UTC
FRIDAY_20 = at("2026-11-20 20:00")  # outside
WORKDAY = [["09:00", "17:00"]]


def rule(brand, event="message_received", conditions=(), actions=(), **fields) -> AutomationRule:
    row = AutomationRule(
        brand_id=brand.id,
        name=fields.pop("name", f"Rule {event}"),
        event=event,
        conditions=list(conditions),
        actions=list(actions),
        **fields,
    )
    db.session.add(row)
    db.session.commit()
    return row


def runs(rule_id: int) -> list[AutomationRun]:
    return list(db.session.scalars(select(AutomationRun).where(AutomationRun.rule_id == rule_id)))


def automation_events(ticket_id: int) -> list[TicketEvent]:
    return list(
        db.session.scalars(
            select(TicketEvent).where(
                TicketEvent.ticket_id == ticket_id, TicketEvent.kind == "automation"
            )
        )
    )


def tag_names(ticket: Ticket) -> list[str]:
    return tags.ticket_tag_names([ticket.id])[ticket.id]


def ticket_of(message: Message) -> Ticket:
    return db.session.get(Ticket, message.ticket_id)


def business_hours(brand) -> None:
    weekly = {day: WORKDAY for day in ("mon", "tue", "wed", "thu", "fri")}
    db.session.add(BusinessHours(brand_id=brand.id, calendar={"timezone": "UTC", "weekly": weekly}))
    db.session.commit()


@pytest.fixture
def w() -> World:
    return World()


def new_customer(w: World, text: str = "Hello", at_=None) -> Message:
    contact = known_contact(w.channel)
    message = receive(w.channel, contact.platform_id, text, at=at_)
    db.session.commit()
    return message


# Events -----------------------------------------------------------------------------------------


def test_message_received_runs_on_a_customer_message_and_names_the_rule(w):
    r = rule(w.brand, actions=[{"type": "set_priority", "value": "high"}], name="Urgent words")
    message = receive(w.channel, w.contact.platform_id, "Are you there?")
    db.session.commit()
    ticket = ticket_of(message)
    assert ticket.priority.value == "high"
    [event] = automation_events(ticket.id)
    assert event.data["rule_id"] == r.id and event.data["rule_name"] == "Urgent words"
    assert event.data["actions"] == ["set_priority: priority high"] and event.data["failures"] == []
    assert len(runs(r.id)) == 1 and runs(r.id)[0].period is None


def test_ticket_created_runs_once_when_a_ticket_opens_not_on_later_messages(w):
    r = rule(w.brand, "ticket_created", actions=[{"type": "add_tag", "value": "new"}])
    tag = TagFactory(brand=w.brand, name="new")
    r.actions = [{"type": "add_tag", "value": tag.id}]
    db.session.commit()
    contact = known_contact(w.channel)
    message = receive(w.channel, contact.platform_id, "first")
    receive(w.channel, contact.platform_id, "again")
    db.session.commit()
    assert tag_names(ticket_of(message)) == ["new"]
    assert len(runs(r.id)) == 1


def test_ticket_updated_runs_for_an_agent_or_a_token_not_for_the_system(w):
    r = rule(
        w.brand,
        "ticket_updated",
        conditions=[{"field": "priority", "op": "eq", "value": "urgent"}],
        actions=[{"type": "add_note", "value": "Urgent: call them"}],
    )
    ticket = ticket_of(w.message)
    tickets.set_priority(ticket, "urgent", None)  # the system: no rule
    db.session.commit()
    assert runs(r.id) == []
    tickets.set_priority(ticket, "low", w.agent)
    tickets.set_priority(ticket, "urgent", Actor.for_agent(w.agent, w.brand.id))
    db.session.commit()
    assert len(runs(r.id)) == 1
    assert db.session.scalar(select(Note.body).where(Note.ticket_id == ticket.id)) == (
        "Urgent: call them"
    )


@pytest.mark.parametrize("change", ["status", "team", "assignee", "tag"])
def test_ticket_updated_hears_every_kind_of_change(w, change):
    r = rule(w.brand, "ticket_updated", actions=[{"type": "set_priority", "value": "high"}])
    ticket = ticket_of(w.message)
    team = Team(brand_id=w.brand.id, name="Billing")
    db.session.add(team)
    db.session.flush()
    if change == "status":
        tickets.set_status(ticket, "pending", w.agent)
    elif change == "team":
        tickets.set_team(ticket, team.id, w.agent)
    elif change == "assignee":
        tickets.assign(ticket, w.agent.id, w.manager)
    else:
        tags.add_tag(ticket, "vip", w.agent)
    db.session.commit()
    assert len(runs(r.id)) == 1 and ticket.priority.value == "high"


def test_ticket_resolved_runs_when_resolved(w):
    r = rule(w.brand, "ticket_resolved", actions=[{"type": "add_note", "value": "Resolved"}])
    ticket = ticket_of(w.message)
    tickets.set_status(ticket, "pending", w.agent)
    db.session.commit()
    assert runs(r.id) == []
    tickets.set_status(ticket, "resolved", w.agent)
    db.session.commit()
    assert len(runs(r.id)) == 1


def test_a_disabled_rule_or_another_brands_rule_does_nothing(w):
    other = World("other")
    r1 = rule(w.brand, actions=[{"type": "set_priority", "value": "high"}], enabled=False)
    r2 = rule(other.brand, actions=[{"type": "set_priority", "value": "high"}])
    message = receive(w.channel, w.contact.platform_id, "hi")
    db.session.commit()
    assert ticket_of(message).priority.value == "normal"
    assert runs(r1.id) == [] and runs(r2.id) == []


def test_rules_run_in_position_order_and_see_what_earlier_ones_did(w):
    second = rule(
        w.brand,
        conditions=[{"field": "priority", "op": "eq", "value": "high"}],
        actions=[{"type": "set_priority", "value": "urgent"}],
        position=2,
    )
    first = rule(w.brand, actions=[{"type": "set_priority", "value": "high"}], position=1)
    message = receive(w.channel, w.contact.platform_id, "hi")
    db.session.commit()
    assert ticket_of(message).priority.value == "urgent"
    assert runs(first.id)[0].id < runs(second.id)[0].id


# Conditions: every field and operator -------------------------------------------------------------


def facts_world(w: World):
    ticket = ticket_of(w.message)
    team = Team(brand_id=w.brand.id, name="Support")
    db.session.add(team)
    db.session.flush()
    ticket.team_id = team.id
    ticket.assignee_id = w.agent.id
    tags.add_tag(ticket, "VIP", None)
    db.session.commit()
    return ticket, team


CASES = [
    # field, op, value (of the ticket in facts_world), expected
    ("text", "contains", "ORDER", True),
    ("text", "not_contains", "order", False),
    ("text", "not_contains", "refund", True),
    ("text", "eq", "where is my order?", True),
    ("text", "ne", "where is my order?", False),
    ("folder", "eq", "primary", True),
    ("folder", "ne", "primary", False),
    ("folder", "in", ["general", "requests"], False),
    ("folder", "not_in", ["general", "requests"], True),
    ("channel_id", "eq", "CHANNEL", True),
    ("channel_id", "ne", "CHANNEL", False),
    ("channel_id", "in", [0, "CHANNEL"], True),
    ("channel_id", "not_in", ["CHANNEL"], False),
    ("tag", "contains", "vip", True),
    ("tag", "not_contains", "vip", False),
    ("tag", "eq", "TAG", True),
    ("tag", "ne", "TAG", False),
    ("tag", "in", ["spam", "vip"], True),
    ("tag", "not_in", ["spam"], True),
    ("priority", "eq", "normal", True),
    ("priority", "in", ["high", "urgent"], False),
    ("priority", "not_in", ["high", "urgent"], True),
    ("priority", "ne", "normal", False),
    ("status", "eq", "open", True),
    ("status", "ne", "open", False),
    ("status", "in", ["pending", "open"], True),
    ("status", "not_in", ["open"], False),
    ("assignee_id", "eq", "AGENT", True),
    ("assignee_id", "eq", None, False),
    ("assignee_id", "ne", "AGENT", False),
    ("assignee_id", "in", ["AGENT"], True),
    ("assignee_id", "not_in", ["AGENT"], False),
    ("team_id", "eq", "TEAM", True),
    ("team_id", "ne", "TEAM", False),
    ("team_id", "in", [0], False),
    ("team_id", "not_in", [0], True),
    ("business_hours", "eq", "open", True),  # no calendar set: open around the clock
    ("business_hours", "ne", "open", False),
    ("contact_follows_brand", "eq", False, True),
    ("contact_follows_brand", "ne", False, False),
    ("contact_is_new", "eq", True, True),
    ("contact_is_new", "ne", True, False),
    # an operator the field does not allow never holds
    ("business_hours", "contains", "open", False),
    ("nonsense", "eq", "x", False),
]


@pytest.mark.parametrize("field,op,value,expected", CASES)
def test_every_condition_field_and_operator(w, field, op, value, expected):
    ticket, team = facts_world(w)
    tag = db.session.scalar(select(Tag).where(Tag.brand_id == w.brand.id))
    names = {"CHANNEL": w.channel.id, "AGENT": w.agent.id, "TEAM": team.id, "TAG": tag.id}

    def fill(v):
        if isinstance(v, list):
            return [fill(item) for item in v]
        return names.get(v, v) if isinstance(v, str) else v

    r = rule(w.brand, conditions=[{"field": field, "op": op, "value": fill(value)}])
    assert engine.matches(r, ticket) is expected
    assert (ticket in engine.dry_run(r)) is expected


def test_all_conditions_must_hold(w):
    ticket = ticket_of(w.message)
    both = [
        {"field": "text", "op": "contains", "value": "order"},
        {"field": "priority", "op": "eq", "value": "normal"},
    ]
    assert engine.matches(rule(w.brand, conditions=both), ticket)
    assert not engine.matches(
        rule(w.brand, conditions=[*both, {"field": "status", "op": "eq", "value": "pending"}]),
        ticket,
    )


def test_contact_is_new_only_for_the_first_ticket_and_follows_brand(w):
    ticket = ticket_of(w.message)
    is_new = rule(w.brand, conditions=[{"field": "contact_is_new", "op": "eq", "value": True}])
    follows = rule(
        w.brand, conditions=[{"field": "contact_follows_brand", "op": "eq", "value": True}]
    )
    assert engine.matches(is_new, ticket)
    assert not engine.matches(follows, ticket)
    w.contact.follows_brand = True
    tickets.set_status(ticket, "closed", None)
    later = receive(w.channel, w.contact.platform_id, "me again")
    db.session.commit()
    assert ticket_of(later).id != ticket.id
    assert not engine.matches(is_new, ticket_of(later))
    assert engine.matches(follows, ticket_of(later))


def test_business_hours_follow_the_brands_calendar(w):
    business_hours(w.brand)
    ticket = ticket_of(w.message)
    closed = rule(w.brand, conditions=[{"field": "business_hours", "op": "eq", "value": "closed"}])
    assert engine.matches(closed, ticket, now=FRIDAY_20)
    assert not engine.matches(closed, ticket, now=FRIDAY_10)


# Actions --------------------------------------------------------------------------------------


def _action_value(w: World, kind: str):
    if kind == "assign_team":
        team = Team(brand_id=w.brand.id, name="Escalations")
        db.session.add(team)
        db.session.flush()
        return team.id
    if kind == "assign_agent":
        return w.agent.id
    if kind in ("add_tag", "remove_tag"):
        return TagFactory(brand=w.brand, name="refund").id
    if kind == "send_canned_reply":
        return CannedReplyFactory(brand=w.brand, body="Hi {{ contact.first_name }}").id
    if kind == "notify":
        return f"agent:{w.agent.id}"
    return {
        "set_priority": "urgent",
        "set_status": "pending",
        "snooze_minutes": 30,
        "add_note": "Checked by a rule",
    }[kind]


def _action_done(w: World, kind: str, ticket: Ticket, value) -> bool:
    db.session.expire_all()
    ticket = db.session.get(Ticket, ticket.id)
    checks = {
        "assign_team": lambda: ticket.team_id == value,
        "assign_agent": lambda: ticket.assignee_id == w.agent.id,
        "add_tag": lambda: tag_names(ticket) == ["refund"],
        "remove_tag": lambda: tag_names(ticket) == [],
        "set_priority": lambda: ticket.priority.value == "urgent",
        "set_status": lambda: ticket.status is TicketStatus.PENDING,
        "snooze_minutes": lambda: (
            ticket.status is TicketStatus.SNOOZED and ticket.snoozed_until is not None
        ),
        "send_canned_reply": lambda: (
            db.session.scalar(
                select(Message.text).where(
                    Message.conversation_id == ticket.conversation_id,
                    Message.direction == Direction.OUTBOUND,
                    Message.is_automated.is_(True),
                )
            )
            == "Hi Jane"
        ),
        "add_note": lambda: (
            db.session.scalar(select(Note.body).where(Note.ticket_id == ticket.id))
            == "Checked by a rule"
        ),
        "notify": lambda: (
            db.session.scalar(
                select(func.count(Notification.id)).where(Notification.agent_id == w.agent.id)
            )
            == 1
        ),
    }
    return checks[kind]()


@pytest.mark.parametrize("kind", list(engine.ACTIONS))
def test_every_action(w, kind):
    value = _action_value(w, kind)
    ticket = ticket_of(w.message)
    if kind == "remove_tag":
        tags.add_tag(ticket, "refund", None)
    db.session.commit()
    r = rule(w.brand, "ticket_updated", actions=[{"type": kind, "value": value}])
    tickets.set_priority(ticket, "high" if kind != "set_priority" else "low", w.manager)
    db.session.commit()
    [run] = runs(r.id)
    assert run.outcome is None, run.outcome
    assert _action_done(w, kind, ticket, value)
    [event] = automation_events(ticket.id)
    assert event.data["actions"][0].startswith(kind)


def test_notify_a_team_reaches_its_members(w):
    team = Team(brand_id=w.brand.id, name="Night")
    db.session.add(team)
    db.session.flush()
    db.session.add(TeamMember(team_id=team.id, agent_id=w.agent.id))
    db.session.add(TeamMember(team_id=team.id, agent_id=w.manager.id))
    rule(w.brand, actions=[{"type": "notify", "value": f"team:{team.id}"}])
    receive(w.channel, w.contact.platform_id, "hello?")
    db.session.commit()
    notified = set(db.session.scalars(select(Notification.agent_id)))
    assert notified == {w.agent.id, w.manager.id}


def test_a_failing_action_is_recorded_and_the_others_still_run(w):
    gone_tag = TagFactory(brand=w.brand, name="gone")
    gone_id = gone_tag.id
    tags.delete_tag(gone_tag, None)
    gone_agent = AgentFactory(active=False)
    member(gone_agent, w.brand, Role.AGENT)
    r = rule(
        w.brand,
        actions=[
            {"type": "add_tag", "value": gone_id},
            {"type": "assign_agent", "value": gone_agent.id},
            {"type": "send_canned_reply", "value": 999999},
            {"type": "assign_team", "value": 999999},
            {"type": "set_priority", "value": "high"},
        ],
    )
    message = receive(w.channel, w.contact.platform_id, "hello")
    db.session.commit()
    ticket = ticket_of(message)
    assert ticket.priority.value == "high" and ticket.assignee_id is None
    [run] = runs(r.id)
    assert "no longer exists" in run.outcome and "no longer an active agent" in run.outcome
    [event] = automation_events(ticket.id)
    assert len(event.data["failures"]) == 4 and event.data["actions"] == [
        "set_priority: priority high"
    ]


def test_a_closed_reply_window_fails_the_reply_but_not_the_note(w):
    old = at("2026-01-01 10:00")
    reply = CannedReplyFactory(brand=w.brand, body="We are away")
    message = new_customer(w, "hello", at_=old)
    ticket = ticket_of(message)
    r = rule(
        w.brand,
        "ticket_updated",
        actions=[
            {"type": "send_canned_reply", "value": reply.id},
            {"type": "add_note", "value": "tried"},
        ],
    )
    tickets.set_priority(ticket, "high", w.agent)  # now: months after the customer wrote
    db.session.commit()
    [run] = runs(r.id)
    assert "24 hours after their last message" in run.outcome
    assert db.session.scalar(select(Note.body).where(Note.ticket_id == ticket.id)) == "tried"


def test_the_triggering_operation_never_fails_because_of_a_rule(w):
    r = rule(w.brand, actions=[{"type": "no_such_action", "value": 1}])
    message = receive(w.channel, w.contact.platform_id, "still stored")
    db.session.commit()
    assert db.session.get(Message, message.id).text == "still stored"
    assert "unknown action" in runs(r.id)[0].outcome


# Loops and once per ticket ------------------------------------------------------------------------


def test_a_rule_that_would_loop_does_not(w):
    ping = rule(
        w.brand,
        "ticket_updated",
        conditions=[{"field": "priority", "op": "eq", "value": "high"}],
        actions=[{"type": "set_priority", "value": "urgent"}],
    )
    pong = rule(
        w.brand,
        "ticket_updated",
        conditions=[{"field": "priority", "op": "eq", "value": "urgent"}],
        actions=[{"type": "set_priority", "value": "high"}],
    )
    ticket = ticket_of(w.message)
    tickets.set_priority(ticket, "high", w.agent)
    db.session.commit()
    # ping ran on the agent's change; pong, evaluated after it in the same event, saw "urgent"
    # and ran; neither ran again for what the other did.
    assert len(runs(ping.id)) == 1 and len(runs(pong.id)) == 1
    assert len(automation_events(ticket.id)) == 2


def test_resolving_in_an_action_does_not_trigger_resolved_rules(w):
    resolves = rule(w.brand, actions=[{"type": "set_status", "value": "resolved"}])
    on_resolved = rule(w.brand, "ticket_resolved", actions=[{"type": "add_note", "value": "x"}])
    message = receive(w.channel, w.contact.platform_id, "thanks, bye")
    db.session.commit()
    assert ticket_of(message).status is TicketStatus.RESOLVED
    assert len(runs(resolves.id)) == 1 and runs(on_resolved.id) == []


def test_once_per_ticket_runs_once_however_many_messages(w):
    r = rule(w.brand, actions=[{"type": "add_note", "value": "first"}], once_per_ticket=True)
    for text in ("one", "two", "three"):
        receive(w.channel, w.contact.platform_id, text)
        db.session.commit()
    [run] = runs(r.id)
    assert run.period == "once"


def test_once_per_ticket_holds_when_two_processes_race(app, w):
    r = rule(w.brand, actions=[{"type": "add_note", "value": "once"}], once_per_ticket=True)
    ticket_id, rule_id = ticket_of(w.message).id, r.id
    db.session.commit()

    def work():
        ticket = db.session.get(Ticket, ticket_id)
        spec = engine.RuleSpec.of(db.session.get(AutomationRule, rule_id))
        return engine.apply(spec, ticket)

    outcomes = race(app, work)
    assert sum(1 for o in outcomes if isinstance(o, AutomationRun)) == 1, outcomes
    db.session.expire_all()
    assert len(runs(rule_id)) == 1
    assert db.session.scalar(select(func.count(Note.id)).where(Note.ticket_id == ticket_id)) == 1


# The away message ------------------------------------------------------------------------------


def away_rule(brand, reply_id: int) -> AutomationRule:
    return rule(
        brand,
        "message_received",
        conditions=[{"field": "business_hours", "op": "eq", "value": "closed"}],
        actions=[{"type": "send_canned_reply", "value": reply_id}],
        once_per_ticket=True,
        name="Away message",
        template="away_message",
    )


def test_away_message_is_sent_once_outside_hours_never_inside_and_is_no_first_response(sim):
    w = World()
    channel = ChannelFactory(brand=w.brand, access_token="page-token-abcd")
    business_hours(w.brand)
    SlaPolicyFactory(brand=w.brand)
    reply = CannedReplyFactory(brand=w.brand, body="Thanks {{ contact.first_name }}, we are away")
    away_rule(w.brand, reply.id)
    night = known_contact(channel, name="Nora Night")
    day = known_contact(channel, name="Dan Day")

    first = receive(channel, night.platform_id, "Hello?", at=FRIDAY_20)
    receive(channel, night.platform_id, "Anyone?", at=FRIDAY_20 + timedelta(minutes=5))
    receive(channel, day.platform_id, "Hello", at=FRIDAY_10)
    db.session.commit()

    automated = list(
        db.session.scalars(
            select(Message).where(
                Message.direction == Direction.OUTBOUND, Message.brand_id == w.brand.id
            )
        )
    )
    assert [m.text for m in automated] == ["Thanks Nora, we are away"]
    assert automated[0].is_automated
    assert delivery.deliver(automated[0].id, now=FRIDAY_20 + timedelta(minutes=6)) == delivery.SENT
    db.session.commit()
    [send] = sim.sends()
    assert send["json"]["message"]["text"] == "Thanks Nora, we are away"

    ticket = ticket_of(first)
    db.session.refresh(ticket)
    assert ticket.first_response_at is None
    assert ticket.awaiting_since == FRIDAY_20
    assert ticket.first_response_due_at is not None  # the SLA first-response clock still runs
    kinds = set(
        db.session.scalars(select(TicketEvent.kind).where(TicketEvent.ticket_id == ticket.id))
    )
    assert "first_response" not in kinds and "response" not in kinds and "automation" in kinds


def test_rules_are_cached_but_a_change_is_seen_at_once_in_process(app, w, monkeypatch):
    monkeypatch.setitem(app.config, "AUTOMATION_RULES_TTL", 60)
    assert engine.rules_for(w.brand.id, "message_received") == []
    r = rule(w.brand, actions=[{"type": "set_priority", "value": "high"}])
    assert [spec.id for spec in engine.rules_for(w.brand.id, "message_received")] == [r.id]
    r.enabled = False
    db.session.commit()
    assert engine.rules_for(w.brand.id, "message_received") == []
    db.session.delete(r)
    db.session.commit()
    assert engine.rules_for(w.brand.id, "message_received") == []


def test_conversation_helpers_are_consistent(w):
    # The ticket belongs to the world's conversation (guards the fixtures used above).
    assert (
        ticket_of(w.message).conversation_id == db.session.get(Conversation, w.conversation.id).id
    )

"""The satisfaction survey (API.md "Automations and CSAT"): scheduled when a ticket is resolved,
sent once through the Send API (the simulator) with five quick replies, answered by a quick reply
or a bare digit without reopening the ticket, a comment kept as a note, and the figures."""

from __future__ import annotations

import csv
import io
import json
from datetime import timedelta

import pytest
from sqlalchemy import func, select

from devtools.graphsim import webhooks as sim_webhooks
from helpdesk.accounts.models import Role
from helpdesk.contacts.export import export
from helpdesk.csat import answers, survey
from helpdesk.delivery import service as delivery
from helpdesk.dm.models import Message, MessageStatus
from helpdesk.extensions import db
from helpdesk.metrics.summary import summary
from helpdesk.tickets import service as tickets
from helpdesk.tickets.models import Note, Ticket, TicketEvent, TicketStatus
from helpdesk.types import utcnow
from tests.conftest import race
from tests.factories import AgentFactory, member
from tests.helpers.api import Client, token_for
from tests.helpers.console import signed_in
from tests.helpers.webhooks import post, process_all
from tests.helpers.world import World, known_contact, receive


@pytest.fixture
def world() -> World:
    world = World()
    world.brand.csat_enabled = True
    world.brand.csat_question = "How did we do?"
    db.session.commit()
    return world


def ticket_of(world: World) -> Ticket:
    return tickets.current_ticket(world.conversation)


def resolve(ticket: Ticket, agent, at=None) -> Ticket:
    tickets.set_status(ticket, TicketStatus.RESOLVED, agent, now=at or utcnow())
    db.session.commit()
    return ticket


def sweep(now=None) -> survey.SweepReport:
    report = survey.send_due(now=now or utcnow())
    db.session.commit()
    return report


def events(ticket: Ticket, kind: str) -> list[TicketEvent]:
    return list(
        db.session.scalars(
            select(TicketEvent)
            .where(TicketEvent.ticket_id == ticket.id, TicketEvent.kind == kind)
            .order_by(TicketEvent.id)
        )
    )


def ticket_count(world: World) -> int:
    return db.session.scalar(
        select(func.count(Ticket.id)).where(Ticket.conversation_id == world.conversation.id)
    )


def webhook_dm(client, world: World, text: str, quick_reply: str | None = None) -> None:
    """The customer's DM as Meta delivers it, through the webhook and the intake."""
    extra = {"quick_reply": {"payload": quick_reply}} if quick_reply else {}
    message = sim_webhooks.message_fields(sim_webhooks.new_mid(), text, **extra)
    account = world.channel.account_id
    event = sim_webhooks.event(world.contact.platform_id, account, message=message)
    body = json.dumps(sim_webhooks.envelope(account, [event])).encode()
    db.session.commit()
    assert post(client, body).status_code == 200
    process_all()
    db.session.expire_all()


# Sent -----------------------------------------------------------------------------------------


def test_a_resolved_tickets_survey_reaches_the_simulator_and_its_answers_are_stored(
    world, sim, client
):
    ticket = resolve(ticket_of(world), world.agent)
    assert ticket.csat_due_at == ticket.resolved_at  # no delay

    report = sweep()
    assert len(report.message_ids) == 1
    assert delivery.deliver(report.message_ids[0]) == delivery.SENT

    (send,) = sim.sends()
    body = send["json"]["message"]
    assert body["text"] == "How did we do?"
    buttons = body["quick_replies"]
    assert [b["payload"] for b in buttons] == [f"CSAT:{ticket.id}:{n}" for n in range(1, 6)]
    assert all(b["content_type"] == "text" and 1 <= len(b["title"]) <= 20 for b in buttons)
    survey_message = db.session.get(Message, report.message_ids[0])
    assert survey_message.is_automated and survey_message.status is MessageStatus.SENT
    assert ticket.first_response_at is None or ticket.first_response_at < ticket.resolved_at

    webhook_dm(client, world, "4 ★★★★", quick_reply=f"CSAT:{ticket.id}:4")
    ticket = db.session.get(Ticket, ticket.id)
    assert (ticket.csat_score, ticket.status) == (4, TicketStatus.RESOLVED)
    assert ticket.csat_answered_at is not None
    assert [e.data["via"] for e in events(ticket, "csat_answered")] == ["quick_reply"]

    webhook_dm(client, world, "Quick and kind, thanks!")
    ticket = db.session.get(Ticket, ticket.id)
    assert ticket.status is TicketStatus.RESOLVED and ticket_count(world) == 1
    notes = db.session.scalars(select(Note.body).where(Note.ticket_id == ticket.id)).all()
    assert notes == ["CSAT comment: Quick and kind, thanks!"]

    # Only the first message after the score is a comment: the next one reopens as usual.
    webhook_dm(client, world, "Actually, one more question")
    assert db.session.get(Ticket, ticket.id).status is TicketStatus.OPEN


def test_a_bare_5_is_stored_without_reopening(world, client):
    ticket = resolve(ticket_of(world), world.agent)
    sweep()
    webhook_dm(client, world, " 5 ")
    ticket = db.session.get(Ticket, ticket.id)
    assert (ticket.csat_score, ticket.status) == (5, TicketStatus.RESOLVED)
    assert ticket_count(world) == 1
    assert [e.data["via"] for e in events(ticket, "csat_answered")] == ["text"]
    assert db.session.scalar(select(func.count(Note.id)).where(Note.ticket_id == ticket.id)) == 0


def test_the_first_answer_wins(world, client):
    ticket = resolve(ticket_of(world), world.agent)
    sweep()
    webhook_dm(client, world, "2", quick_reply=f"CSAT:{ticket.id}:2")
    webhook_dm(client, world, "5", quick_reply=f"CSAT:{ticket.id}:5")
    ticket = db.session.get(Ticket, ticket.id)
    assert ticket.csat_score == 2 and ticket.status is TicketStatus.RESOLVED
    assert len(events(ticket, "csat_answered")) == 1


def test_a_forged_payload_for_another_conversations_ticket_changes_nothing(world, client):
    other_contact = known_contact(world.channel)
    other = receive(world.channel, other_contact.platform_id, "Hi")
    other_ticket = db.session.get(Ticket, other.ticket_id)
    resolve(other_ticket, world.agent)
    resolve(ticket_of(world), world.agent)
    sweep()

    webhook_dm(client, world, "1", quick_reply=f"CSAT:{other_ticket.id}:1")
    assert db.session.get(Ticket, other_ticket.id).csat_score is None
    # An ordinary message, then: it reopens the customer's own ticket and scores nothing.
    own = db.session.get(Ticket, ticket_of(world).id)
    assert own.csat_score is None and own.status is TicketStatus.OPEN


def test_a_bare_digit_after_24_hours_is_an_ordinary_message(world):
    now = utcnow()
    ticket = resolve(ticket_of(world), world.agent, at=now)
    sweep(now)
    receive(world.channel, world.contact.platform_id, "5", at=now + timedelta(hours=25))
    db.session.commit()
    ticket = db.session.get(Ticket, ticket.id)
    assert ticket.csat_score is None and ticket.status is TicketStatus.OPEN


def test_a_text_that_is_no_score_reopens_as_before(world):
    ticket = resolve(ticket_of(world), world.agent)
    sweep()
    receive(world.channel, world.contact.platform_id, "Where is my parcel?")
    db.session.commit()
    assert db.session.get(Ticket, ticket.id).status is TicketStatus.OPEN


# When it is (not) sent ---------------------------------------------------------------------------


def test_the_survey_waits_for_its_delay(world):
    world.brand.csat_delay_minutes = 30
    now = utcnow()
    ticket = resolve(ticket_of(world), world.agent, at=now)
    assert ticket.csat_due_at == now + timedelta(minutes=30)
    assert sweep(now + timedelta(minutes=29)).message_ids == []
    assert len(sweep(now + timedelta(minutes=30)).message_ids) == 1
    assert db.session.get(Ticket, ticket.id).csat_sent_at == now + timedelta(minutes=30)


def test_a_closed_window_sends_nothing_and_says_why(world):
    world.brand.csat_delay_minutes = 600
    now = utcnow()  # the customer wrote just now: the window closes in 24 hours
    ticket = resolve(ticket_of(world), world.agent, at=now + timedelta(hours=20))
    report = sweep(now + timedelta(hours=30))
    assert report.message_ids == [] and report.not_sent == 1
    ticket = db.session.get(Ticket, ticket.id)
    assert ticket.csat_sent_at is None and ticket.csat_due_at is None
    (event,) = events(ticket, "csat_not_sent")
    assert "reply window" in event.data["reason"]
    assert db.session.scalar(select(func.count(Message.id)).where(Message.is_automated)) == 0


def test_a_disabled_survey_schedules_and_sends_nothing(world):
    world.brand.csat_enabled = False
    ticket = resolve(ticket_of(world), world.agent)
    assert ticket.csat_due_at is None
    assert sweep().checked == 0


def test_a_ticket_reopened_before_its_survey_is_not_surveyed(world):
    world.brand.csat_delay_minutes = 60
    now = utcnow()
    ticket = resolve(ticket_of(world), world.agent, at=now)
    receive(world.channel, world.contact.platform_id, "Wait, one more thing", at=now)
    db.session.commit()
    assert sweep(now + timedelta(minutes=61)).message_ids == []
    (event,) = events(ticket, "csat_not_sent")
    assert event.data["reason"] == "the ticket was reopened"


def test_overlapping_sweeps_send_one_survey(app, world):
    resolve(ticket_of(world), world.agent)
    later = utcnow() + timedelta(seconds=1)

    def work() -> list[int]:
        return sweep(later).message_ids

    outcomes = race(app, work, count=3)
    assert sorted(len(o) for o in outcomes) == [0, 0, 1], outcomes
    assert db.session.scalar(select(func.count(Message.id)).where(Message.is_automated)) == 1


# Figures -------------------------------------------------------------------------------------


def test_the_summary_figures_match_the_answers(world):
    """Scores 5, 4 and 2 and one unanswered survey: 4 sent, 3 answers, average 3.67, 66.7 %
    satisfied; per agent Ada (5, 4) and Bo (2, unanswered)."""
    bo = AgentFactory(name="Bo")
    member(bo, world.brand)
    scores = [(world.agent, 5), (world.agent, 4), (bo, 2), (bo, None)]
    for index, (agent, score) in enumerate(scores):
        contact = known_contact(world.channel)
        message = receive(world.channel, contact.platform_id, f"Question {index}")
        ticket = db.session.get(Ticket, message.ticket_id)
        tickets.assign(ticket, agent.id, world.manager)
        resolve(ticket, agent)
        sweep()
        if score is not None:
            receive(world.channel, contact.platform_id, str(score))
            db.session.commit()
    today = utcnow().astimezone(__import__("zoneinfo").ZoneInfo(world.brand.timezone)).date()
    figures = summary(world.brand, today, today)
    assert figures["csat"] == {"sent": 4, "responses": 3, "average": 3.67, "satisfied_pct": 66.7}
    groups = summary(world.brand, today, today, group_by="agent")["groups"]
    by_agent = {g["label"]: g["csat"] for g in groups}
    assert by_agent[world.agent.name] == {
        "sent": 2,
        "responses": 2,
        "average": 4.5,
        "satisfied_pct": 100.0,
    }
    assert by_agent["Bo"] == {"sent": 2, "responses": 1, "average": 2.0, "satisfied_pct": 0.0}
    yesterday = today - timedelta(days=1)
    assert summary(world.brand, yesterday, yesterday)["csat"]["sent"] == 0


def test_the_dashboard_and_its_csv_show_csat_per_agent(world, client):
    ticket = ticket_of(world)
    tickets.assign(ticket, world.agent.id, world.manager)
    resolve(ticket, world.agent)
    sweep()
    receive(world.channel, world.contact.platform_id, "4")
    db.session.commit()
    signed_in(client, world.manager)
    page = client.get("/dashboard").get_data(as_text=True)
    assert 'data-figure="csat_average"' in page and "4.00 / 5" in page
    exported = client.get("/dashboard/export.csv", query_string={"table": "agent"})
    rows = list(csv.DictReader(io.StringIO(exported.get_data(as_text=True))))
    row = next(r for r in rows if r["Agent"] == world.agent.name)
    assert (row["CSAT average"], row["CSAT satisfied"], row["CSAT answers"]) == (
        "4.0",
        "100.0",
        "1",
    )


def test_the_contacts_export_lists_their_answers(world):
    ticket = resolve(ticket_of(world), world.agent)
    sweep()
    receive(world.channel, world.contact.platform_id, "3")
    receive(world.channel, world.contact.platform_id, "Slow but fine")
    db.session.commit()
    from helpdesk.accounts.actor import as_actor

    document = export(world.contact, as_actor(world.admin, world.brand.id))
    (answer,) = document["csat_answers"]
    assert answer["ticket_id"] == ticket.id and answer["score"] == 3
    assert answer["comment"] == "Slow but fine"


def test_scores_people_write(world):
    assert [answers.bare_score(t) for t in ("5", " 3 ", "4/5", "2.", "6", "55", "5 stars")] == [
        5,
        3,
        4,
        2,
        None,
        None,
        None,
    ]


def test_the_api_shows_the_answer_on_the_ticket(world, client):
    ticket = resolve(ticket_of(world), world.agent)
    api = Client(client, token_for(world.brand, Role.AGENT))
    assert api.get(f"/tickets/{ticket.id}").get_json()["csat"] is None
    sweep()
    receive(world.channel, world.contact.platform_id, "5")
    db.session.commit()
    shown = api.get(f"/tickets/{ticket.id}").get_json()
    assert shown["status"] == "resolved" and shown["csat"]["score"] == 5
    assert shown["csat"]["answered_at"].startswith(ticket.csat_answered_at.isoformat()[:19])


def test_the_contact_page_shows_their_scores(world, client):
    ticket = resolve(ticket_of(world), world.agent)
    sweep()
    receive(world.channel, world.contact.platform_id, "4")
    db.session.commit()
    html = (
        signed_in(client, world.agent).get(f"/contacts/{world.contact.id}").get_data(as_text=True)
    )
    assert f'data-csat="{ticket.id}"' in html and "4 / 5" in html

"""The demo brand (`seed-demo`) and the benchmark history (`seed-load`)."""

from __future__ import annotations

import json
import random
import re
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
from sqlalchemy import func, select

from devtools.devserver import introduce_new_customers
from devtools.graphsim import webhooks
from devtools.seed.demo import DEMO_ACCOUNT_ID, NEW_CUSTOMER_IDS, seed_demo
from devtools.seed.load import LONG_CONVERSATION, conversation_sizes, seed_load
from helpdesk.accounts.models import Agent, Membership, Role, Team, TeamMember
from helpdesk.accounts.service import check_password
from helpdesk.assignment.service import ROUND_ROBIN, eligible_agents
from helpdesk.brands.models import Brand
from helpdesk.canned import service as canned
from helpdesk.canned.render import placeholders
from helpdesk.channels.models import Channel, ChannelKind
from helpdesk.dm.models import (
    Contact,
    Conversation,
    ConversationKind,
    Direction,
    Folder,
    Message,
    MessageEdit,
    MessageKind,
    Participant,
    Reaction,
    RequestState,
)
from helpdesk.dm.service import HUMAN_AGENT_WINDOW, STANDARD_WINDOW
from helpdesk.errors import AlreadyExists
from helpdesk.extensions import db
from helpdesk.intake import service as intake
from helpdesk.intake.models import EventStatus, WebhookEvent
from helpdesk.intake.profiles import fetch_profile
from helpdesk.sla.calendar import is_open
from helpdesk.sla.service import get_calendar, list_policies
from helpdesk.tickets.models import ACTIVE_STATUSES, Priority, Tag, Ticket, TicketTag
from helpdesk.tickets.tags import list_tag_rules
from helpdesk.types import utcnow
from tests.conftest import table_counts
from tests.factories import BrandFactory

DEMO_LOGINS = {
    "agent@demo.test": "demo-agent-pass",
    "manager@demo.test": "demo-manager-pass",
    "admin@demo.test": "demo-admin-pass",
}


def _demo_brand() -> Brand:
    return db.session.scalar(select(Brand).where(Brand.slug == "demo"))


def _load_conversations():
    return select(Conversation).where(Conversation.thread_key.like("direct:load-%"))


# seed-demo ----------------------------------------------------------------------------------------


@pytest.mark.slow
def test_seed_demo_creates_the_brand_its_instagram_channel_and_three_agents():
    created, logins = seed_demo()

    assert created is True
    assert logins == DEMO_LOGINS
    brand = _demo_brand()
    assert (brand.name, brand.timezone) == ("Demo Brand", "Europe/Berlin")
    channel = db.session.scalar(select(Channel).where(Channel.brand_id == brand.id))
    assert channel.kind is ChannelKind.INSTAGRAM
    assert channel.account_id == "17841400000000001"
    assert channel.access_token == "demo-page-token"
    roles = dict(
        db.session.execute(
            select(Agent.email, Membership.role)
            .join(Membership, Membership.agent_id == Agent.id)
            .where(Membership.brand_id == brand.id)
        ).all()
    )
    assert roles == {
        "agent@demo.test": Role.AGENT,
        "manager@demo.test": Role.MANAGER,
        "admin@demo.test": Role.ADMIN,
    }
    for email, password in logins.items():
        agent = db.session.scalar(select(Agent).where(Agent.email == email))
        assert check_password(agent, password)
    team = db.session.scalar(select(Team).where(Team.brand_id == brand.id))
    assert team.name == "Support"
    members = db.session.scalar(
        select(func.count()).select_from(TeamMember).where(TeamMember.team_id == team.id)
    )
    assert members == 3


@pytest.mark.slow
def test_seed_demo_has_about_thirty_contacts_and_conversations_in_the_last_days():
    seed_demo()
    brand = _demo_brand()

    contacts = db.session.scalar(select(func.count()).where(Contact.brand_id == brand.id))
    conversations = db.session.scalars(
        select(Conversation).where(Conversation.brand_id == brand.id)
    ).all()
    assert 25 <= contacts <= 40
    assert 25 <= len(conversations) <= 40
    sent = db.session.scalars(select(Message.sent_at).where(Message.brand_id == brand.id)).all()
    now = utcnow()
    assert all(now - timedelta(days=5) < at <= now for at in sent)
    assert all(at.tzinfo is not None for at in sent)


@pytest.mark.slow
def test_seed_demo_shows_every_message_kind():
    seed_demo()

    kinds = set(db.session.scalars(select(Message.kind).distinct()))

    assert kinds == set(MessageKind)


@pytest.mark.slow
def test_seed_demo_has_known_contacts_in_primary_and_requests_pending_hidden_declined_blocked():
    seed_demo()
    brand = _demo_brand()

    states = db.session.execute(
        select(Conversation.request_state, Conversation.folder, func.count())
        .where(Conversation.brand_id == brand.id)
        .group_by(Conversation.request_state, Conversation.folder)
    ).all()
    by_state = {(state, folder): count for state, folder, count in states}

    assert by_state[(RequestState.NONE, Folder.PRIMARY)] >= 10
    assert by_state[(RequestState.NONE, Folder.GENERAL)] >= 2
    assert by_state[(RequestState.PENDING, Folder.REQUESTS)] >= 2
    assert by_state[(RequestState.HIDDEN, Folder.REQUESTS)] == 1
    assert by_state[(RequestState.DECLINED, Folder.REQUESTS)] == 1
    assert by_state[(RequestState.BLOCKED, Folder.REQUESTS)] == 1
    assert by_state[(RequestState.ACCEPTED, Folder.PRIMARY)] == 2
    assert brand.hidden_words == ["crypto giveaway"]
    hidden = db.session.scalar(
        select(Conversation).where(Conversation.request_state == RequestState.HIDDEN)
    )
    assert "crypto giveaway" in hidden.last_message_preview
    blocked = db.session.scalar(select(Contact).where(Contact.blocked.is_(True)))
    assert blocked.blocked_at is not None
    suppressed = db.session.scalars(
        select(Message).where(Message.contact_id == blocked.id, Message.suppressed.is_(True))
    ).all()
    assert len(suppressed) == 1


@pytest.mark.slow
def test_seed_demo_has_a_group_of_five_contacts_and_a_vanish_mode_thread():
    seed_demo()

    group = db.session.scalar(
        select(Conversation).where(Conversation.kind == ConversationKind.GROUP)
    )
    rows = db.session.scalars(
        select(Participant).where(Participant.conversation_id == group.id)
    ).all()
    assert group.participant_count == 6 == len(rows)
    assert sum(1 for row in rows if row.is_brand and row.contact_id is None) == 1
    senders = db.session.scalars(
        select(Message.contact_id)
        .where(Message.conversation_id == group.id, Message.direction == Direction.INBOUND)
        .distinct()
    ).all()
    assert len(senders) == 5

    vanish = db.session.scalar(select(Conversation).where(Conversation.vanish_mode.is_(True)))
    messages = db.session.scalars(
        select(Message).where(Message.conversation_id == vanish.id, Message.vanish.is_(True))
    ).all()
    assert len(messages) >= 2
    purged = [m for m in messages if m.purged_at is not None]
    assert len(purged) == 1
    assert purged[0].attachments == [] and purged[0].kind is MessageKind.IMAGE


@pytest.mark.slow
def test_seed_demo_has_reactions_an_inline_reply_an_edit_and_an_unsent_message():
    seed_demo()

    reactors = set(db.session.scalars(select(Reaction.reactor)))
    assert "brand" in reactors
    assert any(r.startswith("contact:") for r in reactors)
    inline = db.session.scalars(select(Message).where(Message.reply_to_id.is_not(None))).all()
    assert {m.direction for m in inline} == {Direction.INBOUND, Direction.OUTBOUND}
    assert all(m.reply_to.mid == m.reply_to_mid for m in inline)
    edited = db.session.scalar(select(Message).where(Message.edit_count > 0))
    edit = db.session.scalar(select(MessageEdit).where(MessageEdit.message_id == edited.id))
    assert edit.previous_text != edited.text
    unsent = db.session.scalar(select(Message).where(Message.unsent_at.is_not(None)))
    assert unsent.text is None


@pytest.mark.slow
def test_seed_demo_replies_are_by_agents_inside_the_reply_window():
    seed_demo()

    replies = db.session.scalars(
        select(Message).where(Message.direction == Direction.OUTBOUND)
    ).all()
    assert replies
    assert all(m.author_agent_id is not None for m in replies)
    assert all(m.sent_at is not None and m.mid for m in replies)
    for reply in replies:
        last_inbound = db.session.scalar(
            select(func.max(Message.sent_at)).where(
                Message.conversation_id == reply.conversation_id,
                Message.direction == Direction.INBOUND,
                Message.sent_at <= reply.sent_at,
            )
        )
        assert reply.sent_at - last_inbound <= HUMAN_AGENT_WINDOW
        assert reply.human_agent_tag is (reply.sent_at - last_inbound > STANDARD_WINDOW)
    assert any(m.human_agent_tag for m in replies)


@pytest.mark.slow
def test_second_seed_demo_creates_nothing_and_returns_the_same_logins():
    seed_demo()
    db.session.commit()
    before = table_counts()

    created, logins = seed_demo()

    assert created is False
    assert logins == DEMO_LOGINS
    assert table_counts() == before


@pytest.mark.slow
def test_seed_demo_command_prints_the_three_logins(runner):
    first = runner.invoke(args=["seed-demo"])
    second = runner.invoke(args=["seed-demo"])

    assert first.exit_code == 0, first.output
    assert "demo brand created" in first.output
    assert "demo brand already present" in second.output
    for output in (first.output, second.output):
        for email, password in DEMO_LOGINS.items():
            assert email in output and password in output


# seed-demo: the support layer -------------------------------------------------------------------


def _demo_agent(email: str) -> Agent:
    return db.session.scalar(select(Agent).where(Agent.email == email))


def _readme_customer_ids() -> list[str]:
    readme = (Path(__file__).resolve().parent.parent / "README.md").read_text()
    return re.findall(r"send-dm .*?--from (\d+)", readme, re.DOTALL)


@pytest.mark.slow
def test_seed_demo_has_shared_and_personal_canned_replies_with_placeholders():
    seed_demo()
    brand = _demo_brand()
    sam = _demo_agent("agent@demo.test")

    replies = {reply.shortcode: reply for reply in canned.search(brand.id, sam, "/")}

    shared = ("hello", "refund", "shipping", "thankyou")
    assert set(shared) <= set(replies)
    assert all(replies[code].owner_id is None for code in shared)
    personal = [reply for reply in replies.values() if reply.owner_id == sam.id]
    assert len(personal) == 1
    assert personal[0].shortcode not in canned_codes_of(brand, "manager@demo.test")
    assert {"contact.first_name", "agent.first_name", "brand.name"} <= set(
        placeholders(replies["hello"].body)
    )
    lena = db.session.scalar(
        select(Conversation).join(Contact).where(Contact.username == "lena.schmidt")
    )
    rendered = canned.render(replies["hello"], lena, sam)
    assert rendered.missing == []
    assert rendered.text.startswith("Hi Lena, Sam from Demo Brand here")


def canned_codes_of(brand: Brand, email: str) -> set[str]:
    return {reply.shortcode for reply in canned.search(brand.id, _demo_agent(email), "/")}


def test_seed_demo_has_an_sla_policy_per_priority_in_business_hours():
    seed_demo()

    policies = {policy.priority: policy for policy in list_policies(_demo_brand().id)}

    assert set(policies) == {"urgent", "high", "normal", "low"}
    order = [policies[p] for p in ("urgent", "high", "normal", "low")]
    for target in ("first_response_min", "next_response_min", "resolution_min"):
        minutes = [getattr(policy, target) for policy in order]
        assert all(minutes) and minutes == sorted(minutes) and len(set(minutes)) == 4
    assert all(policy.business_hours for policy in order)


@pytest.mark.slow
def test_seed_demo_opens_weekdays_nine_to_six_in_berlin_and_closes_on_the_next_christmas():
    seed_demo()

    calendar = get_calendar(_demo_brand())

    assert calendar.timezone == "Europe/Berlin"
    for day in ("mon", "tue", "wed", "thu", "fri"):
        assert calendar.weekly[day] == [("09:00", "18:00")]
    assert calendar.weekly["sat"] == calendar.weekly["sun"] == []
    today = utcnow().astimezone(ZoneInfo("Europe/Berlin")).date()
    christmas = date(today.year if today <= date(today.year, 12, 25) else today.year + 1, 12, 25)
    assert calendar.holidays == frozenset({christmas})
    noon = datetime(christmas.year, 12, 25, 12, tzinfo=ZoneInfo("Europe/Berlin"))
    assert not is_open(calendar, noon.astimezone(UTC))
    monday_ten = datetime(2026, 3, 2, 10, tzinfo=ZoneInfo("Europe/Berlin"))
    assert is_open(calendar, monday_ten.astimezone(UTC))


@pytest.mark.slow
def test_seed_demo_team_assigns_round_robin_to_its_online_agents():
    seed_demo()
    brand = _demo_brand()
    team = db.session.scalar(select(Team).where(Team.brand_id == brand.id))

    assert brand.auto_assign is True and brand.assignment_mode == ROUND_ROBIN
    assert {candidate.agent.email for candidate in eligible_agents(team)} == set(DEMO_LOGINS)
    open_tickets = db.session.scalars(
        select(Ticket).where(Ticket.brand_id == brand.id, Ticket.status.in_(ACTIVE_STATUSES))
    ).all()
    assert open_tickets
    assert all(t.team_id == team.id and t.assignee_id is not None for t in open_tickets)
    assert len({t.assignee_id for t in open_tickets}) == 3  # taken in turns, not by one agent


@pytest.mark.slow
def test_seed_demo_tags_messages_by_keyword_rules():
    seed_demo()
    brand = _demo_brand()

    rules = {(rule.keyword.lower(), tag.name) for rule, tag in list_tag_rules(brand.id)}

    assert {("refund", "refund"), ("money back", "refund")} <= rules
    assert {("delivery", "shipping"), ("tracking", "shipping")} <= rules
    assert ("where is my order", "shipping") in rules
    tagged = db.session.execute(
        select(Contact.username, Tag.name)
        .join(Conversation, Conversation.contact_id == Contact.id)
        .join(Ticket, Ticket.conversation_id == Conversation.id)
        .join(TicketTag, TicketTag.ticket_id == Ticket.id)
        .join(Tag, Tag.id == TicketTag.tag_id)
        .where(Contact.brand_id == brand.id)
    ).all()
    assert ("priya.nair", "shipping") in tagged  # "change the delivery address"


@pytest.mark.slow
def test_every_open_demo_ticket_has_an_sla_clock():
    seed_demo()
    brand = _demo_brand()

    tickets = db.session.scalars(
        select(Ticket).where(Ticket.brand_id == brand.id, Ticket.status.in_(ACTIVE_STATUSES))
    ).all()

    assert tickets
    assert all(t.sla_policy_id is not None and t.resolution_due_at for t in tickets)
    waiting = [t for t in tickets if t.first_response_at is None]
    assert waiting and all(t.first_response_due_at is not None for t in waiting)
    assert {t.priority for t in tickets} > {Priority.NORMAL}  # the other policies show too


@pytest.mark.slow
def test_readme_writes_as_two_customers_that_the_demo_does_not_know():
    seed_demo()
    seeded = set(db.session.scalars(select(Contact.platform_id)))

    ids = _readme_customer_ids()

    assert len(set(ids)) == 2
    assert not seeded & set(ids)
    assert not seeded & set(NEW_CUSTOMER_IDS)


@pytest.mark.slow
def test_a_readme_customers_dm_lands_in_the_inbox_with_a_due_time_and_an_assignee(app, client, sim):
    seed_demo()
    db.session.commit()
    introduce_new_customers(sim.root_url)  # what `make run` does once the simulator answers
    arrived = utcnow()
    body = webhooks.envelope(
        DEMO_ACCOUNT_ID,
        [
            webhooks.event(
                NEW_CUSTOMER_IDS[0],
                DEMO_ACCOUNT_ID,
                message=webhooks.message_fields("readme-dm-1", "Where is my order?"),
            )
        ],
    )
    raw = json.dumps(body).encode()
    signature = webhooks.sign(raw, app.config["INSTAGRAM_APP_SECRET"])

    response = client.post(
        "/webhooks/instagram",
        data=raw,
        headers={"Content-Type": "application/json", "X-Hub-Signature-256": signature},
    )
    assert response.status_code == 200
    _work_as_the_worker_does()

    message = db.session.scalar(select(Message).where(Message.mid == "readme-dm-1"))
    contact = db.session.get(Contact, message.contact_id)
    assert (contact.platform_id, contact.name) == (NEW_CUSTOMER_IDS[0], "Nina Berg")
    thread = db.session.scalars(
        select(Message).where(Message.conversation_id == message.conversation_id)
    ).all()
    assert thread == [message]  # a new customer's thread, not a seeded one
    conversation = db.session.get(Conversation, message.conversation_id)
    assert conversation.folder is Folder.PRIMARY
    ticket = db.session.get(Ticket, conversation.current_ticket_id)
    assert ticket.first_response_due_at is not None and ticket.first_response_due_at > arrived
    assert ticket.assignee_id is not None


def _work_as_the_worker_does() -> None:
    """Intake of the stored delivery, then the profile fetch it asks for."""
    for event_id in db.session.scalars(
        select(WebhookEvent.id).where(WebhookEvent.status == EventStatus.PENDING)
    ).all():
        contact_ids = intake.process_event(event_id)
        db.session.commit()
        for contact_id in contact_ids:
            fetch_profile(contact_id)
            db.session.commit()
    db.session.expire_all()


# seed-load ----------------------------------------------------------------------------------------


def _mismatches(query) -> int:
    return len(db.session.execute(query).all())


@pytest.mark.slow
def test_seed_load_command_creates_exactly_the_messages_asked_for(runner):
    runner.invoke(args=["seed-demo"])
    db.session.rollback()
    before = table_counts()

    result = runner.invoke(args=["seed-load", "--brand", "demo", "--messages", "2000"])

    assert result.exit_code == 0, result.output
    assert "created 2,000 messages in" in result.output
    assert result.output.rstrip().endswith(" s")
    after = table_counts()
    assert after["messages"] - before["messages"] == 2000
    loaded = db.session.scalar(select(func.count()).where(Message.mid.like("load-1-m%")))
    assert loaded == 2000


@pytest.mark.slow
def test_seed_load_conversations_have_consistent_denormalised_fields(runner):
    runner.invoke(args=["seed-demo"])
    runner.invoke(args=["seed-load", "--brand", "demo", "--messages", "2000"])
    db.session.rollback()
    loaded = _load_conversations().subquery()
    last_sent = (
        select(Message.conversation_id, func.max(Message.sent_at).label("at"))
        .group_by(Message.conversation_id)
        .subquery()
    )
    last_in = (
        select(Message.conversation_id, func.max(Message.sent_at).label("at"))
        .where(Message.direction == Direction.INBOUND)
        .group_by(Message.conversation_id)
        .subquery()
    )
    seats = (
        select(Participant.conversation_id, func.count().label("n"))
        .group_by(Participant.conversation_id)
        .subquery()
    )

    assert db.session.scalar(select(func.count()).select_from(loaded)) > 50
    assert not _mismatches(
        select(loaded.c.id)
        .join(last_sent, last_sent.c.conversation_id == loaded.c.id)
        .where(last_sent.c.at != loaded.c.last_message_at)
    )
    assert not _mismatches(
        select(loaded.c.id)
        .join(last_in, last_in.c.conversation_id == loaded.c.id)
        .where(last_in.c.at != loaded.c.last_inbound_at)
    )
    assert not _mismatches(
        select(loaded.c.id)
        .join(seats, seats.c.conversation_id == loaded.c.id, isouter=True)
        .where((seats.c.n.is_(None)) | (seats.c.n != loaded.c.participant_count))
    )
    for conversation in db.session.scalars(_load_conversations()):
        assert conversation.participant_count == 2
        rows = db.session.scalars(
            select(Participant).where(Participant.conversation_id == conversation.id)
        ).all()
        assert {(row.contact_id, row.is_brand) for row in rows} == {
            (None, True),
            (conversation.contact_id, False),
        }
        last = db.session.scalars(
            select(Message)
            .where(Message.conversation_id == conversation.id)
            .order_by(Message.sent_at.desc(), Message.id.desc())
            .limit(1)
        ).one()
        expected = last.text[:200] if last.text else f"[{last.kind.value.replace('_', ' ')}]"
        assert conversation.last_message_preview == expected


@pytest.mark.parametrize("total", [10_000, 100_000, 1_000_000])
def test_conversation_lengths_have_a_long_tail_with_a_500_message_thread(total):
    sizes = conversation_sizes(random.Random(1), total)

    assert sum(sizes) == total
    assert min(sizes) >= 1
    assert 15 <= total / len(sizes) <= 25
    assert LONG_CONVERSATION in sizes
    assert sorted(sizes)[len(sizes) // 2] < 15  # most threads are short


@pytest.mark.slow
def test_seed_load_history_reads_like_real_support_traffic():
    seed_demo()
    brand = _demo_brand()

    report = seed_load(brand, 4_000, days=30, seed=7)

    assert report.messages == 4_000
    assert 4_000 / 30 <= report.conversations <= 4_000 / 12  # about 20 messages per conversation
    assert 0.03 < report.reactions / report.messages < 0.07
    loaded = db.session.scalars(select(Message).where(Message.mid.like("load-7-%"))).all()
    now = utcnow()
    assert all(now - timedelta(days=30) <= m.sent_at <= now for m in loaded)
    directions = {m.direction for m in loaded}
    assert directions == {Direction.INBOUND, Direction.OUTBOUND}
    assert any(m.attachments for m in loaded)
    folders = dict(
        db.session.execute(
            select(Conversation.request_state, func.count())
            .where(Conversation.thread_key.like("direct:load-7-%"))
            .group_by(Conversation.request_state)
        ).all()
    )
    assert folders[RequestState.NONE] > 0.8 * report.conversations
    assert folders[RequestState.PENDING] > 0
    pending_replies = db.session.scalar(
        select(func.count())
        .select_from(Message)
        .join(Conversation, Conversation.id == Message.conversation_id)
        .where(
            Conversation.request_state == RequestState.PENDING,
            Message.direction == Direction.OUTBOUND,
        )
    )
    assert pending_replies == 0  # a reply would have accepted the request
    general = db.session.scalar(
        select(func.count()).where(
            Conversation.thread_key.like("direct:load-7-%"), Conversation.folder == Folder.GENERAL
        )
    )
    assert general > 0


def test_seed_load_with_an_already_loaded_seed_is_refused_and_writes_nothing():
    brand = BrandFactory()
    seed_load(brand, 300, seed=3)
    before = table_counts()

    with pytest.raises(AlreadyExists):
        seed_load(brand, 300, seed=3)

    db.session.rollback()
    assert table_counts() == before
    assert seed_load(brand, 300, seed=4).messages == 300


def test_seed_load_gives_a_brand_without_a_channel_an_api_channel():
    brand = BrandFactory()

    seed_load(brand, 100)

    channel = db.session.scalar(select(Channel).where(Channel.brand_id == brand.id))
    assert channel.kind is ChannelKind.API
    assert db.session.scalar(select(func.count()).where(Message.channel_id == channel.id)) == 100

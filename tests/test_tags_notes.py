"""Tags, keyword rules and private notes with `@mentions`, as docs/concepts.md describes them."""

from __future__ import annotations

import pytest
from sqlalchemy import event as sa_event
from sqlalchemy import func, select

from helpdesk.accounts.models import Role
from helpdesk.dm.models import Conversation, NotificationLevel
from helpdesk.dm.service import InboundMessage, receive_inbound, set_notification_level
from helpdesk.errors import AlreadyExists, Forbidden, NotFound, ValidationError
from helpdesk.extensions import db
from helpdesk.notifications.models import Notification, NotificationKind
from helpdesk.tickets import notes, tags
from helpdesk.tickets.models import Note, Tag, Ticket, TicketEvent, TicketTag
from tests.conftest import table_counts
from tests.factories import AgentFactory, BrandFactory, ChannelFactory, SlaPolicyFactory, at, member


@pytest.fixture
def brand():
    return BrandFactory()


@pytest.fixture
def agent(brand):
    agent = AgentFactory(name="Jamie Doe", email="jamie@acme.test")
    member(agent, brand)
    return agent


@pytest.fixture
def manager(brand):
    manager = AgentFactory(name="Morgan Lee", email="morgan@acme.test")
    member(manager, brand, Role.MANAGER)
    return manager


@pytest.fixture
def outsider():
    outsider = AgentFactory(name="Alex Other", email="alex@other.test")
    member(outsider, BrandFactory())
    return outsider


def ticket_of(brand, mid: str = "m-1", sender_id: str = "612001") -> Ticket:
    message = receive_inbound(
        ChannelFactory(brand=brand),
        InboundMessage(mid=mid, sender_id=sender_id, sent_at=at("2026-11-20 10:00"), text="hi"),
    )
    conversation = db.session.get(Conversation, message.conversation_id)
    ticket = Ticket(
        brand_id=brand.id,
        conversation_id=conversation.id,
        channel_id=conversation.channel_id,
        opened_at=at("2026-11-20 10:00"),
    )
    db.session.add(ticket)
    db.session.flush()
    return ticket


@pytest.fixture
def ticket(brand):
    return ticket_of(brand)


def events(ticket: Ticket, kind: str) -> list[TicketEvent]:
    return list(
        db.session.scalars(
            select(TicketEvent)
            .where(TicketEvent.ticket_id == ticket.id, TicketEvent.kind == kind)
            .order_by(TicketEvent.id)
        )
    )


def tag_names(ticket: Ticket) -> list[str]:
    return tags.ticket_tag_names([ticket.id])[ticket.id]


# Tags ---------------------------------------------------------------------------------------------


def test_tag_names_are_unique_per_brand_ignoring_case(brand, agent):
    tag = tags.create_tag(brand, agent, "  VIP  ", "#FF0000")
    assert (tag.name, tag.colour) == ("VIP", "#ff0000")

    with pytest.raises(AlreadyExists):
        tags.create_tag(brand, agent, "vip")
    other_brand = BrandFactory()
    member(agent, other_brand)
    assert tags.create_tag(other_brand, agent, "vip").id != tag.id


@pytest.mark.parametrize(
    ("name", "colour"), [("", "#6b7280"), ("x" * 65, "#6b7280"), ("ok", "red"), ("ok", "#12345")]
)
def test_malformed_tags_are_refused(brand, agent, name, colour):
    with pytest.raises(ValidationError):
        tags.create_tag(brand, agent, name, colour)


def test_get_or_create_finds_the_tag_whatever_its_case(brand, agent):
    tag = tags.create_tag(brand, agent, "Refund")
    assert tags.get_or_create_tag(brand, agent, "REFUND") is tag
    assert tags.get_or_create_tag(brand, agent, "shipping").name == "shipping"


def test_managing_tags_needs_a_manager(brand, agent, manager):
    tag = tags.create_tag(brand, agent, "vip")
    with pytest.raises(Forbidden):
        tags.rename_tag(tag, agent, "VIP customer")
    with pytest.raises(Forbidden):
        tags.recolour_tag(tag, agent, "#000000")
    with pytest.raises(Forbidden):
        tags.delete_tag(tag, agent)

    tags.create_tag(brand, agent, "other")
    with pytest.raises(AlreadyExists):
        tags.rename_tag(tag, manager, "OTHER")
    tags.rename_tag(tag, manager, "VIP")
    tags.recolour_tag(tag, manager, "#00aa00")
    assert (tag.name, tag.colour) == ("VIP", "#00aa00")


def test_deleting_a_tag_untags_its_tickets(brand, manager, ticket):
    tag = tags.add_tag(ticket, "vip", manager)

    tags.delete_tag(tag, manager)

    assert db.session.get(Tag, tag.id) is None
    assert tag_names(ticket) == []


def test_another_brands_agent_gets_not_found(brand, agent, outsider, ticket):
    tag = tags.add_tag(ticket, "vip", agent)

    with pytest.raises(NotFound):
        tags.add_tag(ticket, "spam", outsider)
    with pytest.raises(NotFound):
        tags.remove_tag(ticket, "vip", outsider)
    with pytest.raises(NotFound):
        tags.create_tag(brand, outsider, "spam")
    with pytest.raises(NotFound):
        tags.rename_tag(tag, outsider, "spam")


def test_adding_a_tag_creates_it_and_records_the_event(agent, ticket):
    tag = tags.add_tag(ticket, "Refund", agent)

    assert tag_names(ticket) == ["Refund"]
    [event] = events(ticket, "tagged")
    assert event.actor_id == agent.id
    assert event.data["tag"] == "Refund"
    assert event.data["tag_id"] == tag.id


def test_adding_a_tag_twice_is_a_no_op(agent, ticket):
    first = tags.add_tag(ticket, "refund", agent)
    second = tags.add_tag(ticket, "REFUND", agent)

    assert second is first
    assert tag_names(ticket) == ["refund"]
    assert len(events(ticket, "tagged")) == 1
    count = select(func.count()).select_from(TicketTag).where(TicketTag.ticket_id == ticket.id)
    assert db.session.scalar(count) == 1


def test_removing_a_tag_records_the_event_and_a_second_removal_is_not_found(agent, ticket):
    tags.add_tag(ticket, "refund", agent)

    tags.remove_tag(ticket, "Refund", agent)

    assert tag_names(ticket) == []
    [event] = events(ticket, "untagged")
    assert (event.actor_id, event.data["tag"]) == (agent.id, "refund")
    with pytest.raises(NotFound):
        tags.remove_tag(ticket, "refund", agent)
    with pytest.raises(NotFound):
        tags.remove_tag(ticket, "never-created", agent)


def test_tag_names_of_a_listing_come_from_one_query(brand, agent):
    first, second, untagged = (ticket_of(brand, f"m-{n}", f"61200{n}") for n in range(3))
    tags.add_tag(first, "vip", agent)
    tags.add_tag(first, "Billing", agent)
    tags.add_tag(second, "vip", agent)
    db.session.flush()

    statements: list[str] = []
    engine = db.engine

    def count(*args) -> None:
        statements.append(args[2])

    sa_event.listen(engine, "before_cursor_execute", count)
    try:
        names = tags.ticket_tag_names([first.id, second.id, untagged.id])
    finally:
        sa_event.remove(engine, "before_cursor_execute", count)

    assert names == {first.id: ["Billing", "vip"], second.id: ["vip"], untagged.id: []}
    assert len(statements) == 1


def test_a_tag_change_lets_sla_policies_match_again(brand, agent, ticket):
    tag = tags.create_tag(brand, agent, "vip")
    policy = SlaPolicyFactory(
        brand=brand,
        name="VIP",
        tag_id=tag.id,
        first_response_min=15,
        resolution_min=None,
        business_hours=False,
    )

    tags.add_tag(ticket, "VIP", agent)
    assert ticket.sla_policy_id == policy.id
    assert ticket.first_response_due_at == at("2026-11-20 10:15")

    tags.remove_tag(ticket, "vip", agent)
    assert ticket.sla_policy_id is None


# Keyword rules ------------------------------------------------------------------------------------


def test_keyword_rules_need_a_manager(brand, agent, manager):
    with pytest.raises(Forbidden):
        tags.add_tag_rule(brand, agent, "refund", "Refund")

    rule = tags.add_tag_rule(brand, manager, "refund", "Refund")
    assert rule.keyword == "refund"
    with pytest.raises(AlreadyExists):
        tags.add_tag_rule(brand, manager, "REFUND", "refund")


def test_keyword_rule_tags_an_incoming_text_as_the_system(brand, manager, ticket):
    tags.add_tag_rule(brand, manager, "refund", "Refund")
    tags.add_tag_rule(brand, manager, "money back", "Refund")
    tags.add_tag_rule(brand, manager, "broken", "Damaged")
    tags.add_tag_rule(brand, manager, "invoice", "Billing")

    added = tags.apply_tag_rules(ticket, "My shoes arrived BROKEN, I want my Money  back! Refund?")

    assert sorted(added) == ["Damaged", "Refund"]
    assert tag_names(ticket) == ["Damaged", "Refund"]
    assert {e.actor_id for e in events(ticket, "tagged")} == {None}
    assert tags.apply_tag_rules(ticket, "refund please") == []


def test_keyword_matches_whole_words_only(brand, manager, ticket):
    tags.add_tag_rule(brand, manager, "refund", "Refund")

    assert tags.apply_tag_rules(ticket, "I was refunded already, thanks") == []
    assert tags.apply_tag_rules(ticket, "") == []
    assert tags.apply_tag_rules(ticket, None) == []
    assert tags.keyword_matches("#promo", "is #promo still on?")
    assert not tags.keyword_matches("cat", "concatenate")


# Notes --------------------------------------------------------------------------------------------


def notifications_for(agent) -> list[Notification]:
    return list(db.session.scalars(select(Notification).where(Notification.agent_id == agent.id)))


def test_note_is_stored_and_recorded(agent, ticket):
    note = notes.add_note(ticket, agent, "  Customer sounds upset; offer a voucher.  ")

    assert note.body == "Customer sounds upset; offer a voucher."
    assert (note.author_id, note.mentions) == (agent.id, [])
    assert [n.id for n in notes.list_notes(ticket, agent)] == [note.id]
    [event] = events(ticket, "note_added")
    assert event.data["note_id"] == note.id


@pytest.mark.parametrize("body", ["", "   ", "x" * 5001])
def test_empty_or_huge_notes_are_refused_and_nothing_is_written(agent, ticket, body):
    before = table_counts()
    with pytest.raises(ValidationError):
        notes.add_note(ticket, agent, body)
    assert table_counts() == before


def test_outsider_cannot_add_or_read_notes(outsider, ticket):
    with pytest.raises(NotFound):
        notes.add_note(ticket, outsider, "hello")
    with pytest.raises(NotFound):
        notes.list_notes(ticket, outsider)


def test_mention_notifies_the_mentioned_agent_not_the_author(agent, manager, ticket):
    note = notes.add_note(ticket, agent, "@morgan can you approve a refund? cc @jamie")

    assert note.mentions == [manager.id, agent.id]
    [notification] = notifications_for(manager)
    assert notification.kind is NotificationKind.MENTION
    assert notification.alert is True
    assert (notification.ticket_id, notification.conversation_id) == (
        ticket.id,
        ticket.conversation_id,
    )
    assert "Jamie Doe" in notification.body
    assert notifications_for(agent) == []


def test_mention_by_name_without_spaces_ignores_case(agent, manager, ticket):
    note = notes.add_note(ticket, agent, "Over to @MorganLee.")

    assert note.mentions == [manager.id]
    assert len(notifications_for(manager)) == 1


def test_agents_of_another_brand_are_never_mentioned(agent, outsider, ticket):
    note = notes.add_note(ticket, agent, "@alex @AlexOther have a look")

    assert note.mentions == []
    assert notifications_for(outsider) == []


def test_email_addresses_and_longer_words_are_not_mentions(brand, agent, manager, ticket):
    anna, anna_smith = AgentFactory(email="anna@acme.test"), AgentFactory(email="anna.smith@x.test")
    member(anna, brand)
    member(anna_smith, brand)

    note = notes.add_note(
        ticket, manager, "Mail jamie@morgan.test, not @annabel; ask @anna.smith, then @anna."
    )

    assert note.mentions == [anna_smith.id, anna.id]


def test_muted_conversation_stores_the_mention_without_an_alert(agent, manager, ticket):
    conversation = db.session.get(Conversation, ticket.conversation_id)
    set_notification_level(manager, conversation, NotificationLevel.MUTED)

    notes.add_note(ticket, agent, "@morgan fyi")

    [notification] = notifications_for(manager)
    assert notification.alert is False


def test_conversation_turned_off_stores_no_notification(agent, manager, ticket):
    conversation = db.session.get(Conversation, ticket.conversation_id)
    set_notification_level(manager, conversation, NotificationLevel.OFF)

    note = notes.add_note(ticket, agent, "@morgan fyi")

    assert note.mentions == [manager.id]
    assert notifications_for(manager) == []
    assert db.session.get(Note, note.id) is note


def test_mention_candidates_complete_by_handle_or_name(brand, agent, manager, outsider):
    member(AgentFactory(email="mo_ritz@acme.test", name="Zed Ritz"), brand)

    found = notes.mention_candidates(brand.id, "@mo", agent)

    assert [c["handle"] for c in found] == ["morgan", "mo_ritz"]
    assert found[0] == {"id": manager.id, "name": "Morgan Lee", "handle": "morgan"}
    assert [c["id"] for c in notes.mention_candidates(brand.id, "jamied")] == [agent.id]
    assert notes.mention_candidates(brand.id, "m_") == []
    assert notes.mention_candidates(brand.id, "alex") == []
    with pytest.raises(NotFound):
        notes.mention_candidates(brand.id, "mo", outsider)

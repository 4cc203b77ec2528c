"""Canned replies: who may save, see and use them, the sandbox at save time, and the `/` search."""

from __future__ import annotations

import pytest
from sqlalchemy import select

from helpdesk.accounts.models import Role
from helpdesk.canned import service
from helpdesk.canned.models import CannedReply
from helpdesk.dm.models import Conversation
from helpdesk.dm.service import InboundMessage, receive_inbound
from helpdesk.errors import AlreadyExists, Forbidden, NotFound, ValidationError
from helpdesk.extensions import db
from helpdesk.tickets.models import Ticket
from tests.conftest import table_counts
from tests.factories import AgentFactory, BrandFactory, ChannelFactory, at, member


@pytest.fixture
def brand():
    return BrandFactory(name="Acme Shoes")


@pytest.fixture
def agent(brand):
    agent = AgentFactory(name="Jamie Doe", email="jamie@acme.test")
    member(agent, brand)
    return agent


@pytest.fixture
def colleague(brand):
    colleague = AgentFactory(name="Sam Roe")
    member(colleague, brand)
    return colleague


@pytest.fixture
def manager(brand):
    manager = AgentFactory(name="Morgan Lee")
    member(manager, brand, Role.MANAGER)
    return manager


@pytest.fixture
def outsider():
    outsider = AgentFactory(name="Alex Other")
    member(outsider, BrandFactory())
    return outsider


def conversation_of(
    brand, name: str | None = "Maria Lopez", username: str | None = "maria"
) -> Conversation:
    message = receive_inbound(
        ChannelFactory(brand=brand),
        InboundMessage(
            mid="m-1",
            sender_id="612001",
            sent_at=at("2026-11-20 10:00"),
            text="hello",
            sender_name=name,
            sender_username=username,
        ),
    )
    return db.session.get(Conversation, message.conversation_id)


def ticket_for(conversation) -> Ticket:
    ticket = Ticket(
        brand_id=conversation.brand_id,
        conversation_id=conversation.id,
        channel_id=conversation.channel_id,
        opened_at=at("2026-11-20 10:00"),
    )
    db.session.add(ticket)
    db.session.flush()
    return ticket


# Saving ---------------------------------------------------------------------------------------


def test_agent_saves_a_personal_reply_without_the_slash(brand, agent):
    reply = service.create(brand, agent, "/Refund", "Refunds", "We refund within 14 days.")

    assert reply.shortcode == "refund"
    assert reply.owner_id == agent.id
    assert service.to_dict(reply) == {
        "id": reply.id,
        "shortcode": "refund",
        "title": "Refunds",
        "body": "We refund within 14 days.",
        "attachments": [],
        "shared": False,
        "owner_id": agent.id,
        "usage_count": 0,
    }


def test_shortcode_is_unique_per_brand(brand, agent, manager):
    service.create(brand, agent, "refund", "Refunds", "Mine")

    with pytest.raises(AlreadyExists):
        service.create(brand, manager, "/refund", "Refunds", "Shared", shared=True)
    other_brand = BrandFactory()
    member(agent, other_brand)
    assert service.create(other_brand, agent, "refund", "Refunds", "Elsewhere").id


@pytest.mark.parametrize("shortcode", ["", "/", "has space", "ümlaut", "x" * 41, "semi;colon"])
def test_malformed_shortcodes_are_refused(brand, agent, shortcode):
    with pytest.raises(ValidationError):
        service.create(brand, agent, shortcode, "Title", "Body")


def test_attachments_are_http_links_of_a_sendable_type(brand, agent):
    reply = service.create(
        brand,
        agent,
        "size-chart",
        "Size chart",
        "Here is our size chart.",
        attachments=[{"type": "image", "url": "https://cdn.example.test/sizes.png"}],
    )
    assert reply.attachments == [{"type": "image", "url": "https://cdn.example.test/sizes.png"}]

    for bad in (
        {"type": "image", "url": "javascript:alert(1)"},
        {"type": "image", "url": "file:///etc/passwd"},
        {"type": "sticker", "url": "https://cdn.example.test/a.png"},
        {"type": "file"},
    ):
        with pytest.raises(ValidationError):
            service.create(brand, agent, "bad", "Bad", "Body", attachments=[bad])


def test_hostile_template_is_refused_and_nothing_is_written(brand, agent, manager):
    before = table_counts()

    with pytest.raises(ValidationError):
        service.create(brand, agent, "evil", "Evil", "{{ ''.__class__ }}")
    with pytest.raises(ValidationError):
        service.create(brand, manager, "evil", "Evil", "{{ ''.__class__.__mro__ }}", shared=True)

    assert table_counts() == before


def test_hostile_edit_is_refused_and_the_reply_is_unchanged(brand, agent):
    reply = service.create(brand, agent, "hi", "Hi", "Hi {{ contact.first_name }}")
    db.session.commit()

    with pytest.raises(ValidationError):
        service.update(reply, agent, title="Changed", body="{{ self.__init__.__globals__ }}")

    db.session.rollback()
    db.session.refresh(reply)
    assert (reply.title, reply.body) == ("Hi", "Hi {{ contact.first_name }}")


# Roles and visibility -------------------------------------------------------------------------


def test_agent_cannot_create_a_shared_reply_but_a_manager_can(brand, agent, manager):
    with pytest.raises(Forbidden):
        service.create(brand, agent, "hours", "Hours", "We open at 9.", shared=True)

    reply = service.create(brand, manager, "hours", "Hours", "We open at 9.", shared=True)
    assert reply.owner_id is None
    assert service.to_dict(reply)["shared"] is True


def test_admin_counts_as_a_manager(brand):
    admin = AgentFactory()
    member(admin, brand, Role.ADMIN)
    assert service.create(brand, admin, "hours", "Hours", "9 to 5", shared=True).owner_id is None


def test_shared_reply_is_visible_to_every_member_but_editable_by_managers(
    brand, agent, manager, colleague
):
    reply = service.create(brand, manager, "hours", "Hours", "9 to 5", shared=True)

    assert service.get(reply.id, colleague) is reply
    with pytest.raises(Forbidden):
        service.update(reply, agent, body="8 to 4")
    with pytest.raises(Forbidden):
        service.delete(reply, agent)

    service.update(reply, manager, body="8 to 4")
    assert reply.body == "8 to 4"


def test_personal_reply_is_invisible_to_others(brand, agent, colleague, manager):
    reply = service.create(brand, agent, "mine", "Mine", "Only mine")

    assert service.get(reply.id, agent) is reply
    for someone_else in (colleague, manager):
        with pytest.raises(NotFound):
            service.get(reply.id, someone_else)
        with pytest.raises(NotFound):
            service.update(reply, someone_else, body="taken over")
        with pytest.raises(NotFound):
            service.delete(reply, someone_else)
    assert [r.id for r in service.search(brand.id, colleague)] == []


def test_another_brands_agent_gets_not_found(brand, manager, outsider):
    reply = service.create(brand, manager, "hours", "Hours", "9 to 5", shared=True)

    with pytest.raises(NotFound):
        service.get(reply.id, outsider)
    with pytest.raises(NotFound):
        service.create(brand, outsider, "mine", "Mine", "Body")
    with pytest.raises(NotFound):
        service.search(brand.id, outsider)
    with pytest.raises(NotFound):
        service.update(reply, outsider, body="defaced")
    with pytest.raises(NotFound):
        service.render(reply, conversation_of(brand), outsider)


def test_get_scoped_to_another_brand_is_not_found(brand, manager):
    reply = service.create(brand, manager, "hours", "Hours", "9 to 5", shared=True)
    other_brand = BrandFactory()
    member(manager, other_brand, Role.MANAGER)

    with pytest.raises(NotFound):
        service.get(reply.id, manager, brand_id=other_brand.id)


def test_owner_edits_and_deletes_a_personal_reply(brand, agent):
    reply = service.create(brand, agent, "mine", "Mine", "Body")
    service.create(brand, agent, "taken", "Taken", "Body")

    service.update(reply, agent, shortcode="/mine-2", title="Mine too", attachments=[])
    assert (reply.shortcode, reply.title) == ("mine-2", "Mine too")
    with pytest.raises(AlreadyExists):
        service.update(reply, agent, shortcode="taken")

    service.delete(reply, agent)
    assert db.session.get(CannedReply, reply.id) is None


def test_sharing_a_personal_reply_needs_a_manager(brand, agent, manager):
    reply = service.create(brand, agent, "mine", "Mine", "Body")
    with pytest.raises(Forbidden):
        service.update(reply, agent, shared=True)

    own = service.create(brand, manager, "promo", "Promo", "Body")
    service.update(own, manager, shared=True)
    assert own.owner_id is None


# Search ---------------------------------------------------------------------------------------


def _codes(replies: list[CannedReply]) -> list[str]:
    return [r.shortcode for r in replies]


def test_search_lists_own_and_shared_replies(brand, agent, colleague, manager):
    service.create(brand, manager, "hours", "Opening hours", "9 to 5", shared=True)
    service.create(brand, agent, "mine", "Mine", "Body")
    service.create(brand, colleague, "theirs", "Theirs", "Body")

    assert sorted(_codes(service.search(brand.id, agent))) == ["hours", "mine"]
    assert sorted(_codes(service.search(brand.id, colleague))) == ["hours", "theirs"]


def test_search_by_shortcode_prefix(brand, manager):
    for code in ("refund", "refund-late", "return", "re_ship"):
        service.create(brand, manager, code, code.title(), "Body", shared=True)

    assert sorted(_codes(service.search(brand.id, manager, "/ref"))) == ["refund", "refund-late"]
    assert _codes(service.search(brand.id, manager, "/re_")) == ["re_ship"]
    assert len(service.search(brand.id, manager, "/")) == 4


def test_search_by_words_in_title_or_body_ignores_case(brand, manager):
    service.create(
        brand, manager, "late", "Late Delivery", "Sorry, the COURIER is late.", shared=True
    )
    service.create(brand, manager, "lost", "Lost parcel", "The courier lost it.", shared=True)
    service.create(brand, manager, "sizes", "Sizes", "Our size chart.", shared=True)

    assert sorted(_codes(service.search(brand.id, manager, "courier"))) == ["late", "lost"]
    assert _codes(service.search(brand.id, manager, "DELIVERY courier")) == ["late"]
    assert _codes(service.search(brand.id, manager, "100%")) == []


def test_search_puts_shortcode_matches_first(brand, manager):
    service.create(brand, manager, "delay", "Delay", "Mentions nothing else.", shared=True)
    service.create(brand, manager, "apology", "Apology", "Sorry for the delay.", shared=True)

    assert _codes(service.search(brand.id, manager, "delay")) == ["delay", "apology"]


# Rendering ------------------------------------------------------------------------------------


def test_render_fills_contact_agent_brand_and_ticket(brand, agent):
    conversation = conversation_of(brand)
    ticket = ticket_for(conversation)
    reply = service.create(
        brand,
        agent,
        "hi",
        "Hi",
        "Hi {{ contact.first_name }} (@{{ contact.username }}), {{ agent.first_name }} of "
        "{{ brand.name }} here about #{{ ticket.id }}.",
    )

    result = service.render(reply, conversation, agent, ticket)

    assert result.text == f"Hi Maria (@maria), Jamie of Acme Shoes here about #{ticket.id}."
    assert result.missing == []


def test_render_counts_each_use(brand, agent):
    conversation = conversation_of(brand)
    reply = service.create(brand, agent, "hi", "Hi", "Hi {{ contact.name }}")

    service.render(reply, conversation, agent)
    service.render(reply, conversation, agent)
    db.session.commit()

    assert reply.usage_count == 2
    db.session.expire_all()
    assert db.session.scalar(select(CannedReply.usage_count).where(CannedReply.id == reply.id)) == 2


def test_render_uses_the_conversations_current_ticket(brand, agent):
    conversation = conversation_of(brand)
    ticket = ticket_for(conversation)
    conversation.current_ticket_id = ticket.id
    reply = service.create(brand, agent, "ref", "Ref", "Reference {{ ticket.id }}")

    assert service.render(reply, conversation, agent).text == f"Reference {ticket.id}"


def test_render_leaves_unknown_values_visible(brand, agent):
    conversation = conversation_of(brand, name=None, username=None)
    reply = service.create(brand, agent, "hi", "Hi", "Hi {{ contact.name }} #{{ ticket.id }}")

    result = service.render(reply, conversation, agent)

    assert result.text == "Hi {{ contact.name }} #{{ ticket.id }}"
    assert result.missing == ["contact.name", "ticket.id"]


def test_someone_elses_personal_reply_cannot_be_rendered(brand, agent, colleague):
    reply = service.create(brand, agent, "mine", "Mine", "Body")

    with pytest.raises(NotFound):
        service.render(reply, conversation_of(brand), colleague)
    assert reply.usage_count == 0


def test_reply_cannot_be_rendered_into_another_brands_conversation(brand, agent):
    other_brand = BrandFactory()
    member(agent, other_brand)
    reply = service.create(brand, agent, "mine", "Mine", "Body")

    with pytest.raises(NotFound):
        service.render(reply, conversation_of(other_brand), agent)

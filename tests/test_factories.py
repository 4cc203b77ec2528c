"""The factories build rows the database and the domain accept: committed, read back, and
consistent with one brand (a conversation's channel and contact, a message's and a ticket's
conversation)."""

from __future__ import annotations

import pytest
from sqlalchemy import select

from helpdesk.canned import service as canned
from helpdesk.canned.models import CannedReply
from helpdesk.dm.models import Contact, Conversation, Message, Participant
from helpdesk.extensions import db
from helpdesk.sla import service as sla
from helpdesk.sla.models import SlaPolicy
from helpdesk.tickets import tags
from helpdesk.tickets.models import Tag, Ticket
from tests.factories import (
    BrandFactory,
    CannedReplyFactory,
    ConversationFactory,
    MessageFactory,
    SlaPolicyFactory,
    TagFactory,
    TicketFactory,
)


def committed(model, row_id: int):
    """The row as a new transaction reads it: proof that the commit took it whole."""
    db.session.commit()
    db.session.expire_all()
    row = db.session.get(model, row_id)
    assert row is not None
    return row


def test_a_conversation_belongs_to_its_contacts_channel_and_brand():
    conversation = committed(Conversation, ConversationFactory().id)
    contact = db.session.get(Contact, conversation.contact_id)
    assert conversation.channel_id == contact.channel_id
    assert conversation.brand_id == contact.brand_id
    assert conversation.thread_key == f"direct:{contact.platform_id}"
    participants = db.session.scalars(
        select(Participant.is_brand).where(Participant.conversation_id == conversation.id)
    )
    assert sorted(participants) == [False, True]


def test_a_message_belongs_to_its_conversation():
    message = committed(Message, MessageFactory().id)
    conversation = db.session.get(Conversation, message.conversation_id)
    assert (message.channel_id, message.brand_id, message.contact_id) == (
        conversation.channel_id,
        conversation.brand_id,
        conversation.contact_id,
    )


def test_messages_of_one_conversation_have_their_own_mids():
    first = MessageFactory()
    second = MessageFactory(conversation=db.session.get(Conversation, first.conversation_id))
    committed(Message, second.id)
    assert first.mid != second.mid


def test_a_ticket_is_its_conversations_current_one():
    ticket = committed(Ticket, TicketFactory().id)
    conversation = db.session.get(Conversation, ticket.conversation_id)
    assert conversation.current_ticket_id == ticket.id
    assert (ticket.brand_id, ticket.channel_id) == (conversation.brand_id, conversation.channel_id)


def test_a_tag_is_found_by_the_tag_service():
    tag = committed(Tag, TagFactory(name="Express Shipping").id)
    assert tags.find_tag(tag.brand_id, "express shipping").id == tag.id


def test_a_canned_reply_renders_in_a_conversation_of_its_brand():
    brand = BrandFactory()
    reply = committed(CannedReply, CannedReplyFactory(brand=brand).id)
    conversation = ConversationFactory(contact__channel__brand=brand, contact__username="jane")
    assert canned.render(reply, conversation, None).text.startswith("Hi jane,")


def test_an_sla_policy_is_the_brands():
    brand = BrandFactory()
    policy = committed(SlaPolicy, SlaPolicyFactory(brand=brand).id)
    assert [p.id for p in sla.list_policies(brand.id)] == [policy.id]


@pytest.mark.parametrize(
    "factory", [ConversationFactory, MessageFactory, TicketFactory, TagFactory, CannedReplyFactory]
)
def test_two_rows_of_a_factory_never_collide(factory):
    factory()
    factory()
    db.session.commit()

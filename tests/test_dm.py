"""The DM model of docs/concepts.md, rule by rule, on whichever database DATABASE_URL names."""

from __future__ import annotations

from datetime import timedelta

import pytest
from sqlalchemy import select, text, update
from sqlalchemy.exc import IntegrityError

from helpdesk.accounts.models import Role
from helpdesk.channels.models import Channel
from helpdesk.dm import service
from helpdesk.dm.models import (
    Contact,
    Conversation,
    ConversationKind,
    Direction,
    Folder,
    Message,
    MessageEdit,
    MessageKind,
    MessageStatus,
    NotificationLevel,
    Participant,
    Reaction,
    RequestState,
)
from helpdesk.errors import (
    AlreadyExists,
    ContactBlocked,
    DuplicateMessage,
    GroupFull,
    InvalidState,
    NotAGroup,
    NotFound,
    ReplyWindowClosed,
    ValidationError,
)
from helpdesk.extensions import db
from tests.conftest import table_counts
from tests.factories import AgentFactory, BrandFactory, ChannelFactory, ContactFactory, member
from tests.helpers.dm import T0, followed_contact, inbound


@pytest.fixture
def channel() -> Channel:
    return ChannelFactory()


# Channels ---------------------------------------------------------------------------------------


def test_channel_token_is_encrypted_at_rest(channel):
    db.session.commit()
    raw = db.session.execute(
        text("SELECT access_token_encrypted FROM channels WHERE id = :id"), {"id": channel.id}
    ).scalar_one()
    assert "test-page-token" not in raw
    db.session.expire_all()
    assert db.session.get(Channel, channel.id).access_token == "test-page-token"


def test_channel_token_cannot_be_read_with_another_key(app, channel):
    db.session.commit()
    app.config["TOKEN_ENCRYPTION_KEY"] = "a different key"
    try:
        db.session.expire_all()
        with pytest.raises(ValueError):
            db.session.get(Channel, channel.id).access_token  # noqa: B018
    finally:
        app.config["TOKEN_ENCRYPTION_KEY"] = None


# Routing: inbox, requests, hidden, blocked ------------------------------------------------------


def test_message_from_followed_contact_lands_in_primary(channel):
    followed_contact(channel)
    message = inbound(channel, text="Hi!")
    conversation = db.session.get(Conversation, message.conversation_id)
    assert conversation.folder is Folder.PRIMARY
    assert conversation.request_state is RequestState.NONE
    assert conversation.kind is ConversationKind.DIRECT
    assert conversation.last_inbound_at == T0
    assert conversation.last_message_preview == "Hi!"
    assert message.direction is Direction.INBOUND
    assert message.status is MessageStatus.RECEIVED


def test_message_from_unknown_contact_is_a_request(channel):
    message = inbound(channel, text="Hello?")
    conversation = db.session.get(Conversation, message.conversation_id)
    assert conversation.folder is Folder.REQUESTS
    assert conversation.request_state is RequestState.PENDING


def test_followers_count_as_known_when_the_brand_says_so(channel):
    ContactFactory(channel=channel, platform_id="6120000000000001", follows_brand=True)
    assert db.session.get(Conversation, inbound(channel).conversation_id).folder is Folder.REQUESTS

    brand = channel_brand(channel)
    brand.followers_are_known = True
    ContactFactory(channel=channel, platform_id="6120000000000002", follows_brand=True)
    message = inbound(channel, sender="6120000000000002", mid="m2")
    assert db.session.get(Conversation, message.conversation_id).folder is Folder.PRIMARY


def test_accept_everything_setting_skips_requests(channel):
    channel_brand(channel).accept_all_requests = True
    message = inbound(channel)
    assert db.session.get(Conversation, message.conversation_id).folder is Folder.PRIMARY


def test_request_with_hidden_word_is_hidden(channel):
    channel_brand(channel).hidden_words = ["Giveaway"]
    message = inbound(channel, text="Free CRYPTO giveaway, click here")
    conversation = db.session.get(Conversation, message.conversation_id)
    assert conversation.request_state is RequestState.HIDDEN
    assert conversation.folder is Folder.REQUESTS


def test_hidden_words_do_not_hide_known_contacts(channel):
    channel_brand(channel).hidden_words = ["giveaway"]
    followed_contact(channel)
    message = inbound(channel, text="is the giveaway over?")
    assert db.session.get(Conversation, message.conversation_id).request_state is RequestState.NONE


def test_accept_moves_request_to_primary(channel):
    conversation = conversation_of(inbound(channel))
    service.accept_request(conversation)
    assert conversation.folder is Folder.PRIMARY
    assert conversation.request_state is RequestState.ACCEPTED
    with pytest.raises(InvalidState):
        service.accept_request(conversation)


def test_decline_removes_from_inbox_and_next_message_is_a_new_request(channel):
    conversation = conversation_of(inbound(channel))
    service.decline_request(conversation)
    assert conversation.request_state is RequestState.DECLINED
    assert not conversation.in_inbox
    assert db.session.scalar(select(db.func.count()).select_from(Message)) == 1  # kept for audit

    later = inbound(channel, mid="m2", when=T0 + timedelta(days=2))
    assert later.conversation_id == conversation.id
    assert conversation.request_state is RequestState.PENDING
    assert conversation.folder is Folder.REQUESTS


def test_blocked_contact_messages_are_stored_but_never_surfaced(channel):
    first = inbound(channel, text="first")
    conversation = conversation_of(first)
    service.block_request(conversation)
    contact = db.session.get(Contact, first.contact_id)
    assert contact.blocked

    second = inbound(channel, mid="m2", text="let me in", when=T0 + timedelta(hours=1))
    assert second.suppressed
    assert conversation.request_state is RequestState.BLOCKED
    assert not conversation.in_inbox
    assert conversation.last_message_preview == "first"
    assert conversation.last_inbound_at == T0


def test_message_from_blocked_contact_in_new_thread_is_blocked(channel):
    ContactFactory(channel=channel, platform_id="6120000000000001", blocked=True)
    message = inbound(channel)
    assert message.suppressed
    assert conversation_of(message).request_state is RequestState.BLOCKED


def test_brand_reply_accepts_a_pending_request(channel):
    conversation = conversation_of(inbound(channel))
    service.record_outbound(conversation, text="Happy to help", now=T0 + timedelta(minutes=5))
    assert conversation.request_state is RequestState.ACCEPTED
    assert conversation.folder is Folder.PRIMARY


def test_no_reply_to_a_blocked_contact(channel):
    conversation = conversation_of(inbound(channel))
    service.block_request(conversation)
    before = table_counts()
    with pytest.raises(ContactBlocked):
        service.record_outbound(conversation, text="hi", now=T0 + timedelta(minutes=1))
    assert table_counts() == before


def test_same_platform_id_in_two_brands_is_two_contacts():
    a, b = ChannelFactory(), ChannelFactory()
    first, second = inbound(a), inbound(b)
    assert first.contact_id != second.contact_id
    assert conversation_of(first).brand_id != conversation_of(second).brand_id


# Idempotency ------------------------------------------------------------------------------------


def test_duplicate_mid_is_stored_once(channel):
    original = inbound(channel, text="once")
    db.session.commit()
    before = table_counts()
    with pytest.raises(DuplicateMessage) as refused:
        inbound(channel, text="twice", sender="6120000000000009", when=T0 + timedelta(seconds=5))
    assert refused.value.existing_id == original.id
    db.session.commit()
    assert table_counts() == before


def test_database_refuses_a_second_row_with_the_same_mid(channel):
    message = inbound(channel)
    db.session.commit()
    clone = Message(
        brand_id=message.brand_id,
        channel_id=message.channel_id,
        conversation_id=message.conversation_id,
        direction=Direction.INBOUND,
        mid=message.mid,
        status=MessageStatus.RECEIVED,
    )
    db.session.add(clone)
    with pytest.raises(IntegrityError):
        db.session.flush()
    db.session.rollback()


def test_same_mid_on_another_channel_is_another_message():
    a, b = ChannelFactory(), ChannelFactory()
    assert inbound(a, mid="shared").id != inbound(b, mid="shared").id


# Message kinds, replies, edits, unsends ---------------------------------------------------------


@pytest.mark.parametrize("kind", list(MessageKind))
def test_every_message_kind_is_stored(channel, kind):
    attachments = (
        [] if kind is MessageKind.TEXT else [{"type": kind.value, "url": "https://x.test/a"}]
    )
    message = inbound(channel, kind=kind, text="caption", attachments=attachments)
    db.session.commit()
    db.session.expire_all()
    stored = db.session.get(Message, message.id)
    assert stored.kind is kind
    assert stored.attachments == attachments


def test_reply_to_links_the_quoted_message(channel):
    first = inbound(channel, text="where is my order?")
    second = inbound(
        channel, mid="m2", text="^ this", reply_to_mid="m1", when=T0 + timedelta(seconds=9)
    )
    assert second.reply_to_id == first.id


def test_reply_arriving_before_its_quoted_message_is_linked_later(channel):
    reply = inbound(channel, mid="m2", reply_to_mid="m1", text="^", when=T0 + timedelta(seconds=9))
    assert reply.reply_to_id is None
    quoted = inbound(channel, mid="m1", text="original")
    db.session.expire_all()
    assert db.session.get(Message, reply.id).reply_to_id == quoted.id


def test_edit_keeps_the_previous_text(channel):
    message = inbound(channel, text="size M")
    service.edit_message(message, "size L", num_edit=1)
    assert message.text == "size L" and message.edited
    edits = db.session.scalars(
        select(MessageEdit).where(MessageEdit.message_id == message.id)
    ).all()
    assert [e.previous_text for e in edits] == ["size M"]


def test_replayed_edit_changes_nothing(channel):
    message = inbound(channel, text="size M")
    service.edit_message(message, "size L", num_edit=1)
    db.session.commit()
    before = table_counts()
    service.edit_message(message, "size L", num_edit=1)
    assert table_counts() == before
    assert message.edit_count == 1


def test_unsend_leaves_a_tombstone_without_content(channel):
    message = inbound(
        channel,
        text="my address is ...",
        attachments=[{"type": "image", "url": "https://x.test/i"}],
    )
    service.edit_message(message, "my new address is ...", num_edit=1)
    service.unsend_message(message, at=T0 + timedelta(minutes=1))
    db.session.commit()
    row = db.session.execute(
        text("SELECT text, attachments, unsent_at FROM messages WHERE id = :id"), {"id": message.id}
    ).one()
    assert row.text is None and row.unsent_at is not None
    assert "x.test" not in str(row.attachments)
    history = (
        db.session.execute(
            text("SELECT previous_text FROM message_edits WHERE message_id = :id"),
            {"id": message.id},
        )
        .scalars()
        .all()
    )
    assert history == [None]
    with pytest.raises(InvalidState):
        service.edit_message(message, "again", num_edit=2)


# Reactions --------------------------------------------------------------------------------------


def test_one_reaction_per_person_per_message(channel):
    message = inbound(channel)
    contact = db.session.get(Contact, message.contact_id)
    service.react(message, "❤️", contact=contact)
    service.react(message, "😂", contact=contact)
    service.react(message, "👍")  # the brand
    reactions = db.session.scalars(select(Reaction).where(Reaction.message_id == message.id)).all()
    assert sorted(r.emoji for r in reactions) == sorted(["😂", "👍"])

    assert service.unreact(message, contact=contact)
    assert not service.unreact(message, contact=contact)
    assert [r.emoji for r in db.session.scalars(select(Reaction)).all()] == ["👍"]


def test_database_refuses_a_second_reaction_by_the_same_person(channel):
    message = inbound(channel)
    db.session.add(Reaction(message_id=message.id, reactor="brand", emoji="👍"))
    db.session.flush()
    db.session.add(Reaction(message_id=message.id, reactor="brand", emoji="❤️"))
    with pytest.raises(IntegrityError):
        db.session.flush()
    db.session.rollback()


# Seen -------------------------------------------------------------------------------------------


def test_mark_seen_by_brand_and_read_by_contact(channel):
    followed_contact(channel)
    first = inbound(channel)
    conversation = conversation_of(first)
    assert service.mark_seen_by_brand(conversation, at=T0 + timedelta(minutes=1)) == 1
    db.session.expire_all()
    assert db.session.get(Message, first.id).seen_at == T0 + timedelta(minutes=1)

    reply = service.record_outbound(conversation, text="on it", now=T0 + timedelta(minutes=2))
    reply.mid, reply.status, reply.sent_at = "out-1", MessageStatus.SENT, T0 + timedelta(minutes=2)
    db.session.flush()
    assert service.mark_read_by_contact(reply, at=T0 + timedelta(minutes=3)) == 1
    db.session.expire_all()
    assert db.session.get(Message, reply.id).status is MessageStatus.SEEN


# Vanish mode ------------------------------------------------------------------------------------


def test_vanish_message_is_purged_after_seen_and_grace(channel):
    followed_contact(channel)
    conversation = conversation_of(inbound(channel, text="normal"))
    service.set_vanish_mode(conversation, True)
    secret = inbound(
        channel,
        mid="m2",
        text="secret",
        attachments=[{"type": "image", "url": "https://x.test/s"}],
        when=T0 + timedelta(minutes=1),
    )
    unseen = inbound(channel, mid="m3", text="not seen yet", when=T0 + timedelta(minutes=20))
    assert secret.vanish and conversation_of(secret).vanish_mode
    service.reveal_vanish_messages(conversation, at=T0 + timedelta(minutes=2))
    service.record_outbound(conversation, text="got it", now=T0 + timedelta(minutes=2, seconds=30))
    db.session.commit()

    assert (
        service.purge_vanish_messages(now=T0 + timedelta(minutes=3), grace=timedelta(minutes=5))
        == 0
    )
    assert (
        service.purge_vanish_messages(now=T0 + timedelta(minutes=8), grace=timedelta(minutes=5))
        == 1
    )
    db.session.commit()
    row = db.session.execute(
        text("SELECT text, attachments, purged_at, sent_at FROM messages WHERE id = :id"),
        {"id": secret.id},
    ).one()
    assert row.text is None and "x.test" not in str(row.attachments)
    assert row.purged_at is not None and row.sent_at is not None  # metadata for metrics stays
    db.session.expire_all()
    assert db.session.get(Message, unseen.id).text == "not seen yet"
    assert db.session.scalar(select(Message.text).where(Message.mid == "m1")) == "normal"


def test_vanish_message_is_purged_when_the_viewer_leaves(channel):
    followed_contact(channel)
    conversation = conversation_of(inbound(channel, text="normal"))
    service.set_vanish_mode(conversation, True)
    inbound(channel, mid="m2", text="secret", when=T0 + timedelta(minutes=1))
    service.reveal_vanish_messages(conversation, at=T0 + timedelta(minutes=2))
    service.confirm_vanish_read(conversation, at=T0 + timedelta(minutes=2))
    service.leave_thread(conversation, at=T0 + timedelta(minutes=3))
    assert (
        service.purge_vanish_messages(now=T0 + timedelta(minutes=3), grace=timedelta(hours=1)) == 1
    )


# Groups -----------------------------------------------------------------------------------------


def test_33rd_participant_is_refused(channel):
    contacts = [ContactFactory(channel=channel) for _ in range(32)]
    group = service.create_group(channel, "thread-1", contacts[:30], title="VIP")
    service.add_participant(group, contacts[30])
    assert group.participant_count == 32  # 31 customers and the brand
    db.session.commit()
    before = table_counts()
    with pytest.raises(GroupFull):
        service.add_participant(group, contacts[31])
    db.session.commit()
    assert table_counts() == before
    db.session.expire_all()
    assert db.session.get(Conversation, group.id).participant_count == 32


def test_group_of_more_than_32_cannot_be_created(channel):
    contacts = [ContactFactory(channel=channel) for _ in range(32)]
    with pytest.raises(GroupFull):
        service.create_group(channel, "thread-2", contacts)


def test_database_refuses_a_33rd_seat(channel):
    group = service.create_group(channel, "t", [ContactFactory(channel=channel)])
    db.session.commit()
    with pytest.raises(IntegrityError):
        db.session.execute(
            update(Conversation).where(Conversation.id == group.id).values(participant_count=33)
        )
    db.session.rollback()


def test_removing_a_participant_frees_a_seat(channel):
    contacts = [ContactFactory(channel=channel) for _ in range(32)]
    group = service.create_group(channel, "thread-3", contacts[:31])
    service.remove_participant(group, contacts[0])
    service.add_participant(group, contacts[31])
    assert group.participant_count == 32
    with pytest.raises(AlreadyExists):
        service.add_participant(group, contacts[5])


def test_direct_thread_has_no_participants_to_add(channel):
    conversation = conversation_of(inbound(channel))
    with pytest.raises(NotAGroup):
        service.add_participant(conversation, ContactFactory(channel=channel))


def test_group_message_adds_its_sender(channel):
    message = inbound(channel, thread_key="g-1", text="hi all")
    group = conversation_of(message)
    assert group.kind is ConversationKind.GROUP
    inbound(channel, sender="6120000000000002", mid="m2", thread_key="g-1")
    members = db.session.scalars(
        select(Participant).where(Participant.conversation_id == group.id)
    ).all()
    assert len(members) == 3 and group.participant_count == 3


# Reply window and scheduling --------------------------------------------------------------------


def test_reply_within_24_hours_needs_no_tag(channel):
    conversation = conversation_of(inbound(channel))
    reply = service.record_outbound(conversation, text="hi", now=T0 + timedelta(hours=23))
    assert reply.status is MessageStatus.QUEUED and not reply.human_agent_tag


def test_human_reply_between_24_hours_and_7_days_carries_the_human_agent_tag(channel):
    conversation = conversation_of(inbound(channel))
    reply = service.record_outbound(conversation, text="sorry", now=T0 + timedelta(days=3))
    assert reply.human_agent_tag


def test_automated_reply_after_24_hours_is_refused(channel):
    conversation = conversation_of(inbound(channel))
    with pytest.raises(ReplyWindowClosed):
        service.record_outbound(
            conversation, text="auto", automated=True, now=T0 + timedelta(hours=25)
        )


def test_reply_outside_the_window_is_refused_and_changes_nothing(channel):
    conversation = conversation_of(inbound(channel))
    db.session.commit()
    before = table_counts()
    with pytest.raises(ReplyWindowClosed):
        service.record_outbound(
            conversation, text="too late", now=T0 + timedelta(days=7, seconds=1)
        )
    db.session.commit()
    assert table_counts() == before
    db.session.expire_all()
    assert db.session.get(Conversation, conversation.id).request_state is RequestState.PENDING


def test_brand_cannot_start_a_thread():
    contact = ContactFactory()
    channel = db.session.get(Channel, contact.channel_id)
    conversation = service.create_group(channel, "quiet", [contact])
    with pytest.raises(ReplyWindowClosed):
        service.record_outbound(conversation, text="hello", now=T0)


def test_scheduled_message_inside_the_window_is_stored_as_scheduled(channel):
    conversation = conversation_of(inbound(channel))
    message = service.schedule_message(
        conversation,
        send_at=T0 + timedelta(days=6),
        text="following up",
        now=T0 + timedelta(hours=1),
    )
    assert message.status is MessageStatus.SCHEDULED
    assert message.send_at == T0 + timedelta(days=6)
    assert message.human_agent_tag


def test_scheduled_message_after_the_window_closes_is_refused(channel):
    conversation = conversation_of(inbound(channel))
    db.session.commit()
    before = table_counts()
    with pytest.raises(ReplyWindowClosed):
        service.schedule_message(
            conversation, send_at=T0 + timedelta(days=8), text="late", now=T0 + timedelta(hours=1)
        )
    with pytest.raises(ValidationError):
        service.schedule_message(conversation, send_at=T0, text="past", now=T0 + timedelta(hours=1))
    db.session.commit()
    assert table_counts() == before


@pytest.mark.parametrize(
    "kwargs",
    [
        {"text": ""},
        {"text": "é" * 501},
        {"attachments": [{"type": "image", "url": "javascript:alert(1)"}]},
        {"attachments": [{"type": "sticker", "url": "https://x.test/s"}]},
    ],
)
def test_invalid_outbound_is_refused(channel, kwargs):
    conversation = conversation_of(inbound(channel))
    with pytest.raises(ValidationError):
        service.record_outbound(conversation, now=T0, **kwargs)


# Notifications and memberships ------------------------------------------------------------------


def test_notification_level_per_agent_and_conversation(channel):
    conversation = conversation_of(inbound(channel))
    agent, other = AgentFactory(), AgentFactory()
    member(agent, channel_brand(channel))
    member(other, channel_brand(channel), Role.MANAGER)
    assert service.notification_level(agent.id, conversation.id) is NotificationLevel.ALL
    service.set_notification_level(agent, conversation, "muted")
    service.set_notification_level(agent, conversation, NotificationLevel.OFF)
    assert service.notification_level(agent.id, conversation.id) is NotificationLevel.OFF
    assert service.notification_level(other.id, conversation.id) is NotificationLevel.ALL


def test_agent_of_another_brand_cannot_touch_a_conversation(channel):
    conversation = conversation_of(inbound(channel))
    outsider = AgentFactory()
    member(outsider, BrandFactory())
    with pytest.raises(NotFound):
        service.set_notification_level(outsider, conversation, "off")


def test_times_come_back_as_aware_utc(channel):
    message = inbound(channel)
    db.session.commit()
    db.session.expire_all()
    stored = db.session.get(Message, message.id)
    assert stored.sent_at == T0 and stored.sent_at.utcoffset() == timedelta(0)


# Helpers ----------------------------------------------------------------------------------------


def channel_brand(channel):
    from helpdesk.brands.models import Brand

    return db.session.get(Brand, channel.brand_id)


def conversation_of(message: Message) -> Conversation:
    return db.session.get(Conversation, message.conversation_id)


def test_unsent_text_does_not_linger_in_the_inbox_preview(channel):
    message = inbound(channel, text="my card number is 4111")
    service.unsend_message(message, at=T0 + timedelta(minutes=1))
    assert conversation_of(message).last_message_preview == "[unsent]"


def test_purged_vanish_text_does_not_linger_in_the_inbox_preview(channel):
    followed_contact(channel)
    conversation = conversation_of(inbound(channel, text="normal"))
    service.set_vanish_mode(conversation, True)
    inbound(channel, mid="m2", text="secret", when=T0 + timedelta(minutes=1))
    assert conversation.last_message_preview == "[vanish-mode message]"
    service.reveal_vanish_messages(conversation, at=T0 + timedelta(minutes=2))
    service.confirm_vanish_read(conversation, at=T0 + timedelta(minutes=2))
    service.purge_vanish_messages(now=T0 + timedelta(hours=1), grace=timedelta(minutes=5))
    assert conversation.last_message_preview == "[vanished]"


def test_adding_an_existing_agent_to_another_brand_keeps_their_password():
    from helpdesk.accounts.service import check_password, create_agent

    agent, password = create_agent("ann@example.test", "Ann", BrandFactory(), "agent", "first-pass")
    again, shown = create_agent("ann@example.test", "Ann", BrandFactory(), "manager")
    assert again.id == agent.id and shown is None
    assert check_password(agent, "first-pass")

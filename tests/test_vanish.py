"""Vanish mode that never loses an unanswered message: the console warns before revealing, nothing
is seen until revealed, and seen content is purged only once answered or confirmed read."""

from __future__ import annotations

from datetime import timedelta

import pytest
from sqlalchemy import select, text

from helpdesk.dm import service as dm
from helpdesk.dm.models import Conversation, Message
from helpdesk.extensions import db
from helpdesk.types import utcnow
from tests.factories import ChannelFactory
from tests.helpers.console import post, signed_in
from tests.helpers.dm import T0, followed_contact, inbound
from tests.helpers.world import World, receive
from workers.tasks.vanish import purge_vanish_messages as sweep

WARNING = "These messages disappear once seen. Reveal them only when you are ready to answer."
SECRET = "My address is 12 Linden Street, flat 3"
GRACE = timedelta(minutes=5)


@pytest.fixture
def agent_client(client, world):
    return signed_in(client, world.agent)


@pytest.fixture
def secret(world) -> Message:
    """The customer switched to vanish mode and sent one message that nobody answered yet."""
    dm.set_vanish_mode(world.conversation, True)
    message = receive(
        world.channel, world.contact.platform_id, SECRET, at=utcnow() - timedelta(minutes=1)
    )
    db.session.commit()
    assert message.vanish
    return message


def html(response) -> str:
    return response.get_data(as_text=True)


def stored(message_id: int) -> Message:
    db.session.expire_all()
    return db.session.get(Message, message_id)


def page_of(world: World) -> str:
    return f"/conversations/{world.conversation.id}"


def reveal(client, world: World):
    response = post(client, f"{page_of(world)}/vanish/reveal")
    assert response.status_code == 302
    return response


def leave(client, world: World) -> None:
    assert post(client, f"{page_of(world)}/leave").status_code == 204


def purge_later(hours: float = 24) -> int:
    """The purge sweep, run as if `hours` had passed."""
    count = dm.purge_vanish_messages(now=utcnow() + timedelta(hours=hours), grace=GRACE)
    db.session.commit()
    return count


# The console ------------------------------------------------------------------------------------


def test_the_page_warns_before_revealing_and_shows_a_placeholder(agent_client, world, secret):
    page = html(agent_client.get(page_of(world)))
    assert WARNING in page
    assert f'action="{page_of(world)}/vanish/reveal"' in page
    assert "hidden until you reveal it" in page
    assert "12 Linden Street" not in page
    assert "12 Linden Street" not in html(agent_client.get("/inbox"))


def test_quoting_a_hidden_message_does_not_show_its_text(agent_client, world, secret):
    page = html(agent_client.get(f"{page_of(world)}?reply_to={secret.id}"))
    assert "hidden vanish-mode message" in page
    assert "12 Linden Street" not in page


def test_search_does_not_show_a_hidden_message(agent_client, world, secret):
    page = html(agent_client.get("/search?q=Linden"))
    assert "hidden vanish-mode message" in page
    assert "12 Linden Street" not in page


def test_opening_without_revealing_marks_nothing_seen_and_leaving_purges_nothing(
    agent_client, world, secret
):
    agent_client.get(page_of(world))
    agent_client.get(f"{page_of(world)}/thread/newer?after={world.message.id}")
    leave(agent_client, world)

    assert stored(secret.id).seen_at is None
    assert stored(world.message.id).seen_at is not None  # the thread itself was read
    assert purge_later() == 0
    assert stored(secret.id).text == SECRET and stored(secret.id).purged_at is None


def test_a_message_arriving_while_the_page_is_open_stays_hidden(agent_client, world):
    dm.set_vanish_mode(world.conversation, True)
    db.session.commit()
    agent_client.get(page_of(world))
    later = receive(world.channel, world.contact.platform_id, SECRET)
    db.session.commit()

    fragment = html(agent_client.get(f"{page_of(world)}/thread/newer?after={world.message.id}"))
    assert f'id="m{later.id}"' in fragment and "hidden until you reveal it" in fragment
    assert "12 Linden Street" not in fragment
    assert WARNING in fragment  # its own Reveal asks first
    assert stored(later.id).seen_at is None


def test_revealing_then_leaving_without_replying_keeps_the_content(agent_client, world, secret):
    agent_client.get(page_of(world))
    reveal(agent_client, world)
    assert stored(secret.id).seen_at is not None

    page = html(agent_client.get(page_of(world)))
    assert SECRET in page and WARNING not in page
    assert "kept until you reply" in page and "Mark as read" in page
    leave(agent_client, world)

    assert purge_later() == 0
    assert stored(secret.id).text == SECRET and stored(secret.id).purged_at is None


def test_replying_then_leaving_purges_as_before(agent_client, world, secret):
    agent_client.get(page_of(world))
    reveal(agent_client, world)
    replied = post(agent_client, f"{page_of(world)}/reply", {"text": "Thanks, noted!"})
    assert replied.status_code == 302
    leave(agent_client, world)

    assert dm.purge_vanish_messages(now=utcnow(), grace=timedelta(hours=1)) == 1
    db.session.commit()
    row = db.session.execute(
        text("SELECT text, attachments, purged_at, sent_at FROM messages WHERE id = :id"),
        {"id": secret.id},
    ).one()
    assert row.text is None and row.purged_at is not None and row.sent_at is not None
    assert "Vanished (vanish mode)" in html(agent_client.get(page_of(world)))


def test_marking_as_read_then_leaving_purges(agent_client, world, secret):
    agent_client.get(page_of(world))
    reveal(agent_client, world)
    assert post(agent_client, f"{page_of(world)}/vanish/read").status_code == 302
    assert "Mark as read" not in html(agent_client.get(page_of(world)))
    leave(agent_client, world)

    assert dm.purge_vanish_messages(now=utcnow(), grace=timedelta(hours=1)) == 1
    db.session.commit()
    assert stored(secret.id).text is None and stored(secret.id).purged_at is not None


def test_reveal_is_a_post_with_csrf_and_only_for_the_brands_conversations(
    agent_client, world, secret
):
    assert agent_client.get(f"{page_of(world)}/vanish/reveal").status_code == 405
    assert agent_client.post(f"{page_of(world)}/vanish/reveal").status_code == 400
    other = World("other")
    elsewhere = f"/conversations/{other.conversation.id}/vanish/reveal"
    assert post(agent_client, elsewhere).status_code == 404
    assert stored(secret.id).seen_at is None


# The rule and the sweep -------------------------------------------------------------------------


def vanish_thread(channel, platform_id: str, mid: str) -> tuple[Conversation, Message]:
    """A conversation switched to vanish mode, with one vanish-mode message at T0 + 1 minute."""
    followed_contact(channel, platform_id)
    conversation = db.session.get(
        Conversation,
        inbound(channel, sender=platform_id, mid=f"{mid}-plain", text="hi").conversation_id,
    )
    dm.set_vanish_mode(conversation, True)
    message = inbound(
        channel, sender=platform_id, mid=mid, text=f"secret {mid}", when=T0 + timedelta(minutes=1)
    )
    return conversation, message


@pytest.fixture
def channel():
    return ChannelFactory()


def test_the_sweep_after_the_grace_purges_only_answered_or_confirmed_messages(
    app, channel, monkeypatch
):
    seen = T0 + timedelta(minutes=2)
    answered_in, answered = vanish_thread(channel, "61201", "answered")
    confirmed_in, confirmed = vanish_thread(channel, "61202", "confirmed")
    unanswered_in, unanswered = vanish_thread(channel, "61203", "unanswered")
    _hidden_in, hidden = vanish_thread(channel, "61204", "hidden")
    for conversation in (answered_in, confirmed_in, unanswered_in):
        dm.reveal_vanish_messages(conversation, at=seen)
    dm.record_outbound(answered_in, text="on it", now=seen + timedelta(minutes=1))
    dm.confirm_vanish_read(confirmed_in, at=seen + timedelta(minutes=1))
    db.session.commit()

    assert dm.purge_vanish_messages(now=seen + GRACE - timedelta(seconds=1), grace=GRACE) == 0
    monkeypatch.setitem(app.config, "VANISH_PURGE_GRACE_SECONDS", int(GRACE.total_seconds()))
    assert sweep() == 2  # the worker's task, with the grace long past
    purged = db.session.scalars(select(Message.id).where(Message.purged_at.is_not(None)))
    assert set(purged) == {answered.id, confirmed.id}
    assert stored(unanswered.id).text == "secret unanswered"
    assert stored(hidden.id).text == "secret hidden" and stored(hidden.id).seen_at is None

    dm.record_outbound(
        db.session.get(Conversation, unanswered_in.id),
        text="sorry for the wait",
        now=seen + timedelta(minutes=30),
    )
    db.session.commit()
    assert sweep() == 1
    assert stored(unanswered.id).text is None and stored(unanswered.id).purged_at is not None


def test_a_reply_written_before_the_reveal_does_not_release_the_message(channel):
    conversation, message = vanish_thread(channel, "61201", "early")
    dm.record_outbound(conversation, text="one moment", now=T0 + timedelta(minutes=2))
    dm.reveal_vanish_messages(conversation, at=T0 + timedelta(minutes=3))
    dm.leave_thread(conversation, at=T0 + timedelta(minutes=4))
    assert dm.purge_vanish_messages(now=utcnow(), grace=GRACE) == 0
    assert stored(message.id).text == "secret early"


def test_automated_and_scheduled_replies_do_not_release_the_message(channel):
    conversation, message = vanish_thread(channel, "61201", "auto")
    dm.reveal_vanish_messages(conversation, at=T0 + timedelta(minutes=2))
    dm.record_outbound(
        conversation, text="We are away", automated=True, now=T0 + timedelta(minutes=3)
    )
    dm.record_outbound(
        conversation,
        text="Back tomorrow",
        now=T0 + timedelta(minutes=3),
        send_at=T0 + timedelta(hours=2),
    )
    assert dm.purge_vanish_messages(now=utcnow(), grace=GRACE) == 0
    assert dm.vanish_state(conversation).kept == 1


def test_a_reply_from_the_brands_phone_app_releases_the_message(channel):
    conversation, message = vanish_thread(channel, "61201", "echo")
    dm.reveal_vanish_messages(conversation, at=T0 + timedelta(minutes=2))
    dm.record_echo(channel, "61201", "echo-1", sent_at=utcnow(), text="Got it, thanks")
    assert dm.purge_vanish_messages(now=utcnow(), grace=GRACE) == 1
    assert stored(message.id).text is None


def test_confirming_releases_only_what_was_revealed_by_then(channel):
    conversation, first = vanish_thread(channel, "61201", "first")
    dm.reveal_vanish_messages(conversation, at=T0 + timedelta(minutes=2))
    assert dm.confirm_vanish_read(conversation, at=T0 + timedelta(minutes=3)) == 1
    second = inbound(
        channel, sender="61201", mid="second", text="secret second", when=T0 + timedelta(minutes=4)
    )
    assert dm.vanish_state(conversation).hidden == 1
    dm.reveal_vanish_messages(conversation, at=T0 + timedelta(minutes=5))
    assert dm.vanish_state(conversation).kept == 1

    assert dm.purge_vanish_messages(now=utcnow(), grace=GRACE) == 1
    assert stored(first.id).text is None
    assert stored(second.id).text == "secret second"


def test_the_inbox_preview_never_shows_vanish_mode_text(channel):
    conversation, _message = vanish_thread(channel, "61201", "preview")
    assert conversation.last_message_preview == "[vanish-mode message]"

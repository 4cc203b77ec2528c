"""Keeping Instagram tokens alive, and what happens when the platform refuses one: the channel
needs a reconnect, replies wait, admins are told once, and a reconnect sends what waited, once.
Everything goes through the Graph API simulator over HTTP."""

from __future__ import annotations

import hashlib
from datetime import timedelta

import pytest
from sqlalchemy import func, select, update

from helpdesk.audit.models import AuditEvent
from helpdesk.channels import lifecycle, tokens_refresh
from helpdesk.channels.models import Channel, ChannelStatus
from helpdesk.delivery import outage, service
from helpdesk.delivery.sendapi import WAITING_REASON, refuses_access
from helpdesk.dm import service as dm
from helpdesk.dm.models import Conversation, Message, MessageStatus
from helpdesk.extensions import db
from helpdesk.inbox import service as inbox
from helpdesk.notifications.models import Notification, NotificationKind
from helpdesk.types import utcnow
from tests.conftest import race
from tests.helpers.console import post, signed_in
from tests.helpers.world import World, known_contact, receive

DISCONNECTED_TEXT = "Instagram is disconnected; an admin must reconnect"


@pytest.fixture
def world(sim) -> World:
    return World()


def refresh_calls(sim) -> list[dict]:
    return [r for r in sim.requests() if r["path"] == "/refresh_access_token"]


def fail_refresh(sim, code: int, subcode: int | None = None) -> None:
    rule = {"endpoint": "refresh_token", "code": code, "subcode": subcode, "times": 1}
    sim._call("POST", "/_sim/oauth/errors", json=rule)


def set_token_life(channel: Channel, refreshed_ago: timedelta, expires_in: timedelta) -> None:
    now = utcnow()
    channel.token_refreshed_at = now - refreshed_ago
    channel.token_expires_at = now + expires_in
    db.session.commit()


def reload(model, row_id):
    db.session.expire_all()
    return db.session.get(model, row_id)


def queue(conversation: Conversation, text: str, **kwargs) -> int:
    message_id = dm.record_outbound(conversation, text=text, **kwargs).id
    db.session.commit()  # read before: a read after the commit would begin (and hold) another
    return message_id


def reconnect_notifications(brand_id: int) -> list[Notification]:
    return list(
        db.session.scalars(
            select(Notification).where(
                Notification.brand_id == brand_id, Notification.kind == NotificationKind.RECONNECT
            )
        )
    )


def enqueued(monkeypatch) -> list[int]:
    """What the reconnect hands to the delivery workers (after its commit)."""
    ids: list[int] = []
    monkeypatch.setattr(outage, "enqueue_delivery", ids.append)
    return ids


# Refresh ----------------------------------------------------------------------------------------


def test_a_due_token_is_refreshed_and_stored(sim, world):
    channel = world.channel
    set_token_life(channel, refreshed_ago=timedelta(days=2), expires_in=timedelta(days=10))
    old_encrypted = channel.access_token_encrypted

    [outcome] = tokens_refresh.refresh_due()

    assert outcome.result == tokens_refresh.REFRESHED
    [call] = refresh_calls(sim)
    assert call["args"]["grant_type"] == "ig_refresh_token"
    assert call["token_hint"] == "...oken"  # the channel's own token was sent
    channel = reload(Channel, channel.id)
    answer = call["response"]
    assert channel.access_token == answer["access_token"]
    assert channel.access_token_encrypted != old_encrypted
    now = utcnow()
    assert abs(channel.token_refreshed_at - now) < timedelta(minutes=1)
    expected = now + timedelta(seconds=answer["expires_in"])
    assert abs(channel.token_expires_at - expected) < timedelta(minutes=1)
    assert channel.status is ChannelStatus.ACTIVE
    event = db.session.scalar(
        select(AuditEvent).where(AuditEvent.action == "channel.token_refreshed")
    )
    assert event.target_id == channel.id
    assert answer["access_token"] not in str(event.changes)
    assert "oken" not in str(event.changes.get("token"))


@pytest.mark.parametrize(
    ("refreshed_ago", "expires_in"),
    [
        (timedelta(hours=2), timedelta(days=10)),  # too new: Meta refuses a token under 24 hours
        (timedelta(days=2), timedelta(days=30)),  # still far from expiring
    ],
    ids=["too-new", "expires-later"],
)
def test_a_token_not_due_is_left_alone(sim, world, refreshed_ago, expires_in):
    set_token_life(world.channel, refreshed_ago, expires_in)
    before = world.channel.access_token_encrypted

    assert tokens_refresh.refresh_due() == []

    assert refresh_calls(sim) == []
    assert reload(Channel, world.channel.id).access_token_encrypted == before


def test_only_active_instagram_channels_are_refreshed(sim, world):
    set_token_life(world.channel, timedelta(days=2), timedelta(days=3))
    lifecycle.mark_needs_reconnect(world.channel, "refused")
    db.session.commit()
    assert tokens_refresh.refresh_due() == []
    assert refresh_calls(sim) == []


def test_the_refresh_uses_the_graph_origin_without_its_version(app, sim, monkeypatch):
    monkeypatch.setitem(app.config, "GRAPH_API_BASE", f"{sim.root_url}/v25.0/")
    assert tokens_refresh.graph_origin() == sim.root_url


def test_the_command_prints_what_was_refreshed(sim, world, runner):
    set_token_life(world.channel, timedelta(days=2), timedelta(days=10))
    result = runner.invoke(args=["refresh-instagram-tokens"])
    assert result.exit_code == 0, result.output
    assert f"channel {world.channel.id}" in result.output
    assert "refreshed, valid until" in result.output
    assert len(refresh_calls(sim)) == 1

    result = runner.invoke(args=["refresh-instagram-tokens"])
    assert "No Instagram token is due for a refresh." in result.output
    assert len(refresh_calls(sim)) == 1


def test_a_refused_refresh_marks_the_channel_and_tells_the_admins(sim, world, runner):
    set_token_life(world.channel, timedelta(days=2), timedelta(days=1))
    fail_refresh(sim, 190, subcode=460)

    result = runner.invoke(args=["refresh-instagram-tokens"])

    assert "refused, an admin must reconnect it" in result.output
    channel = reload(Channel, world.channel.id)
    assert channel.status is ChannelStatus.NEEDS_RECONNECT
    assert channel.reconnect_notified_at is not None
    assert [n.agent_id for n in reconnect_notifications(world.brand.id)] == [world.admin.id]


def test_a_refresh_that_fails_otherwise_changes_nothing(sim, world):
    set_token_life(world.channel, timedelta(days=2), timedelta(days=1))
    fail_refresh(sim, 2)  # a passing Meta error: tried again tomorrow
    before = world.channel.access_token_encrypted

    [outcome] = tokens_refresh.refresh_due()

    assert outcome.result == tokens_refresh.FAILED
    channel = reload(Channel, world.channel.id)
    assert (channel.status, channel.access_token_encrypted) == (ChannelStatus.ACTIVE, before)


def test_the_beat_runs_the_refresh_daily(app):
    schedule = app.extensions["celery"].conf.beat_schedule["refresh-instagram-tokens"]
    assert schedule["task"] == "workers.tasks.channels.refresh_instagram_tokens"
    assert schedule["schedule"] == timedelta(days=1)


# Which refusals mean a reconnect ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("code", "subcode", "message", "refused"),
    [
        (190, None, "Error validating access token", True),
        (190, 460, "The session has been invalidated", True),
        (200, None, "(#200) Permissions error", True),
        (230, None, "(#230) Requires pages_messaging permission", True),
        (299, None, "(#299) Permission", True),
        (10, 2018278, "(#10) This message is sent outside of allowed window.", False),
        (10, None, "(#10) This message is sent outside of allowed window.", False),
        (10, 2018065, "(#10) Application does not have permission for this action", True),
        (100, None, "(#100) Invalid parameter", False),
        (300, None, "(#300) Something else", False),
        (4, None, "(#4) Application request limit reached", False),
    ],
)
def test_which_codes_need_a_reconnect(code, subcode, message, refused):
    assert refuses_access(code, subcode, message) is refused


def test_the_window_error_fails_the_message_and_leaves_the_channel_alone(sim, world):
    message_id = queue(world.conversation, "Here you go")
    sim.fail_next(10)  # code 10, subcode 2018278: outside the reply window

    assert service.deliver(message_id) == service.FAILED

    message = reload(Message, message_id)
    assert (message.status, message.error_code) == (MessageStatus.FAILED, "10")
    assert reload(Channel, world.channel.id).status is ChannelStatus.ACTIVE
    assert reconnect_notifications(world.brand.id) == []


@pytest.mark.parametrize(
    ("code", "subcode"),
    [(190, None), (190, 463), (200, None), (10, 2018065)],
    ids=["190", "190-expired", "200", "10-not-the-window"],
)
def test_a_refused_token_marks_the_channel_and_the_reply_waits(sim, world, code, subcode):
    message_id = queue(world.conversation, "Here you go")
    sim.fail_next(code, subcode=subcode, message=f"(#{code}) refused")

    assert service.deliver(message_id) == service.WAITING

    message = reload(Message, message_id)
    assert message.status is MessageStatus.QUEUED
    assert message.error == WAITING_REASON
    assert reload(Channel, world.channel.id).status is ChannelStatus.NEEDS_RECONNECT


def test_a_refused_reaction_marks_the_channel(sim, world):
    sim.fail_next(190)
    assert service.send_reaction(world.message.id, "❤️") == service.FAILED
    assert reload(Channel, world.channel.id).status is ChannelStatus.NEEDS_RECONNECT
    assert len(reconnect_notifications(world.brand.id)) == 1


# The outage, end to end ---------------------------------------------------------------------------


def test_refused_then_reconnected_sends_each_waiting_reply_once(
    sim, world, client, monkeypatch, app
):
    now = utcnow()
    brand, channel, conversation = world.brand, world.channel, world.conversation
    # A second customer who wrote six days ago: their reply goes with the human-agent tag, and
    # by the reconnect its window will have closed.
    late = known_contact(channel, username="late.customer")
    late_conversation = db.session.get(
        Conversation,
        receive(channel, late.platform_id, "Hello?", at=now - timedelta(days=6)).conversation_id,
    )
    db.session.commit()
    first = queue(conversation, "Your parcel left today")
    second = queue(conversation, "Tracking number follows")
    scheduled = queue(conversation, "Did it arrive?", send_at=now + timedelta(minutes=5), now=now)
    outside = queue(late_conversation, "Sorry for the wait")
    sim.fail_next(190, times=None)  # every call refused until the token is replaced

    # The first send is refused: the channel needs a reconnect, the reply waits.
    assert service.deliver(first) == service.WAITING
    assert reload(Channel, channel.id).status is ChannelStatus.NEEDS_RECONNECT
    # The others wait without a call: the worker does not claim them.
    assert service.deliver(second) == service.SKIPPED
    assert service.deliver(outside) == service.SKIPPED
    assert inbox.release_scheduled(now=now + timedelta(minutes=10)) == []
    assert service.requeue_stalled(now=now + timedelta(hours=1)) == []
    db.session.commit()
    assert len(sim.sends()) == 1
    statuses = {m: reload(Message, m).status for m in (first, second, scheduled, outside)}
    assert statuses == {
        first: MessageStatus.QUEUED,
        second: MessageStatus.QUEUED,
        scheduled: MessageStatus.SCHEDULED,
        outside: MessageStatus.QUEUED,
    }

    # More refusals (a reaction, a second worker racing the first) tell the admins nothing new.
    assert lifecycle.mark_needs_reconnect(reload(Channel, channel.id), "again") is False
    assert outage.notify_admins(reload(Channel, channel.id), "again") == 0
    assert service.send_reaction(world.message.id, "❤️") == service.FAILED
    db.session.commit()
    notified = reconnect_notifications(brand.id)
    assert [n.agent_id for n in notified] == [world.admin.id]
    assert "Instagram is disconnected" in notified[0].body

    # Admins see a banner on every page; agents see why on the conversation and in the reply box.
    signed_in(client, world.admin)
    for path in ("/inbox", f"/conversations/{conversation.id}", "/settings/tags"):
        html = client.get(path).get_data(as_text=True)
        assert 'id="reconnect-banner"' in html, path
        assert "/settings/channels" in html
    agent = app.test_client()
    signed_in(agent, world.agent)
    assert 'id="reconnect-banner"' not in agent.get("/inbox").get_data(as_text=True)
    html = agent.get(f"/conversations/{conversation.id}").get_data(as_text=True)
    assert 'id="channel-down"' in html and 'id="channel-down-reply"' in html
    assert html.count(DISCONNECTED_TEXT) >= 2  # the banner, the reply box (and the refused reply)
    # A reply written now is accepted: it waits with the others.
    waiting_too = queue(conversation, "One more thing")

    # The window of the late customer closes while the channel is down.
    db.session.execute(
        update(Conversation)
        .where(Conversation.id == late_conversation.id)
        .values(last_inbound_at=now - timedelta(days=8))
    )
    db.session.commit()

    # The admin reconnects the same account with a new token.
    sim.clear_errors()
    handed = enqueued(monkeypatch)
    lifecycle.mark_connected(
        reload(Channel, channel.id), "IGQVJnew-token", expires_at=now + timedelta(days=60)
    )
    assert handed == [], "handed to the workers only after the commit"
    db.session.commit()
    assert sorted(handed) == sorted([first, second, waiting_too])
    failed = reload(Message, outside)
    assert failed.status is MessageStatus.FAILED
    assert failed.error.startswith("Not sent: The customer last wrote 8 days ago.")

    released = inbox.release_scheduled(now=now + timedelta(minutes=10))
    db.session.commit()
    assert released == [scheduled]

    sim.clear()
    for message_id in [*handed, *released]:
        assert service.deliver(message_id) == service.SENT
    # A duplicate task (or the sweep) finds nothing left to send.
    for message_id in [*handed, *released]:
        assert service.deliver(message_id) == service.SKIPPED
    texts = sorted(s["json"]["message"]["text"] for s in sim.sends())
    assert texts == sorted(
        ["Your parcel left today", "Tracking number follows", "One more thing", "Did it arrive?"]
    )
    new_token = hashlib.sha256(b"IGQVJnew-token").hexdigest()[:16]
    assert {s["token_sha256"] for s in sim.sends()} == {new_token}
    assert reconnect_notifications(brand.id) == notified
    assert reload(Channel, channel.id).reconnect_notified_at is None

    # The banner is gone, and the next outage tells the admins again.
    assert 'id="reconnect-banner"' not in client.get("/inbox").get_data(as_text=True)
    sim.fail_next(190)
    fourth = queue(conversation, "Anything else?")
    assert service.deliver(fourth) == service.WAITING
    assert len(reconnect_notifications(brand.id)) == 2


def test_a_disconnected_channel_makes_replies_wait_too(sim, world, monkeypatch, client):
    lifecycle.mark_disconnected(world.channel, reason="an admin disconnected it")
    db.session.commit()
    message_id = queue(world.conversation, "Still there?")
    # The admin chose this: no banner on every page, but the conversation says why replies wait.
    signed_in(client, world.admin)
    assert 'id="reconnect-banner"' not in client.get("/inbox").get_data(as_text=True)
    html = client.get(f"/conversations/{world.conversation.id}").get_data(as_text=True)
    assert 'id="channel-down-reply"' in html

    assert service.deliver(message_id) == service.SKIPPED
    assert reload(Message, message_id).status is MessageStatus.QUEUED
    assert sim.sends() == []

    handed = enqueued(monkeypatch)
    lifecycle.mark_connected(reload(Channel, world.channel.id), "IGQVJagain")
    db.session.commit()
    assert handed == [message_id]
    assert service.deliver(message_id) == service.SENT
    assert len(sim.sends()) == 1


def test_the_account_page_lists_the_reconnect_notification_kind(sim, world, client):
    signed_in(client, world.admin)
    html = client.get("/account").get_data(as_text=True)
    assert 'value="reconnect"' in html
    assert db.session.scalar(select(func.count()).select_from(Notification)) == 0


def test_a_refused_profile_lookup_marks_the_channel(sim, world):
    from helpdesk.intake.profiles import fetch_profile

    contact = known_contact(world.channel, profile_fetched_at=None)
    db.session.commit()
    sim.fail_next(190, endpoint="profile")

    assert fetch_profile(contact.id) is False
    db.session.commit()

    assert reload(Channel, world.channel.id).status is ChannelStatus.NEEDS_RECONNECT
    assert len(reconnect_notifications(world.brand.id)) == 1
    # While it waits, no lookup is tried with the refused token.
    assert fetch_profile(contact.id) is False
    assert len(sim.requests("profile")) == 1


def test_two_workers_refused_at_once_tell_the_admins_once(app, sim, world):
    messages = iter([queue(world.conversation, "one"), queue(world.conversation, "two")])
    sim.fail_next(190, times=None, delay_ms=300)  # both calls in flight together

    outcomes = race(app, lambda: service.deliver(next(messages)))

    assert outcomes == [service.WAITING, service.WAITING]
    assert len(sim.sends()) == 2
    assert reload(Channel, world.channel.id).status is ChannelStatus.NEEDS_RECONNECT
    assert [n.agent_id for n in reconnect_notifications(world.brand.id)] == [world.admin.id]


def test_an_agent_can_still_write_a_reply_and_it_waits(sim, world, client, monkeypatch):
    monkeypatch.setattr("helpdesk.queueing.send_task", lambda *args, **kwargs: True)
    lifecycle.mark_needs_reconnect(world.channel, "refused")
    db.session.commit()
    signed_in(client, world.agent)

    response = post(client, f"/conversations/{world.conversation.id}/reply", {"text": "Soon!"})

    assert response.status_code == 302
    message_id = db.session.scalar(select(Message.id).where(Message.text == "Soon!"))
    assert service.deliver(message_id) == service.SKIPPED
    assert reload(Message, message_id).status is MessageStatus.QUEUED
    assert sim.sends() == []

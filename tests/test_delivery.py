"""Outbound delivery through the Send API (a real simulator over HTTP), on whichever database
DATABASE_URL names; the last tests run a real Celery worker and kill it mid-send."""

from __future__ import annotations

import hashlib
import json
import os
import signal
import socket
import time
from datetime import timedelta

import pytest
from sqlalchemy import select, update

from devtools.graphsim.testing import running_simulator, running_webhook_receiver
from helpdesk import queueing
from helpdesk.channels.models import Channel, ChannelKind
from helpdesk.delivery import service
from helpdesk.dm import service as dm
from helpdesk.dm.models import Contact, Conversation, Message, MessageStatus
from helpdesk.dm.service import InboundMessage
from helpdesk.extensions import db
from helpdesk.types import utcnow
from tests.conftest import REDIS_URL, drain_broker, fresh, race, wait_for
from tests.factories import ChannelFactory, ContactFactory, at
from tests.helpers.workers import TOKEN, WORKER, purge_broker

T0 = at("2026-11-20 10:00")
CUSTOMER = "6120000000000001"
IMAGE = {"type": "image", "url": "https://cdn.example.test/parcel.jpg"}
VIDEO = {"type": "video", "url": "https://cdn.example.test/unboxing.mp4"}


@pytest.fixture
def channel() -> Channel:
    return ChannelFactory(access_token=TOKEN)


def conversation_for(
    channel: Channel, last_inbound=T0, platform_id: str = CUSTOMER, mid: str = "m_in_1"
) -> Conversation:
    """A customer who wrote at `last_inbound`: the reply window counts from there."""
    ContactFactory(channel=channel, platform_id=platform_id, followed_by_brand=True)
    inbound = dm.receive_inbound(
        channel, InboundMessage(mid=mid, sender_id=platform_id, sent_at=last_inbound, text="Hi")
    )
    return db.session.get(Conversation, inbound.conversation_id)


def queue(conversation: Conversation, text: str | None = "On its way!", when=None, **kwargs) -> int:
    message = dm.record_outbound(
        conversation, text=text, now=when or T0 + timedelta(hours=1), **kwargs
    )
    message_id = message.id
    db.session.commit()
    return message_id


def inbound_id(channel: Channel, mid: str) -> int:
    return db.session.scalar(
        select(Message.id).where(Message.channel_id == channel.id, Message.mid == mid)
    )


def reload(message_id: int) -> Message:
    db.session.expire_all()
    return db.session.get(Message, message_id)


def set_status(message_id: int, **values) -> None:
    db.session.execute(update(Message).where(Message.id == message_id).values(**values))
    db.session.commit()


def only_send(sim) -> dict:
    sends = sim.sends()
    assert len(sends) == 1, f"expected one send, the simulator got {len(sends)}"
    return sends[0]


# Sending ----------------------------------------------------------------------------------------


def test_text_reply_reaches_the_simulator_once_with_metas_body(sim, channel):
    message_id = queue(conversation_for(channel), "Your parcel ships today 📦")
    now = T0 + timedelta(hours=2)

    assert service.deliver(message_id, now=now) == service.SENT

    send = only_send(sim)
    assert send["path"] == f"/v25.0/{channel.account_id}/messages"
    assert send["json"] == {
        "recipient": {"id": CUSTOMER},
        "message": {"text": "Your parcel ships today 📦"},
    }
    assert send["token_sha256"] == hashlib.sha256(TOKEN.encode()).hexdigest()[:16]
    message = reload(message_id)
    assert message.status is MessageStatus.SENT
    assert message.mid == send["response"]["message_id"]
    assert message.sent_at == now and message.last_attempt_at == now
    assert message.delivery_attempts == 1
    assert message.error is None and message.error_code is None


def test_attachment_reply_is_sent_as_an_attachment(sim, channel):
    message_id = queue(conversation_for(channel), None, attachments=[IMAGE])
    assert service.deliver(message_id, now=T0 + timedelta(hours=2)) == service.SENT
    assert only_send(sim)["json"] == {
        "recipient": {"id": CUSTOMER},
        "message": {"attachment": {"type": "image", "payload": {"url": IMAGE["url"]}}},
    }
    assert reload(message_id).mid == only_send(sim)["response"]["message_id"]


def test_text_and_attachments_are_separate_sends_text_first(sim, channel):
    message_id = queue(conversation_for(channel), "Here you go", attachments=[IMAGE, VIDEO])
    assert service.deliver(message_id, now=T0 + timedelta(hours=2)) == service.SENT

    sends = sim.sends()
    assert [s["json"]["message"] for s in sends] == [
        {"text": "Here you go"},
        {"attachment": {"type": "image", "payload": {"url": IMAGE["url"]}}},
        {"attachment": {"type": "video", "payload": {"url": VIDEO["url"]}}},
    ]
    mids = [s["response"]["message_id"] for s in sends]
    message = reload(message_id)
    assert message.mid == mids[0]
    assert message.extra["mids"] == mids


def test_reply_to_carries_the_quoted_mid(sim, channel):
    conversation = conversation_for(channel, mid="m_quoted")
    quoted = db.session.get(Message, inbound_id(channel, "m_quoted"))
    message_id = queue(conversation, "This one?", reply_to=quoted)
    service.deliver(message_id, now=T0 + timedelta(hours=2))
    assert only_send(sim)["json"]["reply_to"] == {"mid": "m_quoted"}


@pytest.mark.parametrize(
    ("hours_after_last_message", "tagged"),
    [(1, False), (23.9, False), (24.1, True), (24 * 6.9, True)],
)
def test_human_agent_tag_only_between_24_hours_and_7_days(
    sim, channel, hours_after_last_message, tagged
):
    message_id = queue(conversation_for(channel), "Still with you")
    now = T0 + timedelta(hours=hours_after_last_message)
    assert service.deliver(message_id, now=now) == service.SENT
    body = only_send(sim)["json"]
    if tagged:
        assert (body["messaging_type"], body["tag"]) == ("MESSAGE_TAG", "HUMAN_AGENT")
    else:
        assert "messaging_type" not in body and "tag" not in body
    assert reload(message_id).human_agent_tag is tagged


def test_reply_after_7_days_fails_as_reply_window_closed_and_nothing_is_sent(sim, channel):
    message_id = queue(conversation_for(channel))
    assert service.deliver(message_id, now=T0 + timedelta(days=7, minutes=1)) == service.FAILED
    assert sim.requests() == []
    message = reload(message_id)
    assert message.status is MessageStatus.FAILED
    assert message.error_code == "reply_window_closed"
    assert "The customer last wrote 7 days ago. Instagram allows replies" in message.error
    assert message.delivery_attempts == 1


def test_automated_message_after_24_hours_fails_without_a_send(sim, channel):
    message_id = queue(conversation_for(channel), "Auto: we got your message", automated=True)
    assert service.deliver(message_id, now=T0 + timedelta(hours=25)) == service.FAILED
    assert sim.requests() == []
    assert reload(message_id).error_code == "reply_window_closed"


def test_group_thread_is_sent_to_its_thread_key(sim, channel):
    contact = ContactFactory(channel=channel, platform_id=CUSTOMER)
    group = dm.create_group(channel, "t_4411", [contact], title="Order 4411")
    group.last_inbound_at = T0
    message_id = queue(group, "Hello both")
    assert service.deliver(message_id, now=T0 + timedelta(hours=1)) == service.SENT
    assert only_send(sim)["json"]["recipient"] == {"thread_key": "t_4411"}


def test_api_channel_reply_is_marked_sent_without_a_send_api_call(sim):
    channel = ChannelFactory(kind=ChannelKind.API, account_id="api-brand", access_token=None)
    message_id = queue(conversation_for(channel))
    assert service.deliver(message_id, now=T0 + timedelta(hours=2)) == service.SENT
    assert sim.requests() == []
    assert reload(message_id).status is MessageStatus.SENT


def test_contact_blocked_after_queueing_gets_nothing(sim, channel):
    conversation = conversation_for(channel)
    message_id = queue(conversation)
    dm.block_contact(db.session.get(Contact, conversation.contact_id))
    db.session.commit()
    assert service.deliver(message_id, now=T0 + timedelta(hours=2)) == service.FAILED
    assert sim.requests() == []
    assert reload(message_id).error_code == "contact_blocked"


# Retries and failures ---------------------------------------------------------------------------


@pytest.mark.parametrize("code", [2, 613])
def test_retryable_error_is_retried_and_then_sent(sim, channel, code):
    message_id = queue(conversation_for(channel))
    sim.fail_next(code)

    assert service.deliver(message_id, now=T0 + timedelta(hours=2)) == service.RETRY
    message = reload(message_id)
    assert message.status is MessageStatus.QUEUED
    assert message.error.startswith("retrying: ")
    assert message.error_code == str(code)

    assert service.deliver(message_id, now=T0 + timedelta(hours=2, seconds=2)) == service.SENT
    first, second = sim.sends()
    assert first["json"] == second["json"]
    assert first["status"] >= 400 and second["status"] == 200
    message = reload(message_id)
    assert message.status is MessageStatus.SENT
    assert message.mid == second["response"]["message_id"]
    assert message.delivery_attempts == 2
    assert message.error is None


def test_server_error_without_a_known_code_is_retried(sim, channel):
    message_id = queue(conversation_for(channel))
    sim.fail_next(9999, status=503)
    assert service.deliver(message_id, now=T0 + timedelta(hours=2)) == service.RETRY


def test_unreachable_graph_api_is_retried(app, channel, monkeypatch):
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    monkeypatch.setitem(app.config, "GRAPH_API_BASE", f"http://127.0.0.1:{port}/v25.0")
    message_id = queue(conversation_for(channel))
    assert service.deliver(message_id, now=T0 + timedelta(hours=2)) == service.RETRY
    message = reload(message_id)
    assert (message.status, message.error_code) == (MessageStatus.QUEUED, "network")


def test_delivery_gives_up_after_6_attempts(sim, channel):
    message_id = queue(conversation_for(channel))
    sim.fail_next(2, times=None)
    outcomes = [service.deliver(message_id, now=T0 + timedelta(hours=2)) for _ in range(7)]
    assert outcomes == [service.RETRY] * 5 + [service.FAILED, service.SKIPPED]
    assert len(sim.sends()) == 6
    message = reload(message_id)
    assert message.status is MessageStatus.FAILED
    assert "gave up after 6 attempts" in message.error


@pytest.mark.parametrize(
    ("code", "reason"),
    [
        (100, "Instagram refused the message as invalid"),
        (551, "This person isn't available right now"),
        (10, "Outside the reply window: Instagram refused the message"),
    ],
)
def test_permanent_error_fails_with_a_reason_for_the_agent(sim, channel, code, reason):
    message_id = queue(conversation_for(channel))
    sim.fail_next(code)
    assert service.deliver(message_id, now=T0 + timedelta(hours=2)) == service.FAILED
    message = reload(message_id)
    assert message.status is MessageStatus.FAILED
    assert message.error_code == str(code)
    assert reason in message.error
    assert service.deliver(message_id, now=T0 + timedelta(hours=3)) == service.SKIPPED
    assert len(sim.sends()) == 1


def test_window_closed_on_metas_side_fails_with_code_10(sim, channel):
    message_id = queue(conversation_for(channel))
    sim.close_window(CUSTOMER)
    assert service.deliver(message_id, now=T0 + timedelta(hours=2)) == service.FAILED
    assert reload(message_id).error_code == "10"


def test_invalid_token_flags_the_channel_and_the_replies_wait(sim, channel):
    """190, 200-299 and 10 outside the window: tests/test_channel_tokens.py has the rest."""
    conversation = conversation_for(channel)
    first = queue(conversation, "one")
    second = queue(conversation, "two")
    sim.fail_next(190)

    assert service.deliver(first, now=T0 + timedelta(hours=2)) == service.WAITING
    message = reload(first)
    assert message.status is MessageStatus.QUEUED
    assert message.error == "Instagram is disconnected; an admin must reconnect"
    assert db.session.get(Channel, channel.id).needs_new_token is True

    assert service.deliver(second, now=T0 + timedelta(hours=2)) == service.SKIPPED
    assert reload(second).status is MessageStatus.QUEUED
    assert len(sim.sends()) == 1, "no call with a token known to be bad"


def test_a_retry_resumes_after_the_parts_already_accepted(sim, channel):
    message_id = queue(conversation_for(channel), "Photo below", attachments=[IMAGE])
    sim.delay(1)  # the text is answered normally ...
    sim.fail_next(613)  # ... then the image is rate-limited

    assert service.deliver(message_id, now=T0 + timedelta(hours=2)) == service.RETRY
    text_mid = sim.sends()[0]["response"]["message_id"]
    message = reload(message_id)
    assert (message.status, message.mid) == (MessageStatus.QUEUED, text_mid)

    assert service.deliver(message_id, now=T0 + timedelta(hours=2)) == service.SENT
    sent = [(s["json"]["message"], s["status"]) for s in sim.sends()]
    image = {"attachment": {"type": "image", "payload": {"url": IMAGE["url"]}}}
    assert sent == [({"text": "Photo below"}, 200), (image, 400), (image, 200)]
    message = reload(message_id)
    assert message.status is MessageStatus.SENT
    assert message.extra["mids"] == [text_mid, sim.sends()[2]["response"]["message_id"]]


# At most once -----------------------------------------------------------------------------------


def test_an_error_before_any_call_puts_the_message_back_in_the_queue(sim, channel, monkeypatch):
    message_id = queue(conversation_for(channel))

    def broken(*args):
        raise RuntimeError("a bug while preparing the call")

    monkeypatch.setattr(service, "_bodies", broken)
    with pytest.raises(RuntimeError):
        service.deliver(message_id, now=T0 + timedelta(hours=2))
    assert sim.requests() == []
    message = reload(message_id)
    assert (message.status, message.delivery_attempts) == (MessageStatus.QUEUED, 1)


def test_redelivered_task_after_a_recorded_attempt_does_not_send_again(sim, channel):
    message_id = queue(conversation_for(channel))
    attempt = T0 + timedelta(hours=2)
    # What a worker killed during the HTTP call leaves behind.
    set_status(
        message_id, status=MessageStatus.SENDING, delivery_attempts=1, last_attempt_at=attempt
    )

    assert service.deliver(message_id, now=attempt + timedelta(seconds=30)) == service.SKIPPED
    assert sim.requests() == []
    message = reload(message_id)
    assert (message.status, message.delivery_attempts) == (MessageStatus.SENDING, 1)


def test_sent_message_is_not_sent_again(sim, channel):
    message_id = queue(conversation_for(channel))
    assert service.deliver(message_id, now=T0 + timedelta(hours=2)) == service.SENT
    assert service.deliver(message_id, now=T0 + timedelta(hours=2)) == service.SKIPPED
    assert len(sim.sends()) == 1


def test_no_answer_after_the_request_left_leaves_the_message_sending(
    app, sim, channel, monkeypatch
):
    monkeypatch.setitem(app.config, "GRAPH_API_TIMEOUT", 0.3)
    message_id = queue(conversation_for(channel))
    sim.delay(1200)

    assert service.deliver(message_id, now=T0 + timedelta(hours=2)) == service.UNCONFIRMED
    message = reload(message_id)
    assert message.status is MessageStatus.SENDING
    assert message.error_code == "unconfirmed"
    assert service.deliver(message_id, now=T0 + timedelta(hours=2)) == service.SKIPPED
    time.sleep(1.2)
    assert len(sim.sends()) == 1
    assert only_send(sim)["status"] == 200, "Meta did accept it: only an echo will tell"


def test_two_workers_delivering_the_same_message_send_it_once(app, sim, channel):
    message_id = queue(conversation_for(channel))
    sim.delay(300)
    outcomes = race(app, lambda: service.deliver(message_id, now=T0 + timedelta(hours=2)))
    assert all(isinstance(outcome, str) for outcome in outcomes), outcomes
    assert sorted(outcomes) == [service.SENT, service.SKIPPED]
    assert len(sim.sends()) == 1


def test_scheduled_message_is_not_delivered_before_its_release(sim, channel):
    conversation = conversation_for(channel)
    message = dm.schedule_message(
        conversation, T0 + timedelta(hours=3), text="later", now=T0 + timedelta(hours=1)
    )
    db.session.commit()
    assert service.deliver(message.id, now=T0 + timedelta(hours=2)) == service.SKIPPED
    assert sim.requests() == []


# Reconciliation and sweeps ----------------------------------------------------------------------


def unconfirmed(conversation: Conversation, text: str = "On its way!", attempt=None) -> int:
    message_id = queue(conversation, text)
    attempt = attempt or T0 + timedelta(hours=2)
    set_status(
        message_id, status=MessageStatus.SENDING, delivery_attempts=1, last_attempt_at=attempt
    )
    return message_id


def test_reconcile_echo_attaches_the_mid_to_the_unconfirmed_send(channel):
    message_id = unconfirmed(conversation_for(channel), "On its way!")
    echo_at = T0 + timedelta(hours=2, seconds=3)

    found = service.reconcile_echo(channel, "m_echo_1", CUSTOMER, "On its way!", echo_at)
    db.session.commit()

    assert found is not None and found.id == message_id
    message = reload(message_id)
    assert (message.status, message.mid) == (MessageStatus.SENT, "m_echo_1")
    assert message.sent_at == echo_at
    assert message.error is None


@pytest.mark.parametrize(
    ("recipient", "text", "echo_after"),
    [
        ("6120000000000009", "On its way!", timedelta(seconds=3)),
        (CUSTOMER, "Something else", timedelta(seconds=3)),
        (CUSTOMER, "On its way!", timedelta(minutes=11)),
    ],
    ids=["other-recipient", "other-text", "attempt-too-old"],
)
def test_echo_that_is_not_ours_is_not_reconciled(channel, recipient, text, echo_after):
    message_id = unconfirmed(conversation_for(channel), "On its way!")
    echo_at = T0 + timedelta(hours=2) + echo_after
    assert service.reconcile_echo(channel, "m_echo_1", recipient, text, echo_at) is None
    assert reload(message_id).status is MessageStatus.SENDING


def test_queued_message_never_attempted_is_not_reconciled(channel):
    message_id = queue(conversation_for(channel), "On its way!")
    assert service.reconcile_echo(channel, "m_e", CUSTOMER, "On its way!", T0) is None
    assert reload(message_id).mid is None


def test_retrying_message_confirmed_by_its_echo_is_not_sent_again(sim, channel):
    message_id = queue(conversation_for(channel), "On its way!")
    sim.fail_next(2)  # a 500 after which Meta did deliver it, as its echo shows
    assert service.deliver(message_id, now=T0 + timedelta(hours=2)) == service.RETRY
    echo_at = T0 + timedelta(hours=2, seconds=1)
    assert service.reconcile_echo(channel, "m_echo", CUSTOMER, "On its way!", echo_at)
    db.session.commit()
    assert service.deliver(message_id, now=T0 + timedelta(hours=2, seconds=4)) == service.SKIPPED
    assert len(sim.sends()) == 1
    assert reload(message_id).mid == "m_echo"


def test_echo_of_a_later_part_returns_its_message_unchanged(sim, channel):
    message_id = queue(conversation_for(channel), "Photo below", attachments=[IMAGE])
    service.deliver(message_id, now=T0 + timedelta(hours=2))
    image_mid = reload(message_id).extra["mids"][1]
    found = service.reconcile_echo(channel, image_mid, CUSTOMER, None, T0 + timedelta(hours=2))
    assert found is not None and found.id == message_id
    assert reload(message_id).mid != image_mid


def test_echoes_of_every_part_confirm_a_multi_part_send(channel):
    message_id = unconfirmed(conversation_for(channel), "Photo below")
    set_status(message_id, attachments=[IMAGE])
    echo_at = T0 + timedelta(hours=2, seconds=2)

    service.reconcile_echo(channel, "m_text", CUSTOMER, "Photo below", echo_at)
    message = reload(message_id)
    assert (message.status, message.mid) == (MessageStatus.SENDING, "m_text")

    assert service.reconcile_echo(channel, "m_image", CUSTOMER, None, echo_at).id == message_id
    db.session.commit()
    message = reload(message_id)
    assert message.status is MessageStatus.SENT
    assert message.extra["mids"] == ["m_text", "m_image"]


def test_an_attachment_echo_is_not_taken_for_a_text_not_yet_confirmed(channel):
    message_id = unconfirmed(conversation_for(channel), "Photo below")
    set_status(message_id, attachments=[IMAGE])
    echo_at = T0 + timedelta(hours=2, seconds=2)
    assert service.reconcile_echo(channel, "m_image", CUSTOMER, None, echo_at) is None


def test_simulator_echo_confirms_a_send_whose_answer_was_lost(app, channel, monkeypatch):
    """End to end: the answer times out, Meta's signed echo arrives, the echo settles it."""
    monkeypatch.setitem(app.config, "GRAPH_API_TIMEOUT", 0.3)
    with (
        running_webhook_receiver() as receiver,
        running_simulator(echo_to=receiver.url, app_secret="s") as sim,
    ):
        monkeypatch.setitem(app.config, "GRAPH_API_BASE", sim.base_url)
        message_id = queue(conversation_for(channel), "On its way!")
        sim.delay(800)
        assert service.deliver(message_id, now=T0 + timedelta(hours=2)) == service.UNCONFIRMED
        [echo] = receiver.wait_for(1)
    event = json.loads(echo.raw)["entry"][0]["messaging"][0]
    assert event["message"]["is_echo"] is True
    found = service.reconcile_echo(
        channel,
        event["message"]["mid"],
        event["recipient"]["id"],
        event["message"].get("text"),
        T0 + timedelta(hours=2, seconds=1),
    )
    db.session.commit()
    assert found is not None
    message = reload(message_id)
    assert message.status is MessageStatus.SENT
    assert message.mid == event["message"]["mid"]


def test_sweep_fails_sends_unconfirmed_for_10_minutes_and_never_resends(sim, channel):
    conversation = conversation_for(channel)
    old = unconfirmed(conversation, "old", attempt=T0 + timedelta(hours=2))
    recent = unconfirmed(conversation, "recent", attempt=T0 + timedelta(hours=2, minutes=9))

    assert service.sweep_stuck_deliveries(now=T0 + timedelta(hours=2, minutes=10, seconds=1)) == 1
    db.session.commit()

    assert reload(old).status is MessageStatus.FAILED
    assert reload(old).error == "Delivery could not be confirmed; check Instagram before resending"
    assert reload(recent).status is MessageStatus.SENDING
    assert service.deliver(old, now=T0 + timedelta(hours=3)) == service.SKIPPED
    assert sim.requests() == []


def test_requeue_finds_queued_messages_no_task_holds(channel):
    conversation = conversation_for(channel)
    never_tried = queue(conversation, "a", when=T0 + timedelta(hours=1))
    just_queued = queue(conversation, "b", when=T0 + timedelta(hours=1, minutes=1, seconds=30))
    retrying = queue(conversation, "c", when=T0 + timedelta(hours=1))
    set_status(retrying, delivery_attempts=1, last_attempt_at=T0 + timedelta(hours=1))
    sending = unconfirmed(conversation, "d", attempt=T0 + timedelta(hours=1))

    at_2_minutes = service.requeue_stalled(now=T0 + timedelta(hours=1, minutes=2))
    assert at_2_minutes == [never_tried]
    at_11_minutes = service.requeue_stalled(now=T0 + timedelta(hours=1, minutes=11))
    assert at_11_minutes == [never_tried, just_queued, retrying]
    assert sending not in at_11_minutes


def test_enqueue_delivery_hands_the_id_to_the_broker(app):
    drain_broker(app)
    assert queueing.enqueue_delivery(42) is True
    assert drain_broker(app) == [("workers.tasks.delivery.deliver_message", [42])]


@pytest.mark.slow
def test_enqueue_delivery_with_the_broker_down_returns_false_at_once(app):
    from helpdesk import create_app

    down = create_app(
        {"CELERY": {"broker_url": "redis://127.0.0.1:1/0", "task_ignore_result": True}}
    )
    try:
        with down.app_context():
            queueing.reset()
            assert queueing.enqueue_delivery(42) is False
            started = time.monotonic()
            assert queueing.enqueue_delivery(43) is False  # the pause skips the broker
            assert time.monotonic() - started < 0.5
    finally:
        queueing.reset()
        app.extensions["celery"].set_default()


def test_sweep_task_enqueues_messages_the_broker_lost(app, channel, monkeypatch):
    from workers.tasks.delivery import sweep_deliveries

    now = utcnow()
    message_id = queue(
        conversation_for(channel, last_inbound=now - timedelta(hours=1)),
        when=now - timedelta(minutes=2),
    )
    drain_broker(app)
    assert sweep_deliveries() == {"failed": 0, "requeued": 1}
    assert drain_broker(app) == [(queueing.DELIVER_MESSAGE, [message_id])]


# Reactions --------------------------------------------------------------------------------------


def test_brand_reaction_is_sent_as_a_love_react(sim, channel):
    conversation_for(channel, mid="m_in_1")
    message_id = inbound_id(channel, "m_in_1")
    db.session.commit()
    assert service.send_reaction(message_id, "❤️") == service.SENT
    assert only_send(sim)["json"] == {
        "recipient": {"id": CUSTOMER},
        "sender_action": "react",
        "payload": {"message_id": "m_in_1", "reaction": "love"},
    }


def test_brand_unreact_sends_only_the_message_id(sim, channel):
    conversation_for(channel, mid="m_in_1")
    message_id = inbound_id(channel, "m_in_1")
    db.session.commit()
    assert service.send_reaction(message_id, None) == service.SENT
    assert only_send(sim)["json"] == {
        "recipient": {"id": CUSTOMER},
        "sender_action": "unreact",
        "payload": {"message_id": "m_in_1"},
    }


def test_rate_limited_reaction_is_retried(sim, channel):
    conversation_for(channel, mid="m_in_1")
    message_id = inbound_id(channel, "m_in_1")
    db.session.commit()
    sim.fail_next(613)
    assert service.send_reaction(message_id, "❤️") == service.RETRY
    assert service.send_reaction(message_id, "❤️") == service.SENT


def test_reaction_to_a_message_without_mid_is_skipped(sim, channel):
    message_id = queue(conversation_for(channel))
    assert service.send_reaction(message_id, "❤️") == service.SKIPPED
    assert sim.requests() == []


# A real worker ----------------------------------------------------------------------------------


@pytest.fixture
def worker_env(sim_worker_env: dict[str, str]) -> dict[str, str]:
    """This module's workers send to the simulator."""
    return sim_worker_env


def delivery_state(message_id: int) -> tuple[MessageStatus, int, str | None]:
    """Plain values read in a short transaction: an ORM object touched later would open another
    one, and on SQLite every transaction holds the write lock the worker needs."""

    def read() -> tuple[MessageStatus, int, str | None]:
        message = db.session.get(Message, message_id)
        return message.status, message.delivery_attempts, message.mid

    return fresh(read)


def _forget_unacked_deliveries() -> int:
    """With Redis, a killed worker's task waits in `unacked` and is redelivered an hour later:
    drop it, so it cannot surface in a later run against that run's rows."""
    if not REDIS_URL:
        return 0
    import redis

    client = redis.Redis.from_url(REDIS_URL)
    dropped = 0
    for tag, payload in client.hgetall("unacked").items():
        if queueing.DELIVER_MESSAGE.encode() in payload:
            dropped += client.hdel("unacked", tag)
            client.zrem("unacked_index", tag)
    return dropped


def _worker_log_has(path, *needles: str, timeout: float = 60.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        text = path.read_text() if path.exists() else ""
        if any(all(needle in line for needle in needles) for line in text.splitlines()):
            return True
        time.sleep(0.2)
    return False


@pytest.mark.worker
def test_worker_delivers_a_queued_message_to_the_simulator(app, sim, celery_process):
    channel = ChannelFactory(access_token=TOKEN)
    now = utcnow()
    message_id = queue(
        conversation_for(channel, last_inbound=now - timedelta(hours=1)),
        "Sent by a real worker",
        when=now,
    )
    purge_broker(app)
    assert queueing.enqueue_delivery(message_id)

    celery_process(*WORKER)
    sent = wait_for(
        lambda: db.session.get(Message, message_id).status is MessageStatus.SENT, timeout=60
    )
    assert sent, "the worker did not deliver the message"
    send = only_send(sim)
    assert send["json"] == {
        "recipient": {"id": CUSTOMER},
        "message": {"text": "Sent by a real worker"},
    }
    assert delivery_state(message_id) == (MessageStatus.SENT, 1, send["response"]["message_id"])


@pytest.mark.worker
def test_worker_killed_mid_send_never_sends_twice(app, sim, celery_process, tmp_path):
    channel = ChannelFactory(access_token=TOKEN)
    now = utcnow()
    message_id = queue(
        conversation_for(channel, last_inbound=now - timedelta(hours=1)), "Exactly once", when=now
    )
    purge_broker(app)
    sim.delay(3000)
    assert queueing.enqueue_delivery(message_id)

    first = celery_process(*WORKER)
    arrived = sim.wait_for_requests(1, timeout=60)
    assert len(arrived) == 1, "the worker never called the Send API"
    os.killpg(first.pid, signal.SIGKILL)  # while the simulator is still holding its answer
    first.wait(timeout=10)

    assert delivery_state(message_id) == (MessageStatus.SENDING, 1, None)

    # The broker redelivers an unacknowledged task (acks_late); hand it over as it would.
    assert queueing.enqueue_delivery(message_id)
    celery_process(*WORKER)
    assert _worker_log_has(
        tmp_path / "celery-1.log", "deliver_message", "succeeded", "'skipped'"
    ), (tmp_path / "celery-1.log").read_text()

    time.sleep(3.5)  # past the simulator's delay: anything still in flight has landed
    assert len(sim.sends()) == 1
    assert delivery_state(message_id) == (MessageStatus.SENDING, 1, None)

    def sweep() -> int:
        count = service.sweep_stuck_deliveries(now=utcnow() + timedelta(minutes=11))
        db.session.commit()
        return count

    assert fresh(sweep) == 1
    assert delivery_state(message_id) == (MessageStatus.FAILED, 1, None)
    assert len(sim.sends()) == 1
    _forget_unacked_deliveries()

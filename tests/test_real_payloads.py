"""Webhook bodies shaped like Meta's real deliveries, each of which the intake once read wrong:
the brand under another id, story media under `story_media_url`, postbacks without a `mid`,
reads without a sender, edit counts as strings, ISO-8601 timestamps and 1000-event batches.
The bodies are in tests/fixtures/webhooks/real/ (see the README there)."""

from __future__ import annotations

import json
import time
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import func, select

from helpdesk.channels.models import Channel
from helpdesk.dm.models import (
    Contact,
    Conversation,
    Direction,
    Message,
    MessageEdit,
    MessageKind,
    MessageStatus,
)
from helpdesk.extensions import db
from helpdesk.intake.models import WebhookEvent
from helpdesk.tickets.models import Ticket
from tests.conftest import table_counts
from tests.helpers.webhooks import ACCOUNT, FIXTURES, post, process_all

REAL = FIXTURES / "real"
ALIAS = "27160000000000001"  # the business's app-scoped id, as some deliveries name it
C3, C4 = "6120000000000003", "6120000000000004"
T = datetime.fromtimestamp(1763900000, tz=UTC)
MID = "aWdfZAG1faXRlbToxOklHTWVzc2FnZAUlEOjE3ODQxNDAwMDAwMDAwMDE6"


def mid(n: int) -> str:
    return f"{MID}0000{n:04d}"


@pytest.fixture
def channel(webhook_channel: Channel) -> Channel:
    return webhook_channel


def deliver_raw(client, raw: bytes) -> None:
    response = post(client, raw)
    assert response.status_code == 200, response.get_data(as_text=True)
    process_all()
    db.session.expire_all()


def deliver(client, *names: str) -> None:
    for name in names:
        deliver_raw(client, (REAL / name).read_bytes())


def deliver_events(client, *events: dict) -> None:
    body = {"object": "instagram", "entry": [{"id": ACCOUNT, "time": 1, "messaging": list(events)}]}
    deliver_raw(client, json.dumps(body).encode())


def message(n: int) -> Message | None:
    return db.session.scalar(select(Message).where(Message.mid == mid(n)))


def contact_ids() -> set[str]:
    return set(db.session.scalars(select(Contact.platform_id)))


def last_error() -> str | None:
    return db.session.scalar(select(WebhookEvent.error).order_by(WebhookEvent.id.desc()).limit(1))


# The brand is never a contact --------------------------------------------------------------------


def test_echo_from_the_brands_app_scoped_id_answers_the_customer(client, channel):
    deliver(client, "customer_to_app_scoped_id.json", "echo_from_app_scoped_id.json")

    assert contact_ids() == {C3}
    echo = message(2)
    assert echo.direction is Direction.OUTBOUND and echo.is_echo
    assert echo.conversation_id == message(1).conversation_id
    assert db.session.scalar(select(func.count()).select_from(Conversation)) == 1
    ticket = db.session.scalar(select(Ticket))
    assert ticket.opened_at == T
    assert ticket.first_response_at == T + timedelta(seconds=90)


def test_echo_starting_a_thread_from_another_id_makes_no_brand_contact(client, channel):
    deliver(client, "echo_from_app_scoped_id.json")
    assert contact_ids() == {C3}
    assert message(2).direction is Direction.OUTBOUND


def test_brands_message_without_the_echo_flag_is_still_the_brands(client, channel):
    deliver_events(
        client,
        {
            "sender": {"id": ACCOUNT},
            "recipient": {"id": C3},
            "timestamp": 1763900060000,
            "message": {"mid": mid(40), "text": "We are open until 6pm"},
        },
    )
    assert contact_ids() == {C3}
    assert message(40).direction is Direction.OUTBOUND


def test_the_brands_own_reaction_or_read_makes_no_contact(client, channel):
    deliver(client, "customer_to_app_scoped_id.json")
    before = table_counts()
    brand = {"sender": {"id": ACCOUNT}, "recipient": {"id": C3}, "timestamp": 1763900010000}
    deliver_events(
        client,
        {**brand, "reaction": {"mid": mid(1), "action": "react", "reaction": "love"}},
        {**brand, "read": {"mid": mid(1)}},
    )
    after = table_counts()
    assert after.pop("webhook_events") == before.pop("webhook_events") + 1
    assert after == before and contact_ids() == {C3}


def test_is_self_messages_are_ignored_without_a_contact_or_conversation(client, channel):
    before = table_counts()
    deliver(client, "is_self.json")
    after = table_counts()
    assert after.pop("webhook_events") == before.pop("webhook_events") + 1
    assert after == before  # no contact, conversation, ticket or message
    assert last_error() is None  # ignored on purpose, not malformed


# Story media, postbacks, reads ------------------------------------------------------------------


def test_ig_story_attachment_takes_its_url_from_story_media_url(client, channel):
    deliver(client, "ig_story_media_url.json")
    story = message(5)
    assert story.kind is MessageKind.STORY_REPLY
    [attachment] = story.attachments
    assert attachment["url"].startswith("https://lookaside.fbsbx.com/ig_messaging_cdn/")
    assert attachment["id"] == "18027361289045123"


def test_postback_without_a_mid_is_the_customers_message_stored_once(client, channel):
    deliver(client, "postback_without_mid.json")
    postback = db.session.scalar(select(Message).where(Message.kind == MessageKind.POSTBACK))
    assert postback is not None and last_error() is None
    assert postback.direction is Direction.INBOUND
    assert postback.text == "Get Started" and postback.extra["payload"] == "GET_STARTED"
    assert postback.mid.startswith("postback:")
    assert db.session.get(Contact, postback.contact_id).platform_id == C4

    before = table_counts()
    deliver(client, "postback_without_mid.json")  # Meta's retry of the same delivery
    after = table_counts()
    assert after.pop("webhook_events") == before.pop("webhook_events") + 1
    assert after == before


def test_two_taps_of_the_same_button_are_two_messages(client, channel):
    tap = {"sender": {"id": C4}, "recipient": {"id": ACCOUNT}, "postback": {"title": "Get Started",
           "payload": "GET_STARTED"}}  # fmt: skip
    deliver_events(client, {**tap, "timestamp": 1763900300000}, {**tap, "timestamp": 1763900400000})
    count = select(func.count()).where(Message.kind == MessageKind.POSTBACK)
    assert db.session.scalar(count) == 2


def test_read_without_sender_or_recipient_is_applied_by_mid(client, channel):
    deliver(client, "customer_to_app_scoped_id.json", "echo_from_app_scoped_id.json")
    assert message(2).status is MessageStatus.SENT
    deliver(client, "read_without_sender.json")
    assert last_error() is None
    assert message(2).status is MessageStatus.SEEN
    assert message(2).seen_at == T + timedelta(seconds=400)
    assert contact_ids() == {C3}


def test_read_with_nothing_but_its_mid_is_applied(client, channel):
    deliver(client, "customer_to_app_scoped_id.json", "echo_from_app_scoped_id.json")
    deliver_events(client, {"read": {"mid": mid(2)}})
    assert last_error() is None and message(2).status is MessageStatus.SEEN


def test_a_message_without_a_sender_is_still_malformed(client, channel):
    deliver_events(
        client, {"recipient": {"id": ACCOUNT}, "timestamp": 1763900000000,
                 "message": {"mid": mid(41), "text": "hi"}},
    )  # fmt: skip
    assert message(41) is None and "sender.id is missing" in last_error()


def test_read_without_sender_before_its_message_waits_for_it(client, channel):
    deliver(client, "read_without_sender.json", "echo_from_app_scoped_id.json")
    assert message(2).status is MessageStatus.SEEN
    assert contact_ids() == {C3}


# Edits and timestamps ---------------------------------------------------------------------------


def history(n: int) -> list[str | None]:
    return list(
        db.session.scalars(
            select(MessageEdit.previous_text)
            .where(MessageEdit.message_id == message(n).id)
            .order_by(MessageEdit.edited_at)
        )
    )


def test_num_edit_as_a_string_keeps_every_edit(client, channel):
    deliver(client, "customer_to_app_scoped_id.json", "edit_num_edit_string.json")
    assert message(1).text == "Is the blue one in stock in M?"
    assert message(1).edit_count == 2
    assert history(1) == ["Is the blue one still available?", "Is the blue one still in stock?"]
    assert last_error() is None


def test_num_edit_zero_keeps_every_edit_and_a_retry_adds_none(client, channel):
    deliver(client, "ig_story_media_url.json")
    deliver_events(
        client,
        {"sender": {"id": C4}, "recipient": {"id": ACCOUNT}, "timestamp": 1763900201000,
         "message": {"mid": mid(50), "text": "so cute"}},
    )  # fmt: skip
    deliver_events(
        client,
        {"sender": {"id": C4}, "recipient": {"id": ACCOUNT}, "timestamp": 1763900202000,
         "message_edit": {"mid": mid(50), "text": "so cute!", "num_edit": 0}},
        {"sender": {"id": C4}, "recipient": {"id": ACCOUNT}, "timestamp": 1763900203000,
         "message_edit": {"mid": mid(50), "text": "so cute!!", "num_edit": 0}},
    )  # fmt: skip
    assert message(50).text == "so cute!!" and message(50).edit_count == 2
    assert history(50) == ["so cute", "so cute!"]
    assert last_error() is None

    deliver(client, "edit_num_edit_zero.json")  # on the story reply, which has no text
    before = table_counts()
    deliver(client, "edit_num_edit_zero.json")
    after = table_counts()
    assert after.pop("webhook_events") == before.pop("webhook_events") + 1
    assert after == before
    assert message(5).text == "love this!!" and message(5).edit_count == 2


def test_an_edit_arriving_after_a_later_one_is_kept_in_its_place(client, channel):
    deliver(client, "customer_to_app_scoped_id.json")
    first, second = json.loads((REAL / "edit_num_edit_string.json").read_text())["entry"][0][
        "messaging"
    ]
    deliver_events(client, second)
    deliver_events(client, first)
    assert message(1).text == "Is the blue one in stock in M?"
    assert history(1) == ["Is the blue one still available?", "Is the blue one still in stock?"]


@pytest.mark.parametrize("num_edit", ["x", -1, 1.5, True, "10000000"])
def test_num_edit_that_is_no_count_is_still_malformed(client, channel, num_edit):
    deliver(client, "customer_to_app_scoped_id.json")
    deliver_events(
        client,
        {"sender": {"id": C3}, "recipient": {"id": ACCOUNT}, "timestamp": 1763900500000,
         "message_edit": {"mid": mid(1), "text": "changed", "num_edit": num_edit}},
    )  # fmt: skip
    assert "num_edit" in last_error()
    assert message(1).text == "Is the blue one still available?"


def test_iso_8601_timestamps_are_read(client, channel):
    deliver(client, "iso_timestamps.json")
    assert last_error() is None
    assert message(6).sent_at == datetime(2025, 11, 23, 10, 0, tzinfo=UTC)
    assert message(7).sent_at == datetime(2025, 11, 23, 10, 0, 1, 250000, tzinfo=UTC)


@pytest.mark.parametrize(
    ("timestamp", "expected"),
    [
        (1763900000, datetime(2025, 11, 23, 12, 13, 20, tzinfo=UTC)),
        (1763900000123, datetime(2025, 11, 23, 12, 13, 20, 123000, tzinfo=UTC)),
        ("1763900000123", datetime(2025, 11, 23, 12, 13, 20, 123000, tzinfo=UTC)),
        ("2025-11-23T12:13:20", datetime(2025, 11, 23, 12, 13, 20, tzinfo=UTC)),
        ("2025-11-23T14:13:20+02:00", datetime(2025, 11, 23, 12, 13, 20, tzinfo=UTC)),
    ],
)
def test_every_timestamp_shape_gives_the_same_clock(client, channel, timestamp, expected):
    deliver_events(
        client,
        {"sender": {"id": C3}, "recipient": {"id": ACCOUNT}, "timestamp": timestamp,
         "message": {"mid": mid(60), "text": "hi"}},
    )  # fmt: skip
    assert message(60).sent_at == expected


@pytest.mark.parametrize("timestamp", ["yesterday", "2025-13-01T00:00:00Z", "", None])
def test_a_timestamp_that_is_no_time_is_still_malformed(client, channel, timestamp):
    deliver_events(
        client,
        {"sender": {"id": C3}, "recipient": {"id": ACCOUNT}, "timestamp": timestamp,
         "message": {"mid": mid(61), "text": "hi"}},
    )  # fmt: skip
    assert message(61) is None and "timestamp" in last_error()


# Meta's biggest batch ---------------------------------------------------------------------------


def thousand_event_delivery() -> bytes:
    """1000 messaging events in 20 entries, from 250 customers: texts, images and story replies
    with CDN links as long as Meta's, compact as Meta sends them."""
    cdn = "https://lookaside.fbsbx.com/ig_messaging_cdn/?asset_id=1802736128904{:04d}&signature="
    cdn += "AbzW3vXJt9yQ1mB7cK0d_RgLq8nPxE2sYfT5uHo4iVa6wZjMeDlCbNrOkGUhI3P"
    entries = []
    for e in range(20):
        events = []
        for i in range(50):
            n = e * 50 + i
            message: dict = {"mid": f"{MID}1{n:07d}", "text": f"Order question number {n}"}
            if n % 3 == 1:
                message["attachments"] = [{"type": "image", "payload": {"url": cdn.format(n)}}]
            elif n % 3 == 2:
                message["reply_to"] = {"story": {"url": cdn.format(n), "id": f"1{n:016d}"}}
            sender = {"id": f"61200000001{n % 250:05d}"}
            timestamp = 1763900000000 + n * 1000
            events.append(
                {"sender": sender, "recipient": {"id": ACCOUNT}, "timestamp": timestamp,
                 "message": message}
            )  # fmt: skip
        entries.append({"id": ACCOUNT, "time": 1763900000000 + e, "messaging": events})
    return json.dumps({"object": "instagram", "entry": entries}, separators=(",", ":")).encode()


def test_a_1000_event_delivery_is_taken_at_once_and_lands_once(client, channel):
    raw = thousand_event_delivery()
    assert len(raw) < 1024 * 1024  # under the webhook's body limit, with room to spare

    started = time.monotonic()
    response = post(client, raw)
    assert response.status_code == 200
    assert time.monotonic() - started < 2  # stored, not processed, before the answer

    process_all()
    assert db.session.scalar(select(func.count()).select_from(Message)) == 1000
    assert db.session.scalar(select(func.count()).select_from(Contact)) == 250
    assert last_error() is None

    before = table_counts()
    response = post(client, raw)  # Meta's retry, hours later
    assert response.status_code == 200
    process_all()
    after = table_counts()
    assert after.pop("webhook_events") == before.pop("webhook_events") + 1
    assert after == before

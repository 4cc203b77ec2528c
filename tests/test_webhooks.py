"""The Instagram webhook: signature, size and shape checks, and what every example body stores."""

from __future__ import annotations

import json

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
    Reaction,
    RequestState,
)
from helpdesk.extensions import db
from helpdesk.intake.models import EventStatus, PendingAction, UnknownAccount, WebhookEvent
from helpdesk.tickets.models import Ticket
from tests.conftest import table_counts
from tests.helpers.webhooks import ACCOUNT, FIXTURES, post, process_all, sign

ORDER = [
    "text", "image", "multi_attachments", "share_ig_post", "story_reply", "story_mention",
    "reply_to_message", "echo", "unsent", "edit", "reaction", "unreact", "read", "postback",
    "ephemeral", "standby", "batch",
]  # fmt: skip


def mid(n: int) -> str:
    return f"aWdfZAG1faXRlbToxOklHTWVzc2FnZAUlEOjE3ODQxNDAwMDAwMDAwMDE6000000{n:02d}"


def deliver(client, name: str) -> None:
    response = post(client, (FIXTURES / f"{name}.json").read_bytes())
    assert response.status_code == 200, response.get_data(as_text=True)
    process_all()


def by_mid(n: int) -> Message:
    db.session.expire_all()
    return db.session.scalar(select(Message).where(Message.mid == mid(n)))


@pytest.fixture
def channel(webhook_channel: Channel) -> Channel:
    return webhook_channel


def test_every_example_body_stores_what_it_carries(client, channel):
    for name in ORDER:
        deliver(client, name)

    assert db.session.scalar(select(func.count()).select_from(Message)) == 13
    first = by_mid(1)
    assert first.text == "Hi! My order #4412 hasn't arrived yet 😕"  # edited
    assert first.edited and first.direction is Direction.INBOUND
    previous = db.session.scalar(select(MessageEdit.previous_text))
    assert previous == "Hi! My order #4411 hasn't arrived yet 😕"

    assert by_mid(2).kind is MessageKind.IMAGE
    assert by_mid(2).attachments[0]["url"].startswith("https://lookaside.fbsbx.com/")
    multi = by_mid(3)
    assert multi.text == "Here's the damage"
    assert [a["type"] for a in multi.attachments] == ["image", "video", "audio"]
    share = by_mid(4)
    assert share.kind is MessageKind.SHARE and len(share.attachments) == 1
    assert share.attachments[0]["title"] == "Is this jacket back in stock?"
    story = by_mid(5)
    assert story.kind is MessageKind.STORY_REPLY
    assert story.extra["story"]["id"] == "17949487764033669"
    assert by_mid(6).kind is MessageKind.STORY_MENTION

    inline = by_mid(7)
    assert inline.reply_to_id == first.id
    assert inline.unsent and inline.text is None  # unsent.json removed it

    echo = by_mid(8)
    assert echo.direction is Direction.OUTBOUND and echo.is_echo
    assert echo.status is MessageStatus.SEEN  # read.json: the customer saw it
    assert db.session.scalar(select(func.count()).select_from(Reaction)) == 0  # react, unreact

    postback = by_mid(9)
    assert postback.kind is MessageKind.POSTBACK and postback.text == "Track my order"
    assert postback.extra["payload"] == "TRACK_ORDER"
    ephemeral = by_mid(10)
    assert ephemeral.attachments == [{"type": "ephemeral", "url": None}]
    assert by_mid(11).text == "hello?"  # standby
    assert by_mid(12).text == "first" and by_mid(13).text == "second"  # batch: two, not three

    first_customer = db.session.scalar(
        select(Conversation)
        .join(Contact, Contact.id == Conversation.contact_id)
        .where(Contact.platform_id == "6120000000000001")
    )
    # The brand answered from the app (echo.json): the request is accepted, with a ticket whose
    # first response is the echo.
    assert first_customer.request_state is RequestState.ACCEPTED
    ticket = db.session.get(Ticket, first_customer.current_ticket_id)
    assert ticket.opened_at == first.sent_at
    assert ticket.first_response_at == echo.sent_at


def test_every_example_body_posted_twice_changes_nothing(client, channel):
    for name in ORDER:
        deliver(client, name)
    before = table_counts()
    for name in ORDER:
        deliver(client, name)
    after = table_counts()
    assert after.pop("webhook_events") == before.pop("webhook_events") + len(ORDER)
    assert after == before


def test_reaction_before_its_message_is_applied_when_the_message_lands(client, channel):
    deliver(client, "text")
    deliver(client, "reaction")  # on the echo, not here yet
    assert db.session.scalar(select(func.count()).select_from(PendingAction)) == 1
    deliver(client, "echo")
    assert db.session.scalar(select(Reaction.emoji)) == "❤️"
    assert db.session.scalar(select(func.count()).select_from(PendingAction)) == 0


def test_edit_and_unsend_before_their_message_land_right(client, channel):
    deliver(client, "edit")
    deliver(client, "unsent")
    deliver(client, "text")
    deliver(client, "reply_to_message")
    assert by_mid(1).text.endswith("#4412 hasn't arrived yet 😕")
    assert by_mid(7).unsent


@pytest.mark.parametrize(
    "signature",
    [
        "",
        "sha256=" + "0" * 64,
        "sha1=" + "0" * 40,
        sign(b"something else"),
        sign((FIXTURES / "text.json").read_bytes(), secret="another-secret"),
    ],
)
def test_bad_signature_is_refused_and_nothing_is_stored(client, channel, signature):
    before = table_counts()
    response = post(client, (FIXTURES / "text.json").read_bytes(), signature=signature)
    assert response.status_code == 401
    assert response.json["error"]["code"] == "bad_signature"
    assert table_counts() == before


def test_missing_signature_header_is_refused(client, channel):
    before = table_counts()
    raw = (FIXTURES / "text.json").read_bytes()
    response = client.post("/webhooks/instagram", data=raw, content_type="application/json")
    assert response.status_code == 401
    assert table_counts() == before


def test_a_byte_changed_after_signing_is_refused(client, channel):
    raw = (FIXTURES / "text.json").read_bytes()
    signature = sign(raw)
    tampered = raw.replace(b"4411", b"4412")
    before = table_counts()
    assert post(client, tampered, signature=signature).status_code == 401
    assert table_counts() == before


def test_body_over_1_mib_is_refused_with_413(client, channel):
    raw = json.dumps({"object": "instagram", "entry": [], "pad": "x" * (2 * 1024 * 1024)}).encode()
    before = table_counts()
    assert post(client, raw).status_code == 413
    assert table_counts() == before


@pytest.mark.parametrize("raw", [b"not json", b"\xff\xfe", b'"a string"', b"42", b"null"])
def test_body_that_is_not_a_json_object_or_list_is_refused_with_400(client, channel, raw):
    before = table_counts()
    response = post(client, raw)
    assert response.status_code == 400
    assert response.json["error"]["code"] == "bad_json"
    assert table_counts() == before


def test_signature_is_checked_over_the_raw_bytes_not_a_reserialisation(client, channel):
    body = json.loads((FIXTURES / "text.json").read_text())
    raw = json.dumps(body, ensure_ascii=True).encode()  # emoji escaped as \\ud83d\\ude15
    assert post(client, raw).status_code == 200
    process_all()
    assert by_mid(1).text == "Hi! My order #4411 hasn't arrived yet 😕"


def test_subscription_handshake(client):
    query = "hub.mode=subscribe&hub.challenge=1158201444&hub.verify_token="
    assert client.get(f"/webhooks/instagram?{query}test-verify-token").get_data() == b"1158201444"
    assert client.get(f"/webhooks/instagram?{query}wrong").status_code == 403


def test_unknown_account_is_stored_and_reported_not_an_error(client):
    response = post(client, (FIXTURES / "text.json").read_bytes())
    assert response.status_code == 200
    process_all()
    event = db.session.scalar(select(WebhookEvent))
    assert event.status is EventStatus.UNKNOWN_ACCOUNT and event.account_ids == [ACCOUNT]
    assert db.session.get(UnknownAccount, ACCOUNT).deliveries == 1
    assert db.session.scalar(select(func.count()).select_from(Message)) == 0


def _event(timestamp, text="hi", n=50) -> dict:
    return {
        "sender": {"id": "6120000000000003"},
        "recipient": {"id": ACCOUNT},
        "timestamp": timestamp,
        "message": {"mid": mid(n), "text": text},
    }


def test_timestamps_in_seconds_or_milliseconds(client, channel):
    body = {"object": "instagram", "entry": [{"id": ACCOUNT, "time": 1, "messaging": [
        _event(1763800000, n=50), _event(1763800000000, n=51)]}]}  # fmt: skip
    post(client, json.dumps(body).encode())
    process_all()
    assert by_mid(50).sent_at == by_mid(51).sent_at
    assert by_mid(50).sent_at.year == 2025


def test_dashboard_changes_shape_and_top_level_list(client, channel):
    changes = {"object": "instagram", "entry": [{"id": ACCOUNT, "time": 1, "changes": [
        {"field": "messages", "value": _event(1763800000000, n=52)}]}]}  # fmt: skip
    listed = [{"id": ACCOUNT, "time": 1, "messaging": [_event(1763800001000, n=53)]}]
    post(client, json.dumps(changes).encode())
    post(client, json.dumps(listed).encode())
    process_all()
    assert by_mid(52) is not None and by_mid(53) is not None


def test_malformed_events_are_reported_and_the_rest_still_lands(client, channel):
    body = {"object": "instagram", "entry": [{"id": ACCOUNT, "time": 1, "messaging": [
        {"sender": {}, "timestamp": "x"},
        {"sender": {"id": "1"}, "recipient": {"id": ACCOUNT}, "timestamp": 10**20,
         "message": {"mid": "m"}},
        _event(1763800000000, n=54),
    ]}]}  # fmt: skip
    assert post(client, json.dumps(body).encode()).status_code == 200
    process_all()
    event = db.session.scalar(select(WebhookEvent))
    assert event.status is EventStatus.PROCESSED and "MalformedEvent" in event.error
    assert db.session.scalar(select(func.count()).select_from(Message)) == 1

"""Webhook bodies shaped like Meta's real deliveries, each of which the intake once read wrong
(second half): reactions replayed out of order, retries of actions waiting for their message,
first responses before the opening, what a message carries besides its text (story, quick reply,
referral, postback), the heart sticker, and referrals from people never seen before."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import func, select

from helpdesk.accounts.models import Role
from helpdesk.brands.models import Brand
from helpdesk.channels.models import Channel
from helpdesk.dm.models import Contact, Message, MessageKind, Reaction, ReactionRemoval
from helpdesk.extensions import db
from helpdesk.intake import service as intake
from helpdesk.intake.models import EventStatus, PendingAction, WebhookEvent
from helpdesk.intake.profiles import fetch_profile
from helpdesk.metrics import service as metrics
from helpdesk.metrics.compute import EventFacts, Targets, TicketFacts, measure_ticket
from helpdesk.metrics.summary import summary
from helpdesk.tickets.models import Ticket
from tests.factories import AgentFactory, member
from tests.helpers.api import Client, token_for
from tests.helpers.console import signed_in
from tests.helpers.webhooks import ACCOUNT, post, process_all

C = "6120000000000007"  # the customer of most tests
NEWCOMER = "6120000000000008"  # someone who came through an ad or an ig.me link
T = datetime.fromtimestamp(1763950000, tz=UTC)  # 2025-11-24, a Monday
MID = "aWdfZAG1faXRlbToxOklHTWVzc2FnZAUlEOjE3ODQxNDAwMDAwMDAwMDE6"
HEART = "❤️"
EDITED = "Hi, is order #7 on its way?"


def mid(n: int) -> str:
    return f"{MID}0007{n:04d}"


def ms(when: datetime) -> int:
    return int(when.timestamp() * 1000)


@pytest.fixture
def channel(webhook_channel: Channel) -> Channel:
    return webhook_channel


def body(*events: dict) -> bytes:
    """One delivery, as Meta sends it: the business account's entry with its events."""
    entry = {"id": ACCOUNT, "time": ms(T) + 500, "messaging": list(events)}
    return json.dumps({"object": "instagram", "entry": [entry]}, ensure_ascii=False).encode()


def deliver(client, raw: bytes) -> None:
    response = post(client, raw)
    assert response.status_code == 200, response.get_data(as_text=True)
    process_all()
    db.session.expire_all()


def event(when: datetime, sender: str = C, recipient: str = ACCOUNT, **kind: dict) -> dict:
    return {
        "sender": {"id": sender},
        "recipient": {"id": recipient},
        "timestamp": ms(when),
        **kind,
    }


def customer_text(n: int, when: datetime, text: str = "Hi, is my order on its way?") -> dict:
    return event(when, message={"mid": mid(n), "text": text})


def echo(n: int, when: datetime, text: str = "Yes, it ships today", to: str = C) -> dict:
    return event(when, ACCOUNT, to, message={"mid": mid(n), "text": text, "is_echo": True})


def reaction(n: int, when: datetime, action: str = "react", emoji: str = HEART) -> dict:
    payload = {"mid": mid(n), "action": action}
    if action == "react":
        payload |= {"reaction": "love" if emoji == HEART else "other", "emoji": emoji}
    return event(when, reaction=payload)


def message(n: int) -> Message:
    found = db.session.scalar(select(Message).where(Message.mid == mid(n)))
    assert found is not None, f"message {n} not stored"
    return found


def reactions_on(n: int) -> list[tuple[str, datetime]]:
    return [
        (row.emoji, row.reacted_at)
        for row in db.session.scalars(select(Reaction).where(Reaction.message_id == message(n).id))
    ]


def last_error() -> str | None:
    return db.session.scalar(select(WebhookEvent.error).order_by(WebhookEvent.id.desc()).limit(1))


# 1. Reactions: the platform's clock orders them ---------------------------------------------------


def test_a_react_replayed_after_its_unreact_stays_undone(client, channel):
    deliver(client, body(customer_text(1, T), echo(2, T + timedelta(seconds=10))))
    react = body(reaction(2, T + timedelta(seconds=20)))
    deliver(client, react)
    assert reactions_on(2) == [(HEART, T + timedelta(seconds=20))]  # the platform's time

    deliver(client, body(reaction(2, T + timedelta(seconds=30), "unreact")))
    assert reactions_on(2) == []
    deliver(client, react)  # Meta's retry of the react, delivered after the unreact
    assert reactions_on(2) == [] and last_error() is None

    deliver(client, body(reaction(2, T + timedelta(seconds=40), emoji="😂")))  # a new react
    assert reactions_on(2) == [("😂", T + timedelta(seconds=40))]
    assert db.session.scalar(select(func.count()).select_from(ReactionRemoval)) == 0


def test_an_older_react_or_unreact_does_not_undo_a_newer_reaction(client, channel):
    deliver(client, body(customer_text(1, T), echo(2, T + timedelta(seconds=10))))
    deliver(client, body(reaction(2, T + timedelta(seconds=40))))
    deliver(client, body(reaction(2, T + timedelta(seconds=35), emoji="😮")))  # older, late
    assert reactions_on(2) == [(HEART, T + timedelta(seconds=40))]
    deliver(client, body(reaction(2, T + timedelta(seconds=38), "unreact")))  # older, late
    assert reactions_on(2) == [(HEART, T + timedelta(seconds=40))]
    deliver(client, body(reaction(2, T + timedelta(seconds=50), "unreact")))
    assert reactions_on(2) == []


@pytest.mark.parametrize("order", ["unreact first", "react first"])
def test_react_and_unreact_before_their_message_end_as_the_newest_says(client, channel, order):
    react = body(reaction(2, T + timedelta(seconds=20)))
    unreact = body(reaction(2, T + timedelta(seconds=30), "unreact"))
    for raw in (unreact, react) if order == "unreact first" else (react, unreact):
        deliver(client, raw)
    deliver(client, body(customer_text(1, T), echo(2, T + timedelta(seconds=10))))
    assert reactions_on(2) == []
    assert db.session.scalar(select(func.count()).select_from(PendingAction)) == 0


# 2. One pending action per event ------------------------------------------------------------------


def test_each_retry_of_an_action_waiting_for_its_message_waits_once(client, channel):
    waiting = [
        body(reaction(2, T + timedelta(seconds=20))),
        body(event(T + timedelta(seconds=25),
                   message_edit={"mid": mid(1), "num_edit": 1, "text": EDITED})),
        body(event(T + timedelta(seconds=26), read={"mid": mid(2)})),
    ]  # fmt: skip
    for _retry in range(3):  # Meta retries a delivery it did not see answered
        for raw in waiting:
            deliver(client, raw)
    assert db.session.scalar(select(func.count()).select_from(PendingAction)) == 3
    assert db.session.scalar(
        select(func.count()).select_from(WebhookEvent).where(
            WebhookEvent.status == EventStatus.PROCESSED, WebhookEvent.error.is_not(None)
        )
    ) == 0  # fmt: skip

    deliver(client, body(reaction(2, T + timedelta(seconds=21), emoji="😂")))  # another event
    assert db.session.scalar(select(func.count()).select_from(PendingAction)) == 4

    deliver(client, body(customer_text(1, T), echo(2, T + timedelta(seconds=10))))
    assert db.session.scalar(select(func.count()).select_from(PendingAction)) == 0
    assert message(1).text == EDITED
    assert reactions_on(2) == [("😂", T + timedelta(seconds=21))]


# 3. A first response is a human reply after the ticket's opening ----------------------------------


def _first_response_figures(channel: Channel) -> dict:
    brand = db.session.get(Brand, channel.brand_id)
    metrics.recompute_metrics(brand)
    db.session.commit()
    day = T.date()
    return summary(brand, day - timedelta(days=1), day + timedelta(days=1))["first_response"]


def test_an_echo_older_than_the_opening_is_no_first_response(client, channel):
    deliver(client, body(customer_text(1, T)))
    deliver(client, body(echo(2, T - timedelta(minutes=1), "See you tomorrow!")))  # late, older
    ticket = db.session.scalar(select(Ticket))
    assert ticket.opened_at == T and ticket.first_response_at is None
    assert _first_response_figures(channel)["count"] == 0

    deliver(client, body(echo(3, T + timedelta(minutes=2))))
    db.session.expire_all()
    assert db.session.get(Ticket, ticket.id).first_response_at == T + timedelta(minutes=2)
    figures = _first_response_figures(channel)
    assert figures["count"] == 1 and figures["median_s"] == 120


def test_a_thread_the_brand_started_has_its_first_response_after_the_customer_writes(
    client, channel
):
    deliver(client, body(echo(1, T, "Your parcel is ready for pickup")))
    assert db.session.scalar(select(func.count()).select_from(Ticket)) == 0
    assert _first_response_figures(channel)["count"] == 0

    deliver(client, body(customer_text(2, T + timedelta(minutes=1), "Where do I pick it up?")))
    ticket = db.session.scalar(select(Ticket))
    assert ticket.opened_at == T + timedelta(minutes=1) and ticket.first_response_at is None
    assert _first_response_figures(channel)["count"] == 0

    deliver(client, body(echo(3, T + timedelta(minutes=5), "At our shop on Main Street")))
    figures = _first_response_figures(channel)
    assert figures["count"] == 1 and figures["median_s"] == 240


def test_a_first_response_event_recorded_at_the_opening_is_passed_over():
    """History written before the rule: recomputing the figures drops the 0-second response."""
    ticket = TicketFacts(1, 1, 1, None, None, "open", T, None, ())
    zero = EventFacts(1, "first_response", T, None, {"message_id": 1})
    assert measure_ticket(ticket, [T], [zero], frozenset(), Targets()) == []
    later = EventFacts(2, "first_response", T + timedelta(seconds=90), None, {"message_id": 2})
    [first] = measure_ticket(ticket, [T], [zero, later], frozenset(), Targets())
    assert first.kind == "first_response" and first.ended_at == T + timedelta(seconds=90)


# 4. What a message carries, in the API and the console --------------------------------------------

STORY = {
    "url": "https://lookaside.fbsbx.com/ig_messaging_cdn/?asset_id=7107&signature=demo",
    "id": "17949487764033777",
}
AD = {
    "ref": None,
    "ad_id": "120210000000000007",
    "source": "ADS",
    "type": "OPEN_THREAD",
    "ads_context_data": {
        "ad_title": "Winter boots, 20% off",
        "photo_url": "https://scontent.cdninstagram.com/v/t45.1600-4/boots.jpg",
        "post_id": "17900000000000007",
    },
}
LINK = {"ref": "winter-sale", "source": "SHORTLINK", "type": "OPEN_THREAD"}


def _carrying_deliveries(client) -> None:
    deliver(
        client,
        body(
            event(T, message={"mid": mid(1), "text": "Is this in blue?",
                              "reply_to": {"story": STORY}}),
            event(T + timedelta(seconds=5), message={"mid": mid(2), "text": "Track my order",
                                                     "quick_reply": {"payload": "TRACK_ORDER"}}),
            event(T + timedelta(seconds=9), message={"mid": mid(3), "text": "Do you have size 42?",
                                                     "referral": AD}),
            event(T + timedelta(seconds=12), message={"mid": mid(4), "text": "Hello!",
                                                      "referral": LINK}),
            event(T + timedelta(seconds=15), postback={"mid": mid(5), "title": "Opening hours",
                                                       "payload": "HOURS"}),
        ),
    )  # fmt: skip
    assert last_error() is None


def test_the_api_message_keeps_what_the_webhook_carried(client, channel):
    _carrying_deliveries(client)
    api = Client(client, token_for(db.session.get(Brand, channel.brand_id), Role.AGENT))
    conversation_id = message(1).conversation_id
    items = api.get(f"/conversations/{conversation_id}/messages").get_json()["items"]
    by_mid = {item["mid"]: item for item in items}

    story = by_mid[mid(1)]
    assert story["kind"] == "story_reply" and story["story"] == STORY
    assert story["quick_reply"] is None and story["referral"] is None
    assert by_mid[mid(2)]["quick_reply"] == {"payload": "TRACK_ORDER"}
    assert by_mid[mid(2)]["text"] == "Track my order"
    assert by_mid[mid(3)]["referral"] == AD
    assert by_mid[mid(4)]["referral"] == LINK
    postback = by_mid[mid(5)]
    assert postback["kind"] == "postback"
    assert postback["postback"] == {"title": "Opening hours", "payload": "HOURS"}
    assert story["postback"] is None


def test_the_console_thread_shows_the_story_the_ad_the_link_and_the_quick_reply(client, channel):
    _carrying_deliveries(client)
    agent = AgentFactory()
    member(agent, db.session.get(Brand, channel.brand_id), Role.AGENT)
    db.session.commit()
    signed_in(client, agent)
    html = client.get(f"/conversations/{message(1).conversation_id}").get_data(as_text=True)
    assert "Replied to your story" in html
    assert 'href="https://lookaside.fbsbx.com/ig_messaging_cdn/?asset_id=7107' in html
    assert "Came from ad 120210000000000007" in html and "Winter boots, 20% off" in html
    assert "Came from the ig.me link winter-sale" in html
    assert "Quick reply · TRACK_ORDER" in html
    assert "Tapped a button" in html and "Opening hours" in html


# 5. The heart sticker -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "attachment",
    [
        {"type": "like_heart"},
        {"type": "like_heart", "payload": {"url": "https://lookaside.fbsbx.com/ig_messaging_cdn/?asset_id=7108"}},
    ],
    ids=["bare", "with-url"],
)  # fmt: skip
def test_a_like_heart_is_a_heart_not_unsupported(client, channel, attachment):
    deliver(client, body(event(T, message={"mid": mid(1), "attachments": [attachment]})))
    heart = message(1)
    assert heart.kind is MessageKind.STICKER and heart.text == HEART

    api = Client(client, token_for(db.session.get(Brand, channel.brand_id), Role.AGENT))
    [item] = api.get(f"/conversations/{heart.conversation_id}/messages").get_json()["items"]
    assert item["kind"] == "sticker" and item["text"] == HEART

    agent = AgentFactory()
    member(agent, db.session.get(Brand, channel.brand_id), Role.AGENT)
    db.session.commit()
    signed_in(client, agent)
    html = client.get(f"/conversations/{heart.conversation_id}").get_data(as_text=True)
    assert HEART in html
    assert "can't be shown here" not in html and "Like Heart" not in html


# 6. Referrals fetch the newcomer's profile --------------------------------------------------------


def _process_returning_contacts() -> list[int]:
    wanted: list[int] = []
    for event_id in db.session.scalars(
        select(WebhookEvent.id).where(WebhookEvent.status == EventStatus.PENDING)
    ).all():
        wanted += intake.process_event(event_id)
        db.session.commit()
    return wanted


@pytest.mark.parametrize("shape", ["referral event", "message with referral"])
def test_an_ig_me_or_ad_referral_fetches_the_newcomers_profile(client, channel, sim, shape):
    if shape == "referral event":
        carried = event(T, NEWCOMER, referral=LINK)
    else:
        carried = event(T, NEWCOMER, message={"mid": mid(1), "text": "Hi!", "referral": AD})
    assert post(client, body(carried)).status_code == 200
    wanted = _process_returning_contacts()
    newcomer = db.session.scalar(select(Contact).where(Contact.platform_id == NEWCOMER))
    assert newcomer is not None and wanted == [newcomer.id]

    for contact_id in wanted:  # what the worker does with them
        assert fetch_profile(contact_id)
    db.session.commit()
    db.session.expire_all()
    newcomer = db.session.get(Contact, newcomer.id)
    assert newcomer.profile_fetched_at is not None and newcomer.username

    again = body(event(T + timedelta(minutes=1), NEWCOMER, referral=LINK))
    assert post(client, again).status_code == 200
    assert _process_returning_contacts() == []  # fetched once

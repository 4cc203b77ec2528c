"""Meta's deauthorize and data-deletion callbacks (signed_request), and the erase of an Instagram
user's data: nothing of theirs is left in any table, tickets stay."""

from __future__ import annotations

import json

import pytest
from sqlalchemy import func, select

from helpdesk import crypto
from helpdesk.accounts.models import Agent
from helpdesk.audit.models import AuditEvent
from helpdesk.brands.models import Brand
from helpdesk.channels import signed_request
from helpdesk.channels.models import Channel, ChannelStatus, DataDeletionRequest
from helpdesk.dm.models import Contact, Message, MessageEdit, Reaction
from helpdesk.extensions import db
from helpdesk.intake.models import PendingAction, WebhookEvent
from helpdesk.live.models import LiveEvent
from helpdesk.media.store import media_store
from helpdesk.outgoing.models import WebhookDelivery, WebhookSubscription
from helpdesk.privacy import erase
from helpdesk.tickets import notes
from helpdesk.tickets.models import Note, Ticket
from tests.factories import AgentFactory, ContactFactory, member
from tests.helpers import rows
from tests.helpers import webhooks as hooks
from tests.helpers.console import signed_in
from tests.helpers.media import empty, scan_store, store_copies
from tests.helpers.webhooks import ACCOUNT, SECRET
from tests.helpers.world import World, receive

PERSON = "6120000000000001"
OTHER = "6120000000000002"
BASE = "https://help.example.com"

# Planted wherever the app could keep something of the person; none may survive the erase.
NAME = "Zelda Quixotic-Marlowe"
USERNAME = "zelda.qx9931"
AVATAR = "https://cdn.example.com/avatar-zq9931.jpg"
FIRST_TEXT = "Parcel ZQSECRET7731 never reached 221B Baker Street"
EDITED_TEXT = "Parcel ZQEDITED8842 never reached 221C Baker Street"
PHOTO = "https://lookaside.example.com/ig_messaging_cdn/?asset_id=ZQATTACH5521"
REPLY = "Dear Zelda, parcel ZQREPLY6610 is on its way"
PLANTED = (NAME, USERNAME, AVATAR, FIRST_TEXT, EDITED_TEXT, PHOTO, REPLY,
           "ZQSECRET7731", "ZQEDITED8842", "ZQATTACH5521", "ZQREPLY6610")  # fmt: skip
KEPT = "Another customer asks about KEEP4411"


def signed(user_id, secret: str = SECRET, **more) -> str:
    return signed_request.sign({"algorithm": "HMAC-SHA256", "issued_at": 1763800000,
                                "user_id": user_id, **more}, secret)  # fmt: skip


def _event(sender: str, recipient: str, ms: int, **body) -> dict:
    return {"sender": {"id": sender}, "recipient": {"id": recipient}, "timestamp": ms, **body}


def deliver(*events: dict) -> None:
    """One signed delivery through the webhook endpoint, processed as the worker would."""
    raw = json.dumps(
        {"object": "instagram", "entry": [{"id": ACCOUNT, "time": 1, "messaging": list(events)}]}
    ).encode()
    from flask import current_app

    response = hooks.post(current_app.test_client(), raw)
    assert response.status_code == 200, response.get_data(as_text=True)
    hooks.process_all()


def scan(strings) -> list[str]:
    """Every row of every table (text and JSON columns alike, through repr) holding a string."""
    db.session.rollback()
    found = []
    for table in db.metadata.sorted_tables:
        for row in db.session.execute(select(table)):
            text = repr(tuple(row)) + json.dumps([str(v) for v in row], ensure_ascii=False)
            found.extend(f"{table.name}: {s}" for s in strings if s.lower() in text.lower())
    db.session.rollback()
    return found


# signed_request --------------------------------------------------------------------------------


def test_a_signed_request_is_read_with_its_big_user_id_exact():
    body = signed_request._b64url_encode(
        b'{"algorithm":"HMAC-SHA256","user_id":17841400000000001234}'
    )
    import hashlib
    import hmac

    sig = hmac.new(SECRET.encode(), body.encode(), hashlib.sha256).digest()
    token = f"{signed_request._b64url_encode(sig)}.{body}"
    assert signed_request.parse(token, SECRET)["user_id"] == "17841400000000001234"
    assert "=" not in token


@pytest.mark.parametrize(
    "value",
    [
        None,
        "",
        "no-dot-at-all",
        "a.b.c",
        "!!!.???",
        signed("1", secret="another-secret"),
        signed("1") + "x",
        signed("1").split(".")[0] + "." + signed("2").split(".")[1],
        signed("1", algorithm="HMAC-SHA1"),
        signed_request.sign({"algorithm": "HMAC-SHA256"}, SECRET),
        signed_request.sign({"user_id": ""}, SECRET),
    ],
)
def test_a_bad_signed_request_is_refused(value):
    with pytest.raises(signed_request.BadSignedRequest):
        signed_request.parse(value, SECRET)


@pytest.mark.parametrize("path", ["/oauth/instagram/deauthorize", "/oauth/instagram/data-deletion"])
@pytest.mark.parametrize("value", [None, "garbage", "bad.sig", "forged"])
def test_callbacks_refuse_a_missing_malformed_or_forged_signed_request(client, path, value):
    channel = hooks.connect_example_channel()
    deliver(_event(PERSON, ACCOUNT, 1763800000000, message={"mid": "m-1", "text": FIRST_TEXT}))
    if value == "forged":
        value = signed(PERSON, secret="not-our-secret")
    before = rows.snapshot()
    response = client.post(path, data={} if value is None else {"signed_request": value})
    assert response.status_code == 400
    assert response.get_json()["error"]["code"] == "bad_signed_request"
    assert rows.changed(before, rows.snapshot()) == {}
    assert db.session.get(Channel, channel.id).status is ChannelStatus.ACTIVE


# Deauthorize ------------------------------------------------------------------------------------


def test_deauthorize_disconnects_the_account_and_keeps_its_history(client):
    channel = hooks.connect_example_channel()
    deliver(_event(PERSON, ACCOUNT, 1763800000000, message={"mid": "m-1", "text": FIRST_TEXT}))
    messages = db.session.scalar(select(func.count()).select_from(Message))

    response = client.post("/oauth/instagram/deauthorize", data={"signed_request": signed(ACCOUNT)})

    assert response.status_code == 200
    db.session.expire_all()
    channel = db.session.get(Channel, channel.id)
    assert channel.status is ChannelStatus.DISCONNECTED
    assert channel.access_token is None and channel.disconnected_at is not None
    assert db.session.scalar(select(func.count()).select_from(Message)) == messages
    audit = db.session.scalar(select(AuditEvent).where(AuditEvent.action == "channel.disconnected"))
    assert audit.changes["reason"] == [None, "deauthorized on Instagram"]


def test_deauthorize_for_an_unknown_user_answers_200_and_changes_nothing(client):
    hooks.connect_example_channel()
    before = rows.snapshot()
    response = client.post("/oauth/instagram/deauthorize", data={"signed_request": signed("999")})
    assert response.status_code == 200
    assert rows.changed(before, rows.snapshot()) == {}


# Data deletion ----------------------------------------------------------------------------------


def _plant_everything(channel: Channel) -> None:
    brand_id = channel.brand_id
    brand = db.session.get(Brand, brand_id)
    agent, colleague = AgentFactory(name="Ann Agent"), AgentFactory(name="Bob Colleague")
    member(agent, brand)
    member(colleague, brand)
    db.session.add(WebhookSubscription(brand_id=brand_id, url="https://hooks.example.com/in",
                                       events=["message.created"],
                                       secret_encrypted=crypto.encrypt("s")))  # fmt: skip
    db.session.commit()
    mid = "aWdfZAG1faXRlbToxOklHTWVzc2FnZAUlEOjE3ODQxNDAwMDAwMDAwMDE6ZQ1"
    deliver(
        _event(PERSON, ACCOUNT, 1763800000000, message={"mid": mid, "text": FIRST_TEXT}),
        _event(OTHER, ACCOUNT, 1763800000001, message={"mid": "other-1", "text": KEPT}),
    )
    deliver(
        _event(
            PERSON,
            ACCOUNT,
            1763800001000,
            message={
                "mid": "photo-1",
                "attachments": [{"type": "image", "payload": {"url": PHOTO}}],
            },
        ),  # fmt: skip
        _event(
            PERSON,
            ACCOUNT,
            1763800002000,
            message_edit={"mid": mid, "text": EDITED_TEXT, "num_edit": 1},
        ),  # fmt: skip
        _event(
            PERSON,
            ACCOUNT,
            1763800003000,
            reaction={"mid": mid, "action": "react", "reaction": "love", "emoji": "❤️"},
        ),
        _event(
            PERSON,
            ACCOUNT,
            1763800004000,
            reaction={"mid": "never-arrives", "action": "react", "reaction": "love"},
        ),
        _event(
            ACCOUNT,
            PERSON,
            1763800005000,
            message={"mid": "echo-1", "text": REPLY, "is_echo": True},
        ),  # fmt: skip
    )
    contact = db.session.scalar(select(Contact).where(Contact.platform_id == PERSON))
    contact.name, contact.username, contact.avatar_url = NAME, USERNAME, AVATAR
    ticket = db.session.scalar(
        select(Ticket).join(Message, Message.ticket_id == Ticket.id).where(Message.mid == mid)
    )
    notes.add_note(ticket, agent, f'@{notes.email_handle(colleague)} she wrote "{EDITED_TEXT}"')
    notes.add_note(ticket, agent, "Carrier asked, nothing from the customer here")
    db.session.commit()


def test_data_deletion_erases_everything_of_the_person_and_keeps_tickets(client, app, monkeypatch):
    monkeypatch.setitem(app.config, "PUBLIC_BASE_URL", BASE)
    channel = hooks.connect_example_channel()
    _plant_everything(channel)
    empty(media_store())
    keys = store_copies("ZQATTACH5521")  # the photo, copied into the media store
    assert keys and scan_store(media_store(), PLANTED)
    # Every place the brief names holds the content before the erase.
    planted = set(s for hit in scan(PLANTED) for s in [hit.split(": ", 1)[0]])
    assert {"contacts", "conversations", "messages", "message_edits", "webhook_events", "notes",
            "notifications", "webhook_deliveries", "media_objects"} <= planted  # fmt: skip
    conversations = set(db.session.scalars(
        select(Message.conversation_id).join(Contact, Contact.id == Message.contact_id)
        .where(Contact.platform_id == PERSON)))  # fmt: skip
    assert db.session.scalar(select(func.count()).select_from(Reaction)) == 1
    assert db.session.scalar(select(func.count()).select_from(PendingAction)) == 1
    tickets = db.session.scalars(select(Ticket.id).order_by(Ticket.id)).all()

    response = client.post("/oauth/instagram/data-deletion",
                           data={"signed_request": signed(PERSON)})  # fmt: skip

    assert response.status_code == 200
    answer = response.get_json()
    code = answer["confirmation_code"]
    assert len(code) >= 32 and answer["url"] == f"{BASE}/data-deletion/{code}"
    assert scan(PLANTED) == []
    assert scan_store(media_store(), PLANTED, keys) == [], "no copy, thumbnail or key left"
    assert scan([KEPT]), "the other customer's data stays"
    assert db.session.scalars(select(Ticket.id).order_by(Ticket.id)).all() == tickets
    assert db.session.scalar(select(func.count()).select_from(Reaction)) == 0
    assert db.session.scalar(select(func.count()).select_from(PendingAction)) == 0
    assert db.session.scalar(select(func.count()).select_from(MessageEdit)) == 1  # text gone
    note_bodies = db.session.scalars(select(Note.body).order_by(Note.id)).all()
    assert note_bodies[0].endswith('she wrote "[erased]"')
    assert note_bodies[1] == "Carrier asked, nothing from the customer here"
    raw = [json.loads(body) for body in db.session.scalars(select(WebhookEvent.body))]
    assert PERSON not in json.dumps(raw) and KEPT in json.dumps(raw)
    request = db.session.scalar(select(DataDeletionRequest))
    assert (request.status, request.contacts_erased) == ("done", 1)
    live = db.session.scalars(select(LiveEvent.data)).all()
    assert not [d for d in live if d.get("conversation_id") in conversations]
    audit = db.session.scalar(select(AuditEvent).where(AuditEvent.action == "contact.erased"))
    assert audit.brand_id == channel.brand_id and audit.changes["erased"][1]["messages"] == 3
    assert not [s for s in PLANTED if s.lower() in repr(audit.__dict__).lower()]
    deliveries = db.session.scalars(select(WebhookDelivery)).all()
    assert deliveries and all(KEPT in json.dumps(d.payload) or d.payload["text"] is None
                              for d in deliveries)  # fmt: skip

    page = client.get(f"/data-deletion/{code}")
    assert page.status_code == 200
    text = page.get_data(as_text=True)
    assert "completed on" in text and "the data of 1 contact was erased" in text
    status = client.get(f"/data-deletion/{code}?format=json").get_json()
    assert status["status"] == "done" and status["contacts_erased"] == 1
    assert client.get("/data-deletion/" + "0" * 32).status_code == 404


def test_a_forged_data_deletion_changes_nothing(client):
    channel = hooks.connect_example_channel()
    _plant_everything(channel)
    before = rows.snapshot()
    response = client.post("/oauth/instagram/data-deletion",
                           data={"signed_request": signed(PERSON, secret="guessed")})  # fmt: skip
    assert response.status_code == 400
    assert rows.changed(before, rows.snapshot()) == {}


def test_data_deletion_of_a_connected_business_account_disconnects_it_and_says_so(client):
    channel = hooks.connect_example_channel()
    deliver(_event(PERSON, ACCOUNT, 1763800000000, message={"mid": "m-1", "text": FIRST_TEXT}))
    response = client.post("/oauth/instagram/data-deletion",
                           data={"signed_request": signed(ACCOUNT)})  # fmt: skip
    assert response.status_code == 200
    db.session.expire_all()
    assert db.session.get(Channel, channel.id).status is ChannelStatus.DISCONNECTED
    page = client.get(f"/data-deletion/{response.get_json()['confirmation_code']}")
    assert "the connected Instagram account was disconnected" in page.get_data(as_text=True)
    # The account's customers are not the person: their messages and raw deliveries stay.
    assert {hit.split(":")[0] for hit in scan([FIRST_TEXT])} == {
        "messages", "webhook_events", "conversations"}  # fmt: skip


def test_every_contact_of_the_person_is_erased_and_each_brand_audits_its_own():
    first, second = World("first"), World("second")
    twin = ContactFactory(channel=second.channel, platform_id=first.contact.platform_id,
                          name="Jane Doe")  # fmt: skip
    receive(second.channel, twin.platform_id, "Where is my order ZQTWIN, second shop?")
    db.session.commit()

    assert erase.erase_platform_user(first.contact.platform_id) == 2
    db.session.commit()

    audits = db.session.execute(
        select(AuditEvent.brand_id, AuditEvent.target_id).where(
            AuditEvent.action == "contact.erased")).all()  # fmt: skip
    assert sorted(audits) == sorted([(first.brand.id, first.contact.id),
                                     (second.brand.id, twin.id)])  # fmt: skip
    assert scan(["ZQTWIN"]) == []
    db.session.expire_all()
    assert first.contact.name is None and twin.name is None
    assert second.contact.name == "Jane Doe", "another person of the same brand is untouched"


def test_data_deletion_for_someone_unknown_is_recorded_done(client):
    response = client.post("/oauth/instagram/data-deletion",
                           data={"signed_request": signed("424242")})  # fmt: skip
    assert response.status_code == 200
    request = db.session.scalar(select(DataDeletionRequest))
    assert (request.status, request.contacts_erased) == ("done", 0)
    page = client.get(response.get_json()["url"].split("localhost", 1)[-1])
    assert "no message or profile of this person was held" in page.get_data(as_text=True)


def test_the_console_still_shows_the_erased_conversation_without_its_content(client):
    channel = hooks.connect_example_channel()
    _plant_everything(channel)
    agent = db.session.scalar(select(Agent).where(Agent.name == "Ann Agent"))
    conversation_id = db.session.scalar(
        select(Message.conversation_id).where(Message.text == EDITED_TEXT)
    )
    response = client.post("/oauth/instagram/data-deletion",
                           data={"signed_request": signed(PERSON)})  # fmt: skip
    assert response.status_code == 200

    signed_in(client, agent)
    for path in ("/inbox", f"/conversations/{conversation_id}"):
        page = client.get(path)
        assert page.status_code == 200, path
        html = page.get_data(as_text=True)
        assert not [s for s in PLANTED if s.lower() in html.lower()], path


def test_a_one_word_message_does_not_rewrite_what_merely_uses_that_word():
    world = World()
    receive(world.channel, world.contact.platform_id, "open")
    ticket = db.session.get(Ticket, world.conversation.current_ticket_id)
    note = notes.add_note(ticket, world.agent, "Still open: she wrote 'Where is my order?'")
    db.session.commit()

    erasure = erase.erase_contact(world.contact)
    db.session.commit()

    assert erasure.messages == 2 and world.contact.name is None
    assert db.session.get(Note, note.id).body == "Still open: she wrote '[erased]'"
    assert db.session.get(Ticket, ticket.id).status.value == "open"

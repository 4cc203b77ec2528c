"""Contacts in the API and the console: listing, editing what agents keep (name, attributes,
notes), and for admins the export of everything held about a person and its erasure."""

from __future__ import annotations

import json
from datetime import date, timedelta

import pytest
from sqlalchemy import select

from helpdesk.accounts.models import Role
from helpdesk.audit.models import AuditEvent
from helpdesk.brands.models import Brand
from helpdesk.contacts.service import shown
from helpdesk.dm.models import Contact, Message, RequestState
from helpdesk.extensions import db
from helpdesk.media.store import media_store
from helpdesk.metrics.summary import summary
from helpdesk.tickets import notes, tags
from helpdesk.tickets.models import Ticket
from helpdesk.types import utcnow
from tests.factories import AgentFactory, ContactFactory, member
from tests.helpers import rows
from tests.helpers import webhooks as hooks
from tests.helpers.api import Client, token_for
from tests.helpers.console import post, signed_in
from tests.helpers.media import empty, scan_store, store_copies
from tests.helpers.webhooks import ACCOUNT
from tests.helpers.world import World
from tests.test_data_deletion import (
    AVATAR,
    EDITED_TEXT,
    FIRST_TEXT,
    KEPT,
    NAME,
    OTHER,
    PERSON,
    PHOTO,
    REPLY,
    USERNAME,
    _event,
    deliver,
    scan,
)

ATTRIBUTE = "ZQATTRVAL4477 gold member"
CONTACT_NOTES = "ZQNOTES5599 prefers mornings"
TICKET_NOTE = "Carrier ZQTICKETNOTE3311 called back"
TAG = "zqtag-parcel"
PERSONAL = (NAME, USERNAME, AVATAR, FIRST_TEXT, EDITED_TEXT, PHOTO, REPLY, ATTRIBUTE, CONTACT_NOTES,
            "ZQSECRET7731", "ZQEDITED8842", "ZQATTACH5521", "ZQREPLY6610")  # fmt: skip
VOLATILE = rows.PAGE_VIEW_COLUMNS | {("api_tokens", "last_used_at")}


class Planted:
    """A connected channel with a person who wrote, edited, reacted, sent a photo and got a
    reply, a ticket with a note and a tag, and another customer in the same deliveries."""

    def __init__(self) -> None:
        channel = hooks.connect_example_channel()
        self.brand = db.session.get(Brand, channel.brand_id)
        self.agent, self.manager, self.admin = AgentFactory(), AgentFactory(), AgentFactory()
        member(self.agent, self.brand, Role.AGENT)
        member(self.manager, self.brand, Role.MANAGER)
        member(self.admin, self.brand, Role.ADMIN)
        db.session.commit()
        mid = "aWdfZAG1faXRlbToxOklHTWVzc2FnZAUlEOjE3ODQxNDAwMDAwMDAwMDE6ZQ1"
        deliver(
            _event(PERSON, ACCOUNT, 1763800000000, message={"mid": mid, "text": FIRST_TEXT}),
            _event(OTHER, ACCOUNT, 1763800000001, message={"mid": "other-1", "text": KEPT}),
        )
        photo = {"mid": "photo-1", "attachments": [{"type": "image", "payload": {"url": PHOTO}}]}
        deliver(
            _event(PERSON, ACCOUNT, 1763800001000, message=photo),
            _event(PERSON, ACCOUNT, 1763800002000,
                   message_edit={"mid": mid, "text": EDITED_TEXT, "num_edit": 1}),
            _event(PERSON, ACCOUNT, 1763800003000,
                   reaction={"mid": mid, "action": "react", "reaction": "love", "emoji": "❤️"}),
            _event(ACCOUNT, PERSON, 1763800005000,
                   message={"mid": "echo-1", "text": REPLY, "is_echo": True}),
        )  # fmt: skip
        self.contact = db.session.scalar(select(Contact).where(Contact.platform_id == PERSON))
        self.other = db.session.scalar(select(Contact).where(Contact.platform_id == OTHER))
        self.contact.name, self.contact.username = NAME, USERNAME
        self.contact.avatar_url = AVATAR
        self.contact.attributes, self.contact.notes = (
            {"plan": ATTRIBUTE, "orders": 3},
            CONTACT_NOTES,
        )
        self.ticket = db.session.scalar(
            select(Ticket).join(Message, Message.ticket_id == Ticket.id).where(Message.mid == mid)
        )
        notes.add_note(self.ticket, self.agent, TICKET_NOTE)
        tags.add_tag(self.ticket, TAG, self.agent)
        db.session.commit()

    def api(self, client, role: Role = Role.ADMIN) -> Client:
        return Client(client, token_for(self.brand, role))


@pytest.fixture
def planted() -> Planted:
    return Planted()


def _contact(contact_id: int) -> Contact:
    db.session.expire_all()
    return db.session.get(Contact, contact_id)


def _state(contact_id: int) -> tuple:
    contact = _contact(contact_id)
    return contact.name, dict(contact.attributes or {}), contact.notes


# API: list, search, get ---------------------------------------------------------------------------


def test_contacts_are_listed_newest_first_in_pages_and_searched(client):
    world = World()
    made = [ContactFactory(channel=world.channel, name=f"Pat {n}", username=f"pat{n}",
                           platform_id=f"61200{n}") for n in range(4)]  # fmt: skip
    db.session.commit()
    api = Client(client, token_for(world.brand, Role.AGENT))
    seen, cursor = [], None
    while True:
        page = api.get(
            "/contacts", query_string={"limit": 2, **({"cursor": cursor} if cursor else {})}
        )
        assert page.status_code == 200
        seen += [item["id"] for item in page.get_json()["items"]]
        cursor = page.get_json()["next_cursor"]
        if cursor is None:
            break
    expected = sorted([world.contact.id] + [c.id for c in made], reverse=True)
    assert seen == expected

    def found(q: str) -> list[int]:
        return [
            item["id"] for item in api.get("/contacts", query_string={"q": q}).get_json()["items"]
        ]

    assert found("pat 2") == [made[2].id]
    assert found("@PAT3") == [made[3].id]
    assert found("612001") == [made[1].id]
    assert found("jane") == [world.contact.id]
    assert found("100%_") == []
    item = api.get(f"/contacts/{made[0].id}").get_json()
    assert set(item) == {"id", "platform_id", "username", "name", "follows_brand",
                         "followed_by_brand", "blocked", "attributes", "notes"}  # fmt: skip
    assert api.get("/contacts", query_string={"cursor": "forged"}).status_code == 422


def test_another_brands_contact_is_not_found_anywhere(client):
    world, rival = World(), World("rival")
    api = Client(client, token_for(world.brand, Role.ADMIN))
    before = rows.snapshot(VOLATILE)
    theirs = rival.contact.id
    assert api.get(f"/contacts/{theirs}").status_code == 404
    assert api.patch(f"/contacts/{theirs}", json={"notes": "x"}).status_code == 404
    assert api.get(f"/contacts/{theirs}/export").status_code == 404
    assert api.post(f"/contacts/{theirs}/erase").status_code == 404
    assert [i["id"] for i in api.get("/contacts").get_json()["items"]] == [world.contact.id]
    assert rows.changed(before, rows.snapshot(VOLATILE)) == {}

    signed_in(client, world.admin)
    assert client.get(f"/contacts/{theirs}").status_code == 404
    assert client.get(f"/contacts/{theirs}/export").status_code == 404
    assert post(client, f"/contacts/{theirs}", {"notes": "x"}).status_code == 404
    assert post(client, f"/contacts/{theirs}/erase", {"confirm": "1"}).status_code == 404
    assert _contact(theirs).name == "Jane Doe"


# API: edit ----------------------------------------------------------------------------------------


def test_an_agent_token_edits_name_attributes_and_notes_audited_without_the_text(client):
    world = World()
    api = Client(client, token_for(world.brand, Role.AGENT))
    response = api.patch(f"/contacts/{world.contact.id}", json={
        "name": "Jane Q. Doe", "attributes": {"plan": "gold", "orders": 3, "vip": True},
        "notes": "Prefers ZQPRIVATE mornings"})  # fmt: skip
    assert response.status_code == 200, response.get_json()
    body = response.get_json()
    assert body["name"] == "Jane Q. Doe" and body["notes"] == "Prefers ZQPRIVATE mornings"
    assert body["attributes"] == {"plan": "gold", "orders": 3, "vip": True}
    assert _state(world.contact.id) == ("Jane Q. Doe", body["attributes"], body["notes"])
    audit = db.session.scalar(select(AuditEvent).where(AuditEvent.action == "contact.updated"))
    assert set(audit.changes) >= {"name", "attributes", "notes"}
    assert "ZQPRIVATE" not in json.dumps(audit.changes) and "Jane" not in json.dumps(audit.changes)
    assert "gold" not in json.dumps(audit.changes)
    # Only the fields sent change; the same values again record nothing.
    assert api.patch(f"/contacts/{world.contact.id}", json={"notes": None}).status_code == 200
    assert _state(world.contact.id)[:2] == ("Jane Q. Doe", body["attributes"])
    count = len(db.session.scalars(select(AuditEvent)).all())
    api.patch(f"/contacts/{world.contact.id}", json={"name": "Jane Q. Doe"})
    assert len(db.session.scalars(select(AuditEvent)).all()) == count


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"name": "x" * 201}, "name"),
        ({"name": 5}, "name"),
        ({"notes": "n" * 10_001}, "notes"),
        ({"notes": "nul\x00"}, "notes"),
        ({"attributes": ["plan", "gold"]}, "attributes"),
        ({"attributes": {f"k{n}": n for n in range(51)}}, "attributes"),
        ({"attributes": {"k" * 65: "v"}}, "attributes"),
        ({"attributes": {"  ": "v"}}, "attributes"),
        ({"attributes": {"plan": "v" * 501}}, "attributes"),
        ({"attributes": {"plan": {"nested": 1}}}, "attributes"),
        ({"attributes": {"plan": None}}, "attributes"),
        ({"attributes": {"plan": "ok"}, "name": "y" * 201}, "name"),
    ],
)
def test_a_bad_edit_is_a_422_naming_the_field_and_changes_nothing(client, body, field):
    world = World()
    world.contact.attributes, world.contact.notes = {"kept": "yes"}, "kept notes"
    db.session.commit()
    api = Client(client, token_for(world.brand, Role.AGENT))
    before = rows.snapshot(VOLATILE)
    response = api.patch(f"/contacts/{world.contact.id}", json=body)
    assert response.status_code == 422
    assert field in response.get_json()["error"]["fields"]
    assert rows.changed(before, rows.snapshot(VOLATILE)) == {}


# API: export and erase ----------------------------------------------------------------------------


@pytest.mark.parametrize("role", [Role.AGENT, Role.MANAGER])
def test_export_and_erase_need_an_admin_token(client, planted, role):
    api = planted.api(client, role)
    before = rows.snapshot(VOLATILE)
    assert api.get(f"/contacts/{planted.contact.id}/export").status_code == 403
    assert api.post(f"/contacts/{planted.contact.id}/erase").status_code == 403
    assert rows.changed(before, rows.snapshot(VOLATILE)) == {}


def test_the_export_holds_everything_of_the_person_and_nothing_of_another(client, planted):
    response = planted.api(client).get(f"/contacts/{planted.contact.id}/export")
    assert response.status_code == 200
    assert response.headers["Content-Disposition"] == (
        f'attachment; filename="contact-{planted.contact.id}.json"'
    )
    document = response.get_json()
    text = json.dumps(document, ensure_ascii=False)
    for planted_text in (*PERSONAL, TICKET_NOTE, TAG):
        assert planted_text in text, planted_text
    assert KEPT not in text and OTHER not in text
    assert document["profile"]["name"] == NAME and document["attributes"]["orders"] == 3
    assert document["notes"] == CONTACT_NOTES and document["csat_answers"] == []
    assert "CSAT" in document["about"]["csat_answers"]
    edited = [m for m in document["messages"] if m["edit_history"]]
    assert edited and edited[0]["edit_history"][0]["previous_text"] == FIRST_TEXT
    assert edited[0]["reactions"][0]["emoji"] == "❤️"
    assert PHOTO in [link for m in document["messages"] for link in m["media_links"]]
    ticket = document["tickets"][0]
    assert TAG in ticket["tags"] and ticket["notes"][0]["body"] == TICKET_NOTE and ticket["events"]
    raw = document["raw_webhook_deliveries"]
    assert len(raw) == 2 and all(e["event"]["sender"]["id"] in (PERSON, ACCOUNT)
                                 for d in raw for e in d["events"])  # fmt: skip
    audit = db.session.scalar(select(AuditEvent).where(AuditEvent.action == "contact.exported"))
    assert audit.target_id == planted.contact.id and audit.changes == {}

    other = planted.api(client).get(f"/contacts/{planted.other.id}/export").get_data(as_text=True)
    assert KEPT in other and not [s for s in PERSONAL if s in other]


def _figures(brand: Brand) -> dict:
    today = utcnow().date()
    return summary(brand, date(2025, 11, 1), today + timedelta(days=1))


def test_erase_through_the_api_leaves_nothing_of_the_person_and_keeps_tickets_and_figures(
    client, planted
):
    empty(media_store())
    keys = store_copies("ZQATTACH5521")  # the photo, copied into the media store
    assert keys and scan_store(media_store(), PERSONAL)
    assert {hit.split(": ")[0] for hit in scan(PERSONAL)} >= {
        "contacts", "messages", "message_edits", "webhook_events", "media_objects"}  # fmt: skip
    tickets = [(t.id, t.status, t.opened_at) for t in db.session.scalars(
        select(Ticket).order_by(Ticket.id))]  # fmt: skip
    figures = _figures(planted.brand)

    response = planted.api(client).post(f"/contacts/{planted.contact.id}/erase")

    assert response.status_code == 202
    body = response.get_json()
    assert body["erased"] is True and body["messages"] == 3 and body["raw_deliveries"] == 2
    assert scan(PERSONAL) == []
    assert scan_store(media_store(), PERSONAL, keys) == [], "no copy, thumbnail or key left"
    assert scan([KEPT]), "the other customer's data stays"
    assert [(t.id, t.status, t.opened_at) for t in db.session.scalars(
        select(Ticket).order_by(Ticket.id))] == tickets  # fmt: skip
    assert _figures(planted.brand) == figures
    assert _state(planted.contact.id) == (None, {}, None)
    audit = db.session.scalar(select(AuditEvent).where(AuditEvent.action == "contact.erased"))
    assert audit.changes["reason"] == [None, "erased by an admin"]
    assert audit.actor_type == "token"


# Console ------------------------------------------------------------------------------------------


def _form(contact: Contact, **values) -> dict:
    """The page's form as an agent would send it: the current rows plus `rows`."""
    attribute_rows = values.pop("rows", list((contact.attributes or {}).items()))
    data = {"name": contact.name or "", "notes": contact.notes or "",
            "attr_rows": str(len(attribute_rows))}  # fmt: skip
    for n, (key, value) in enumerate(attribute_rows):
        data[f"attr_key_{n}"], data[f"attr_value_{n}"] = key, shown(value)
    data.update(values)
    return data


def test_the_contact_page_shows_profile_attributes_notes_conversations_and_tickets(
    app, client, planted
):
    signed_in(client, planted.agent)
    page = client.get(f"/contacts/{planted.contact.id}")
    assert page.status_code == 200
    html = page.get_data(as_text=True)
    for text in (NAME, f"@{USERNAME}", ATTRIBUTE, CONTACT_NOTES, f"Ticket #{planted.ticket.id}",
                 f"/conversations/{planted.ticket.conversation_id}", "Does not follow you",
                 "No answers to a satisfaction survey"):  # fmt: skip
        assert text in html, text
    assert "Download everything we hold" not in html and "Erase this person" not in html
    conversation = client.get(f"/conversations/{planted.ticket.conversation_id}")
    assert f'href="/contacts/{planted.contact.id}"' in conversation.get_data(as_text=True)

    admin = app.test_client()
    signed_in(admin, planted.admin)
    html = admin.get(f"/contacts/{planted.contact.id}").get_data(as_text=True)
    assert (
        "Download everything we hold (JSON)" in html
        and "I understand this cannot be undone" in html
    )


def test_an_agent_adds_changes_and_removes_attributes_and_edits_notes(client, planted):
    signed_in(client, planted.agent)
    contact = planted.contact
    data = _form(contact, rows=[("plan", "platinum"), ("orders", "3"), ("city", "Leeds")],
                 notes="Call after 5pm", attr_remove_1="1")  # fmt: skip
    response = post(client, f"/contacts/{contact.id}", data)
    assert response.status_code == 303
    assert _state(contact.id) == (NAME, {"plan": "platinum", "city": "Leeds"}, "Call after 5pm")
    # A value shown unchanged keeps its type.
    _contact(contact.id).attributes = {"orders": 3, "vip": True}
    db.session.commit()
    response = post(client, f"/contacts/{contact.id}", _form(_contact(contact.id), name="Z"))
    assert response.status_code == 303
    assert _state(contact.id) == ("Z", {"orders": 3, "vip": True}, "Call after 5pm")


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"rows": [("plan", "v" * 501)]}, "can be at most 500 characters"),
        ({"rows": [("plan", "a"), ("plan", "b")]}, "Two attributes are named"),
        ({"rows": [("", "orphan value")]}, "Give each value a name"),
        ({"rows": [("k" * 65, "v")]}, "needs 1 to 64 characters"),
        ({"notes": "n" * 10_001}, "at most 10,000 characters"),
        ({"name": "x" * 201}, "at most 200 characters"),
    ],
)
def test_a_bad_console_edit_shows_the_message_by_the_field_and_changes_nothing(
    client, planted, change, message
):
    signed_in(client, planted.agent)
    client.get(f"/contacts/{planted.contact.id}")
    before = rows.snapshot()
    response = post(client, f"/contacts/{planted.contact.id}", _form(planted.contact, **change))
    assert response.status_code == 422
    html = response.get_data(as_text=True)
    assert message in html and 'class="field-error"' in html
    assert rows.changed(before, rows.snapshot()) == {}


def test_an_admin_downloads_the_export_from_the_page(client, planted):
    signed_in(client, planted.admin)
    response = client.get(f"/contacts/{planted.contact.id}/export")
    assert response.status_code == 200
    assert "attachment" in response.headers["Content-Disposition"]
    document = json.loads(response.get_data(as_text=True))
    assert document["profile"]["id"] == planted.contact.id and FIRST_TEXT in json.dumps(document)


@pytest.mark.parametrize("who", ["agent", "manager"])
def test_below_admin_the_console_refuses_export_and_erase(client, planted, who):
    signed_in(client, getattr(planted, who))
    before = rows.snapshot()
    assert client.get(f"/contacts/{planted.contact.id}/export").status_code == 403
    response = post(client, f"/contacts/{planted.contact.id}/erase", {"confirm": "1"})
    assert response.status_code == 403
    assert rows.changed(before, rows.snapshot()) == {}


def test_erase_from_the_page_needs_the_confirmation_box(client, planted):
    signed_in(client, planted.admin)
    client.get(f"/contacts/{planted.contact.id}")
    before = rows.snapshot()
    refused = post(client, f"/contacts/{planted.contact.id}/erase", {})
    assert refused.status_code == 422
    assert "Tick the box to confirm" in refused.get_data(as_text=True)
    assert rows.changed(before, rows.snapshot()) == {}

    done = post(client, f"/contacts/{planted.contact.id}/erase", {"confirm": "1"})
    assert done.status_code == 303
    assert scan(PERSONAL) == []
    assert _state(planted.contact.id) == (None, {}, None)
    page = client.get(f"/contacts/{planted.contact.id}")
    assert page.status_code == 200 and "data was erased" in page.get_data(as_text=True)


def test_someone_known_only_from_hidden_requests_is_for_admins(app, client):
    world = World()
    world.conversation.request_state = RequestState.HIDDEN
    db.session.commit()
    agent_api = Client(client, token_for(world.brand, Role.AGENT))
    assert agent_api.get("/contacts").get_json()["items"] == []
    assert agent_api.get(f"/contacts/{world.contact.id}").status_code == 404
    assert agent_api.patch(f"/contacts/{world.contact.id}", json={"notes": "x"}).status_code == 404
    admin_api = Client(client, token_for(world.brand, Role.ADMIN))
    assert [c["id"] for c in admin_api.get("/contacts").get_json()["items"]] == [world.contact.id]
    signed_in(client, world.agent)
    assert client.get(f"/contacts/{world.contact.id}").status_code == 404
    admin = app.test_client()
    signed_in(admin, world.admin)
    assert admin.get(f"/contacts/{world.contact.id}").status_code == 200


def test_a_form_without_the_attribute_rows_leaves_the_attributes_alone(client, planted):
    signed_in(client, planted.agent)
    response = post(client, f"/contacts/{planted.contact.id}", {"notes": "Only the notes"})
    assert response.status_code == 303
    assert _state(planted.contact.id) == (
        NAME, {"plan": ATTRIBUTE, "orders": 3}, "Only the notes")  # fmt: skip
    before = rows.snapshot()
    assert post(client, f"/contacts/{planted.contact.id}", {"attr_rows": "x"}).status_code == 400
    assert rows.changed(before, rows.snapshot()) == {}

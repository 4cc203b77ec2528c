"""The canned replies settings page: an agent keeps personal replies, a manager also the brand's
shared ones; a preview fills the body for a sample contact; a refused reply changes nothing."""

from __future__ import annotations

import html

import pytest
from sqlalchemy import select

from helpdesk.audit.models import AuditEvent
from helpdesk.canned import service as canned
from helpdesk.canned.models import CannedReply
from helpdesk.extensions import db
from tests.helpers.console import post, signed_in
from tests.helpers.rows import changed, snapshot
from tests.helpers.world import World

PAGE = "/settings/canned-replies"


@pytest.fixture
def world(app):
    return World()


def replies() -> list[tuple]:
    db.session.expire_all()
    rows = db.session.scalars(select(CannedReply).order_by(CannedReply.id))
    return [(r.shortcode, r.title, r.body, r.owner_id, r.attachments) for r in rows]


def audit_actions() -> list[str]:
    db.session.expire_all()
    return list(db.session.scalars(select(AuditEvent.action).order_by(AuditEvent.id)))


def text_of(response) -> str:
    return html.unescape(response.get_data(as_text=True))


def new_reply(client, **fields):
    data = {"shortcode": "thanks", "title": "Thanks", "body": "Thanks {{ contact.first_name }}!"}
    return post(client, PAGE, {**data, **fields})


def test_an_agent_creates_a_personal_reply_and_sees_it_listed(client, world):
    signed_in(client, world.agent)
    page = client.get(PAGE)
    assert page.status_code == 200 and 'name="shared"' not in page.get_data(as_text=True)

    response = new_reply(client)

    assert response.status_code == 303
    assert replies() == [
        ("thanks", "Thanks", "Thanks {{ contact.first_name }}!", world.agent.id, [])
    ]
    listing = text_of(client.get(PAGE))
    assert "/thanks" in listing and "Personal" in listing
    assert audit_actions() == []  # a personal reply stays out of the brand's audit log


def test_an_agent_cannot_share_a_reply_by_forging_the_checkbox(client, world):
    signed_in(client, world.agent)
    before = snapshot()

    response = new_reply(client, shared="1")

    assert response.status_code == 403
    assert changed(before, snapshot()) == {}


def test_a_manager_creates_a_shared_reply_with_attachments_and_it_is_audited(client, world):
    signed_in(client, world.manager)
    assert 'name="shared"' in client.get(PAGE).get_data(as_text=True)

    response = new_reply(
        client, shared="1", attachments="https://cdn.example/a.png\nfile https://cdn.example/b.pdf"
    )

    assert response.status_code == 303
    reply = db.session.scalar(select(CannedReply))
    assert reply.owner_id is None
    assert reply.attachments == [
        {"type": "image", "url": "https://cdn.example/a.png"},
        {"type": "file", "url": "https://cdn.example/b.pdf"},
    ]
    event = db.session.scalar(select(AuditEvent))
    assert (event.action, event.target_type, event.target_id) == (
        "canned_reply.created",
        "canned_reply",
        reply.id,
    )
    assert event.changes["shortcode"] == [None, "thanks"] and event.changes["shared"] == [
        None,
        True,
    ]
    assert event.actor_id == world.manager.id


def test_preview_fills_the_sample_contact_and_saves_nothing(client, world):
    signed_in(client, world.agent)
    before = snapshot()
    body = (
        "Hi {{ contact.first_name }} (@{{ contact.username }}), {{ agent.first_name }} here. " * 20
    )

    response = new_reply(client, body=body, action="preview")

    assert response.status_code == 200
    page = text_of(response)
    assert "Hi Jane (@jane.doe), Acme here." in page  # the agent is "Acme Agent"
    assert "Jane Doe" in page
    assert body in page  # the typed body is kept in the form
    assert changed(before, snapshot()) == {}


def test_the_edit_page_shows_the_preview_of_the_saved_body(client, world):
    reply = canned.create(world.brand, world.agent, "hello", "Hello", "Hello {{ contact.name }}")
    db.session.commit()
    signed_in(client, world.agent)

    page = client.get(f"{PAGE}/{reply.id}")

    assert page.status_code == 200 and "Hello Jane Doe" in text_of(page)


def test_a_preview_of_a_forbidden_template_is_refused_next_to_the_body(client, world):
    signed_in(client, world.agent)

    response = new_reply(client, body="{{ ''.__class__ }}", action="preview")

    assert response.status_code == 422
    assert 'id="body-error"' in response.get_data(as_text=True)
    assert "cannot reach" in text_of(response)


@pytest.mark.parametrize(
    ("fields", "field", "message"),
    [
        ({"shortcode": "taken"}, "shortcode", "/taken is already used by another reply"),
        ({"body": "   "}, "body", "a canned reply cannot be empty"),
        ({"body": "{{ ''.__class__ }}"}, "body", "canned replies cannot reach"),
        ({"body": "{% for x in y %}{{ x }}{% endfor %}"}, "body", "a {% for %} tag"),
        ({"body": "Hi {{ contact.email }}"}, "body", "the placeholders are contact.first_name"),
        ({"shortcode": "no spaces"}, "shortcode", "lowercase letters, digits"),
        ({"attachments": "ftp://example.com/a.png"}, "attachments", "must start with http"),
    ],
)
def test_a_refused_reply_is_explained_next_to_its_field_and_nothing_changes(
    client, world, fields, field, message
):
    canned.create(world.brand, world.manager, "taken", "Taken", "Already here", shared=True)
    db.session.commit()
    signed_in(client, world.manager)
    before = snapshot()

    response = new_reply(client, **fields)

    assert response.status_code == 422
    body = response.get_data(as_text=True)
    assert f'id="{field}-error"' in body
    error = body.split(f'id="{field}-error"', 1)[1].split("</p>", 1)[0]
    assert message in html.unescape(error)
    assert changed(before, snapshot()) == {}


def test_a_refused_edit_changes_nothing(client, world):
    canned.create(world.brand, world.agent, "taken", "Taken", "Already here")
    reply = canned.create(world.brand, world.agent, "mine", "Mine", "Mine {{ agent.name }}")
    db.session.commit()
    signed_in(client, world.agent)
    before = snapshot()

    response = post(client, f"{PAGE}/{reply.id}", {"shortcode": "taken", "title": "X", "body": "x"})

    assert response.status_code == 422
    assert "/taken is already used by another reply" in text_of(response)
    assert changed(before, snapshot()) == {}


def test_an_agent_edits_and_deletes_their_own_reply(client, world):
    reply = canned.create(world.brand, world.agent, "mine", "Mine", "Mine")
    db.session.commit()
    signed_in(client, world.agent)

    edited = post(
        client,
        f"{PAGE}/{reply.id}",
        {"shortcode": "/Mine2", "title": "", "body": "Hi {{ contact.first_name }}"},
    )
    assert edited.status_code == 303
    assert replies() == [("mine2", "mine2", "Hi {{ contact.first_name }}", world.agent.id, [])]

    deleted = post(client, f"{PAGE}/{reply.id}/delete")
    assert deleted.status_code == 303 and replies() == []


def test_another_agents_personal_reply_is_not_found(client, world):
    theirs = canned.create(world.brand, world.manager, "theirs", "Theirs", "Private")
    db.session.commit()
    signed_in(client, world.agent)
    before = snapshot()

    assert client.get(f"{PAGE}/{theirs.id}").status_code == 404
    assert post(client, f"{PAGE}/{theirs.id}", {"shortcode": "x", "body": "x"}).status_code == 404
    assert post(client, f"{PAGE}/{theirs.id}/delete").status_code == 404
    assert "/theirs" not in client.get(PAGE).get_data(as_text=True)
    assert changed(before, snapshot()) == {}


def test_another_brands_reply_is_not_found(client, world):
    other = World("other")
    shared = canned.create(other.brand, other.manager, "foreign", "Foreign", "Hi", shared=True)
    db.session.commit()
    signed_in(client, world.admin)

    assert client.get(f"{PAGE}/{shared.id}").status_code == 404
    assert post(client, f"{PAGE}/{shared.id}/delete").status_code == 404
    assert db.session.get(CannedReply, shared.id) is not None


def test_an_agent_sees_a_shared_reply_read_only_and_cannot_change_it(client, world):
    shared = canned.create(
        world.brand, world.manager, "policy", "Policy", "Our policy", shared=True
    )
    db.session.commit()
    signed_in(client, world.agent)

    page = client.get(f"{PAGE}/{shared.id}")
    assert page.status_code == 200
    assert 'name="body"' not in page.get_data(as_text=True) and "Our policy" in text_of(page)
    before = snapshot()
    assert post(client, f"{PAGE}/{shared.id}", {"shortcode": "p", "body": "x"}).status_code == 403
    assert post(client, f"{PAGE}/{shared.id}/delete").status_code == 403
    assert changed(before, snapshot()) == {}


def test_a_manager_edits_and_deletes_a_shared_reply_and_both_are_audited(client, world):
    shared = canned.create(world.brand, world.manager, "policy", "Policy", "Old", shared=True)
    db.session.commit()
    signed_in(client, world.manager)

    edited = post(
        client,
        f"{PAGE}/{shared.id}",
        {"shortcode": "policy", "title": "Policy", "body": "New", "shared": "1"},
    )
    assert edited.status_code == 303
    assert post(client, f"{PAGE}/{shared.id}/delete").status_code == 303

    events = db.session.scalars(select(AuditEvent).order_by(AuditEvent.id)).all()
    assert [e.action for e in events] == [
        "canned_reply.created",
        "canned_reply.updated",
        "canned_reply.deleted",
    ]
    assert events[1].changes == {"body": ["Old", "New"]}
    assert events[2].changes["shortcode"] == ["policy", None]

"""Tags as a setting, on the console page and through the API: name, colour and the keywords that
tag new messages; a refused change is explained next to its field and changes nothing."""

from __future__ import annotations

import html
import re

import pytest
from sqlalchemy import select

from helpdesk.accounts.models import Role
from helpdesk.audit.models import AuditEvent
from helpdesk.extensions import db
from helpdesk.tickets import tags
from helpdesk.tickets.models import Tag, TagRule, Ticket, TicketTag
from tests.helpers.api import Client, error_of, token_for
from tests.helpers.console import post, signed_in
from tests.helpers.rows import PAGE_VIEW_COLUMNS, changed, snapshot
from tests.helpers.world import World, receive

PAGE = "/settings/tags"
# Using a token marks when it was last used: reading, not a change.
TOKEN_USE = PAGE_VIEW_COLUMNS | {("api_tokens", "last_used_at")}


@pytest.fixture
def world(app):
    return World()


def tag_rows() -> list[tuple]:
    db.session.expire_all()
    found = []
    for tag in db.session.scalars(select(Tag).order_by(Tag.id)):
        keywords = db.session.scalars(
            select(TagRule.keyword).where(TagRule.tag_id == tag.id).order_by(TagRule.keyword)
        )
        found.append((tag.name, tag.colour, list(keywords)))
    return found


def audit_events() -> list[AuditEvent]:
    db.session.expire_all()
    return list(db.session.scalars(select(AuditEvent).order_by(AuditEvent.id)))


def field_error(response, field: str) -> str:
    """The message shown under the field (any form's: the ids say which)."""
    found = re.search(rf'id="[^"]*-{field}-error"[^>]*>(.*?)</p>', response.get_data(as_text=True))
    assert found, response.get_data(as_text=True)[:2000]
    return html.unescape(found.group(1))


def unchanged_since(before) -> dict:
    return changed(before, snapshot(TOKEN_USE))


# The settings page --------------------------------------------------------------------------------


def test_a_manager_creates_a_tag_with_keywords_that_tag_new_messages(client, world):
    signed_in(client, world.manager)

    response = post(
        client,
        PAGE,
        {"name": " Refund ", "colour": "#FF0000", "keywords": "refund,\nmoney back, Refund"},
    )

    assert response.status_code == 303
    assert tag_rows() == [("Refund", "#ff0000", ["money back", "refund"])]
    receive(world.channel, world.contact.platform_id, "I want my money back please")
    tagged = db.session.scalars(select(Tag.name).join(TicketTag, TicketTag.tag_id == Tag.id))
    assert list(tagged) == ["Refund"]
    page = client.get(PAGE).get_data(as_text=True)
    assert 'type="color"' in page and "money back" in page
    [event] = audit_events()
    assert event.action == "tag.created" and event.target_type == "tag"
    assert event.changes["keywords"] == [None, ["refund", "money back"]]


def test_a_manager_renames_recolours_and_changes_keywords(client, world):
    tag = tags.create_tag(world.brand, None, "Refund")
    tags.add_tag_rule(world.brand, None, "refund", "Refund")
    db.session.commit()
    signed_in(client, world.manager)

    response = post(
        client,
        f"{PAGE}/{tag.id}",
        {"name": "Refunds", "colour": "#00aa00", "keywords": "refund\nchargeback"},
    )

    assert response.status_code == 303
    assert tag_rows() == [("Refunds", "#00aa00", ["chargeback", "refund"])]
    [event] = audit_events()
    assert event.action == "tag.updated"
    assert event.changes == {
        "name": ["Refund", "Refunds"],
        "colour": ["#6b7280", "#00aa00"],
        "keywords": [["refund"], ["refund", "chargeback"]],
    }


def test_deleting_a_tag_untags_its_tickets_and_is_audited(client, world):
    ticket_id = world.conversation.current_ticket_id
    ticket = db.session.get(Ticket, ticket_id)
    tag = tags.add_tag(ticket, "VIP", None)
    tags.add_tag_rule(world.brand, None, "urgent", "VIP")
    db.session.commit()
    signed_in(client, world.manager)
    assert ">1</td>" in client.get(PAGE).get_data(as_text=True)  # one ticket carries it

    response = post(client, f"{PAGE}/{tag.id}/delete")

    assert response.status_code == 303
    assert tag_rows() == []
    assert db.session.scalars(select(TicketTag)).all() == []
    [event] = audit_events()
    assert event.action == "tag.deleted"
    assert event.changes["keywords"] == [["urgent"], None]


@pytest.mark.parametrize(
    ("data", "field", "message"),
    [
        ({"name": "vip"}, "name", "another tag is already called 'VIP'"),
        ({"name": "   "}, "name", "a tag name has 1 to 64 characters"),
        ({"name": "New", "colour": "red"}, "colour", "a colour is written #rrggbb"),
        ({"name": "New", "keywords": "ok, " + "x" * 101}, "keywords", "1 to 100 characters"),
    ],
)
def test_a_refused_new_tag_is_explained_next_to_its_field(client, world, data, field, message):
    tags.create_tag(world.brand, None, "VIP")
    db.session.commit()
    signed_in(client, world.manager)
    before = snapshot()

    response = post(client, PAGE, {"colour": "#123456", "keywords": "", **data})

    assert response.status_code == 422
    assert message in field_error(response, field)
    assert 'id="new-tag-' + field + '-error"' in response.get_data(as_text=True)
    assert changed(before, snapshot()) == {}


def test_a_refused_rename_is_shown_in_that_tags_row_and_changes_nothing(client, world):
    tags.create_tag(world.brand, None, "VIP")
    other = tags.create_tag(world.brand, None, "Refund")
    db.session.commit()
    signed_in(client, world.manager)
    before = snapshot()

    response = post(client, f"{PAGE}/{other.id}", {"name": "Vip", "colour": "#123456"})

    assert response.status_code == 422
    assert f'id="tag-{other.id}-name-error"' in response.get_data(as_text=True)
    assert "already called 'VIP'" in field_error(response, "name")
    assert changed(before, snapshot()) == {}


def test_an_agent_cannot_open_or_change_tags(client, world):
    tag = tags.create_tag(world.brand, None, "VIP")
    db.session.commit()
    signed_in(client, world.agent)
    before = snapshot()

    assert client.get(PAGE).status_code == 403
    assert post(client, PAGE, {"name": "New"}).status_code == 403
    assert post(client, f"{PAGE}/{tag.id}", {"name": "Renamed"}).status_code == 403
    assert post(client, f"{PAGE}/{tag.id}/delete").status_code == 403
    assert changed(before, snapshot()) == {}


def test_another_brands_tag_is_not_found(client, world):
    other = World("other")
    foreign = tags.create_tag(other.brand, None, "Foreign")
    db.session.commit()
    signed_in(client, world.admin)
    before = snapshot()

    assert post(client, f"{PAGE}/{foreign.id}", {"name": "Mine"}).status_code == 404
    assert post(client, f"{PAGE}/{foreign.id}/delete").status_code == 404
    assert changed(before, snapshot()) == {}


# The API ------------------------------------------------------------------------------------------


def api(client, brand, role: Role) -> Client:
    return Client(client, token_for(brand, role))


def test_api_tags_crud_with_keywords(client, world):
    manager = api(client, world.brand, Role.MANAGER)

    created = manager.post("/tags", json={"name": "Refund", "keywords": ["refund", "money back"]})
    assert created.status_code == 201
    tag = created.get_json()
    assert tag == {
        "id": tag["id"],
        "name": "Refund",
        "colour": "#6b7280",
        "keywords": ["refund", "money back"],
    }
    assert manager.get(f"/tags/{tag['id']}").get_json() == tag
    listed = manager.get("/tags").get_json()
    assert listed == {"items": [tag], "next_cursor": None}

    patched = manager.patch(
        f"/tags/{tag['id']}", json={"colour": "#ABCDEF", "keywords": ["refund"]}
    )
    assert patched.status_code == 200
    assert patched.get_json() == {**tag, "colour": "#abcdef", "keywords": ["refund"]}

    assert manager.delete(f"/tags/{tag['id']}").status_code == 204
    assert manager.get(f"/tags/{tag['id']}").status_code == 404
    events = audit_events()
    assert [e.action for e in events] == ["tag.created", "tag.updated", "tag.deleted"]
    assert {e.actor_type for e in events} == {"token"}


def test_api_tags_are_read_by_any_token_and_changed_by_managers(client, world):
    tag = tags.create_tag(world.brand, None, "VIP")
    db.session.commit()
    agent = api(client, world.brand, Role.AGENT)
    before = snapshot(TOKEN_USE)

    assert agent.get("/tags").status_code == 200
    assert agent.get(f"/tags/{tag.id}").status_code == 200
    for refused in (
        agent.post("/tags", json={"name": "New"}),
        agent.patch(f"/tags/{tag.id}", json={"name": "Renamed"}),
        agent.delete(f"/tags/{tag.id}"),
    ):
        assert refused.status_code == 403 and error_of(refused)["code"] == "forbidden"
    assert unchanged_since(before) == {}


def test_api_refuses_a_duplicate_name_and_a_bad_colour(client, world):
    tags.create_tag(world.brand, None, "VIP")
    other = tags.create_tag(world.brand, None, "Refund")
    db.session.commit()
    admin = api(client, world.brand, Role.ADMIN)
    before = snapshot(TOKEN_USE)

    duplicate = admin.post("/tags", json={"name": "vip"})
    assert duplicate.status_code == 409
    assert error_of(duplicate)["code"] == "already_exists"
    assert "name" in error_of(duplicate)["fields"]
    renamed = admin.patch(f"/tags/{other.id}", json={"name": "VIP"})
    assert renamed.status_code == 409
    colour = admin.patch(f"/tags/{other.id}", json={"colour": "blue"})
    assert colour.status_code == 422 and "colour" in error_of(colour)["fields"]
    assert unchanged_since(before) == {}


def test_api_another_brands_tag_is_not_found(client, world):
    other = World("other")
    foreign = tags.create_tag(other.brand, None, "Foreign")
    db.session.commit()
    admin = api(client, world.brand, Role.ADMIN)
    before = snapshot(TOKEN_USE)

    for response in (
        admin.get(f"/tags/{foreign.id}"),
        admin.patch(f"/tags/{foreign.id}", json={"name": "Mine"}),
        admin.delete(f"/tags/{foreign.id}"),
    ):
        assert response.status_code == 404
    assert [t["name"] for t in admin.get("/tags").get_json()["items"]] == []
    assert unchanged_since(before) == {}

"""The SLA policies settings page: policies in matching order, moved up and down, created,
edited and deleted with an audit row each, and a preview per policy that agrees with the due
times the SLA code stores on tickets. A refused target changes nothing."""

from __future__ import annotations

import html
import re
from datetime import UTC, datetime

import pytest
from sqlalchemy import select

from helpdesk.audit.models import AuditEvent
from helpdesk.extensions import db
from helpdesk.sla import service as sla
from helpdesk.sla.models import SlaPolicy
from helpdesk.sla.preview import local_time
from helpdesk.tickets import tags
from helpdesk.tickets.models import Ticket
from helpdesk.web.settings import sla_policies as page_module
from tests.helpers.console import post, signed_in
from tests.helpers.rows import changed, snapshot
from tests.helpers.world import World, known_contact, receive

PAGE = "/settings/sla-policies"


@pytest.fixture
def world(app):
    return World()


def text_of(response) -> str:
    return html.unescape(response.get_data(as_text=True))


def field_error(page: str, field_id: str) -> str:
    match = re.search(rf'<p class="field-error" id="{field_id}-error"[^>]*>([^<]*)</p>', page)
    assert match, f"no error next to {field_id}"
    return match.group(1)


def order(world) -> list[str]:
    db.session.expire_all()
    return [policy.name for policy in sla.list_policies(world.brand.id)]


def events(action: str) -> list[AuditEvent]:
    db.session.expire_all()
    query = select(AuditEvent).where(AuditEvent.action == action).order_by(AuditEvent.id)
    return list(db.session.scalars(query))


def policy(world, name: str, **targets: int) -> SlaPolicy:
    position = sla.list_policies(world.brand.id)
    made = sla.create_policy(
        world.brand, None, name, len(position), {}, targets or {"resolution_min": 60}
    )
    db.session.commit()
    return made


def form(**fields) -> dict[str, str]:
    values = {"name": "Urgent", "priority": "urgent", "first_response_min": "15"}
    values |= {"resolution_min": "240", "business_hours": "1"}
    return {**values, **fields}


@pytest.mark.parametrize("who", ["manager", "admin"])
def test_the_page_opens_for_a_manager_and_an_admin(client, world, who):
    policy(world, "Standard")
    signed_in(client, getattr(world, who))
    page = client.get(PAGE)
    assert page.status_code == 200
    assert "The order is the matching order" in text_of(page) and "Standard" in text_of(page)


def test_an_agent_is_refused_the_page_and_its_forms(client, world):
    standard = policy(world, "Standard")
    signed_in(client, world.agent)
    before = snapshot()
    assert client.get(PAGE).status_code == 403
    assert post(client, PAGE, form()).status_code == 403
    assert post(client, f"{PAGE}/{standard.id}/delete").status_code == 403
    assert changed(before, snapshot()) == {}


def test_a_policy_is_created_last_with_its_conditions_and_audited(client, world):
    policy(world, "Standard")
    vip = tags.create_tag(world.brand, None, "vip")
    db.session.commit()
    signed_in(client, world.manager)

    response = post(
        client, PAGE, form(tag_id=str(vip.id), channel_id=str(world.channel.id), resolution_min="")
    )

    assert response.status_code == 303
    assert order(world) == ["Standard", "Urgent"]
    created = db.session.scalars(select(SlaPolicy).where(SlaPolicy.name == "Urgent")).one()
    assert (created.priority, created.tag_id, created.channel_id) == (
        "urgent",
        vip.id,
        world.channel.id,
    )
    assert (created.first_response_min, created.resolution_min) == (15, None)
    assert created.business_hours is True
    event = events("sla_policy.created")[-1]
    assert event.target_id == created.id and event.actor_id == world.manager.id
    assert event.changes["first_response_min"] == [None, 15]
    assert event.changes["name"] == [None, "Urgent"]
    assert "Policy “Urgent” added" in text_of(client.get(PAGE))


def test_a_policy_is_edited_and_the_audit_keeps_before_and_after(client, world):
    standard = policy(world, "Standard", first_response_min=60)
    signed_in(client, world.manager)

    response = post(
        client,
        f"{PAGE}/{standard.id}",
        {"name": "Standard", "first_response_min": "30", "next_response_min": "120"},
    )

    assert response.status_code == 303
    db.session.expire_all()
    saved = db.session.get(SlaPolicy, standard.id)
    assert (saved.first_response_min, saved.next_response_min) == (30, 120)
    assert saved.business_hours is False  # the box was left unticked
    (event,) = events("sla_policy.updated")
    assert event.changes == {
        "business_hours": [True, False],
        "first_response_min": [60, 30],
        "next_response_min": [None, 120],
    }


def test_a_policy_is_deleted_and_audited(client, world):
    standard = policy(world, "Standard")
    signed_in(client, world.manager)
    assert post(client, f"{PAGE}/{standard.id}/delete").status_code == 303
    assert order(world) == []
    (event,) = events("sla_policy.deleted")
    assert event.target_id == standard.id and event.changes["name"] == ["Standard", None]


def test_policies_move_up_and_down_in_matching_order(client, world):
    first, second, third = policy(world, "A"), policy(world, "B"), policy(world, "C")
    signed_in(client, world.manager)

    assert post(client, f"{PAGE}/{first.id}/down").status_code == 303
    assert order(world) == ["B", "A", "C"]
    assert post(client, f"{PAGE}/{third.id}/up").status_code == 303
    assert order(world) == ["B", "C", "A"]
    before = snapshot()
    assert post(client, f"{PAGE}/{second.id}/up").status_code == 303  # already first
    assert changed(before, snapshot()) == {}
    assert "“B” is already first." in text_of(client.get(PAGE))

    moved = events("sla_policy.moved")
    assert [event.target_id for event in moved] == [first.id, third.id]
    assert moved[0].changes["order"] == [["A", "B", "C"], ["B", "A", "C"]]
    assert moved[0].changes["position"] == [0, 1]


def test_moving_policies_with_equal_positions_makes_the_new_order_stick(client, world):
    for name in ("A", "B", "C"):
        sla.create_policy(world.brand, None, name, 0, {}, {"resolution_min": 60})
    db.session.commit()
    c = db.session.scalars(select(SlaPolicy).where(SlaPolicy.name == "C")).one()
    signed_in(client, world.manager)
    assert post(client, f"{PAGE}/{c.id}/up").status_code == 303
    assert order(world) == ["A", "C", "B"]


def test_the_first_matching_policy_is_the_one_moved_to_the_top(client, world):
    slow, fast = (
        policy(world, "Slow", first_response_min=600),
        policy(world, "Fast", first_response_min=5),
    )
    ticket = db.session.scalars(select(Ticket)).one()
    assert ticket.sla_policy_id == slow.id
    signed_in(client, world.manager)
    post(client, f"{PAGE}/{fast.id}/up")
    db.session.expire_all()
    assert db.session.get(Ticket, ticket.id).sla_policy_id == fast.id


@pytest.mark.parametrize("field", ["first_response_min", "next_response_min", "resolution_min"])
@pytest.mark.parametrize("value", ["0", "-5"])
def test_a_target_of_zero_or_less_is_refused_next_to_it(client, world, field, value):
    standard = policy(world, "Standard", first_response_min=60)
    signed_in(client, world.manager)
    before = snapshot()

    created = post(client, PAGE, form(**{field: value}))
    edited = post(client, f"{PAGE}/{standard.id}", {"name": "Standard", field: value})

    message = "A target must be a positive number of minutes (1 or more)."
    assert created.status_code == 422 and edited.status_code == 422
    assert field_error(text_of(created), f"pnew-{field}") == message
    assert field_error(text_of(edited), f"p{standard.id}-{field}") == message
    assert f'value="{value}"' in text_of(edited)
    assert changed(before, snapshot()) == {}


@pytest.mark.parametrize(
    ("fields", "field_id", "message"),
    [
        (
            {"first_response_min": "", "resolution_min": ""},
            "targets",
            "Set at least one target",
        ),
        ({"resolution_min": "soon"}, "resolution_min", "Write a whole number of minutes"),
        ({"name": "  "}, "name", "A policy needs a name."),
        ({"priority": "blocker"}, "priority", "Unknown priority"),
        ({"channel_id": "999999"}, "channel_id", "The brand has no channel"),
    ],
)
def test_other_bad_policies_are_refused_next_to_their_field(
    client, world, fields, field_id, message
):
    signed_in(client, world.manager)
    before = snapshot()
    response = post(client, PAGE, form(**fields))
    assert response.status_code == 422
    assert message in field_error(text_of(response), f"pnew-{field_id}")
    assert changed(before, snapshot()) == {}


def test_another_brands_policy_is_not_found(client, world):
    other = World("other")
    theirs = policy(other, "Theirs")
    signed_in(client, world.manager)
    before = snapshot()
    for path in ("", "/delete", "/up", "/down"):
        response = post(client, f"{PAGE}/{theirs.id}{path}", form())
        assert response.status_code == 404, path
    assert changed(before, snapshot()) == {}
    assert "Theirs" not in text_of(client.get(PAGE))


def test_each_policy_previews_the_due_times_its_tickets_get(client, world, monkeypatch):
    sla.set_calendar(
        world.brand,
        None,
        {"timezone": "Europe/Berlin", "weekly": {d: [["09:00", "17:00"]] for d in ("mon", "fri")}},
    )
    standard = policy(world, "Standard", first_response_min=30, resolution_min=600)
    friday_evening = datetime(2026, 12, 11, 15, 50, tzinfo=UTC)  # 16:50 in Berlin
    monkeypatch.setattr(page_module, "utcnow", lambda: friday_evening)
    signed_in(client, world.manager)

    page = " ".join(text_of(client.get(PAGE)).split())

    contact = known_contact(world.channel)
    message = receive(world.channel, contact.platform_id, "Hi", at=friday_evening)
    db.session.commit()
    ticket = db.session.scalars(
        select(Ticket).where(Ticket.conversation_id == message.conversation_id)
    ).one()
    assert ticket.sla_policy_id == standard.id
    zone = sla.get_calendar(world.brand).zone
    first = local_time(ticket.first_response_due_at, zone, friday_evening)
    resolution = local_time(ticket.resolution_due_at, zone, friday_evening)
    assert first == "09:20 on Monday 14 December"  # 10 minutes on Friday, 20 on Monday
    assert (
        f"A normal-priority message now would be due for first response at <strong>{first}"
        "</strong> (30 business minutes)"
    ) in page
    assert f"due for resolution at <strong>{resolution}</strong> (600 business minutes)" in page

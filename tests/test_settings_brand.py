"""The brand, channels and privacy settings pages, and GET/PATCH /api/v1/brand: who may open
them, each refused value named next to its field with nothing changed, and a saved change
recorded once in the audit log with what it was before and after."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import select

from helpdesk.accounts.models import Role
from helpdesk.audit.models import AuditEvent
from helpdesk.brands.models import Brand
from helpdesk.brands.settings import update_brand
from helpdesk.channels.models import Channel
from helpdesk.errors import Forbidden, InvalidField
from helpdesk.extensions import db
from helpdesk.sla import service as sla
from helpdesk.sla.models import BusinessHours
from helpdesk.tickets.models import Ticket
from tests.helpers.api import Client, error_of, token_for
from tests.helpers.console import post, signed_in
from tests.helpers.rows import PAGE_VIEW_COLUMNS, changed, snapshot
from tests.helpers.world import World

# A token's use is noted on it: reading, not the change a test proves refused.
TOKEN_USE = PAGE_VIEW_COLUMNS | {("api_tokens", "last_used_at")}

PAGES = ("/settings/brand", "/settings/channels", "/settings/privacy")

GOOD_FORM = {
    "name": "Acme Shop",
    "timezone": "Europe/Paris",
    "reopen_days": "14",
    "followers_are_known": "1",
    "hidden_words": "refund\nRefund\n  spam offer  \n\n",
}


def brand_row(brand_id: int) -> dict:
    db.session.expire_all()
    brand = db.session.get(Brand, brand_id)
    return {
        "name": brand.name,
        "timezone": brand.timezone,
        "reopen_days": brand.reopen_days,
        "followers_are_known": brand.followers_are_known,
        "accept_all_requests": brand.accept_all_requests,
        "hidden_words": list(brand.hidden_words or []),
        "retention_days": brand.retention_days,
        "csat": (brand.csat_enabled, brand.csat_question, brand.csat_delay_minutes),
    }


def audit_rows(brand_id: int, action: str | None = None) -> list[AuditEvent]:
    db.session.expire_all()
    query = select(AuditEvent).where(AuditEvent.brand_id == brand_id).order_by(AuditEvent.id)
    if action:
        query = query.where(AuditEvent.action == action)
    return list(db.session.scalars(query))


@pytest.fixture
def world():
    return World()


# --- the pages -------------------------------------------------------------------------------


def test_brand_page_renders_for_an_admin_with_the_brand_values(client, world):
    world.brand.hidden_words = ["refund", "spam offer"]
    db.session.commit()
    html = signed_in(client, world.admin).get("/settings/brand").get_data(as_text=True)
    assert 'name="name"' in html and world.brand.name in html
    assert '<option value="Europe/Paris"' in html
    assert 'name="reopen_days"' in html
    assert "Message requests" in html
    assert "refund\nspam offer" in html


@pytest.mark.parametrize("path", PAGES)
@pytest.mark.parametrize("who", ["agent", "manager"])
def test_pages_are_refused_below_admin(client, world, path, who):
    signed_in(client, getattr(world, who))
    assert client.get(path).status_code == 403
    before = snapshot()
    assert post(client, path, {"name": "Taken", "retention_days": "5"}).status_code in (403, 405)
    assert changed(before, snapshot()) == {}


@pytest.mark.parametrize("path", PAGES)
def test_pages_render_for_an_admin(client, world, path):
    assert signed_in(client, world.admin).get(path).status_code == 200


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        ("timezone", "Mars/Olympus", "Mars/Olympus is not a time zone we know"),
        ("timezone", "", "Pick a time zone"),
        ("name", "   ", "Give the brand a name."),
        ("name", "x" * 201, "at most 200 characters"),
        ("reopen_days", "-1", "from 0 to 365"),
        ("reopen_days", "366", "from 0 to 365"),
        ("reopen_days", "99999999999999999999", "from 0 to 365"),
        ("reopen_days", "seven", "from 0 to 365"),
        ("hidden_words", "a" * 101, "at most 100 characters"),
        ("hidden_words", "\n".join(f"word{n}" for n in range(501)), "at most 500 hidden words"),
    ],
)
def test_a_bad_brand_value_is_named_by_its_field_and_nothing_changes(
    client, world, field, value, message
):
    signed_in(client, world.admin)
    before, row = snapshot(), brand_row(world.brand.id)
    response = post(client, "/settings/brand", {**GOOD_FORM, field: value})
    html = response.get_data(as_text=True)
    assert response.status_code == 422
    assert f'id="{field}-error"' in html and message in html
    assert changed(before, snapshot()) == {}
    assert brand_row(world.brand.id) == row


def test_every_bad_field_is_named_at_once(client, world):
    signed_in(client, world.admin)
    response = post(
        client, "/settings/brand", {**GOOD_FORM, "name": "", "timezone": "Nowhere/City"}
    )
    html = response.get_data(as_text=True)
    assert response.status_code == 422
    assert 'id="name-error"' in html and 'id="timezone-error"' in html
    assert "Nowhere/City" in html  # the typed value is kept in the form


def test_a_good_save_changes_the_brand_and_writes_one_audit_row(client, world):
    signed_in(client, world.admin)
    response = post(client, "/settings/brand", GOOD_FORM)
    assert response.status_code == 303
    assert response.headers["Location"].endswith("/settings/brand")
    row = brand_row(world.brand.id)
    assert row["name"] == "Acme Shop"
    assert row["timezone"] == "Europe/Paris"
    assert row["reopen_days"] == 14
    assert row["followers_are_known"] is True
    assert row["accept_all_requests"] is False
    assert row["hidden_words"] == ["refund", "spam offer"]
    (event,) = audit_rows(world.brand.id)
    assert event.action == "brand.updated"
    assert (event.target_type, event.target_id) == ("brand", world.brand.id)
    assert (event.actor_type, event.actor_id) == ("agent", world.admin.id)
    assert event.changes == {
        "name": ["Acme", "Acme Shop"],
        "timezone": ["Europe/Berlin", "Europe/Paris"],
        "reopen_days": [7, 14],
        "followers_are_known": [False, True],
        "hidden_words": [[], ["refund", "spam offer"]],
    }
    page = client.get("/settings/brand").get_data(as_text=True)
    assert "saved" in page and "refund\nspam offer" in page


def test_saving_the_same_values_records_nothing(client, world):
    signed_in(client, world.admin)
    assert post(client, "/settings/brand", GOOD_FORM).status_code == 303
    assert post(client, "/settings/brand", GOOD_FORM).status_code == 303
    assert len(audit_rows(world.brand.id)) == 1


def test_hidden_words_round_trip_through_the_page(client, world):
    signed_in(client, world.admin)
    words = "Refund\nrefund\nFREE   gift\n\n  spam  "
    assert post(client, "/settings/brand", {**GOOD_FORM, "hidden_words": words}).status_code == 303
    assert brand_row(world.brand.id)["hidden_words"] == ["Refund", "FREE   gift", "spam"]
    html = client.get("/settings/brand").get_data(as_text=True)
    assert "Refund\nFREE   gift\nspam</textarea>" in html
    form = {**GOOD_FORM, "hidden_words": "Refund\nFREE   gift\nspam"}
    assert post(client, "/settings/brand", form).status_code == 303
    assert len(audit_rows(world.brand.id)) == 1  # the same words again changed nothing


def test_unticking_the_request_boxes_turns_them_off(client, world):
    world.brand.followers_are_known = world.brand.accept_all_requests = True
    db.session.commit()
    signed_in(client, world.admin)
    form = {k: v for k, v in GOOD_FORM.items() if k != "followers_are_known"}
    assert post(client, "/settings/brand", form).status_code == 303
    row = brand_row(world.brand.id)
    assert row["followers_are_known"] is False and row["accept_all_requests"] is False


def test_a_new_time_zone_moves_the_business_hours_with_it(client, world):
    calendar = {"timezone": "UTC", "weekly": {"mon": [["09:00", "17:00"]]}, "holidays": []}
    sla.set_calendar(world.brand, None, calendar)
    db.session.commit()
    signed_in(client, world.admin)
    assert post(client, "/settings/brand", GOOD_FORM).status_code == 303
    db.session.expire_all()
    stored = db.session.scalar(
        select(BusinessHours.calendar).where(BusinessHours.brand_id == world.brand.id)
    )
    assert stored["timezone"] == "Europe/Paris"
    assert stored["weekly"]["mon"] == [["09:00", "17:00"]]
    assert sla.get_calendar(db.session.get(Brand, world.brand.id)).timezone == "Europe/Paris"
    assert len(audit_rows(world.brand.id, "brand.updated")) == 1


def test_a_new_time_zone_moves_open_sla_clocks(world):
    calendar = {"timezone": "UTC", "weekly": {"mon": [["09:00", "17:00"]]}, "holidays": []}
    sla.set_calendar(world.brand, None, calendar)
    sla.create_policy(world.brand, None, "all", 0, {}, {"resolution_min": 60})
    db.session.commit()
    ticket = db.session.scalar(select(Ticket).where(Ticket.brand_id == world.brand.id))
    due_before = ticket.resolution_due_at
    update_brand(world.brand, world.admin, {"timezone": "Asia/Tokyo"})
    db.session.commit()
    db.session.refresh(ticket)
    assert ticket.resolution_due_at != due_before


def test_privacy_saves_retention_days_and_says_what_the_purge_does(client, world):
    signed_in(client, world.admin)
    html = client.get("/settings/privacy").get_data(as_text=True)
    assert "Conversations are kept forever" in html and "tickets and figures stay" in html
    assert post(client, "/settings/privacy", {"retention_days": "90"}).status_code == 303
    assert brand_row(world.brand.id)["retention_days"] == 90
    (event,) = audit_rows(world.brand.id)
    assert event.changes == {"retention_days": [None, 90]}
    assert post(client, "/settings/privacy", {"retention_days": ""}).status_code == 303
    assert brand_row(world.brand.id)["retention_days"] is None


@pytest.mark.parametrize("value", ["0", "3651", "-3", "ninety"])
def test_a_bad_retention_is_named_and_nothing_changes(client, world, value):
    signed_in(client, world.admin)
    before, row = snapshot(), brand_row(world.brand.id)
    response = post(client, "/settings/privacy", {"retention_days": value})
    html = response.get_data(as_text=True)
    assert response.status_code == 422
    assert 'id="retention_days-error"' in html and "Keep conversations for 1 to 3650 days" in html
    assert changed(before, snapshot()) == {}
    assert brand_row(world.brand.id) == row


def test_channels_page_lists_the_brand_accounts_only(client, world):
    world.channel.name = "Acme Main"
    other = World("other")
    other.channel.name = "Other Main"
    db.session.commit()
    html = signed_in(client, world.admin).get("/settings/channels").get_data(as_text=True)
    assert "Acme Main" in html and world.channel.account_id in html
    assert "Other Main" not in html and other.channel.account_id not in html
    assert "Active" in html
    assert "Instagram Login" in html


def test_channels_page_shows_a_channel_that_needs_attention(client, world):
    world.channel.needs_new_token = True
    db.session.commit()
    html = signed_in(client, world.admin).get("/settings/channels").get_data(as_text=True)
    assert "Needs attention" in html


def test_channels_page_shows_the_last_webhook_delivery(client, world):
    from helpdesk.intake.models import WebhookEvent

    at = datetime(2026, 3, 4, 10, 30, tzinfo=UTC)
    db.session.add(WebhookEvent(body="{}", account_ids=[world.channel.account_id], received_at=at))
    db.session.add(WebhookEvent(body="{}", account_ids=["999"], received_at=at + timedelta(1)))
    db.session.commit()
    html = signed_in(client, world.admin).get("/settings/channels").get_data(as_text=True)
    assert '<time datetime="2026-03-04T10:30:00+00:00">' in html


# --- connecting a channel from the command line is audited ------------------------------------


def test_connect_instagram_records_a_channel_connected_event(runner, world):
    result = runner.invoke(
        args=[
            "connect-instagram",
            "--brand",
            world.brand.slug,
            "--account-id",
            "17841400000099999",
            "--access-token",
            "very-secret-token",
            "--name",
            "Outlet",
        ]
    )
    assert result.exit_code == 0, result.output
    channel = db.session.scalar(select(Channel).where(Channel.account_id == "17841400000099999"))
    (event,) = audit_rows(world.brand.id, "channel.connected")
    assert (event.actor_type, event.target_type, event.target_id) == (
        "system",
        "channel",
        channel.id,
    )
    assert event.changes["account_id"] == [None, "17841400000099999"]
    assert "very-secret-token" not in repr(event.changes)


# --- the service -----------------------------------------------------------------------------


def test_a_manager_may_change_the_survey_only(world):
    update_brand(world.brand, world.manager, {"csat_enabled": True, "csat_delay_minutes": 30})
    assert world.brand.csat_enabled and world.brand.csat_delay_minutes == 30
    with pytest.raises(Forbidden):
        update_brand(world.brand, world.manager, {"csat_enabled": False, "name": "Mine"})
    with pytest.raises(Forbidden):
        update_brand(world.brand, world.agent, {"csat_enabled": False})


def test_survey_values_are_checked(world):
    with pytest.raises(InvalidField) as refused:
        update_brand(
            world.brand,
            world.admin,
            {"csat_question": " ", "csat_delay_minutes": 10081},
        )
    assert set(refused.value.fields) == {"csat_question", "csat_delay_minutes"}


# --- the API ---------------------------------------------------------------------------------


def api(client, brand, role=Role.ADMIN) -> Client:
    return Client(client, token_for(brand, role))


def test_api_get_answers_the_brand_settings(client, world):
    world.brand.hidden_words = ["refund"]
    world.brand.retention_days = 30
    db.session.commit()
    response = api(client, world.brand).get("/brand")
    assert response.status_code == 200
    assert response.get_json() == {
        "name": "Acme",
        "timezone": "Europe/Berlin",
        "reopen_days": 7,
        "requests": {"known_followers": False, "accept_all": False, "hidden_words": ["refund"]},
        "csat": {
            "enabled": False,
            "question": "How would you rate the help you got?",
            "delay_minutes": 0,
        },
        "retention_days": 30,
    }


def test_api_patch_changes_the_given_fields_and_is_audited(client, world):
    body = {
        "timezone": "America/New_York",
        "requests": {"accept_all": True, "hidden_words": ["Spam", "spam", " promo "]},
        "retention_days": 365,
    }
    response = api(client, world.brand).patch("/brand", json=body)
    assert response.status_code == 200, response.get_json()
    answer = response.get_json()
    assert answer["timezone"] == "America/New_York"
    assert answer["requests"] == {
        "known_followers": False,
        "accept_all": True,
        "hidden_words": ["Spam", "promo"],
    }
    assert answer["retention_days"] == 365 and answer["name"] == "Acme"
    (event,) = audit_rows(world.brand.id)
    assert event.actor_type == "token"
    assert set(event.changes) == {
        "timezone",
        "accept_all_requests",
        "hidden_words",
        "retention_days",
    }
    again = api(client, world.brand).patch("/brand", json={"retention_days": None})
    assert again.get_json()["retention_days"] is None


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"timezone": "Mars/Olympus"}, "timezone"),
        ({"name": "  "}, "name"),
        ({"reopen_days": -1}, "reopen_days"),
        ({"reopen_days": 366}, "reopen_days"),
        ({"retention_days": 0}, "retention_days"),
        ({"csat": {"question": ""}}, "csat.question"),
        ({"requests": {"hidden_words": ["x" * 101]}}, "requests.hidden_words"),
    ],
)
def test_api_patch_refuses_a_bad_value_by_its_name(client, world, body, field):
    admin = api(client, world.brand)
    before = snapshot(TOKEN_USE)
    response = admin.patch("/brand", json=body)
    assert response.status_code == 422
    assert field in error_of(response)["fields"]
    assert changed(before, snapshot(TOKEN_USE)) == {}


@pytest.mark.parametrize(
    "body",
    [{"colour": "red"}, {"requests": {"everyone": True}}, {"csat": {"score": 5}}],
)
def test_api_patch_refuses_unknown_fields(client, world, body):
    response = api(client, world.brand).patch("/brand", json=body)
    assert response.status_code == 422
    assert error_of(response)["code"] == "invalid"


def test_api_manager_may_read_and_change_only_the_survey(client, world):
    manager = api(client, world.brand, Role.MANAGER)
    assert manager.get("/brand").status_code == 200
    response = manager.patch("/brand", json={"csat": {"enabled": True, "delay_minutes": 15}})
    assert response.status_code == 200
    assert response.get_json()["csat"]["enabled"] is True
    before = snapshot(TOKEN_USE)
    refused = manager.patch("/brand", json={"csat": {"enabled": False}, "name": "Mine"})
    assert refused.status_code == 403
    assert error_of(refused)["code"] == "forbidden"
    assert changed(before, snapshot(TOKEN_USE)) == {}


def test_api_agent_token_is_refused(client, world):
    agent = api(client, world.brand, Role.AGENT)
    assert agent.get("/brand").status_code == 403
    assert agent.patch("/brand", json={"csat": {"enabled": True}}).status_code == 403


def test_api_token_sees_and_changes_only_its_own_brand(client, world):
    other = World("other")
    response = api(client, other.brand).patch("/brand", json={"name": "Other Renamed"})
    assert response.get_json()["name"] == "Other Renamed"
    assert api(client, other.brand).get("/brand").get_json()["name"] == "Other Renamed"
    assert brand_row(world.brand.id)["name"] == "Acme"
    assert api(client, world.brand).get("/brand").get_json()["name"] == "Acme"

"""The business hours settings page: weekly hours with several intervals a day, holidays added,
removed and imported by country, and a preview of when a message now would be due that agrees
with the due times the SLA code stores on tickets. A refused input changes nothing."""

from __future__ import annotations

import html
import re
from datetime import UTC, date, datetime

import pytest
from sqlalchemy import select

from helpdesk.audit.models import AuditEvent
from helpdesk.extensions import db
from helpdesk.sla import service as sla
from helpdesk.sla.preview import local_time
from helpdesk.tickets.models import Ticket
from helpdesk.web.settings import business_hours as page_module
from tests.helpers.console import post, signed_in
from tests.helpers.rows import changed, snapshot
from tests.helpers.world import World, known_contact, receive

PAGE = "/settings/business-hours"
OFFICE = {"mon": "09:00-12:00, 13:00-17:00", "tue": "09:00-17:00", "wed": "09:00-17:00"}
OFFICE |= {"thu": "09:00-17:00", "fri": "09:00-17:00"}


@pytest.fixture
def world(app):
    return World()


def text_of(response) -> str:
    return html.unescape(response.get_data(as_text=True))


def weekly_form(**days: str) -> dict[str, str]:
    return {f"weekly.{day}": value for day, value in {**OFFICE, **days}.items()}


def calendar(world):
    db.session.expire_all()
    return sla.get_calendar(world.brand)


def events(action: str) -> list[AuditEvent]:
    db.session.expire_all()
    return list(db.session.scalars(select(AuditEvent).where(AuditEvent.action == action)))


def field_error(page: str, field_id: str) -> str:
    match = re.search(rf'<p class="field-error" id="{field_id}-error"[^>]*>([^<]*)</p>', page)
    assert match, f"no error next to {field_id}"
    return match.group(1)


@pytest.mark.parametrize("who", ["manager", "admin"])
def test_the_page_opens_for_a_manager_and_an_admin(client, world, who):
    signed_in(client, getattr(world, who))
    page = client.get(PAGE)
    assert page.status_code == 200
    assert "Weekly hours" in text_of(page) and "Europe/Berlin" in text_of(page)


def test_an_agent_is_refused_the_page_and_its_forms(client, world):
    signed_in(client, world.agent)
    before = snapshot()
    assert client.get(PAGE).status_code == 403
    assert post(client, PAGE, weekly_form()).status_code == 403
    assert post(client, PAGE + "/holidays", {"date": "2026-12-24"}).status_code == 403
    assert changed(before, snapshot()) == {}


def test_two_intervals_a_day_are_saved_shown_and_audited(client, world):
    signed_in(client, world.manager)

    response = post(client, PAGE, weekly_form())

    assert response.status_code == 303
    saved = calendar(world)
    assert saved.weekly["mon"] == [("09:00", "12:00"), ("13:00", "17:00")]
    assert saved.weekly["sat"] == [] and saved.timezone == "Europe/Berlin"
    page = text_of(client.get(PAGE))
    assert 'value="09:00-12:00, 13:00-17:00"' in page and "Business hours saved." in page
    (event,) = events("business_hours.updated")
    assert event.actor_id == world.manager.id and event.target_type == "business_hours"
    before, after = event.changes["weekly"]
    assert before["mon"] == [["00:00", "24:00"]]
    assert after["mon"] == [["09:00", "12:00"], ["13:00", "17:00"]] and after["sun"] == []


def test_typed_hours_are_read_leniently(client, world):
    signed_in(client, world.manager)
    assert post(client, PAGE, weekly_form(sat="9-13; 14:30 - 18")).status_code == 303
    assert calendar(world).weekly["sat"] == [("09:00", "13:00"), ("14:30", "18:00")]


@pytest.mark.parametrize(
    ("typed", "message"),
    [
        ("17:00-09:00", "17:00-09:00 ends before it starts: the end must be after the start."),
        ("17:00-09:00", "end this day at 24:00 and open the next at 00:00"),
        ("09:00-13:00, 12:00-17:00", "09:00-13:00 and 12:00-17:00 overlap"),
        ("9am-5pm", "“9am-5pm” is not an interval: write opening and closing times like 09:00"),
        ("25:00-26:00", "“25:00” is not a time"),
    ],
)
def test_bad_hours_are_refused_next_to_their_day_and_change_nothing(client, world, typed, message):
    signed_in(client, world.manager)
    post(client, PAGE, weekly_form())
    before = snapshot()

    response = post(client, PAGE, weekly_form(tue=typed, mon="08:00-18:00"))

    assert response.status_code == 422
    page = text_of(response)
    assert message in field_error(page, "weekly-tue")
    assert f'value="{typed}"' in page  # what was typed is kept to be corrected
    assert changed(before, snapshot()) == {}
    assert calendar(world).weekly["mon"] == [("09:00", "12:00"), ("13:00", "17:00")]


def test_every_bad_day_is_named_at_once(client, world):
    signed_in(client, world.manager)
    response = post(client, PAGE, weekly_form(mon="17-9", fri="x"))
    assert response.status_code == 422
    page = text_of(response)
    assert "ends before it starts" in field_error(page, "weekly-mon")
    assert "is not an interval" in field_error(page, "weekly-fri")


def test_a_week_without_open_hours_is_refused(client, world):
    signed_in(client, world.manager)
    before = snapshot()
    response = post(client, PAGE, {})
    assert response.status_code == 422
    assert "needs open hours on at least one day" in text_of(response)
    assert changed(before, snapshot()) == {}


def test_a_holiday_is_added_listed_and_removed(client, world):
    signed_in(client, world.manager)

    assert post(client, PAGE + "/holidays", {"date": "2026-12-24"}).status_code == 303
    assert calendar(world).holidays == frozenset({date(2026, 12, 24)})
    page = text_of(client.get(PAGE))
    assert "Thu 24 Dec 2026" in page and "added as a holiday" in page

    assert post(client, PAGE + "/holidays/remove", {"date": "2026-12-24"}).status_code == 303
    assert calendar(world).holidays == frozenset()
    added, removed = events("business_hours.updated")
    assert added.changes["holidays"] == [[], ["2026-12-24"]]
    assert removed.changes["holidays"] == [["2026-12-24"], []]


@pytest.mark.parametrize(
    ("typed", "message"),
    [("", "Pick a date"), ("24/12/2026", "Pick a date"), ("2026-12-24", "already a holiday")],
)
def test_a_bad_or_repeated_holiday_is_refused(client, world, typed, message):
    signed_in(client, world.manager)
    post(client, PAGE + "/holidays", {"date": "2026-12-24"})
    before = snapshot()
    response = post(client, PAGE + "/holidays", {"date": typed})
    assert response.status_code == 422
    assert message in field_error(text_of(response), "date")
    assert changed(before, snapshot()) == {}


def test_removing_a_date_that_is_no_holiday_is_404(client, world):
    signed_in(client, world.manager)
    before = snapshot()
    assert post(client, PAGE + "/holidays/remove", {"date": "2026-12-24"}).status_code == 404
    assert changed(before, snapshot()) == {}


def test_a_countrys_public_holidays_are_imported_once(client, world):
    signed_in(client, world.manager)
    post(client, PAGE + "/holidays", {"date": "2027-12-25"})

    first = post(client, PAGE + "/holidays/import", {"country": "FR", "year": "2027"})

    assert first.status_code == 303
    assert "10 public holidays added." in text_of(client.get(PAGE))
    holidays = calendar(world).holidays
    assert len(holidays) == 11 and date(2027, 7, 14) in holidays
    before = snapshot()
    again = post(client, PAGE + "/holidays/import", {"country": "FR", "year": "2027"})
    assert again.status_code == 303
    assert "No holidays added" in text_of(client.get(PAGE))
    assert changed(before, snapshot()) == {}


def test_an_import_into_an_empty_list_adds_all_eleven_french_holidays(client, world):
    signed_in(client, world.manager)
    post(client, PAGE + "/holidays/import", {"country": "FR", "year": "2027"})
    assert "11 public holidays added." in text_of(client.get(PAGE))
    assert len(calendar(world).holidays) == 11


@pytest.mark.parametrize(
    ("form", "field", "message"),
    [
        ({"country": "XX", "year": "2027"}, "country", "Pick a country from the list."),
        ({"country": "", "year": "2027"}, "country", "Pick a country from the list."),
        ({"country": "FR", "year": "next"}, "year", "Write a year between"),
        ({"country": "FR", "year": "20270"}, "year", "Write a year between"),
    ],
)
def test_an_import_with_a_bad_country_or_year_is_refused(client, world, form, field, message):
    signed_in(client, world.manager)
    before = snapshot()
    response = post(client, PAGE + "/holidays/import", form)
    assert response.status_code == 422
    assert message in field_error(text_of(response), field)
    assert changed(before, snapshot()) == {}


def _at(monkeypatch, moment: datetime) -> None:
    monkeypatch.setattr(page_module, "utcnow", lambda: moment)


def _ticket_opened_at(world, moment: datetime) -> Ticket:
    """A real ticket opened by a message at `moment`: its due times come from the SLA code."""
    contact = known_contact(world.channel)
    message = receive(world.channel, contact.platform_id, "Hello?", at=moment)
    db.session.commit()
    return db.session.scalars(
        select(Ticket).where(Ticket.conversation_id == message.conversation_id)
    ).one()


def test_the_preview_gives_the_due_times_the_tickets_get(client, world, monkeypatch):
    signed_in(client, world.manager)
    post(client, PAGE, weekly_form())
    sla.create_policy(world.brand, None, "Standard", 0, {}, {"first_response_min": 30})
    db.session.commit()
    now = datetime(2026, 12, 11, 9, 0, tzinfo=UTC)  # Friday 10:00 in Berlin
    closing = datetime(2026, 12, 11, 16, 0, tzinfo=UTC)  # Friday 17:00 in Berlin
    _at(monkeypatch, now)

    page = text_of(client.get(PAGE))

    zone = sla.get_calendar(world.brand).zone
    due_now = _ticket_opened_at(world, now).first_response_due_at
    due_after_closing = _ticket_opened_at(world, closing).first_response_due_at
    assert due_now == datetime(2026, 12, 11, 9, 30, tzinfo=UTC)
    assert due_after_closing == datetime(2026, 12, 14, 8, 30, tzinfo=UTC)  # Monday 09:30
    assert (
        f"A message arriving now would be due at {local_time(due_now, zone, now)} "
        "(first response, policy “Standard”, 30 business minutes)."
    ) in " ".join(page.split()).replace("<strong>", "").replace("</strong>", "")
    assert local_time(due_now, zone, now) == "10:30 today (Friday)"
    assert f"would be due at <strong>{local_time(due_after_closing, zone, now)}</strong>" in page
    assert "09:30 on Monday 14 December" in page


def test_the_preview_says_when_the_clock_starts_while_closed(client, world, monkeypatch):
    signed_in(client, world.manager)
    post(client, PAGE, weekly_form())
    sla.create_policy(world.brand, None, "Standard", 0, {}, {"first_response_min": 30})
    db.session.commit()
    saturday = datetime(2026, 12, 12, 11, 0, tzinfo=UTC)
    _at(monkeypatch, saturday)

    page = " ".join(text_of(client.get(PAGE)).split())

    due = _ticket_opened_at(world, saturday).first_response_due_at
    assert due == datetime(2026, 12, 14, 8, 30, tzinfo=UTC)
    assert "would be due at <strong>09:30 on Monday 14 December</strong>" in page
    assert "You are closed now: the clock starts when you open, at 09:00 on Monday" in page


def test_the_preview_says_when_no_policy_applies(client, world):
    signed_in(client, world.manager)
    sla.create_policy(world.brand, None, "VIP", 0, {"priority": "urgent"}, {"resolution_min": 60})
    db.session.commit()
    page = text_of(client.get(PAGE))
    assert "No SLA policy applies to a normal-priority message" in page

"""Settings › CSAT: managers and admins turn the survey on, word its question and set its delay;
an agent is refused; a bad value is named by its field and nothing changes; the page previews the
five buttons and lists the latest answers with their comments."""

from __future__ import annotations

import pytest
from sqlalchemy import select

from helpdesk.audit.models import AuditEvent
from helpdesk.brands.models import Brand
from helpdesk.csat import survey
from helpdesk.extensions import db
from helpdesk.tickets import service as tickets
from helpdesk.tickets.models import TicketStatus
from tests.helpers.console import post, signed_in
from tests.helpers.rows import changed, snapshot
from tests.helpers.world import World, receive

PAGE = "/settings/csat"
GOOD = {"csat_enabled": "1", "csat_question": "Rate us, please", "csat_delay_minutes": "15"}


def survey_settings(brand_id: int) -> tuple:
    db.session.expire_all()
    brand = db.session.get(Brand, brand_id)
    return brand.csat_enabled, brand.csat_question, brand.csat_delay_minutes


@pytest.mark.parametrize("who", ["manager", "admin"])
def test_a_manager_or_admin_saves_the_survey(client, world, who):
    signed_in(client, getattr(world, who))
    page = client.get(PAGE)
    assert page.status_code == 200 and 'name="csat_question"' in page.get_data(as_text=True)
    response = post(client, PAGE, GOOD)
    assert response.status_code == 303
    assert survey_settings(world.brand.id) == (True, "Rate us, please", 15)
    (audited,) = db.session.scalars(
        select(AuditEvent).where(
            AuditEvent.brand_id == world.brand.id, AuditEvent.action == "brand.updated"
        )
    )
    assert audited.changes["csat_enabled"] == [False, True]

    # An unticked box turns it off again, the rest kept.
    post(client, PAGE, {"csat_question": "Rate us, please", "csat_delay_minutes": "15"})
    assert survey_settings(world.brand.id) == (False, "Rate us, please", 15)


def test_an_agent_is_refused_and_nothing_changes(client, world):
    signed_in(client, world.agent)
    assert client.get(PAGE).status_code == 403
    before = snapshot()
    assert post(client, PAGE, GOOD).status_code == 403
    assert changed(before, snapshot()) == {}


def test_signed_out_goes_to_login(client):
    assert "/login" in client.get(PAGE).headers["Location"]


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        ("csat_question", "   ", "Write the question the survey asks."),
        ("csat_question", "x" * 301, "at most 300 characters"),
        ("csat_delay_minutes", "-1", "from 0 to 10080"),
        ("csat_delay_minutes", "10081", "from 0 to 10080"),
        ("csat_delay_minutes", "soon", "from 0 to 10080"),
    ],
)
def test_a_bad_value_is_named_by_its_field_and_nothing_changes(
    client, world, field, value, message
):
    signed_in(client, world.manager)
    before, settings = snapshot(), survey_settings(world.brand.id)
    response = post(client, PAGE, {**GOOD, field: value})
    html = response.get_data(as_text=True)
    assert response.status_code == 422
    assert f'id="{field}-error"' in html and message in html
    assert value.strip()[:20] in html or not value.strip()  # what was typed is shown again
    assert changed(before, snapshot()) == {}
    assert survey_settings(world.brand.id) == settings


def test_the_page_previews_five_buttons_and_lists_answers_with_comments(client, world):
    world.brand.csat_enabled = True
    ticket = tickets.current_ticket(world.conversation)
    tickets.set_status(ticket, TicketStatus.RESOLVED, world.agent)
    db.session.commit()
    survey.send_due()
    receive(world.channel, world.contact.platform_id, "2")
    receive(world.channel, world.contact.platform_id, "The parcel came <b>late</b>")
    db.session.commit()

    html = signed_in(client, world.manager).get(PAGE).get_data(as_text=True)
    assert html.count('class="btn btn-small quick-reply"') == 5
    assert 'data-score="2"' in html and "Jane Doe" in html
    assert "The parcel came &lt;b&gt;late&lt;/b&gt;" in html  # customer text is escaped


def test_another_brands_answers_are_not_listed(client, world):
    other = World("other")
    other.brand.csat_enabled = True
    ticket = tickets.current_ticket(other.conversation)
    tickets.set_status(ticket, TicketStatus.RESOLVED, other.agent)
    db.session.commit()
    survey.send_due()
    receive(other.channel, other.contact.platform_id, "1")
    db.session.commit()
    html = signed_in(client, world.manager).get(PAGE).get_data(as_text=True)
    assert 'data-score="1"' not in html and "No answers yet." in html

"""Issue 19's browser test: a manager makes an away-message rule from its template in Settings ›
Automations (picking the canned reply from the brand's own in a select), a DM then arrives,
signed as Meta signs it, while the brand's business hours are closed, and a real worker answers
it through the Graph API simulator, once per ticket; the conversation shows the answer and the
rule's run. The pages are photographed on a desktop, on a phone and in the dark theme, without a
console error or a policy violation.

Skips when Playwright or /usr/bin/chromium is missing, like the other browser tests.
"""

from __future__ import annotations

import json
import re
import time
import urllib.request
from pathlib import Path

import pytest
from sqlalchemy import select

from helpdesk.accounts.models import Role
from helpdesk.automations.models import AutomationRule
from helpdesk.brands.models import Brand
from helpdesk.canned import service as canned
from helpdesk.dm.models import Direction, Message
from helpdesk.extensions import db
from helpdesk.sla.calendar import DAYS
from helpdesk.sla.policies import set_calendar
from helpdesk.types import utcnow
from tests.conftest import fresh, serving, wait_for
from tests.factories import AgentFactory, member
from tests.helpers.browser import (
    browser,  # noqa: F401  (a fixture)
    signed_in_page,
)
from tests.helpers.webhooks import ACCOUNT, connect_example_channel, sign
from tests.helpers.workers import purge_broker

pytestmark = pytest.mark.browser

AWAY_TEXT = "Thanks for writing! We are closed now and answer from 9:00."
CUSTOMER = "6120000077770001"
PHONE = {"width": 390, "height": 844}
DESKTOP = {"width": 1400, "height": 900}
RECORD_VIOLATIONS = """
window.__violations = [];
document.addEventListener("securitypolicyviolation", function (event) {
  window.__violations.push(event.violatedDirective + " " + (event.blockedURI || "inline"));
});
"""


@pytest.fixture
def worker_env(sim_worker_env: dict[str, str]) -> dict[str, str]:
    """The worker sends its replies to the simulator."""
    return sim_worker_env


@pytest.fixture
def served(app, sim):
    with serving(app) as base_url:
        yield base_url


def screenshot(page, path: Path) -> None:
    """The whole page, the console's scrolling main pane included."""
    viewport = page.viewport_size
    height = page.evaluate(
        "() => { const m = document.querySelector('main');"
        " return m.getBoundingClientRect().top + m.scrollHeight; }"
    )
    page.set_viewport_size({"width": viewport["width"], "height": max(viewport["height"], height)})
    page.screenshot(path=str(path), full_page=True)
    page.set_viewport_size(viewport)


# The simulator's profile pictures live on a made-up host: the avatar fails to load, no more.
UNREACHABLE_AVATAR = "net::ERR_NAME_NOT_RESOLVED"


def watch(page) -> list[str]:
    """Page errors, console errors and (with `no_violations`) policy violations of a page."""
    problems: list[str] = []
    page.context.add_init_script(RECORD_VIOLATIONS)
    page.on("pageerror", lambda error: problems.append(str(error)))

    def console(message) -> None:
        if message.type == "error" and UNREACHABLE_AVATAR not in message.text:
            problems.append(message.text)

    page.on("console", console)
    return problems


def no_violations(page, problems: list[str]) -> None:
    assert page.evaluate("() => window.__violations || []") == [], page.url
    assert problems == [], problems


def post_dm(base_url: str, mid: str, text: str) -> None:
    """A customer's DM as Meta delivers it: signed with the app secret, sent just now."""
    event = {
        "sender": {"id": CUSTOMER},
        "recipient": {"id": ACCOUNT},
        "timestamp": int(time.time() * 1000),
        "message": {"mid": mid, "text": text},
    }
    raw = json.dumps({"object": "instagram", "entry": [{"id": ACCOUNT, "messaging": [event]}]})
    request = urllib.request.Request(
        f"{base_url}/webhooks/instagram",
        data=raw.encode(),
        headers={"Content-Type": "application/json", "X-Hub-Signature-256": sign(raw.encode())},
        method="POST",
    )
    with urllib.request.urlopen(request, timeout=10) as response:  # noqa: S310 (loopback)
        assert response.status == 200


def away_sends(sim) -> list[dict]:
    return [
        send
        for send in sim.sends()
        if send["json"].get("recipient") == {"id": CUSTOMER}
        and send["json"].get("message", {}).get("text") == AWAY_TEXT
    ]


def closed_brand() -> tuple[int, str, int]:
    """The example channel's brand, open only on a day three days from now (closed now), with a
    manager and the canned reply the away message sends. It accepts every message request:
    rules act on tickets, and a request has none until it is accepted."""
    channel = connect_example_channel()
    brand = db.session.get(Brand, channel.brand_id)
    brand.accept_all_requests = True  # a new customer's DM opens a ticket, not a request
    manager = AgentFactory(name="Mia Manager")
    member(manager, brand, Role.MANAGER)
    reply = canned.create(brand, None, "away", "We are away", AWAY_TEXT, shared=True)
    open_day = DAYS[(utcnow().weekday() + 3) % 7]
    set_calendar(brand, None, {"timezone": "UTC", "weekly": {open_day: [["09:00", "17:00"]]}})
    db.session.commit()
    found = (brand.id, manager.email, reply.id)
    db.session.rollback()  # no read left open while the served app and the worker write
    return found


def test_an_away_message_from_the_template_answers_a_dm_outside_business_hours(
    app,
    served,
    sim,
    browser,  # noqa: F811
    celery_process,
    output_dir,
):
    brand_id, email, reply_id = closed_brand()
    purge_broker(app)
    celery_process("worker", "--pool=solo", "--without-mingle", "--without-gossip")

    page = signed_in_page(browser, served, email)
    problems = watch(page)
    page.goto("/settings/automations")
    page.click("a[href*='template=away_message']")
    page.wait_for_url(re.compile(r"/settings/automations/new\?template=away_message"))
    # The script turned the value inputs into selects of the brand's choices.
    assert page.locator("#condition-0-value-pick").input_value() == "closed"
    page.select_option("#action-0-value-pick", label="We are away")
    assert page.locator("#action-0-value").input_value() == str(reply_id)
    assert page.locator("#idle-minutes").is_hidden()  # only for the idle event
    screenshot(page, output_dir / "automations-away-edit-1400.png")
    page.set_viewport_size(PHONE)
    screenshot(page, output_dir / "automations-away-edit-390.png")
    page.set_viewport_size(DESKTOP)
    page.click("#automation-form button[type=submit]")
    page.wait_for_url(re.compile(r"/settings/automations$"))
    assert "Created the rule “Away message”" in page.content()
    rule_id, *saved = fresh(
        lambda: db.session.execute(
            select(
                AutomationRule.id,
                AutomationRule.brand_id,
                AutomationRule.template,
                AutomationRule.once_per_ticket,
                AutomationRule.actions,
            )
        ).one()
    )
    assert saved == [
        brand_id,
        "away_message",
        True,
        [{"type": "send_canned_reply", "value": reply_id}],
    ]
    screenshot(page, output_dir / "automations-list-1400.png")
    page.set_viewport_size(PHONE)
    screenshot(page, output_dir / "automations-list-390.png")
    page.set_viewport_size(DESKTOP)

    post_dm(served, "away-dm-1", "Hello, is anyone there?")
    assert wait_for(lambda: away_sends(sim), timeout=60), sim.sends()
    conversation_id = fresh(
        lambda: db.session.scalar(select(Message.conversation_id).where(Message.mid == "away-dm-1"))
    )
    page.goto(f"/conversations/{conversation_id}")
    thread = page.locator("#thread")
    thread.get_by_text(AWAY_TEXT).wait_for()
    assert "Automated" in thread.locator("article.msg.out").last.inner_text()
    history = page.locator("#automation-history").inner_text()
    assert "Rule “Away message” ran" in history and "sent canned reply" in history
    screenshot(page, output_dir / "automations-away-conversation-1400.png")

    # Once per ticket: the customer's next message gets no second away message.
    post_dm(served, "away-dm-2", "Hello again?")
    # The rule runs in the transaction that stores the message, so a second answer would be
    # stored by the time the message is.
    assert wait_for(
        lambda: db.session.scalar(select(Message.id).where(Message.mid == "away-dm-2")),
        timeout=60,
    )
    time.sleep(2)  # what the worker would have sent after it, it would have sent by now
    assert len(away_sends(sim)) == 1
    outbound = fresh(
        lambda: db.session.scalars(
            select(Message.text).where(
                Message.conversation_id == conversation_id,
                Message.direction == Direction.OUTBOUND,
            )
        ).all()
    )
    assert outbound == [AWAY_TEXT]
    no_violations(page, problems)

    dark = signed_in_page(browser, served, email, color_scheme="dark")
    dark_problems = watch(dark)
    dark.goto("/settings/automations")
    screenshot(dark, output_dir / "automations-list-dark.png")
    dark.goto(f"/settings/automations/{rule_id}")
    dark.locator("#action-0-value-pick").wait_for()
    screenshot(dark, output_dir / "automations-edit-dark.png")
    dark.set_viewport_size(PHONE)
    screenshot(dark, output_dir / "automations-edit-dark-390.png")
    dark.goto(f"/settings/automations/{rule_id}/dry-run")
    screenshot(dark, output_dir / "automations-dry-run-dark-390.png")
    no_violations(dark, dark_problems)

"""The agent console in a real browser: Debian's Chromium driven by Playwright, against the app
served for real on a loopback port and the Graph API simulator.

Skips when Playwright or /usr/bin/chromium is missing (`.ci/run` installs Chromium as root).
"""

from __future__ import annotations

import re

import pytest
from sqlalchemy import select

from helpdesk.extensions import db
from tests.conftest import fresh, serving
from tests.helpers.browser import (
    TIMEOUT_MS,
    browser,  # noqa: F401  (a fixture)
    playwright_api,
    signed_in_page,
)

CANNED_BODY = (
    "Hi {{ contact.first_name }}, thanks for writing! {{ agent.first_name }} here to help."
)

pytestmark = pytest.mark.browser


@pytest.fixture
def served(app, sim):
    """The app on a free loopback port, in a thread, with the Graph API simulator behind it."""
    with serving(app) as base_url:
        yield base_url, sim


def _seed() -> None:
    from devtools.seed.demo import DEMO_SLUG, seed_demo
    from helpdesk.accounts.models import Agent
    from helpdesk.brands.models import Brand
    from helpdesk.canned import service as canned

    seed_demo()
    db.session.commit()
    brand = db.session.scalar(select(Brand).where(Brand.slug == DEMO_SLUG))
    manager = db.session.scalar(select(Agent).where(Agent.email == "manager@demo.test"))
    canned.create(brand, manager, "thanks", "Thanks for writing", CANNED_BODY, shared=True)
    db.session.commit()


def test_agent_console_in_a_browser(app, served, browser, output_dir):  # noqa: F811
    from devtools.graphsim.webhooks import send_dm
    from devtools.seed.demo import DEMO_ACCOUNT_ID
    from helpdesk.dm.models import Contact, Direction, Message
    from helpdesk.intake import service as intake
    from helpdesk.intake.models import EventStatus, WebhookEvent
    from workers.tasks.delivery import deliver_message

    base_url, sim = served
    expect = playwright_api.expect
    expect.set_options(timeout=TIMEOUT_MS)
    _seed()
    sender_id = fresh(
        lambda: db.session.scalar(
            select(Contact.platform_id).where(Contact.username == "anna.kuznetsova")
        )
    )

    # The agent accepts Anna's message request from the Requests folder.
    page = signed_in_page(browser, base_url, "agent@demo.test", "demo-agent-pass")
    expect(page.locator("#rows .row").first).to_be_visible()
    page.screenshot(path=str(output_dir / "browser-inbox.png"), full_page=True)
    page.keyboard.press("j")  # keyboard: the cursor walks the list
    expect(page.locator("#rows .row").first).to_have_class(re.compile(r"\bcursor\b"))
    page.keyboard.press("?")  # the help overlay lists the shortcuts; Esc closes it
    expect(page.locator("#shortcuts")).to_be_visible()
    expect(page.locator("#shortcuts")).to_contain_text("Resolve and open the next conversation")
    page.screenshot(path=str(output_dir / "browser-shortcuts.png"))
    page.keyboard.press("Escape")
    expect(page.locator("#shortcuts")).to_be_hidden()
    page.click("a.side-link:has-text('Requests')")
    page.wait_for_url(re.compile(r"folder=requests"))
    row = page.locator("#rows .row", has_text="Anna Kuznetsova")
    expect(row).to_be_visible()
    page.screenshot(path=str(output_dir / "browser-inbox-requests.png"), full_page=True)
    conversation_url = row.get_attribute("data-href")
    conversation_id = int(conversation_url.rsplit("/", 1)[1])
    row.locator("button[value=accept]").click()
    page.wait_for_load_state()
    expect(page.locator("#rows .row", has_text="Anna Kuznetsova")).to_have_count(0)
    page.goto(conversation_url)
    expect(page.locator(".side-pane")).to_contain_text("Ticket")
    expect(page.locator("button[data-key=e]")).to_be_visible()

    # A second agent has the same conversation open: each sees the other there.
    other = signed_in_page(browser, base_url, "manager@demo.test", "demo-manager-pass")
    other.goto(conversation_url)
    expect(other.locator("#thread")).to_contain_text("Riviera linen set")
    other.evaluate("window.stillTheSamePage = true")  # gone if the page ever reloads
    expect(other.locator("#presence")).to_have_text("Sam Rivera is viewing")
    expect(page.locator("#presence")).to_have_text("Morgan Patel is viewing")

    # "/" opens the canned-reply picker; choosing renders the placeholders.
    text = page.locator("#composer-text")
    page.keyboard.press("/")
    expect(text).to_be_focused()
    text.press_sequentially("than")
    expect(other.locator("#presence")).to_have_text("Sam Rivera is typing…")
    other.screenshot(path=str(output_dir / "browser-conversation-presence.png"))
    item = page.locator("#picker .picker-item", has_text="/thanks")
    expect(item).to_be_visible()
    item.dispatch_event("mousedown")
    rendered = "Hi Anna, thanks for writing! Sam here to help."
    expect(text).to_have_value(rendered)
    expect(page.locator("#placeholder-warning")).to_be_hidden()
    page.click("#composer .reply-btn")
    page.wait_for_load_state()
    expect(page.locator(".flashes")).to_contain_text("Reply queued")
    expect(page.locator("#thread .msg.out").last).to_contain_text(rendered)
    # The colleague's page shows the reply as it is queued, without a reload.
    expect(other.locator("#thread .msg.out").last).to_contain_text(rendered)

    # No worker here: run the delivery task as the worker would, to the simulator.
    message_id = fresh(
        lambda: db.session.scalar(
            select(Message.id)
            .where(
                Message.conversation_id == conversation_id,
                Message.direction == Direction.OUTBOUND,
            )
            .order_by(Message.id.desc())
        )
    )
    assert deliver_message(message_id) == "sent"
    db.session.commit()
    sends = sim.sends()
    assert len(sends) == 1, sends
    assert sends[0]["json"]["recipient"] == {"id": sender_id}
    assert sends[0]["json"]["message"]["text"] == rendered
    expect(other.locator(f"#m{message_id} .status")).to_have_text("sent")  # announced live
    page.reload()
    expect(page.locator(f"#m{message_id} .status")).to_have_text("sent")
    page.screenshot(path=str(output_dir / "browser-conversation.png"), full_page=True)

    # A private note: the colleague's open page shows it too, without a reload.
    page.click("#composer button.mode-btn[data-mode=note]")
    page.fill("#composer-text", "Gift wrap requested, @morgan please check stock")
    page.click("#composer .note-btn")
    page.wait_for_load_state()
    expect(page.locator("#thread .note").last).to_contain_text("Gift wrap requested")
    expect(other.locator("#thread .note.live-new")).to_contain_text("Gift wrap requested")

    # A tag, then resolve with the keyboard; the colleague's page follows the status.
    page.fill("input[name=name][list=tag-list]", "linen")
    page.click(f"form[action='/conversations/{conversation_id}/tags'] button")
    expect(page.locator(".side-pane .tags")).to_contain_text("linen")
    page.locator("body").click(position={"x": 5, "y": 300})  # out of the form fields
    page.keyboard.press("e")
    page.wait_for_load_state()
    expect(page.locator("#status")).to_have_value("resolved")
    expect(other.locator("#ticket-status .pill")).to_have_text("resolved")

    # The customer writes again: the other agent's open page inserts the message, and the
    # agent, back on the inbox, is told of it.
    page.goto("/inbox")
    expect(page.locator("#rows")).to_be_visible()
    posted = send_dm(
        base_url,
        app.config["INSTAGRAM_APP_SECRET"],
        account_id=DEMO_ACCOUNT_ID,
        sender_id=sender_id,
        text="Perfect, and do you ship to Lisbon?",
    )
    assert posted.status_code == 200, posted.response_text
    pending = fresh(
        lambda: db.session.scalars(
            select(WebhookEvent.id).where(WebhookEvent.status == EventStatus.PENDING)
        ).all()
    )
    assert pending
    for event_id in pending:
        intake.process_event(event_id)
        db.session.commit()
    before = other.url
    new_message = other.locator("#thread .msg.in.live-new", has_text="do you ship to Lisbon?")
    expect(new_message).to_be_visible()
    assert other.url == before
    assert other.evaluate("window.stillTheSamePage") is True  # inserted, not reloaded
    expect(other.locator("#ticket-status .pill")).to_have_text("open")  # reopened by it
    # Anna's row lights up if it is on the page; otherwise the banner counts her conversation.
    told = page.locator("#inbox-live:not([hidden]), #rows .row.live-changed")
    expect(told.first).to_be_visible()
    other.screenshot(path=str(output_dir / "browser-conversation-live.png"), full_page=True)
    page.screenshot(path=str(output_dir / "browser-inbox-live.png"), full_page=True)

    # Keyboard: open the first row, resolve it and land on the next one (Shift+E), then back (k).
    page.reload()
    hrefs = page.locator("#rows .row").evaluate_all("rows => rows.map(r => r.dataset.href)")
    page.keyboard.press("j")
    page.keyboard.press("Enter")
    page.wait_for_url(re.compile(re.escape(hrefs[0]) + "$"))
    expect(page.locator("#resolve-form")).to_have_count(1)
    page.keyboard.press("Shift+E")
    page.wait_for_url(re.compile(re.escape(hrefs[1]) + "$"))
    expect(page.locator(".flashes")).to_contain_text("Status: resolved.")
    page.keyboard.press("k")
    page.wait_for_url(re.compile(re.escape(hrefs[0]) + "$"))
    expect(page.locator("#status")).to_have_value("resolved")

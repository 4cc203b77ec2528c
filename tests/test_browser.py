"""The agent console in a real browser: Debian's Chromium driven by Playwright, against the app
served for real on a loopback port and the Graph API simulator.

Skips when Playwright or /usr/bin/chromium is missing (`.ci/run` installs Chromium as root).
"""

from __future__ import annotations

import re
import shutil
import threading
from pathlib import Path

import pytest
from sqlalchemy import select
from werkzeug.serving import make_server

from helpdesk.extensions import db

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--no-first-run",
    "--disable-quic",
]
TIMEOUT_MS = 15_000
CANNED_BODY = (
    "Hi {{ contact.first_name }}, thanks for writing! {{ agent.first_name }} here to help."
)

pytestmark = pytest.mark.browser

playwright_api = pytest.importorskip(
    "playwright.sync_api", reason="Playwright is not installed (pip install -e '.[test]')"
)
if not CHROMIUM.exists() or shutil.which(str(CHROMIUM)) is None:
    pytest.skip(
        f"{CHROMIUM} is missing: install Debian's Chromium (apt-get install -y chromium)",
        allow_module_level=True,
    )


@pytest.fixture
def served(app, monkeypatch):
    """The app on a free loopback port, in a thread, with the Graph API simulator behind it."""
    from helpdesk.graphsim.testing import running_simulator

    with running_simulator() as sim:
        monkeypatch.setitem(app.config, "GRAPH_API_BASE", sim.base_url)
        server = make_server("127.0.0.1", 0, app, threaded=True)
        thread = threading.Thread(target=server.serve_forever, name="browser-app", daemon=True)
        thread.start()
        try:
            yield f"http://127.0.0.1:{server.port}", sim
        finally:
            server.shutdown()
            server.server_close()
            thread.join(timeout=10)


@pytest.fixture
def browser():
    with playwright_api.sync_playwright() as p:
        chromium = p.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        try:
            yield chromium
        finally:
            chromium.close()


def _seed() -> None:
    from helpdesk.accounts.models import Agent
    from helpdesk.brands.models import Brand
    from helpdesk.canned import service as canned
    from helpdesk.seed.demo import DEMO_SLUG, seed_demo

    seed_demo()
    db.session.commit()
    brand = db.session.scalar(select(Brand).where(Brand.slug == DEMO_SLUG))
    manager = db.session.scalar(select(Agent).where(Agent.email == "manager@demo.test"))
    canned.create(brand, manager, "thanks", "Thanks for writing", CANNED_BODY, shared=True)
    db.session.commit()


def _page(browser, base_url: str, email: str, password: str):
    context = browser.new_context(base_url=base_url, viewport={"width": 1400, "height": 900})
    context.set_default_timeout(TIMEOUT_MS)
    context.set_default_navigation_timeout(TIMEOUT_MS)
    page = context.new_page()
    page.goto("/login")
    page.fill("#email", email)
    page.fill("#password", password)
    page.click("button[type=submit]")
    page.wait_for_url(re.compile(r"/inbox"))
    return page


def _read(query):
    """A short read of its own: on SQLite every transaction is BEGIN IMMEDIATE, so one left open
    here would keep the server thread waiting for the write lock."""
    db.session.rollback()
    db.session.expire_all()
    try:
        return query()
    finally:
        db.session.rollback()


def test_agent_console_in_a_browser(app, served, browser, output_dir):
    from helpdesk.delivery.service import deliver
    from helpdesk.dm.models import Contact, Direction, Message
    from helpdesk.graphsim.webhooks import send_dm
    from helpdesk.intake import service as intake
    from helpdesk.intake.models import EventStatus, WebhookEvent
    from helpdesk.seed.demo import DEMO_ACCOUNT_ID

    base_url, sim = served
    expect = playwright_api.expect
    expect.set_options(timeout=TIMEOUT_MS)
    _seed()
    sender_id = _read(
        lambda: db.session.scalar(
            select(Contact.platform_id).where(Contact.username == "anna.kuznetsova")
        )
    )

    # The agent accepts Anna's message request from the Requests folder.
    page = _page(browser, base_url, "agent@demo.test", "demo-agent-pass")
    expect(page.locator("#rows .row").first).to_be_visible()
    page.screenshot(path=str(output_dir / "browser-inbox.png"), full_page=True)
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

    # A second agent has the same conversation open.
    other = _page(browser, base_url, "manager@demo.test", "demo-manager-pass")
    other.context.clock.install()
    other.goto(conversation_url)
    expect(other.locator("#thread")).to_contain_text("Riviera linen set")

    # "/" opens the canned-reply picker; choosing renders the placeholders.
    text = page.locator("#composer-text")
    text.click()
    text.press_sequentially("/than")
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

    # No worker here: deliver it as the worker would, to the simulator.
    message_id = _read(
        lambda: db.session.scalar(
            select(Message.id)
            .where(
                Message.conversation_id == conversation_id,
                Message.direction == Direction.OUTBOUND,
            )
            .order_by(Message.id.desc())
        )
    )
    assert deliver(message_id) == "sent"
    db.session.commit()
    sends = sim.sends()
    assert len(sends) == 1, sends
    assert sends[0]["json"]["recipient"] == {"id": sender_id}
    assert sends[0]["json"]["message"]["text"] == rendered
    page.reload()
    expect(page.locator(f"#m{message_id} .status")).to_have_text("sent")
    page.screenshot(path=str(output_dir / "browser-conversation.png"), full_page=True)

    # A tag, then resolve.
    page.fill("input[name=name][list=tag-list]", "linen")
    page.click(f"form[action='/conversations/{conversation_id}/tags'] button")
    expect(page.locator(".side-pane .tags")).to_contain_text("linen")
    page.click("button[data-key=e]")
    page.wait_for_load_state()
    expect(page.locator("#status")).to_have_value("resolved")

    # The customer writes again: the other agent's page learns of it without a reload.
    other.reload()  # it shows the reply now: only the customer's next message is new
    expect(other.locator("#thread")).to_contain_text(rendered)
    posted = send_dm(
        base_url,
        app.config["INSTAGRAM_APP_SECRET"],
        account_id=DEMO_ACCOUNT_ID,
        sender_id=sender_id,
        text="Perfect, and do you ship to Lisbon?",
    )
    assert posted.status_code == 200, posted.response_text
    pending = _read(
        lambda: db.session.scalars(
            select(WebhookEvent.id).where(WebhookEvent.status == EventStatus.PENDING)
        ).all()
    )
    assert pending
    for event_id in pending:
        intake.process_event(event_id)
        db.session.commit()
    before = other.url
    other.context.clock.fast_forward(16_000)  # the page polls every 15 s
    expect(other.locator("#thread-live")).to_be_visible()
    expect(other.locator("#thread-live-count")).to_have_text("1 new message")
    assert other.url == before
    other.click("#thread-live a")
    expect(other.locator("#thread")).to_contain_text("do you ship to Lisbon?")
    other.screenshot(path=str(output_dir / "browser-conversation-live.png"), full_page=True)

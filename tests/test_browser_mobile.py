"""The console on phones, in the dark, and with media that no longer loads: Debian's Chromium
driven by Playwright as a phone (a touch screen that honours the page's viewport), against the
app served for real on a loopback port. Screenshots at desktop and phone width, light and dark,
go to the test output folder.

Skips when Playwright or /usr/bin/chromium is missing (`.ci/run` installs Chromium as root).
"""

from __future__ import annotations

import re
from typing import Any

import pytest
from sqlalchemy import select

from helpdesk.extensions import db
from tests.conftest import fresh, serving, wait_for
from tests.helpers.browser import (
    TIMEOUT_MS,
    browser,  # noqa: F401  (a fixture)
    playwright_api,
)

pytestmark = pytest.mark.browser

PHONE = {"width": 390, "height": 844}
SMALL_PHONE = {"width": 360, "height": 740}
DESKTOP = {"width": 1280, "height": 800}
AGENT = ("agent@demo.test", "demo-agent-pass")
MANAGER = ("manager@demo.test", "demo-manager-pass")

# WCAG contrast of an element's text against the first opaque background behind it.
CONTRAST = """(el) => {
  const rgb = (c) => (c.match(/[\\d.]+/g) || []).map(Number);
  const lum = ([r, g, b]) => {
    const f = (v) => { v /= 255; return v <= 0.03928 ? v / 12.92 : ((v + 0.055) / 1.055) ** 2.4; };
    return 0.2126 * f(r) + 0.7152 * f(g) + 0.0722 * f(b);
  };
  let node = el, bg = null;
  while (node && node.nodeType === 1) {
    const c = rgb(getComputedStyle(node).backgroundColor);
    if (c.length === 3 || (c.length === 4 && c[3] > 0.9)) { bg = c.slice(0, 3); break; }
    node = node.parentElement;
  }
  bg = bg || [255, 255, 255];
  const fg = rgb(getComputedStyle(el).color).slice(0, 3);
  const [a, b] = [lum(fg), lum(bg)].sort((x, y) => y - x);
  return (a + 0.05) / (b + 0.05);
}"""

BROKEN_VISIBLE_IMAGES = """() => Array.from(document.images).filter(
  (img) => img.complete && img.naturalWidth === 0 && img.getClientRects().length > 0).length"""


@pytest.fixture
def served(app, sim):
    """The app on a free loopback port, in a thread, with the Graph API simulator behind it."""
    with serving(app) as base_url:
        yield base_url


@pytest.fixture
def demo() -> dict[str, int]:
    """The demo brand, and the ids of Amélie's conversation (an image from her) and its ticket."""
    from devtools.seed.demo import seed_demo
    from helpdesk.dm.models import Contact, Conversation
    from helpdesk.tickets.models import Ticket

    seed_demo()
    db.session.commit()

    def ids() -> dict[str, int]:
        contact = db.session.scalar(select(Contact).where(Contact.username == "amelie.roux"))
        conversation = db.session.scalar(
            select(Conversation).where(Conversation.contact_id == contact.id)
        )
        ticket = db.session.scalar(
            select(Ticket)
            .where(Ticket.conversation_id == conversation.id)
            .order_by(Ticket.id.desc())
        )
        return {"contact": contact.id, "conversation": conversation.id, "ticket": ticket.id}

    return fresh(ids)


def _page(browser, base_url: str, viewport: dict, who=AGENT, dark: bool = False) -> Any:  # noqa: F811
    """A page of a new context signed in through the form: at phone sizes it is a phone (touch,
    the page's viewport meta honoured), which is where a too-wide page shows."""
    phone = viewport["width"] < 700
    context = browser.new_context(
        base_url=base_url,
        viewport=viewport,
        is_mobile=phone,
        has_touch=phone,
        color_scheme="dark" if dark else "light",
    )
    context.set_default_timeout(TIMEOUT_MS)
    context.set_default_navigation_timeout(TIMEOUT_MS)
    page = context.new_page()
    page.goto("/login")
    _fits(page, "the sign-in page")
    page.fill("#email", who[0])
    page.fill("#password", who[1])
    page.click("button[type=submit]")
    page.wait_for_url(re.compile(r"/inbox"))
    return page


def _fits(page, what: str) -> None:
    """No sideways scroll, and no page laid out wider than the screen either (a phone zooms out
    to show a too-wide page whole, which widens innerWidth with it)."""
    page.wait_for_load_state()
    scroll, inner = page.evaluate("() => [document.documentElement.scrollWidth, innerWidth]")
    screen = page.viewport_size["width"]
    assert scroll <= inner <= screen, f"{what} is {scroll} px wide on a {screen} px screen"


@pytest.mark.parametrize("viewport", [PHONE, SMALL_PHONE], ids=["390", "360"])
def test_every_console_page_fits_a_phone(served, browser, demo, viewport):  # noqa: F811
    expect = playwright_api.expect
    expect.set_options(timeout=TIMEOUT_MS)
    page = _page(browser, served, viewport)
    _fits(page, "the inbox")

    # Each inbox row shows who wrote, what, when and the SLA badge, inside the screen.
    row = page.locator("#rows .row").first
    for part in (".who", ".preview", ".row-wait", ".row-sla"):
        cell = row.locator(part)
        expect(cell).to_be_visible()
        box = cell.bounding_box()
        assert box["x"] >= 0 and box["x"] + box["width"] <= viewport["width"] + 0.5, part
        assert box["width"] > 20, part
    assert row.locator(".who").inner_text().strip()
    assert row.locator(".preview").inner_text().strip()

    # Folders are chips in their own sideways-scrolling box; filters open behind a button.
    status = page.locator("select[name=status]")
    expect(status).to_be_hidden()
    page.click(".filters-toggle")
    expect(status).to_be_visible()
    page.select_option("select[name=status]", "all")
    page.wait_for_url(re.compile(r"status=all"))
    page.click("a.side-link:has-text('Requests')")
    page.wait_for_url(re.compile(r"folder=requests"))
    expect(page.locator("#rows .row", has_text="Anna Kuznetsova")).to_be_visible()
    _fits(page, "the Requests folder")

    # The top bar fits; its menu holds the navigation, availability and Sign out.
    sign_out = page.locator("form[action='/logout'] button")
    expect(sign_out).to_be_hidden()
    page.click(".menu-toggle")
    expect(sign_out).to_be_visible()
    expect(page.locator("#availability")).to_be_visible()
    expect(page.locator(".topnav a", has_text="Notifications")).to_be_visible()
    _fits(page, "the inbox with its menu open")

    for path, what in (
        (f"/conversations/{demo['conversation']}", "a conversation"),
        ("/search?q=order", "search"),
        ("/notifications", "notifications"),
    ):
        page.goto(path)
        _fits(page, what)
    page.click(".menu-toggle")
    page.click("form[action='/logout'] button")
    page.wait_for_url(re.compile(r"/login"))
    _fits(page, "the sign-in page after signing out")
    page.context.close()

    manager = _page(browser, served, viewport, MANAGER)
    manager.goto("/dashboard")
    expect(manager.locator("svg[data-chart=trend]")).to_be_visible()
    _fits(manager, "the dashboard")
    manager.context.close()


def test_the_ticket_is_worked_from_a_phone(served, browser, demo, output_dir):  # noqa: F811
    from helpdesk.accounts.models import Agent
    from helpdesk.tickets.models import Ticket

    expect = playwright_api.expect
    expect.set_options(timeout=TIMEOUT_MS)
    page = _page(browser, served, PHONE)
    page.goto(f"/conversations/{demo['conversation']}")
    status = page.locator("#status")
    expect(status).to_be_hidden()  # the thread has the screen; the ticket is one tap away

    page.click(".ticket-toggle")
    expect(status).to_be_visible()
    _fits(page, "the ticket sheet")
    page.screenshot(path=str(output_dir / "mobile-ticket-sheet.png"))
    page.select_option("#status", "pending")
    page.click("form:has(#status) button")
    page.wait_for_load_state()
    expect(page.locator(".flashes")).to_contain_text("pending")
    assert fresh(lambda: db.session.get(Ticket, demo["ticket"]).status.value) == "pending"

    # The sheet stays open after its own form, so the next change is one more tap.
    expect(status).to_be_visible()
    expect(status).to_have_value("pending")
    page.select_option("#assignee", label="Morgan Patel")
    page.wait_for_load_state()
    expect(page.locator("#assignee")).to_be_visible()
    assignee = fresh(lambda: db.session.get(Ticket, demo["ticket"]).assignee_id)
    assert fresh(lambda: db.session.get(Agent, assignee).name) == "Morgan Patel"

    page.fill("input[name=name][list=tag-list]", "colour question")
    page.click("form:has(input[list=tag-list]) button")
    expect(page.locator(".side-pane .tags")).to_contain_text("colour question")
    page.select_option("#priority", "high")
    expect(page.locator("#priority")).to_have_value("high")
    # The select submits its form on change: wait for that request to be committed.
    assert wait_for(lambda: db.session.get(Ticket, demo["ticket"]).priority.value == "high")
    # The SLA of the new priority shows in the sheet.
    expect(page.locator(".sla-list")).to_be_visible()

    page.click(".sheet-close")
    expect(status).to_be_hidden()
    expect(page.locator("#thread")).to_be_visible()
    page.context.close()


def test_media_that_no_longer_loads_shows_a_placeholder(served, browser, demo):  # noqa: F811
    """Expired platform URLs (here: addresses that answer 404) never leave a broken image: the
    avatar shows initials, the message says the media is gone and where to see it."""
    from helpdesk.dm.models import Contact, Direction, Message

    expect = playwright_api.expect
    expect.set_options(timeout=TIMEOUT_MS)
    gone = f"{served}/static/expired"

    def break_urls() -> None:
        db.session.get(Contact, demo["contact"]).avatar_url = f"{gone}/avatar.jpg"
        messages = db.session.scalars(
            select(Message).where(Message.conversation_id == demo["conversation"])
        ).all()
        for message in messages:
            if message.attachments:
                message.attachments = [
                    {**a, "url": f"{gone}/{message.id}.jpg"} for a in message.attachments
                ]
        brand_reply = next(m for m in messages if m.direction == Direction.OUTBOUND)
        brand_reply.attachments = [{"type": "image", "url": f"{gone}/brand.jpg"}]
        db.session.commit()

    break_urls()
    for viewport in (DESKTOP, PHONE):
        page = _page(browser, served, viewport)
        url = f"/conversations/{demo['conversation']}"
        html = page.request.get(url).text()
        assert 'alt="image from the customer"' in html
        assert 'alt="image sent by the brand"' in html  # the brand's own picture says so

        page.goto(url)
        incoming = page.locator("#thread .msg.in .media-missing").first
        expect(incoming).to_contain_text("Media no longer available — open on Instagram")
        expect(incoming.locator("a")).to_have_attribute("href", "https://ig.me/m/amelie.roux")
        expect(page.locator("#thread .msg.out .media-missing").first).to_be_visible()
        page.wait_for_function(f"() => ({BROKEN_VISIBLE_IMAGES})() === 0")
        assert page.locator("#thread img").count() == 0
        head = page.locator(".conv-head .avatar")
        expect(head).to_have_text("AR")
        expect(head.locator("img")).to_have_count(0)
        _fits(page, "a conversation with lost media")

        page.goto("/inbox?status=all")
        row = page.locator("#rows .row", has_text="Amélie Roux")
        row.scroll_into_view_if_needed()
        expect(row.locator(".avatar-md")).to_have_text("AR")
        assert page.evaluate(BROKEN_VISIBLE_IMAGES) == 0
        page.context.close()


def test_the_dark_theme_follows_the_system_and_stays_readable(served, browser, demo):  # noqa: F811
    expect = playwright_api.expect
    expect.set_options(timeout=TIMEOUT_MS)
    page = _page(browser, served, DESKTOP, dark=True)
    background = page.evaluate("() => getComputedStyle(document.body).backgroundColor")
    assert background != "rgb(245, 246, 248)", "the dark scheme is ignored"
    checks = {
        "#rows .row .who": 7,
        "#rows .row .preview": 4.5,
        ".side-link.active": 4.5,
        ".side-link .count": 4.5,
        "select[name=status]": 4.5,
    }
    page.click("a.side-link:has-text('Requests')")  # a request pill
    page.wait_for_url(re.compile(r"folder=requests"))
    checks["#rows .pill-request"] = 4.5
    for selector, least in checks.items():
        ratio = page.locator(selector).first.evaluate(CONTRAST)
        assert ratio >= least, f"{selector}: contrast {ratio:.2f} under {least}"

    page.goto(f"/conversations/{demo['conversation']}")
    for selector in (
        "#thread .msg.in .bubble .text",
        "#thread .msg.out .bubble .text",
        "#thread .meta",
        ".badge",
        "#composer-text",
        ".side-pane .panel-label",
        "#ticket-status .pill",
        ".sla-row",
    ):
        locator = page.locator(selector).first
        if locator.count():
            ratio = locator.evaluate(CONTRAST)
            assert ratio >= 4.5, f"{selector}: contrast {ratio:.2f}"
    page.context.close()

    manager = _page(browser, served, DESKTOP, MANAGER, dark=True)
    manager.goto("/dashboard")
    for selector in ("h1", ".figure .label", ".figure .value", ".chart .tick"):
        locator = manager.locator(selector).first
        if selector == ".chart .tick":  # SVG text is painted with fill, not color
            ratio = locator.evaluate(
                CONTRAST.replace("getComputedStyle(el).color", "getComputedStyle(el).fill")
            )
        else:
            ratio = locator.evaluate(CONTRAST)
        assert ratio >= 4.5, f"dashboard {selector}: contrast {ratio:.2f}"
    manager.context.close()


def _whole_page(page, path) -> None:
    """The whole page although its main pane scrolls inside the window: the window is made as
    tall as the pane for the shot."""
    viewport = page.viewport_size
    height = page.evaluate(
        "() => document.querySelector('main').getBoundingClientRect().top"
        " + document.querySelector('main').scrollHeight"
    )
    page.set_viewport_size({"width": viewport["width"], "height": max(viewport["height"], height)})
    page.screenshot(path=str(path), full_page=True)
    page.set_viewport_size(viewport)


@pytest.mark.parametrize("dark", [False, True], ids=["light", "dark"])
def test_screenshots_at_desktop_and_phone_width(served, browser, demo, output_dir, dark):  # noqa: F811
    expect = playwright_api.expect
    expect.set_options(timeout=TIMEOUT_MS)
    scheme = "dark" if dark else "light"
    for size, viewport in (("desktop", DESKTOP), ("mobile", PHONE)):
        page = _page(browser, served, viewport, dark=dark)
        page.emulate_media(color_scheme=scheme)
        expect(page.locator("#rows .row").first).to_be_visible()
        page.screenshot(path=str(output_dir / f"{size}-inbox-{scheme}.png"))
        if size == "mobile":
            page.click(".filters-toggle")
            page.click(".menu-toggle")
            page.screenshot(path=str(output_dir / f"{size}-inbox-menu-{scheme}.png"))
            page.goto("/inbox?folder=requests")
            expect(page.locator("#rows .row button[value=accept]").first).to_be_visible()
            page.screenshot(path=str(output_dir / f"{size}-inbox-requests-{scheme}.png"))
        page.goto(f"/conversations/{demo['conversation']}")
        expect(page.locator("#thread")).to_be_visible()
        page.screenshot(path=str(output_dir / f"{size}-conversation-{scheme}.png"))
        if size == "mobile":
            page.click(".ticket-toggle")
            expect(page.locator("#status")).to_be_visible()
            page.screenshot(path=str(output_dir / f"{size}-ticket-{scheme}.png"))
            for path, name in (("/search?q=order", "search"), ("/notifications", "notifications")):
                page.goto(path)
                page.screenshot(path=str(output_dir / f"{size}-{name}-{scheme}.png"))
            page.click(".menu-toggle")
            page.click("form[action='/logout'] button")
            page.wait_for_url(re.compile(r"/login"))
            page.screenshot(path=str(output_dir / f"{size}-login-{scheme}.png"))
        page.context.close()

        manager = _page(browser, served, viewport, MANAGER, dark=dark)
        manager.emulate_media(color_scheme=scheme)
        manager.goto("/dashboard")
        expect(manager.locator("svg[data-chart=trend]")).to_be_visible()
        _whole_page(manager, output_dir / f"{size}-dashboard-{scheme}.png")
        manager.context.close()


def test_dashboard_charts_read_in_light_and_dark(served, browser, client, output_dir):  # noqa: F811
    """Two weeks of figures (test_metrics' history): the charts' marks stand out from their
    panel (3:1, as WCAG asks of graphics) and their labels read (4.5:1) in both schemes."""
    from tests.factories import PASSWORD
    from tests.helpers.metrics import FIRST, LAST, History

    expect = playwright_api.expect
    expect.set_options(timeout=TIMEOUT_MS)
    history = History(client)
    history.build()
    history.run_workers()
    db.session.commit()
    manager = (history.manager.email, PASSWORD)
    db.session.rollback()
    for size, viewport in (("desktop", DESKTOP), ("mobile", PHONE)):
        for scheme in ("light", "dark"):
            page = _page(browser, served, viewport, manager, dark=scheme == "dark")
            page.goto(f"/dashboard?from={FIRST.isoformat()}&to={LAST.isoformat()}")
            trend = page.locator("svg[data-chart=trend]")
            expect(trend.locator("rect.bar")).to_have_count(14)
            _fits(page, "the dashboard")
            fill = CONTRAST.replace("getComputedStyle(el).color", "getComputedStyle(el).fill")
            bar = trend.locator("rect.bar").first.evaluate(fill)
            assert bar >= 3, f"{scheme}: bars against their panel {bar:.2f}"
            tick = trend.locator("text.tick").first.evaluate(fill)
            assert tick >= 4.5, f"{scheme}: chart labels {tick:.2f}"
            line = trend.locator("polyline.line").evaluate(
                CONTRAST.replace("getComputedStyle(el).color", "getComputedStyle(el).stroke")
            )
            assert line >= 3, f"{scheme}: the median line against its panel {line:.2f}"
            _whole_page(page, output_dir / f"{size}-dashboard-figures-{scheme}.png")
            page.context.close()

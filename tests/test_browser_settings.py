"""Issue 15's "Done when" in a real browser (Chromium through Playwright, the app served on a
loopback port): an admin invites an agent who joins from the link (read from the page and from the
e-mail), a manager sets business hours, an SLA policy, a round-robin team, a canned reply and a
keyword tag, and a new DM then gets that due time, that agent and that tag; an admin makes and
revokes an API token and tests an outgoing webhook; the audit log shows every change. Every
settings page is photographed on a desktop and on a phone, without a console error or a policy
violation.

Skips when Playwright or /usr/bin/chromium is missing, like the other browser tests.
"""

from __future__ import annotations

import re
import threading
import urllib.error
import urllib.request
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
from flask import g
from sqlalchemy import select
from werkzeug.wrappers import Request, Response

from helpdesk.accounts.models import Agent
from helpdesk.brands.models import Brand
from helpdesk.extensions import db
from helpdesk.outgoing import service as outgoing
from helpdesk.sla import preview as sla_preview
from helpdesk.sla.clocks import get_calendar, list_policies
from helpdesk.sla.models import SlaTarget
from helpdesk.tickets.models import Tag, Ticket, TicketTag
from helpdesk.web.console.formatting import local
from helpdesk.web.settings import webhooks as webhooks_page
from tests.conftest import fresh, serving
from tests.helpers.browser import (
    TIMEOUT_MS,
    browser,  # noqa: F401  (a fixture)
    playwright_api,
    signed_in_page,
)
from tests.helpers.mail import read_mail
from tests.helpers.world import World, known_contact

pytestmark = pytest.mark.browser

NEW_AGENT = "rosa@example.com"
NEW_PASSWORD = "a-long-and-new-password-42"
ZONE = "Asia/Tokyo"  # no daylight saving: the shown time is the same all year
LINK = re.compile(r"https?://[^\s\"'<>]+/invitations/[A-Za-z0-9_\-.~%]+")
WEEKLY = {
    "mon": "09:00-12:30, 13:30-18:00",
    "tue": "09:00-18:00",
    "wed": "09:00-18:00",
    "thu": "09:00-18:00",
    "fri": "09:00-17:00",
    "sat": "10:00-14:00",
    "sun": "",
}
ROW = "tbody tr:not(.edit-row)"  # a table row, not the edit forms under it
PHONE = {"width": 390, "height": 844}
DESKTOP = {"width": 1400, "height": 900}
PAGES = {
    "home": "/settings",
    "brand": "/settings/brand",
    "channels": "/settings/channels",
    "agents": "/settings/agents",
    "teams": "/settings/teams",
    "business-hours": "/settings/business-hours",
    "sla-policies": "/settings/sla-policies",
    "canned-replies": "/settings/canned-replies",
    "tags": "/settings/tags",
    "api-tokens": "/settings/api-tokens",
    "webhooks": "/settings/webhooks",
    "privacy": "/settings/privacy",
    "audit": "/settings/audit",
    "account": "/account",
}
VIOLATION = re.compile(r"Content Security Policy|Refused to (execute|load|apply|connect)", re.I)
RECORD_VIOLATIONS = """
window.__violations = [];
document.addEventListener("securitypolicyviolation", function (event) {
  window.__violations.push(event.violatedDirective + " " + (event.blockedURI || "inline"));
});
"""


class Receiver:
    """A real HTTP server on 127.0.0.1 for the outgoing webhook: records each request."""

    def __init__(self) -> None:
        self.requests: list[bytes] = []
        self.lock = threading.Lock()
        self.url = ""

    def __call__(self, environ, start_response):
        request = Request(environ)
        with self.lock:
            self.requests.append(request.get_data())
        return Response("ok", status=200)(environ, start_response)


@pytest.fixture
def served(app, sim):
    with serving(app) as base_url:
        yield base_url


@pytest.fixture
def receiver(app, monkeypatch) -> Iterator[Receiver]:
    """The receiver, with internal addresses allowed for this test only; "Send test" does not
    wake a worker: the test runs the delivery itself."""
    monkeypatch.setitem(app.config, "OUTGOING_WEBHOOKS_ALLOW_PRIVATE", True)
    monkeypatch.setattr(webhooks_page, "wake_outgoing", lambda: True)
    handler = Receiver()
    with serving(handler) as base_url:
        handler.url = f"{base_url}/hook"
        yield handler


class Watched:
    """Console errors, page errors and policy violations of every page of a context."""

    def __init__(self, context) -> None:
        self.problems: list[str] = []
        context.add_init_script(RECORD_VIOLATIONS)
        context.on("page", self.watch)
        for page in context.pages:
            self.watch(page)

    def watch(self, page) -> None:
        page.on("console", lambda m: self.console(page, m))
        page.on("pageerror", lambda error: self.problems.append(f"{page.url}: {error}"))

    def console(self, page, message) -> None:
        if message.type == "error" or VIOLATION.search(message.text):
            self.problems.append(f"{page.url}: {message.text}")

    def check(self, page) -> None:
        seen = page.evaluate("() => window.__violations || []")
        assert seen == [], (page.url, seen)
        assert self.problems == [], self.problems


def watched(browser, served: str, email: str, password: str | None = None, **options):  # noqa: F811
    page = (
        signed_in_page(browser, served, email, **options)
        if password is None
        else signed_in_page(browser, served, email, password, **options)
    )
    return page, Watched(page.context)


def screenshot(page, path: Path) -> None:
    """The whole page: the console's main pane scrolls inside the window, so the window is made
    as tall as the pane for the shot."""
    viewport = page.viewport_size
    height = page.evaluate(
        "() => { const m = document.querySelector('main');"
        " return m.getBoundingClientRect().top + m.scrollHeight; }"
    )
    page.set_viewport_size({"width": viewport["width"], "height": max(viewport["height"], height)})
    page.screenshot(path=str(path), full_page=True)
    page.set_viewport_size(viewport)


def submit(page, form_selector: str, button: str | None = None) -> None:
    """Press the form's submit button and wait for the page the 303 leads to."""
    form = page.locator(form_selector)
    target = form.locator(button or "button[type=submit]").first
    with page.expect_navigation():
        target.click()


def flash(page, text: str) -> None:
    playwright_api.expect(page.locator(".flashes")).to_contain_text(text)


# 1. The invitation -------------------------------------------------------------------------------


def invite_and_join(browser, served: str, admin_email: str, smtp: list[str]) -> None:  # noqa: F811
    expect = playwright_api.expect
    admin, watch = watched(browser, served, admin_email)
    admin.goto("/settings/agents")
    admin.fill("#email", NEW_AGENT)
    admin.fill("#name", "Rosa")
    admin.select_option("#role", "agent")
    submit(admin, "form[action='/settings/agents/invitations']")
    box = admin.locator(".shown-once .secret")
    expect(box).to_be_visible()
    shown = box.input_value()
    assert LINK.fullmatch(shown), shown
    expect(admin.locator(ROW, has_text=NEW_AGENT)).to_contain_text("invited")
    watch.check(admin)
    admin.context.close()

    # The same link went out by e-mail.
    assert len(smtp) == 1, smtp
    to, subject, body = read_mail(smtp[0])
    assert to == NEW_AGENT and subject
    assert LINK.findall(body) == [shown]

    # The agent accepts in a browser of their own and lands signed in.
    context = browser.new_context(base_url=served, viewport=DESKTOP)
    context.set_default_timeout(TIMEOUT_MS)
    page = context.new_page()
    page.goto(shown)
    page.fill("#name", "Rosa Lind")
    page.fill("#password", NEW_PASSWORD)
    with page.expect_navigation():
        page.click("button[type=submit]")
    page.wait_for_url(re.compile(r"/inbox"))
    flash(page, "Welcome to")
    expect(page.locator(".me")).to_have_text("Rosa Lind")

    # Signs out, and in again with the new password.
    with page.expect_navigation():
        page.locator("form[action='/logout'] button").click()
    page.wait_for_url(re.compile(r"/login"))
    page.fill("#email", NEW_AGENT)
    page.fill("#password", NEW_PASSWORD)
    with page.expect_navigation():
        page.click("button[type=submit]")
    page.wait_for_url(re.compile(r"/inbox"))
    expect(page.locator(".me")).to_have_text("Rosa Lind")
    expect(page.locator("#availability")).to_have_value("online")
    context.close()


# 2. The manager's settings -----------------------------------------------------------------------


def set_time_zone(browser, served: str, admin_email: str) -> None:  # noqa: F811
    admin, watch = watched(browser, served, admin_email)
    admin.goto("/settings/brand")
    admin.select_option("#timezone", ZONE)
    submit(admin, "form[action='/settings/brand']")
    playwright_api.expect(admin.locator("#timezone")).to_have_value(ZONE)
    watch.check(admin)
    admin.context.close()


def manager_settings(browser, served: str, manager_email: str) -> None:  # noqa: F811
    expect = playwright_api.expect
    page, watch = watched(browser, served, manager_email)

    # Weekdays and Saturday morning, closed on Sunday and on one day far ahead; the test works
    # out the due time with the SLA service at the message's time, whenever it runs.
    page.goto("/settings/business-hours")
    for day, hours in WEEKLY.items():
        page.fill(f"#weekly-{day}", hours)
    submit(page, "form.weekly-form")
    flash(page, "Business hours saved.")
    page.fill("#date", "2099-12-25")
    submit(page, "form[action='/settings/business-hours/holidays']")
    expect(page.locator("time[datetime='2099-12-25']")).to_be_visible()

    page.goto("/settings/sla-policies")
    page.fill("#pnew-name", "Standard")
    page.fill("#pnew-first_response_min", "30")
    page.check("#pnew-business_hours")
    submit(page, "form[action='/settings/sla-policies']")
    summary = page.locator(".sla-policy", has_text="Standard").locator("p.muted").first
    expect(summary).to_have_text(
        re.compile(r"^\s*Every ticket ·\s+First response 30 min\s+· business hours\s*$")
    )

    page.goto("/settings/teams")
    page.fill("#name-new", "Returns")
    page.select_option("#assignment-new", "round_robin")
    new_team = page.locator("form[action='/settings/teams']")
    new_team.locator("label", has_text="Rosa Lind").locator("input").check()
    submit(page, "form[action='/settings/teams']")
    expect(page.locator(ROW, has_text="Returns")).to_contain_text("Rosa Lind")

    page.goto("/settings/canned-replies")
    page.fill("#shortcode", "hello")
    page.fill("#title", "Greeting")
    page.fill("#body", "Hi {{ contact.first_name }}, thanks for writing!")
    page.click("button[value=preview]")
    page.wait_for_load_state()
    # The placeholder is filled with the sample contact's first name.
    expect(page.locator(".canned-preview")).to_have_text(
        re.compile(r"^Hi [A-Z]\w+, thanks for writing!$")
    )
    page.check("#shared")
    submit(page, "form[action='/settings/canned-replies']", "button[value=save]")
    expect(page.locator(ROW, has_text="/hello")).to_contain_text("Shared")

    page.goto("/settings/tags")
    page.fill("#new-tag-name", "refund")
    page.fill("#new-tag-keywords", "refund, money back")
    submit(page, "form[action='/settings/tags']")
    expect(page.locator(ROW, has_text="money back")).to_contain_text("refund")

    # Tickets tagged refund go to Returns (a ticket reaches a team through a routing rule).
    page.goto("/settings/teams")
    page.select_option("#routing-team", label="Returns")
    page.select_option("#routing-tag", label="refund")
    submit(page, "form[action='/settings/teams/routing']")
    expect(page.locator(".routing-rules")).to_contain_text("Tagged refund → Returns")
    watch.check(page)
    page.context.close()


# 3. A new DM --------------------------------------------------------------------------------------


def new_dm(app, served: str, world: World) -> int:
    """A followed customer's DM with the tag's keyword, as a signed webhook processed by intake;
    the new ticket's id."""
    from devtools.graphsim.webhooks import send_dm
    from helpdesk.intake import service as intake
    from helpdesk.intake.models import EventStatus, WebhookEvent

    person = known_contact(world.channel, name="Mia Berg", username="mia.berg")
    platform_id, account_id = person.platform_id, world.channel.account_id
    db.session.commit()
    posted = send_dm(
        served,
        app.config["INSTAGRAM_APP_SECRET"],
        account_id=account_id,
        sender_id=platform_id,
        text="Hello, I would like a refund for order 118",
    )
    assert posted.status_code == 200, posted.response_text
    pending = fresh(
        lambda: db.session.scalars(
            select(WebhookEvent.id).where(WebhookEvent.status == EventStatus.PENDING)
        ).all()
    )
    assert len(pending) == 1
    intake.process_event(pending[0])
    db.session.commit()
    return fresh(
        lambda: db.session.scalar(
            select(Ticket.id)
            .where(Ticket.brand_id == world.brand.id)
            .order_by(Ticket.id.desc())
            .limit(1)
        )
    )


def the_ticket_follows_the_settings(app, browser, served, ticket_id, manager_email, output_dir):  # noqa: F811
    expect = playwright_api.expect
    db.session.expire_all()
    ticket = db.session.get(Ticket, ticket_id)
    rosa = db.session.scalar(select(Agent).where(Agent.email == NEW_AGENT))
    tags = db.session.scalars(
        select(Tag.name)
        .join(TicketTag, TicketTag.tag_id == Tag.id)
        .where(TicketTag.ticket_id == ticket.id)
    ).all()
    due, conversation_id, rosa_id = ticket.first_response_due_at, ticket.conversation_id, rosa.id
    assert due is not None
    # What the SLA service gives a message at that time under these hours and this policy.
    brand = db.session.get(Brand, ticket.brand_id)
    (policy,) = list_policies(brand.id)
    expected = sla_preview.due(
        get_calendar(brand), policy, SlaTarget.FIRST_RESPONSE, ticket.opened_at
    )
    assert expected is not None and expected.minutes == 30 and expected.business
    assert due == expected.due_at
    assert due - ticket.opened_at >= timedelta(minutes=30)
    assert ticket.assignee_id == rosa_id  # round-robin to the only online member
    assert list(tags) == ["refund"]
    assert brand.timezone == ZONE
    with app.test_request_context():
        g.brand = brand
        shown = local(due)  # as the console formats it, in the brand's time zone
    assert shown == due.astimezone(ZoneInfo(ZONE)).strftime("%d %b %H:%M")
    db.session.rollback()

    page, watch = watched(browser, served, manager_email)
    page.goto(f"/conversations/{conversation_id}")
    row = page.locator(".sla-row", has_text="First response")
    expect(row.locator(".countdown")).to_have_attribute("title", f"Due {shown}")
    expect(page.locator("#assignee")).to_have_value(str(rosa_id))
    expect(page.locator(".side-pane .tags")).to_contain_text("refund")
    screenshot(page, output_dir / "settings-new-dm-conversation.png")
    page.context.close()


# 4. Tokens and webhooks ---------------------------------------------------------------------------


def api_status(served: str, token: str) -> int:
    request = urllib.request.Request(
        f"{served}/api/v1/brand", headers={"Authorization": f"Bearer {token}"}
    )
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status
    except urllib.error.HTTPError as error:
        return error.code


def tokens_and_webhooks(browser, served: str, admin_email: str, receiver: Receiver) -> None:  # noqa: F811
    expect = playwright_api.expect
    page, watch = watched(browser, served, admin_email)
    page.goto("/settings/api-tokens")
    page.fill("#name", "CRM sync")
    page.select_option("#role", "manager")
    submit(page, "form[action='/settings/api-tokens']")
    secret = page.locator(".shown-once .secret")
    expect(secret).to_be_visible()
    token = secret.input_value()
    assert token
    assert api_status(served, token) == 200
    page.reload()
    expect(page.locator(".shown-once")).to_have_count(0)  # shown once: gone after a reload
    assert token not in page.content()
    row = page.locator(ROW, has_text="CRM sync")
    expect(row).to_contain_text("Active")
    submit(page, "tr:has-text('CRM sync') form")
    expect(page.locator(ROW, has_text="CRM sync")).to_contain_text("Revoked")
    assert api_status(served, token) == 401

    page.goto("/settings/webhooks")
    page.fill("#url", receiver.url)
    page.locator("input[name=events][value='ticket.created']").check()
    submit(page, "form[action='/settings/webhooks']")
    expect(page.locator(".shown-once .secret")).to_be_visible()
    submit(page, "section.panel[id^=webhook-] form[action$='/test']")
    expect(page.locator("section.panel[id^=webhook-]")).to_contain_text("Waiting to be sent")

    # The delivery worker's run, in the test's own short transaction.
    db.session.rollback()
    assert outgoing.deliver_due() >= 1
    db.session.commit()
    assert len(receiver.requests) >= 1
    page.reload()
    delivery = page.locator("tr.delivery", has_text="ping")
    expect(delivery).to_contain_text("Delivered")
    expect(delivery).to_contain_text("HTTP 200")
    watch.check(page)
    page.context.close()


# 5. The audit log ---------------------------------------------------------------------------------


def audit_rows(browser, served: str, admin_email: str, output_dir: Path) -> None:  # noqa: F811
    expect = playwright_api.expect
    page, watch = watched(browser, served, admin_email)
    page.goto("/settings/audit")

    def row(action: str, *texts: str) -> None:
        found = page.locator(
            "tbody tr", has=page.locator("code", has_text=re.compile(f"^{re.escape(action)}$"))
        )
        expect(found.first).to_be_visible()
        for text in texts:
            expect(found.filter(has_text=text).first).to_be_visible()

    row("agent.invited", NEW_AGENT, "→")
    row("team.created", "Returns", "round_robin", "→")
    row("sla_policy.created", "Standard", "30")
    row("tag.created", "refund", "money back")
    row("api_token.created", "CRM sync", "manager")
    row("api_token.revoked", "CRM sync", "→")
    row("webhook.created", "ticket.created")
    row("business_hours.updated", "13:30", "2099-12-25")
    row("canned_reply.created", "hello")
    row("brand.updated", ZONE)
    assert "whsec_" not in page.content()  # never a secret in the log
    watch.check(page)
    page.context.close()


# 6. Every page, desktop and phone ----------------------------------------------------------------


def photograph_every_page(browser, served, admin_email, output_dir) -> None:  # noqa: F811
    expect = playwright_api.expect
    page, watch = watched(browser, served, admin_email)
    for size, viewport in (("desktop", DESKTOP), ("phone", PHONE)):
        page.set_viewport_size(viewport)
        for name, path in PAGES.items():
            response = page.goto(path)
            assert response.status == 200, (path, response.status)
            expect(page.locator("h1")).to_be_visible()
            # Nothing wider than the window on a phone: tables fold into cards.
            overflow = page.evaluate(
                "() => document.documentElement.scrollWidth - window.innerWidth"
            )
            assert overflow <= 1, (path, size, overflow)
            screenshot(page, output_dir / f"settings-{name}-{size}.png")
            watch.check(page)

    # A row's edit form, opened on a phone and on a desktop.
    for size, viewport in (("phone", PHONE), ("desktop", DESKTOP)):
        page.set_viewport_size(viewport)
        for name, row in (("agents", NEW_AGENT), ("teams", "Returns"), ("tags", "money back")):
            page.goto(PAGES[name])
            page.locator(ROW, has_text=row).locator("summary").click()
            screenshot(page, output_dir / f"settings-{name}-edit-{size}.png")

    # On a phone the top bar folds into a menu; its Settings link opens the settings.
    page.set_viewport_size(PHONE)
    page.goto("/inbox")
    page.click(".menu-toggle")
    link = page.locator("#topmenu a", has_text="Settings")
    expect(link).to_be_visible()
    with page.expect_navigation():
        link.click()
    assert page.url.endswith("/settings")
    expect(page.locator("h1")).to_contain_text("Settings")
    page.context.close()

    dark, watch = watched(browser, served, admin_email, color_scheme="dark")
    for name in ("agents", "webhooks", "audit"):
        dark.goto(PAGES[name])
        screenshot(dark, output_dir / f"settings-{name}-dark.png")
    dark.set_viewport_size(PHONE)
    dark.goto(PAGES["teams"])
    screenshot(dark, output_dir / "settings-teams-dark-phone.png")
    watch.check(dark)
    dark.context.close()


def test_the_settings_console_in_a_browser(app, served, browser, smtp, receiver, output_dir):  # noqa: F811
    playwright_api.expect.set_options(timeout=TIMEOUT_MS)
    world = World()
    admin_email, manager_email = world.admin.email, world.manager.email
    db.session.commit()

    invite_and_join(browser, served, admin_email, smtp)
    set_time_zone(browser, served, admin_email)
    manager_settings(browser, served, manager_email)
    ticket_id = new_dm(app, served, world)
    the_ticket_follows_the_settings(app, browser, served, ticket_id, manager_email, output_dir)
    tokens_and_webhooks(browser, served, admin_email, receiver)
    audit_rows(browser, served, admin_email, output_dir)
    photograph_every_page(browser, served, admin_email, output_dir)

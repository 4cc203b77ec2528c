"""The Content-Security-Policy in a real browser (Chromium through Playwright): the console and
the dashboard run under it without a single violation, the charts still render, the backlog box
still refreshes from its script file, and an inline script really is refused.

Skips when Playwright or /usr/bin/chromium is missing, like the other browser tests.
"""

from __future__ import annotations

import re

import pytest
from sqlalchemy import select

from helpdesk.extensions import db
from helpdesk.tickets.models import Ticket, TicketStatus
from tests.conftest import serving
from tests.helpers.browser import (
    TIMEOUT_MS,
    browser,  # noqa: F401  (a fixture)
    playwright_api,
    signed_in_page,
)
from tests.helpers.metrics import FIRST, LAST, History

RANGE = f"from={FIRST.isoformat()}&to={LAST.isoformat()}"
VIOLATION = re.compile(r"Content Security Policy|Refused to (execute|load|apply|connect)", re.I)

pytestmark = pytest.mark.browser

# Every `securitypolicyviolation` event of the document, kept where the test can read it (an
# init script is the browser's own, so the policy does not apply to it).
RECORD_VIOLATIONS = """
window.__violations = [];
document.addEventListener("securitypolicyviolation", function (event) {
  window.__violations.push(event.violatedDirective + " " + (event.blockedURI || "inline"));
});
"""


@pytest.fixture
def served(app):
    with serving(app) as base_url:
        yield base_url


@pytest.fixture
def history(client) -> History:
    history = History(client)
    history.build()
    history.run_workers()
    db.session.commit()
    return history


class Watched:
    """A signed-in page whose console messages, page errors and policy violations are kept."""

    def __init__(self, page) -> None:
        self.page = page
        self.console: list[str] = []
        self.errors: list[str] = []
        page.on("console", lambda message: self.console.append(message.text))
        page.on("pageerror", lambda error: self.errors.append(str(error)))

    def violations(self) -> list[str]:
        seen = self.page.evaluate("() => window.__violations || []")
        return seen + [text for text in self.console if VIOLATION.search(text)]


def watched_page(browser, served: str, email: str) -> Watched:  # noqa: F811
    page = signed_in_page(browser, served, email)
    page.context.add_init_script(RECORD_VIOLATIONS)
    return Watched(page)


def test_the_dashboard_renders_and_refreshes_without_a_policy_violation(
    served,
    browser,  # noqa: F811
    history,
):
    expect = playwright_api.expect
    expect.set_options(timeout=TIMEOUT_MS)
    manager_email = history.manager.email
    db.session.rollback()
    watched = watched_page(browser, served, manager_email)
    page = watched.page
    page.clock.install()
    response = page.goto(f"/dashboard?{RANGE}")
    assert "script-src 'self'" in response.headers["content-security-policy"]
    trend = page.locator("svg[data-chart=trend]")
    expect(trend).to_be_visible()
    expect(trend.locator("rect.bar")).to_have_count(14)
    expect(trend.locator("polyline.line")).to_have_count(1)
    heat = page.locator("svg[data-chart=heatmap]")
    expect(heat).to_be_visible()
    expect(heat.locator("rect")).to_have_count(7 * 24)
    assert trend.bounding_box()["width"] > 300 and heat.bounding_box()["width"] > 300
    expect(page.locator("[data-backlog=open]")).to_have_text("2")

    # The backlog box's script (a file now, not inline) still polls: one ticket resolved, then
    # the page's clock moved past the 30 s interval.
    ticket = db.session.scalars(
        select(Ticket).where(
            Ticket.brand_id == history.brand_id, Ticket.status == TicketStatus.OPEN
        )
    ).first()
    ticket.status = TicketStatus.RESOLVED
    db.session.commit()
    page.clock.run_for(31_000)
    expect(page.locator("[data-backlog=open]")).to_have_text("1")

    assert watched.violations() == [], watched.violations()
    assert watched.errors == []
    page.context.close()


def test_console_pages_run_without_a_policy_violation(served, browser, history):  # noqa: F811
    expect = playwright_api.expect
    expect.set_options(timeout=TIMEOUT_MS)
    agent_email = history.a.email
    conversation_id = history.ticket(1).conversation_id
    db.session.rollback()
    watched = watched_page(browser, served, agent_email)
    page = watched.page
    for path in ("/inbox", f"/conversations/{conversation_id}", "/search?q=hi", "/notifications"):
        page.goto(path)
        page.wait_for_load_state("networkidle")
        assert watched.violations() == [], (path, watched.violations())
    assert watched.errors == []
    page.context.close()


def test_an_inline_script_is_refused(served, browser, history):  # noqa: F811
    """What the policy is for: a script that got into a page does not run."""
    agent_email = history.a.email
    db.session.rollback()
    watched = watched_page(browser, served, agent_email)
    page = watched.page
    page.goto("/inbox")
    page.evaluate(
        """() => {
          const script = document.createElement("script");
          script.textContent = "window.__ran = true";
          document.body.appendChild(script);
          const img = document.createElement("img");
          img.setAttribute("onerror", "window.__ran = true");
          img.src = "/nothing-here.png";
          document.body.appendChild(img);
        }"""
    )
    page.wait_for_function("() => window.__violations.length >= 2")
    assert page.evaluate("() => window.__ran === undefined")
    assert any("script-src" in v for v in watched.violations())
    page.context.close()

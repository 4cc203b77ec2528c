"""The managers' dashboard in a real browser: Debian's Chromium driven by Playwright, against the
app served for real on a loopback port, over the two-week history of test_metrics (webhook
intake, console actions, the metrics workers). Screenshots go to the test output folder.

Skips when Playwright or /usr/bin/chromium is missing (`.ci/run` installs Chromium as root).
"""

from __future__ import annotations

import csv
import re
from pathlib import Path

import pytest

from helpdesk.extensions import db
from helpdesk.metrics.summary import summary
from helpdesk.web.dashboard.figures import columns, human
from tests.conftest import serving
from tests.helpers.browser import (
    TIMEOUT_MS,
    browser,  # noqa: F401  (a fixture)
    playwright_api,
    signed_in_page,
)
from tests.helpers.dashboard import BACKLOG, as_shown, headline
from tests.helpers.metrics import FIRST, LAST, History

RANGE = f"from={FIRST.isoformat()}&to={LAST.isoformat()}"

pytestmark = pytest.mark.browser


@pytest.fixture
def served(app):
    """The app on a free loopback port, in a thread."""
    with serving(app) as base_url:
        yield base_url


@pytest.fixture
def history(client) -> History:
    """Two weeks of tickets through the intake and the console, measured as the workers do; the
    session is left with no transaction open, so the server thread never waits for a lock."""
    history = History(client)
    history.build()
    history.run_workers()
    db.session.commit()
    return history


def _screenshot(page, path: Path) -> None:
    """The whole dashboard: its main pane scrolls inside the window, so a full-page shot alone
    would stop at the fold; the window is made as tall as the pane for the shot."""
    viewport = page.viewport_size
    height = page.evaluate(
        "() => document.querySelector('main').getBoundingClientRect().top"
        " + document.querySelector('main').scrollHeight"
    )
    page.set_viewport_size({"width": viewport["width"], "height": max(viewport["height"], height)})
    page.screenshot(path=str(path), full_page=True)
    page.set_viewport_size(viewport)


def _expected(history: History, business_hours: bool) -> tuple[dict, dict]:
    """The range's summary and its agents' rows, read in a short transaction of its own."""
    try:
        overall = summary(history.brand, FIRST, LAST, business_hours)
        agents = summary(history.brand, FIRST, LAST, business_hours, group_by="agent")
        return overall, {g["label"]: g for g in agents["groups"]}
    finally:
        db.session.rollback()


def _figure(page, key: str) -> str:
    return page.locator(f"[data-figure={key}] .value").inner_text().strip()


def _table(page, name: str) -> tuple[list[str], list[list[str]]]:
    """A dashboard table as the reader sees it: header labels (without the sort arrow), cells."""
    table = page.locator(f"table[data-table={name}]")
    header = [
        re.sub(r"\s*[▲▼]$", "", text.strip())
        for text in table.locator("thead th").all_inner_texts()
    ]
    rows = [
        [cell.strip() for cell in row.locator("td").all_inner_texts()]
        for row in table.locator("tbody tr").all()
    ]
    return header, rows


def test_the_dashboard_in_a_browser(served, browser, history, output_dir):  # noqa: F811
    expect = playwright_api.expect
    expect.set_options(timeout=TIMEOUT_MS)
    calendar, _agents = _expected(history, business_hours=False)
    business, business_agents = _expected(history, business_hours=True)
    manager_email, agent_email = history.manager.email, history.a.email
    db.session.rollback()

    page = signed_in_page(browser, served, manager_email, accept_downloads=True)
    expect(page.locator("a[href='/dashboard']").first).to_be_visible()
    page.goto(f"/dashboard?{RANGE}")
    expect(page.locator("h1")).to_contain_text("Dashboard")
    # The headline figures are summary()'s, as a person reads them.
    for key, shown in headline(calendar).items():
        assert _figure(page, key) == shown, key
    for key, shown in BACKLOG.items():
        expect(page.locator(f"[data-backlog={key}]")).to_have_text(shown)
    # Both charts are drawn by the server as inline SVG with a mark per day and per hour.
    trend = page.locator("svg[data-chart=trend]")
    expect(trend).to_be_visible()
    expect(trend.locator("rect.bar")).to_have_count(14)
    expect(trend.locator("polyline.line")).to_have_count(1)
    heat = page.locator("svg[data-chart=heatmap]")
    expect(heat).to_be_visible()
    expect(heat.locator("rect")).to_have_count(7 * 24)
    assert trend.bounding_box()["width"] > 300 and heat.bounding_box()["width"] > 300
    _screenshot(page, output_dir / "dashboard.png")

    # Counting in business hours reloads the same range with the other clock.
    page.select_option("select[name=business_hours]", "1")
    page.click(".dash-range button[type=submit]")
    page.wait_for_url(re.compile(r"business_hours=1"))
    expect(page.locator(".dash-head")).to_contain_text("business hours")
    # The evening and weekend waits no longer count: T2's first response is one open hour.
    for key, kind, stat in (
        ("first_response_median", "first_response", "median_s"),
        ("first_response_p90", "first_response", "p90_s"),
        ("response_median", "response", "median_s"),
        ("resolution_median", "resolution", "median_s"),
    ):
        assert _figure(page, key) == human(business[kind][stat])
    assert _figure(page, "first_response_p90") == human(3330) != "6h 10m"
    assert _figure(page, "resolution_median") == "13h 00m" != human(180_000)
    _screenshot(page, output_dir / "dashboard-business-hours.png")

    # A header sorts its table, slowest resolution first on the second click.
    agent_table = page.locator("#table-agent")
    agent_table.locator("th a", has_text="Resolution median").click()
    page.wait_for_url(re.compile(r"sort=agent\.resolution_median&dir=asc"))
    agent_table.locator("th a", has_text="Resolution median").click()
    page.wait_for_url(re.compile(r"sort=agent\.resolution_median&dir=desc"))
    assert "business_hours=1" in page.url
    expect(agent_table.locator("th[aria-sort=descending]")).to_contain_text("Resolution median")
    header, rows = _table(page, "agent")
    labels = [row[0] for row in rows]
    assert sorted(labels) == sorted(business_agents)
    medians = [business_agents[label]["resolution"]["median_s"] for label in labels]
    known = [m for m in medians if m is not None]
    assert known == sorted(known, reverse=True) and len(known) >= 2
    assert medians == known + [None] * (len(medians) - len(known))  # no data sorts last
    agent_table.scroll_into_view_if_needed()
    agent_table.screenshot(path=str(output_dir / "dashboard-agents-sorted.png"))

    # The table's CSV holds the same rows in the same order, numbers unformatted.
    with page.expect_download() as download_info:
        agent_table.locator("a", has_text="Export CSV").click()
    download = download_info.value
    assert download.suggested_filename.endswith(f"-agent-{FIRST}-{LAST}.csv")
    with open(download.path(), newline="", encoding="utf-8") as handle:
        exported = list(csv.reader(handle))
    assert exported[0] == header == [c.label for c in columns("agent")]
    assert [as_shown("agent", line) for line in exported[1:]] == rows
    resolution = header.index("Resolution median")
    exported_medians = [int(line[resolution]) for line in exported[1:] if line[resolution]]
    assert exported_medians == [round(m) for m in known]
    page.context.close()

    # An agent works the queue; the team's numbers are refused.
    agent = signed_in_page(browser, served, agent_email, accept_downloads=True)
    expect(agent.locator("a[href='/dashboard']")).to_have_count(0)
    response = agent.goto(f"/dashboard?{RANGE}")
    assert response.status == 403
    expect(agent.locator(".error-page")).to_contain_text("Not allowed")
    expect(agent.locator(".error-page")).to_contain_text("manager role")
    assert agent.locator("[data-figure]").count() == 0
    agent.screenshot(path=str(output_dir / "dashboard-agent-refused.png"))
    agent.context.close()

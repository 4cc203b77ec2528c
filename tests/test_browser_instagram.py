"""Issue 16's "Done when" in a real browser (Chromium through Playwright, the app served on a
loopback port, the Graph API simulator playing instagram.com): an admin connects a second account
on the simulator's authorize page, its history is read by the backfill task, and the inbox shows
its conversations, the customer still waiting with an open ticket; a denial comes back in words
and makes no channel. The authorize page, the channels page and the inbox are photographed on a
desktop and on a phone.

Skips when Playwright or /usr/bin/chromium is missing, like the other browser tests.
"""

from __future__ import annotations

import re
import threading
from pathlib import Path

import pytest
from sqlalchemy import select

from helpdesk.channels.models import Backfill, Channel
from helpdesk.dm.models import Contact, Conversation
from helpdesk.extensions import db
from helpdesk.tickets.models import Ticket, TicketStatus
from tests.conftest import drain_broker, fresh, serving
from tests.helpers.browser import (
    browser,  # noqa: F401  (a fixture)
    playwright_api,
    signed_in_page,
)
from tests.helpers.rows import changed, snapshot
from tests.helpers.world import World
from workers.tasks.backfill import run_backfill

pytestmark = pytest.mark.browser

BUSINESS_ID = "17841400000000000123"  # the account the authorize page offers first
OUTLET_ID = "17841400000000000456"  # the second one, which the admin chooses
BACKFILL_TASK = "workers.tasks.backfill.run_backfill"
# The simulator's demo history (devtools/graphsim/history.py): customer, last message.
HISTORY = {
    "maria.sews": "Perfect, thank you",
    "tom_outdoors": "Yes, fully waterproof up to the ankle.",
    "lena.k": "It is 10422, it has not arrived yet",  # still waiting for an answer
}
WAITING = "lena.k"
DESKTOP = {"width": 1400, "height": 900}
PHONE = {"width": 390, "height": 844}
ROW = "tbody tr"


@pytest.fixture
def admin() -> tuple[str, int]:
    """A brand with a channel of its own and an admin (e-mail, brand id); no transaction is left
    open, which would keep the served app waiting on SQLite."""
    world = World()
    signed_in_as = (world.admin.email, world.brand.id)
    db.session.rollback()
    return signed_in_as


@pytest.fixture
def served(app, sim, admin, monkeypatch):
    """The app served for real, Instagram Login pointed at the simulator and back at the app;
    both simulated accounts have a recent history to read."""
    monkeypatch.setitem(app.config, "INSTAGRAM_AUTH_BASE", sim.root_url)
    monkeypatch.setitem(app.config, "INSTAGRAM_TOKEN_BASE", sim.root_url)
    monkeypatch.setitem(app.config, "BACKFILL_CALLS_PER_SECOND", 6)  # a few seconds, not many
    sim.seed_demo_history(BUSINESS_ID, username="sim_business")
    sim.seed_demo_history(OUTLET_ID, username="sim_outlet")
    with serving(app) as base_url:
        monkeypatch.setitem(app.config, "PUBLIC_BASE_URL", base_url)
        yield base_url


class Watched:
    """Console errors and page errors of the app's pages (the simulator's page is not ours;
    a refusal page answers 400 on purpose, which Chromium logs)."""

    def __init__(self, page, served: str, expected_status: str | None = None) -> None:
        self.problems: list[str] = []
        self.served = served
        self.expected = expected_status
        page.on("console", self.console)
        page.on("pageerror", lambda error: self.problems.append(f"{page.url}: {error}"))

    def console(self, message) -> None:
        where = (message.location or {}).get("url", "")
        if message.type != "error" or not where.startswith(self.served):
            return
        if where.endswith("/favicon.ico"):
            return
        if self.expected and f"status of {self.expected}" in message.text:
            return
        self.problems.append(f"{where}: {message.text}")


def photograph(page, output_dir: Path, name: str) -> None:
    """The whole page on a desktop and on a phone; the console's main pane scrolls inside the
    window, so the window is made as tall as the pane for each shot."""
    for size, viewport in (("desktop", DESKTOP), ("phone", PHONE)):
        page.set_viewport_size(viewport)
        height = page.evaluate(
            "() => { const m = document.querySelector('main') || document.body;"
            " return m.getBoundingClientRect().top + m.scrollHeight; }"
        )
        page.set_viewport_size(
            {"width": viewport["width"], "height": max(viewport["height"], height)}
        )
        page.screenshot(path=str(output_dir / f"instagram-{name}-{size}.png"), full_page=True)
    page.set_viewport_size(DESKTOP)


def to_authorize_page(page, sim) -> None:
    expect = playwright_api.expect
    page.goto("/settings/channels")
    page.get_by_role("link", name="Connect an Instagram account").click()
    page.wait_for_url(re.compile(re.escape(f"{sim.root_url}/oauth/authorize")))
    expect(page.locator("h1")).to_have_text("Allow DM Helpdesk to manage this account's messages?")
    expect(page.get_by_label("Signed in to Instagram as")).to_have_value(BUSINESS_ID)


def outlet_channel() -> Channel | None:
    return db.session.scalar(select(Channel).where(Channel.account_id == OUTLET_ID))


def queued_backfill(app, channel_id: int) -> int:
    """The task the connection queued: the id the worker would be given."""
    backfill_id = fresh(
        lambda: db.session.scalar(select(Backfill.id).where(Backfill.channel_id == channel_id))
    )
    assert (BACKFILL_TASK, [backfill_id]) in drain_broker(app)
    return backfill_id


def run_backfill_task(backfill_id: int) -> threading.Thread:
    """The worker's task function itself, in a thread of this process with its own app context
    (as the worker has), while the page is read meanwhile."""
    thread = threading.Thread(target=run_backfill, args=(backfill_id,), daemon=True)
    thread.start()
    return thread


def history_line(page):
    return page.locator(ROW, has_text="@sim_outlet").locator("td[data-label='Status']")


def test_an_admin_connects_a_second_account_and_its_history_fills_the_inbox(
    app,
    sim,
    admin,
    served,
    output_dir,
    browser,  # noqa: F811
):
    expect = playwright_api.expect
    page = signed_in_page(browser, served, admin[0])
    watch = Watched(page, served)

    to_authorize_page(page, sim)
    photograph(page, output_dir, "authorize")
    page.get_by_label("Signed in to Instagram as").select_option(OUTLET_ID)
    page.get_by_role("button", name="Allow").click()
    # The callback's redirect carries its own fragment, so Instagram's `#_` does not stay.
    page.wait_for_url(f"{served}/settings/channels#channels")
    expect(page.locator(".flashes")).to_contain_text("Connected @sim_outlet")
    expect(history_line(page)).to_contain_text("Active")
    expect(history_line(page)).to_contain_text("History: waiting to start")

    channel_id, brand_id = fresh(lambda: (outlet_channel().id, outlet_channel().brand_id))
    assert brand_id == admin[1]
    worker = run_backfill_task(queued_backfill(app, channel_id))
    seen = set()
    for _ in range(200):  # reload while it reads, until it is done
        page.reload()
        text = history_line(page).inner_text()
        seen.add(re.sub(r"\d+", "N", text.split("History: ")[-1]))
        if "History: read" in text:
            break
    assert any(state.startswith("being read") for state in seen), seen  # progress, shown
    worker.join(timeout=30)
    assert not worker.is_alive()
    expect(history_line(page)).to_contain_text("History: read, 3 conversations and 8 messages")
    expect(history_line(page)).not_to_contain_text("so far")
    photograph(page, output_dir, "channels-connected")

    # The inbox: each customer of the history, with their last message.
    def conversations() -> dict[str, tuple[str, int]]:
        query = (
            select(Contact.username, Conversation.folder, Conversation.id)
            .join(Conversation, Conversation.contact_id == Contact.id)
            .where(Conversation.channel_id == channel_id)
        )
        return {name: (folder.value, cid) for name, folder, cid in db.session.execute(query)}

    stored = fresh(conversations)
    assert sorted(stored) == sorted(HISTORY)
    for folder in sorted({folder for folder, _ in stored.values()}):
        page.goto(f"/inbox?folder={folder}")
        for username, last in HISTORY.items():
            if stored[username][0] != folder:
                continue
            row = page.locator("li.row", has=page.locator(".handle", has_text=f"@{username}"))
            expect(row).to_have_count(1)
            expect(row.locator(".preview")).to_have_text(last)
            if username == WAITING:
                expect(row.locator(".row-state")).to_contain_text("open")
        photograph(page, output_dir, f"inbox-{folder}")

    # Only the customer still waiting has a ticket, and it is open.
    tickets = fresh(
        lambda: [
            (t.conversation_id, t.status)
            for t in db.session.scalars(select(Ticket).where(Ticket.channel_id == channel_id))
        ]
    )
    assert tickets == [(stored[WAITING][1], TicketStatus.OPEN)]
    assert watch.problems == []
    page.context.close()


def test_denying_on_instagram_comes_back_in_words_and_makes_no_channel(
    app,
    sim,
    admin,
    served,
    output_dir,
    browser,  # noqa: F811
):
    expect = playwright_api.expect
    page = signed_in_page(browser, served, admin[0])
    watch = Watched(page, served, expected_status="400")
    before = snapshot()

    to_authorize_page(page, sim)
    page.get_by_label("Signed in to Instagram as").select_option(OUTLET_ID)
    page.get_by_role("button", name="Deny").click()
    page.wait_for_url(re.compile(re.escape(f"{served}/oauth/instagram/callback")))
    expect(page.locator("h1")).to_have_text("The Instagram account was not connected")
    expect(page.get_by_role("alert")).to_contain_text(
        "Instagram did not connect the account: permission was not given."
    )
    expect(page.get_by_text("Nothing was changed.")).to_be_visible()
    photograph(page, output_dir, "denied")

    page.get_by_role("link", name="Back to Settings › Channels").click()
    page.wait_for_url(f"{served}/settings/channels")
    expect(page.locator(ROW, has_text="@sim_outlet")).to_have_count(0)
    assert fresh(outlet_channel) is None
    assert {k: v for k, v in changed(before, snapshot()).items() if k != "oauth_states"} == {}
    assert [task for task, _ in drain_broker(app) if task == BACKFILL_TASK] == []
    assert watch.problems == []
    page.context.close()


def test_the_channels_page_follows_a_history_being_read_without_a_reload(
    app,
    admin,
    served,
    browser,  # noqa: F811
):
    expect = playwright_api.expect
    channel_id = fresh(
        lambda: db.session.scalar(select(Channel.id).where(Channel.brand_id == admin[1]))
    )
    db.session.add(
        Backfill(channel_id=channel_id, status="running", conversations_done=1, messages_stored=2)
    )
    db.session.commit()
    page = signed_in_page(browser, served, admin[0])
    watch = Watched(page, served)
    page.goto("/settings/channels")
    line = page.locator("td[data-label='Status']", has_text="History:")
    expect(line).to_contain_text("History: being read, 1 conversation and 2 messages so far")
    page.evaluate("() => { window.stillThisPage = true; }")  # gone if the page were reloaded

    backfill = db.session.scalar(select(Backfill).where(Backfill.channel_id == channel_id))
    backfill.status, backfill.conversations_done, backfill.messages_stored = "done", 3, 8
    db.session.commit()

    expect(line).to_contain_text("History: read, 3 conversations and 8 messages", timeout=10_000)
    assert page.evaluate("() => window.stillThisPage") is True
    expect(page.locator("#channel-rows")).not_to_have_attribute("data-refresh-seconds", "3")
    assert watch.problems == []
    page.context.close()

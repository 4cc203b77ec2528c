"""The live inbox in a real browser: a colleague's open inbox follows new DMs (arriving as signed
webhooks, processed by intake), resolutions and counts without a reload. On the embedded default
the page polls; with REDIS_URL it listens to the event stream.

Skips when Playwright or /usr/bin/chromium is missing (`.ci/run` installs Chromium as root).
"""

from __future__ import annotations

from datetime import timedelta

import pytest
from sqlalchemy import select

from helpdesk.extensions import db
from helpdesk.types import utcnow
from tests.conftest import REDIS_URL, fresh, serving
from tests.helpers.browser import (
    browser,  # noqa: F401  (a fixture)
    playwright_api,
    signed_in_page,
)
from tests.helpers.world import World, known_contact, receive

pytestmark = pytest.mark.browser

LIVE_MS = 5_000  # the promise: a colleague sees the change within 5 s


@pytest.fixture
def served(app, sim):
    """The app on a free loopback port, in a thread, with the Graph API simulator behind it."""
    with serving(app) as base_url:
        yield base_url


def _conversation(world: World, text: str, minutes_ago: float) -> tuple[int, str]:
    """A followed contact's conversation in Primary: its id and the contact's platform id."""
    person = known_contact(world.channel)
    at = utcnow() - timedelta(minutes=minutes_ago)
    message = receive(world.channel, person.platform_id, text, at=at)
    return message.conversation_id, person.platform_id


def _process_deliveries() -> None:
    """Intake, as the worker runs it, for every webhook delivery stored and not yet processed."""
    from helpdesk.intake import service as intake
    from helpdesk.intake.models import EventStatus, WebhookEvent

    pending = fresh(
        lambda: db.session.scalars(
            select(WebhookEvent.id).where(WebhookEvent.status == EventStatus.PENDING)
        ).all()
    )
    assert pending
    for event_id in pending:
        intake.process_event(event_id)
        db.session.commit()


def test_a_colleagues_open_inbox_follows_new_dms_resolutions_and_counts(
    app,
    served,
    browser,  # noqa: F811
    output_dir,
):
    from devtools.graphsim.webhooks import send_dm

    expect = playwright_api.expect
    world = World()
    older, _ = _conversation(world, "Is the blue one back in stock?", minutes_ago=10)
    oldest, oldest_sender = _conversation(world, "Hello, anyone there?", minutes_ago=20)
    newest = world.conversation.id
    agent_email, colleague_email = world.agent.email, world.manager.email
    account_id = world.channel.account_id
    db.session.commit()

    # The colleague keeps the Open view of the inbox open in a browser of their own.
    colleague = signed_in_page(browser, served, colleague_email)
    colleague.goto("/inbox?status=open")
    rows = colleague.locator("#rows .row")
    expect(rows).to_have_count(3)
    order = rows.evaluate_all("rows => rows.map(r => Number(r.dataset.conversationId))")
    assert order == [newest, older, oldest]  # no clocks running: the newest first
    colleague.evaluate("window.stillTheSamePage = true")  # gone if the page ever reloads
    streams = colleague.locator("#live").get_attribute("data-stream-url") is not None
    assert streams == bool(REDIS_URL)  # Redis: the event stream; otherwise the poll
    primary = colleague.locator('[data-count="folder:primary"] .count')
    requests = colleague.locator('[data-count="folder:requests"] .count')
    everyone = colleague.locator('[data-count="view:all"] .count')
    expect(primary).to_have_text("3")
    expect(requests).to_have_text("0")

    # The oldest conversation's customer writes again, and a stranger writes for the first
    # time: signed webhooks to the served app, processed by intake as the worker does.
    secret = app.config["INSTAGRAM_APP_SECRET"]
    posted = send_dm(
        served,
        secret,
        account_id=account_id,
        sender_id=oldest_sender,
        text="Any news on my parcel?",
    )
    assert posted.status_code == 200, posted.response_text
    posted = send_dm(
        served,
        secret,
        account_id=account_id,
        sender_id="7770000000000042",
        text="Do you ship to Lisbon?",
    )
    assert posted.status_code == 200, posted.response_text
    _process_deliveries()

    first = rows.first
    expect(first).to_have_attribute("data-conversation-id", str(oldest), timeout=LIVE_MS)
    expect(first.locator(".preview")).to_have_text("Any news on my parcel?", timeout=LIVE_MS)
    expect(first.locator(".row-wait")).to_contain_text("waiting", timeout=LIVE_MS)
    expect(requests).to_have_text("1", timeout=LIVE_MS)  # the stranger's message request
    expect(primary).to_have_text("3")
    order = rows.evaluate_all("rows => rows.map(r => Number(r.dataset.conversationId))")
    assert order == [oldest, newest, older]
    colleague.screenshot(path=str(output_dir / "browser-live-inbox-new-dm.png"), full_page=True)

    # The agent resolves a conversation from its page: it leaves the colleague's Open view.
    agent = signed_in_page(browser, served, agent_email)
    agent.goto(f"/conversations/{older}")
    agent.click("button[data-key=e]")
    agent.wait_for_load_state()
    expect(agent.locator("#status")).to_have_value("resolved")
    gone = colleague.locator(f'#rows .row[data-conversation-id="{older}"]')
    expect(gone).to_have_count(0, timeout=LIVE_MS)
    expect(primary).to_have_text("2", timeout=LIVE_MS)
    expect(everyone).to_have_text("2", timeout=LIVE_MS)
    expect(rows).to_have_count(2)
    assert colleague.evaluate("window.stillTheSamePage") is True  # redrawn, never reloaded
    colleague.screenshot(path=str(output_dir / "browser-live-inbox-resolved.png"), full_page=True)

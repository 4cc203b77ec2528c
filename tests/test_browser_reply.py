"""The reply box in Chromium: Ctrl+Enter pressed twice sends one message, the byte counter and
the split offer show past Instagram's limit, and a closed window disables the box with words."""

from __future__ import annotations

from datetime import timedelta

import pytest
from sqlalchemy import func, select

from helpdesk.dm.models import Direction, Message
from helpdesk.extensions import db
from helpdesk.types import utcnow
from tests.conftest import fresh, serving
from tests.helpers.browser import (
    TIMEOUT_MS,
    browser,  # noqa: F401  (a fixture)
    playwright_api,
    signed_in_page,
)
from tests.helpers.world import World, receive

pytestmark = pytest.mark.browser


@pytest.fixture
def served(app):
    with serving(app) as base_url:
        yield base_url


def sign_in(browser, served: str, world: World, conversation_id: int | None = None):  # noqa: F811
    """The agent's page on the conversation, signed in through the form. Our own transaction
    ends first: on SQLite it would hold the single writer's lock the served app needs."""
    email = world.agent.email
    conversation_id = conversation_id or world.conversation.id
    db.session.commit()
    page = signed_in_page(browser, served, email)
    page.goto(f"{served}/conversations/{conversation_id}")
    return page, conversation_id


def outbound_texts(conversation_id: int) -> list[str]:
    return fresh(
        lambda: list(
            db.session.scalars(
                select(Message.text).where(
                    Message.conversation_id == conversation_id,
                    Message.direction == Direction.OUTBOUND,
                )
            )
        )
    )


def test_ctrl_enter_twice_sends_one_message(served, browser, output_dir):  # noqa: F811
    world = World()
    expect = playwright_api.expect
    expect.set_options(timeout=TIMEOUT_MS)
    page, conversation_id = sign_in(browser, served, world)
    text = page.locator("#composer-text")
    text.fill("Your parcel left the warehouse this morning.")
    # Two Ctrl+Enter within a few milliseconds, as an impatient agent types them.
    page.evaluate(
        """() => {
            const box = document.getElementById("composer-text");
            const press = () => box.dispatchEvent(new KeyboardEvent("keydown",
                {key: "Enter", ctrlKey: true, bubbles: true, cancelable: true}));
            press();
            setTimeout(press, 20);
        }"""
    )
    page.wait_for_load_state()
    expect(page.locator(".flashes")).to_contain_text("queued")
    page.wait_for_timeout(500)
    assert outbound_texts(conversation_id) == ["Your parcel left the warehouse this morning."]


def test_the_byte_counter_warns_and_offers_to_split(served, browser, output_dir):  # noqa: F811
    world = World()
    expect = playwright_api.expect
    expect.set_options(timeout=TIMEOUT_MS)
    page, conversation_id = sign_in(browser, served, world)
    text = page.locator("#composer-text")
    text.fill("Hello 👋")
    expect(page.locator("#byte-count")).to_have_text("10 / 1000 bytes")
    expect(page.locator("#byte-over")).to_be_hidden()

    long_text = " ".join(f"Step {i}: we checked your order again 🙏." for i in range(40))
    text.fill(long_text)
    expect(page.locator("#byte-over")).to_be_visible()
    expect(page.locator("#byte-count")).to_have_class("byte-count over")
    page.screenshot(path=str(output_dir / "reply-box-over-the-limit.png"))
    page.click("#composer .reply-btn")  # refused in the page: nothing is posted
    expect(page.locator("#placeholder-warning")).to_contain_text("over Instagram's 1000-byte")
    expect(text).to_have_value(long_text)
    assert outbound_texts(conversation_id) == []

    page.click("#split-send")
    page.wait_for_load_state()
    expect(page.locator(".flashes")).to_contain_text("messages queued")
    sent = outbound_texts(conversation_id)
    assert len(sent) >= 2 and " ".join(sent) == long_text


def test_a_lone_slash_is_stopped_in_the_page(served, browser):  # noqa: F811
    world = World()
    expect = playwright_api.expect
    expect.set_options(timeout=TIMEOUT_MS)
    page, conversation_id = sign_in(browser, served, world)
    text = page.locator("#composer-text")
    text.fill("/")
    text.press("Control+Enter")
    expect(page.locator("#placeholder-warning")).to_contain_text("alone would reach the customer")
    expect(text).to_have_value("/")
    assert outbound_texts(conversation_id) == []


def test_a_closed_window_disables_the_box_and_says_why(served, browser, output_dir):  # noqa: F811
    world = World()
    old = receive(world.channel, "closed-window-customer", "Anyone there?",
                  at=utcnow() - timedelta(days=8))  # fmt: skip
    db.session.commit()
    expect = playwright_api.expect
    expect.set_options(timeout=TIMEOUT_MS)
    page, _conversation_id = sign_in(browser, served, world, old.conversation_id)
    expect(page.locator("#window-closed")).to_contain_text(
        "The customer last wrote 8 days ago. Instagram allows replies for 7 days"
    )
    expect(page.locator("#composer-text")).to_be_disabled()
    expect(page.locator("#composer .reply-btn")).to_be_disabled()
    page.screenshot(path=str(output_dir / "reply-box-window-closed.png"))
    # A private note can still be written.
    page.click(".mode-btn[data-mode=note]")
    expect(page.locator("#composer-text")).to_be_enabled()
    assert fresh(lambda: db.session.scalar(select(func.count()).select_from(Message))) == 2

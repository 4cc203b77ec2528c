"""The reply box takes files in Chromium: picked, dropped and pasted, each shown with its name,
a preview for images and a remove button; a refused file is explained in the box; the reply
goes out with the files (as uploads of the brand). Screenshots at 1400 and 390 px."""

from __future__ import annotations

import base64
import io
import re

import pytest
from PIL import Image
from sqlalchemy import select

from helpdesk.dm.models import Direction, Message
from helpdesk.extensions import db
from tests.conftest import fresh, serving
from tests.helpers.browser import (
    TIMEOUT_MS,
    browser,  # noqa: F401  (a fixture)
    playwright_api,
    signed_in_page,
)
from tests.helpers.world import World

pytestmark = pytest.mark.browser

PHONE = {"width": 390, "height": 844}


@pytest.fixture
def served(app):
    with serving(app) as base_url:
        yield base_url


def png(colour: tuple[int, int, int], size: tuple[int, int] = (120, 90)) -> bytes:
    out = io.BytesIO()
    Image.new("RGB", size, colour).save(out, "PNG")
    return out.getvalue()


def open_conversation(browser, served: str, world: World):  # noqa: F811
    email, conversation_id = world.agent.email, world.conversation.id
    db.session.commit()  # SQLite: the served app needs the writer's lock (read nothing after)
    page = signed_in_page(browser, served, email)
    violations: list[str] = []
    page.on(
        "console",
        lambda message: (
            violations.append(message.text) if "Content Security Policy" in message.text else None
        ),
    )
    page.goto(f"{served}/conversations/{conversation_id}")
    return page, violations, conversation_id


def give(page, event: str, name: str, data: bytes, mime: str) -> None:
    """A file dropped on the reply box or pasted into its text, as the browser hands it over."""
    page.evaluate(
        """([event, name, b64, mime]) => {
            const bytes = Uint8Array.from(atob(b64), (c) => c.charCodeAt(0));
            const transfer = new DataTransfer();
            transfer.items.add(new File([bytes], name, { type: mime }));
            if (event === "drop") {
              const form = document.getElementById("composer");
              const options = { dataTransfer: transfer, bubbles: true, cancelable: true };
              form.dispatchEvent(new DragEvent("dragover", options));
              form.dispatchEvent(new DragEvent("drop", options));
            } else {
              const text = document.getElementById("composer-text");
              const options = { clipboardData: transfer, bubbles: true, cancelable: true };
              text.dispatchEvent(new ClipboardEvent("paste", options));
            }
        }""",
        [event, name, base64.b64encode(data).decode(), mime],
    )


def outbound(conversation_id: int) -> list[Message]:
    return fresh(
        lambda: list(
            db.session.scalars(
                select(Message).where(
                    Message.conversation_id == conversation_id,
                    Message.direction == Direction.OUTBOUND,
                )
            )
        )
    )


def test_files_are_picked_dropped_and_pasted_then_sent(served, browser, output_dir, tmp_path):  # noqa: F811
    world = World()
    expect = playwright_api.expect
    expect.set_options(timeout=TIMEOUT_MS)
    page, violations, conversation_id = open_conversation(browser, served, world)
    chips = page.locator("#upload-list .upload-chip")

    picked = tmp_path / "parcel-label.png"
    picked.write_bytes(png((30, 120, 200)))
    page.set_input_files("#upload-input", str(picked))
    expect(chips).to_have_count(1)
    expect(chips.nth(0)).to_have_attribute("data-state", "done")
    expect(chips.nth(0).locator(".upload-name")).to_have_text("parcel-label.png")
    expect(chips.nth(0).locator("img.upload-thumb")).to_have_attribute(
        "src", re.compile(r"^data:image/png;base64,")
    )
    expect(chips.nth(0).locator("input[name=upload_id]")).to_have_count(1)

    give(page, "drop", "dropped.png", png((220, 160, 40)), "image/png")
    expect(chips).to_have_count(2)
    give(page, "paste", "image.png", png((40, 170, 90)), "image/png")
    expect(chips).to_have_count(3)
    expect(page.locator("#upload-list .upload-chip[data-state=done]")).to_have_count(3)

    # A file Meta does not take: refused by the server, explained in the box, nothing attached.
    give(page, "drop", "notes.pdf", b"these are plain words, not a PDF", "application/pdf")
    expect(page.locator("#upload-error")).to_be_visible()
    expect(page.locator("#upload-error")).to_contain_text("“notes.pdf” was not attached")
    expect(page.locator("#upload-error")).to_contain_text("png, jpeg, gif")
    expect(chips).to_have_count(3)
    page.locator("#composer-text").fill("Here is your parcel label and two photos.")
    page.screenshot(path=str(output_dir / "uploads-reply-box-1400.png"))

    # The remove button takes the dropped one out.
    page.locator("#upload-list .upload-chip", has_text="dropped.png").locator(
        ".upload-remove"
    ).click()
    expect(chips).to_have_count(2)

    page.click("#composer .reply-btn")
    page.wait_for_load_state()
    expect(page.locator(".flashes")).to_contain_text("queued")
    (message,) = outbound(conversation_id)
    assert message.text == "Here is your parcel label and two photos."
    names = [a["name"] for a in message.attachments]
    assert names[0] == "parcel-label.png" and len(names) == 2
    assert all(a["type"] == "image" and a["upload_id"] for a in message.attachments)
    assert violations == []


def test_too_large_is_stopped_in_the_page_and_a_phone_shows_the_box(
    served,
    browser,  # noqa: F811
    output_dir,
    tmp_path,
):
    world = World()
    expect = playwright_api.expect
    expect.set_options(timeout=TIMEOUT_MS)
    page, violations, _conversation_id = open_conversation(browser, served, world)
    page.set_viewport_size(PHONE)
    big = tmp_path / "holiday.png"
    big.write_bytes(png((10, 10, 10)) + b"\x00" * 8_100_000)
    page.set_input_files("#upload-input", str(big))
    expect(page.locator("#upload-error")).to_contain_text("Instagram takes images up to 8 MB")
    expect(page.locator("#upload-list .upload-chip")).to_have_count(0)
    small = tmp_path / "a-rather-long-file-name-for-a-phone-screen.png"
    small.write_bytes(png((200, 60, 120)))
    page.set_input_files("#upload-input", str(small))
    expect(page.locator("#upload-list .upload-chip[data-state=done]")).to_have_count(1)
    page.locator("#composer").scroll_into_view_if_needed()
    page.screenshot(path=str(output_dir / "uploads-reply-box-390.png"))
    width = page.evaluate("document.documentElement.scrollWidth")
    assert width <= PHONE["width"], f"the page is {width} px wide on a phone"
    assert violations == []

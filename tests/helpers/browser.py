"""What the browser tests share: Debian's Chromium driven by Playwright.

Importing this module skips the importing test module when Playwright or /usr/bin/chromium is
missing (`.ci/run` installs Chromium as root); the other tests never import it.
"""

from __future__ import annotations

import re
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.factories import PASSWORD

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

playwright_api = pytest.importorskip(
    "playwright.sync_api", reason="Playwright is not installed (pip install -e '.[test]')"
)
if not CHROMIUM.exists() or shutil.which(str(CHROMIUM)) is None:
    pytest.skip(
        f"{CHROMIUM} is missing: install Debian's Chromium (apt-get install -y chromium)",
        allow_module_level=True,
    )


@pytest.fixture
def browser() -> Iterator[Any]:
    with playwright_api.sync_playwright() as p:
        chromium = p.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        try:
            yield chromium
        finally:
            chromium.close()


def signed_in_page(browser, base_url: str, email: str, password: str = PASSWORD, **options: Any):
    """A page of a new browser context, signed in through the login form and on the inbox;
    `options` go to the context."""
    context = browser.new_context(
        base_url=base_url, viewport={"width": 1400, "height": 900}, **options
    )
    context.set_default_timeout(TIMEOUT_MS)
    context.set_default_navigation_timeout(TIMEOUT_MS)
    page = context.new_page()
    page.goto("/login")
    page.fill("#email", email)
    page.fill("#password", password)
    page.click("button[type=submit]")
    page.wait_for_url(re.compile(r"/inbox"))
    return page

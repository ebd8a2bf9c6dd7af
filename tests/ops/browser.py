"""Headless Chromium for page tests, driven by Playwright.

Playwright drives Debian's ``chromium`` (``apt-get install chromium``) through
``executable_path``: no browser is downloaded, which these machines could not do anyway.
:func:`find_chromium` returns None when it is not installed so tests can skip with a reason.
"""

from __future__ import annotations

import shutil
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from playwright.async_api import Page, async_playwright

ARGS = [
    "--no-sandbox",  # tests run as root in a container
    "--disable-gpu",
    "--disable-dev-shm-usage",
]


def find_chromium() -> str | None:
    for name in ("chromium", "chromium-browser", "google-chrome"):
        path = shutil.which(name)
        if path:
            return path
    return None


@asynccontextmanager
async def chromium_page(executable: str) -> AsyncIterator[Page]:
    """A fresh headless browser with one page; closed (with the browser) on exit."""
    async with async_playwright() as playwright:
        browser = await playwright.chromium.launch(executable_path=executable, headless=True, args=ARGS)
        try:
            page = await browser.new_page(viewport={"width": 1280, "height": 1000})
            page.set_default_timeout(15_000)
            yield page
        finally:
            await browser.close()

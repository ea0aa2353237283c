"""Fixtures for the browser tests: headless Chromium driven by Playwright's async API.

API (for the tests in tests/browser/; every test here is marked ``browser`` automatically):

- ``chromium_executable`` (session) -> ``str``: Debian's Chromium, ``/usr/bin/chromium`` (or
  ``RAGOPS_CHROMIUM``). Playwright never downloads a browser of its own. When it is missing the
  test is skipped with the reason, except under CI (``CI`` set, as ``.ci/run`` does), where a
  missing browser fails the run: ``make test`` installs it with apt-get.
- ``browser`` (session, async) -> ``playwright.async_api.Browser``: one Chromium for the session,
  launched with CHROMIUM_ARGS (no sandbox: CI runs as root; no network side traffic).
- ``browser_page`` (function, async) -> ``playwright.async_api.Page``: a page in a fresh context
  (own cookies, 1280x900 viewport, en-US, UTC), closed after the test.
- ``screenshot_dir`` (session) -> ``pathlib.Path``: where tests save screenshots,
  ``RAGOPS_SCREENSHOT_DIR`` or tests/browser/screenshots (git-ignored), created if missing;
  e.g. ``await browser_page.screenshot(path=screenshot_dir / "requests.png", full_page=True)``.

The fixtures are async and run on the session event loop (pytest-asyncio, asyncio_mode auto), the
same loop as the embedded platform's fixtures, so a test can start a server and browse it.
"""

import os
import shutil
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from playwright.async_api import Browser, Page, async_playwright

from ragops.demo_console import CHROMIUM, CHROMIUM_ARGS

DEFAULT_CHROMIUM = CHROMIUM
HERE = Path(__file__).resolve().parent


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Marks every test under tests/browser/ ``browser`` (``pytest -m browser`` selects them)."""
    for item in items:
        if HERE in Path(str(item.path)).parents:
            item.add_marker(pytest.mark.browser)


@pytest.fixture(scope="session")
def chromium_executable() -> str:
    """The Chromium binary; skips (fails under CI) when it is absent."""
    path = os.environ.get("RAGOPS_CHROMIUM", DEFAULT_CHROMIUM)
    if shutil.which(path) is None:
        reason = f"no Chromium at {path} (Debian: apt-get install chromium; `make test` installs it)"
        if os.environ.get("CI"):
            pytest.fail(f"{reason}; CI must run the browser tests")
        pytest.skip(reason)
    return path


@pytest.fixture(scope="session")
async def browser(chromium_executable: str) -> AsyncIterator[Browser]:
    """One headless Chromium for the whole session."""
    async with async_playwright() as playwright:
        launched = await playwright.chromium.launch(executable_path=chromium_executable, args=CHROMIUM_ARGS)
        try:
            yield launched
        finally:
            await launched.close()


@pytest.fixture
async def browser_page(browser: Browser) -> AsyncIterator[Page]:
    """A page in a fresh browser context (no cookies shared between tests)."""
    context = await browser.new_context(viewport={"width": 1280, "height": 900}, locale="en-US", timezone_id="UTC")
    try:
        yield await context.new_page()
    finally:
        await context.close()


@pytest.fixture(scope="session")
def screenshot_dir() -> Path:
    """Directory for the screenshots the closing note lists."""
    directory = Path(os.environ.get("RAGOPS_SCREENSHOT_DIR", HERE / "screenshots"))
    directory.mkdir(parents=True, exist_ok=True)
    return directory

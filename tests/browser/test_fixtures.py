"""The browser fixtures drive Debian's Chromium: a page renders and a screenshot is written."""

from pathlib import Path

from playwright.async_api import Page


async def test_browser_page_renders_and_screenshots(browser_page: Page, screenshot_dir: Path) -> None:
    await browser_page.set_content("<html><body><h1 id='t'>RAGOps</h1></body></html>")
    assert await browser_page.text_content("#t") == "RAGOps"
    shot = screenshot_dir / "fixture-smoke.png"
    await browser_page.screenshot(path=shot)
    assert shot.read_bytes().startswith(b"\x89PNG")

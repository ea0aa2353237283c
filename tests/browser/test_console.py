"""The console in a real browser (Debian's Chromium through Playwright) on seeded data: log in
through the form, open every page, check what each shows and that the browser reported no
error (a Content-Security-Policy violation included), and save a full-page screenshot of each
(``RAGOPS_SCREENSHOT_DIR``, default tests/browser/screenshots). The sink's ``/sql`` on chDB
and the gateway under uvicorn on a real broker: tests/console_site.py."""

import os
from collections.abc import Iterator
from pathlib import Path

import pytest
from playwright.async_api import Page, expect

from ragops.demo_console import CONSOLE_PAGES, console_tour
from ragops_shared.embedded import EmbeddedKafka
from tests.console_site import COST_USD, DEAD_LETTER_REASON, INJECTED, QUESTION, ConsoleSite, serving_console

pytestmark = [pytest.mark.kafka, pytest.mark.clickhouse]


@pytest.fixture
def site(tansu: EmbeddedKafka, tmp_path: Path) -> Iterator[ConsoleSite]:
    with serving_console(tansu, tmp_path) as serving:
        yield serving


async def _log_in(page: Page, site: ConsoleSite, role: str) -> None:
    await page.goto(f"{site.url}/console/login")
    await page.get_by_label("API key or token").fill(site.credentials[role])
    await page.get_by_role("button", name="Log in").click()
    await page.wait_for_load_state()


async def _shows(page: Page, url: str, shot: Path, *texts: str) -> None:
    response = await page.goto(url)
    assert response is not None and response.status == 200, url
    for text in texts:
        await expect(page.locator("main")).to_contain_text(text)
    await page.screenshot(path=shot, full_page=True)


async def test_every_page_shows_the_seeded_data(site: ConsoleSite, browser_page: Page, screenshot_dir: Path) -> None:
    page, url = browser_page, site.url
    errors: list[str] = []
    page.on("console", lambda message: errors.append(message.text) if message.type == "error" else None)
    page.on("pageerror", lambda error: errors.append(str(error)))

    await page.goto(f"{url}/console")  # no session: the login form
    assert page.url == f"{url}/console/login"
    await page.screenshot(path=screenshot_dir / "console-login.png", full_page=True)

    await _log_in(page, site, "operator")
    assert page.url == f"{url}/console"
    charts = page.locator("figure img.chart[src^='data:image/svg+xml']")  # SVG charts, as images
    await expect(charts).to_have_count(4)  # quality, latency, feedback, cost
    await expect(page.locator("#cost img")).to_have_attribute("alt", "Cost per stage by day")
    assert all(await charts.evaluate_all("images => images.map(image => image.naturalWidth > 0)"))
    await page.screenshot(path=screenshot_dir / "console-overview.png", full_page=True)

    await _shows(page, f"{url}/console/requests", screenshot_dir / "console-requests.png", QUESTION)
    await page.get_by_role("link", name=QUESTION).click()
    await page.wait_for_load_state()
    assert page.url == f"{url}/console/requests/{site.request_id}"
    main = page.locator("main")
    for shown in (QUESTION, "faithfulness", "0.875", COST_USD, "5d41402abc4b2a76", "query.answer_generated"):
        await expect(main).to_contain_text(shown)
    await page.screenshot(path=screenshot_dir / "console-request.png", full_page=True)

    # The injected question is text on the page, and its script never ran.
    await _shows(page, f"{url}/console/requests/{site.injected_request_id}", screenshot_dir / "console-escaped.png")
    await expect(page.locator(".question")).to_have_text(INJECTED)
    assert await page.title() != "pwned"

    pages = {
        "drift": ("retrieval_top_similarity", "0.4100", "training.candidate_evaluated"),
        "versions": ("7c1d9e0f2a3b", "embedding_model"),
        "approvals": ("Nothing waits for a decision.",),
        "experiments": (site.experiment_id, "rag-answer"),
        "agreement": ("Evaluators against human labels",),
        "dead-letters": (DEAD_LETTER_REASON,),  # last: its chart is checked below
    }
    for name, shown in pages.items():
        await _shows(page, f"{url}/console/{name}", screenshot_dir / f"console-{name}.png", *shown)
    await expect(page.locator("#by-reason img.chart[src^='data:image/svg+xml']")).to_have_count(1)

    await page.goto(f"{url}/docs")
    await expect(page.locator(".swagger-ui .info .title")).to_contain_text("RAGOps gateway")
    await expect(page.locator(".opblock-summary-path").first).to_be_visible()
    await page.screenshot(path=screenshot_dir / "console-docs.png", full_page=True)

    await page.goto(f"{url}/console")
    await page.get_by_role("button", name="Log out").click()
    await page.wait_for_load_state()
    assert page.url == f"{url}/console/login"
    assert errors == [], sorted(set(errors))[:8]


async def test_a_reviewer_reviews_and_cannot_open_the_drift_page(
    site: ConsoleSite, browser_page: Page, screenshot_dir: Path
) -> None:
    page = browser_page
    await _log_in(page, site, "reviewer")
    await _shows(page, f"{site.url}/console/review", screenshot_dir / "console-review.png", "Review queue", QUESTION)
    first = page.locator("section.review").filter(has_text=QUESTION)
    await first.get_by_role("group", name="Correct?").get_by_label("no").check()
    await first.get_by_role("group", name="Grounded in the chunks?").get_by_label("yes").check()
    await first.get_by_label("Correction").fill("France")
    await first.get_by_role("button", name="Save label").click()
    await page.wait_for_load_state()
    await expect(page.locator(".saved")).to_contain_text(site.request_id)  # published as ReviewSubmitted
    response = await page.goto(f"{site.url}/console/drift")
    assert response is not None and response.status == 403
    await expect(page.locator("main")).to_contain_text("no role that may open this page")
    await expect(page.get_by_role("link", name="Drift")).to_have_count(0)  # not in a reviewer's navigation
    await page.screenshot(path=screenshot_dir / "console-forbidden.png", full_page=True)


async def test_the_demos_console_tour_finds_the_run_on_every_page(
    site: ConsoleSite, chromium_executable: str, tmp_path: Path
) -> None:
    """``make demo``'s last step (ragops.demo_console.console_tour) on the seeded site: every page
    answers, the request is listed with its question and cost, the overview has its charts, and
    a screenshot of each page is saved; a request that is not there fails its checks."""
    credential = site.credentials["operator"]
    toured = await console_tour(
        site.url, credential, tmp_path, request_id=site.request_id, question=QUESTION, chromium=chromium_executable
    )
    pages = toured["pages"]
    assert set(pages) == set(CONSOLE_PAGES)
    assert all(os.path.getsize(page["file"]) > 0 for page in pages.values())  # noqa: ASYNC240 - a test's check
    assert all(page["checks"]["status 200"] for page in pages.values())
    assert all(pages["requests"]["checks"].values()) and all(pages["request"]["checks"].values())
    assert pages["overview"]["checks"]["charts"]

    missing = await console_tour(
        site.url,
        credential,
        tmp_path / "missing",
        request_id="no-such-request",
        question="Never asked",
        chromium=chromium_executable,
    )
    assert not missing["ok"] and not all(missing["pages"]["requests"]["checks"].values())
    assert (await console_tour(site.url, credential, tmp_path, request_id="r", question="q", chromium="/nonexistent"))[
        "skipped"
    ].startswith("no Chromium")

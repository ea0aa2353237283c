"""The demo's look at what a run left behind, as the people who run the platform see it.

After the workload and the shadow replay of :mod:`ragops.demo`:

1. **A round of human review** (:func:`review_round`): a reviewer key is made for the run, takes
   the review queue (``GET /v1/reviews/queue``), labels each answer and posts the labels
   (``POST /v1/reviews``); the labels go through the privacy service into ClickHouse, and the
   agreement of each automatic metric with them is read back (``GET /v1/reviews/agreement``).
   The reviewer is a stand-in, and says so: it knows the SQuAD gold answers of each question
   and marks an answer *correct* when it contains one (SQuAD's normalisation), *grounded* when
   it is correct and that gold answer is in the retrieved passages. A person judges better;
   the round trip, the redaction and the statistics are the platform's own.
2. **The console in a real browser** (:func:`console_tour`): Debian's Chromium, driven by
   Playwright, logs in with the run's admin key and opens every page, checks that the run's
   requests, scores, costs and the review's agreement are on them, and saves a screenshot of
   each page.
3. **``ragops tco`` and ``ragops report``** over the run (:func:`tco_and_report`): the TCO
   scenarios from the compute the services measured during the run, and the stakeholder report
   as HTML and PDF.

The costs are priced by the default price list (``deploy/prices/default.toml``), which the demo
publishes first (:func:`publish_prices`): without a list, compute costs nothing."""

import asyncio
import shutil
import time
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, NamedTuple

import httpx

from ragops.report import Window, write_report
from ragops.tco import in_effect, price_list_body, total_cost
from ragops_analytics import queries
from ragops_analytics.store import Reader
from ragops_evaluation.metrics import contains_answer
from ragops_shared.citations import normalize_answer, strip_markers

DEFAULT_PRICES = Path(__file__).resolve().parents[1] / "deploy" / "prices" / "default.toml"
"""The default price list, in the repository beside the package (``make demo`` runs from it)."""
CHROMIUM = "/usr/bin/chromium"
"""Debian's Chromium (``ragops demo --chromium`` names another): Playwright never downloads a browser."""
CHROMIUM_ARGS = (
    # CI and the demo may run as root, where Chromium's sandbox refuses to start; the rest keep
    # the headless browser off the network but for the pages it is sent to.
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
)
CONSOLE_PAGES = (
    "overview",
    "requests",
    "request",
    "drift",
    "versions",
    "approvals",
    "experiments",
    "dead-letters",
    "agreement",
)


async def publish_prices(gateway_url: str, auth: httpx.Auth, path: Path = DEFAULT_PRICES) -> str:
    """Publish the price list in ``path`` (``POST /v1/prices`` with ``auth``, an operator of the
    platform's tenant) and wait until ClickHouse prices with it (``GET /v1/prices`` lists it).
    Returns its ``price_list_id``. Raises ``httpx.HTTPStatusError`` on a refusal,
    ``TimeoutError`` when it is not listed within 60 s."""
    async with httpx.AsyncClient(base_url=gateway_url, auth=auth, timeout=60) as http:
        response = await http.post("/v1/prices", json=price_list_body(path))
        response.raise_for_status()
        price_list_id: str = response.json()["price_list_id"]
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            listed = await http.get("/v1/prices")
            if listed.status_code == 200 and any(one["price_list_id"] == price_list_id for one in listed.json()):
                return price_list_id
            await asyncio.sleep(1)
    raise TimeoutError(f"price list {price_list_id} was not stored within 60 s")


class Label(NamedTuple):
    """The stand-in reviewer's verdict on one answer (see the module's docstring)."""

    correct: bool
    grounded: bool


def stand_in_label(answer: str, contexts: Sequence[str], gold: Sequence[str]) -> Label:
    """*correct*: ``answer`` contains a gold answer (SQuAD normalisation); *grounded*: correct,
    and one of the gold answers it contains is in a retrieved passage."""
    found = [one for one in gold if contains_answer(strip_markers(answer), [one]) == 1.0]
    passages = [normalize_answer(text) for text in contexts]
    grounded = any(normalize_answer(one) in passage for one in found for passage in passages)
    return Label(correct=bool(found), grounded=grounded)


def _question_key(question: str) -> str:
    return " ".join(question.split()).casefold()


async def review_round(
    gateway_url: str, admin_auth: httpx.Auth, gold: Mapping[str, Sequence[str]], *, limit: int = 60
) -> dict[str, Any]:
    """Label up to ``limit`` answers of the review queue as :func:`stand_in_label` does, with a
    reviewer key made for the round by the tenant's admin (``admin_auth``) and revoked after it;
    ``gold`` maps a question's text to its gold answers (a queued question whose redacted text
    is not in it is skipped, and counted). Waits (up to 120 s) until every label is stored with
    its answer's scores, then returns the labels' counts (``stored_with_scores``: the labels the
    agreement counts; fewer than ``labelled`` when the wait ran out) and the agreement table
    (``GET /v1/reviews/agreement``).

    Raises ``httpx.HTTPStatusError`` on a refusal."""
    golds = {_question_key(question): answers for question, answers in gold.items()}
    async with httpx.AsyncClient(base_url=gateway_url, auth=admin_auth, timeout=60) as admin:
        made = await admin.post("/v1/admin/keys", json={"name": "demo-reviewer", "roles": ["reviewer"]})
        made.raise_for_status()
        key_id, credential = made.json()["key"]["key_id"], made.json()["api_key"]
        try:
            return await _label_queue(gateway_url, credential, golds, limit)
        finally:
            (await admin.delete(f"/v1/admin/keys/{key_id}")).raise_for_status()


async def _label_queue(
    gateway_url: str, credential: str, golds: Mapping[str, Sequence[str]], limit: int
) -> dict[str, Any]:
    headers = {"authorization": f"Bearer {credential}"}
    async with httpx.AsyncClient(base_url=gateway_url, headers=headers, timeout=60) as http:
        queue = await http.get("/v1/reviews/queue", params={"limit": limit})
        queue.raise_for_status()
        labelled, skipped, strata = 0, 0, dict[str, int]()
        for item in queue.json():
            gold = golds.get(_question_key(item["question"]))
            if gold is None:
                skipped += 1  # its text was redacted (planted personal data): no gold to judge by
                continue
            label = stand_in_label(item["answer"], [one["text"] for one in item["contexts"]], gold)
            posted = await http.post(
                "/v1/reviews",
                json={
                    "request_id": item["request_id"],
                    "answer_event_id": item["answer_event_id"],
                    "correct": label.correct,
                    "grounded": label.grounded,
                    "sampled_as": item["sampled_as"],
                    "token": item["token"],
                    "corrected_answer": None if label.correct else gold[0],
                },
            )
            posted.raise_for_status()
            labelled += 1
            strata[item["sampled_as"]] = strata.get(item["sampled_as"], 0) + 1
        deadline = time.monotonic() + 120
        while True:
            agreement = await http.get("/v1/reviews/agreement")
            agreement.raise_for_status()
            rows = agreement.json()
            if max((row["n"] for row in rows), default=0) >= labelled or time.monotonic() > deadline:
                break
            await asyncio.sleep(2)
    stored = max((row["n"] for row in rows), default=0)
    return {
        "queued": len(queue.json()),
        "labelled": labelled,
        "stored_with_scores": stored,
        "skipped": skipped,
        "strata": strata,
        "agreement": rows,
    }


async def console_tour(
    gateway_url: str, credential: str, out_dir: Path, *, request_id: str, question: str, chromium: str = CHROMIUM
) -> dict[str, Any]:
    """Open every console page in headless Chromium logged in with ``credential``, check that
    what the run left is on them (the request's ``question`` listed; its id, question and a cost
    on its page ``/console/requests/{request_id}``; charts on the overview; the agreement table)
    and save a full-page screenshot of each to ``out_dir`` (``console-<page>.png``).

    Returns ``{"pages": {page: {"file", "checks"}}, "ok": every check passed}``, or
    ``{"skipped": reason}`` when ``chromium`` or Playwright is not installed (the demo then says
    so; ``make test``'s browser tests still run)."""
    executable = shutil.which(chromium)
    if executable is None:
        return {"skipped": f"no Chromium at {chromium} (apt-get install chromium)"}
    try:
        # A dev dependency (the lock installs it): the platform itself never needs a browser.
        from playwright.async_api import async_playwright
    except ImportError:
        return {"skipped": "Playwright is not installed (pip install playwright)"}
    await asyncio.to_thread(out_dir.mkdir, parents=True, exist_ok=True)
    paths = {
        "overview": "/console",
        "requests": "/console/requests",
        "request": f"/console/requests/{request_id}",
        "drift": "/console/drift",
        "versions": "/console/versions",
        "approvals": "/console/approvals",
        "experiments": "/console/experiments",
        "dead-letters": "/console/dead-letters",
        "agreement": "/console/agreement",
    }
    asked = " ".join(question.split())[:30]
    expected: dict[str, list[str]] = {
        "requests": [asked],
        "request": [request_id, asked, "$"],
        "agreement": ["faithfulness", "kappa"],
    }
    pages: dict[str, Any] = {}
    async with async_playwright() as playwright:
        browser = await playwright.chromium.launch(executable_path=executable, args=list(CHROMIUM_ARGS))
        try:
            context = await browser.new_context(viewport={"width": 1280, "height": 900}, locale="en-US")
            page = await context.new_page()
            await page.goto(f"{gateway_url}/console/login")
            await page.fill("#credential", credential)
            async with page.expect_navigation():
                await page.click("button[type=submit], input[type=submit]")
            for name in CONSOLE_PAGES:
                response = await page.goto(gateway_url + paths[name])
                text = await page.inner_text("body")
                checks = {"status 200": response is not None and response.status == 200}
                checks |= {f"shows {want!r}": want in text for want in expected.get(name, [])}
                if name == "overview":
                    checks["charts"] = await page.locator("img[src^='data:image/svg+xml']").count() >= 4
                file = out_dir / f"console-{name}.png"
                await page.screenshot(path=file, full_page=True)
                pages[name] = {"file": str(file), "checks": checks}
        finally:
            await browser.close()
    return {"pages": pages, "ok": all(all(page["checks"].values()) for page in pages.values())}


def tco_and_report(analytics: Reader, since: datetime, out_dir: Path) -> dict[str, Any]:
    """``ragops tco`` over what the run measured since ``since`` (priced by the list in effect
    now) and the stakeholder report of the run's window written to ``out_dir`` as
    ``demo-report.html`` and ``demo-report.pdf``. Returns the TCO (as ``ragops tco --format
    json`` prints it) and the report files.

    Raises:
        ValueError: no price list is in effect, or no answer was measured.
    """
    now = datetime.now(UTC)
    prices = in_effect(queries.price_lists(analytics), now)
    if prices is None:
        raise ValueError("no price list is in effect")
    hosted = next((resource for unit, resource, _ in prices.prices if unit == "output_tokens_million"), "")
    measured = queries.cost_measurements(analytics, since)
    tco = total_cost(
        measured,
        prices,
        answers_per_day=None,
        documents_per_day=None,
        hosted_model=hosted,
        retention_days=queries.DEFAULT_RETENTION_DAYS["events"] or 90,
    )
    window = Window(since=since, until=now)
    files = [str(write_report(analytics, window, fmt, out_dir / f"demo-report.{fmt}")) for fmt in ("html", "pdf")]
    return {"tco": tco.as_json(), "report_files": files}

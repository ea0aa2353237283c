"""The console over HTTP (no browser): every page with every role's session cookie, the
login form and its cookie, a revoked key, CSRF and origin checks on posts, the security
headers, and an injected ``<script>`` shown as text. Real components: the sink's ``/sql`` on
chDB with seeded events, the gateway under uvicorn on a real broker (tests/console_site.py)."""

import hashlib
import hmac
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import pytest
from markupsafe import escape

from ragops_gateway.app import ROUTE_ROLES
from ragops_gateway.console.session import COOKIE, CSRF_FIELD
from ragops_gateway.settings import Rate
from ragops_shared.embedded import EmbeddedKafka
from ragops_shared.identity import Role
from tests.console_site import COST_USD, INJECTED, QUESTION, SECRET, ConsoleSite, serving_console

pytestmark = [pytest.mark.kafka, pytest.mark.clickhouse]

# Within the request list's longest range (RAGOPS_GATEWAY_CONSOLE_MAX_DAYS) and before every seeded request.
SINCE = (datetime.now(UTC).date() - timedelta(days=30)).isoformat()

PAGES = {
    "/console": "Cost per stage by day",
    "/console/requests": QUESTION,
    "/console/requests/{request_id}": COST_USD,
    "/console/drift": "retrieval_top_similarity",
    "/console/versions": "7c1d9e0f2a3b",
    "/console/approvals": "Nothing waits for a decision.",
    "/console/experiments": "rag-answer",
    "/console/dead-letters": "console seed",
    "/console/review": "Review queue",
    "/console/agreement": "Evaluators against human labels",
    "/docs": "swagger-ui",
}


@pytest.fixture
def site(tansu: EmbeddedKafka, tmp_path: Path) -> Iterator[ConsoleSite]:
    with serving_console(tansu, tmp_path) as serving:
        yield serving


def _get(site: ConsoleSite, path: str, credential: str | None) -> httpx.Response:
    cookies = {COOKIE: credential} if credential is not None else {}
    url = site.url + path.replace("{request_id}", site.request_id)
    return httpx.get(url, cookies=cookies, follow_redirects=False, timeout=60)


def test_every_page_opens_for_exactly_its_roles_and_shows_its_data(site: ConsoleSite) -> None:
    for path, shown in PAGES.items():
        allowed = ROUTE_ROLES["GET", path]
        for role in Role:
            response = _get(site, path, site.credentials[role.value])
            if role in allowed:
                assert response.status_code == 200, (path, role, response.text[:500])
                assert shown in response.text, (path, role)
            else:
                assert response.status_code == 403, (path, role)
                assert "no role that may open this page" in response.text
        for credential in (None, site.credentials["revoked"], "garbage"):
            refused = _get(site, path, credential)
            assert (refused.status_code, refused.headers["location"]) == (303, "/console/login"), path


def test_pages_send_the_security_headers_and_escape_what_they_show(site: ConsoleSite) -> None:
    analyst = site.credentials["analyst"]
    page = _get(site, f"/console/requests/{site.injected_request_id}", analyst)
    assert page.status_code == 200
    assert "<script>document.title" not in page.text
    assert str(escape(INJECTED)) in page.text  # &lt;script&gt;...: shown as text
    listed = _get(site, f"/console/requests?since={SINCE}", analyst)
    assert "<script>" not in listed.text and "&lt;script&gt;" in listed.text
    for response in (page, listed, _get(site, "/console/login", None)):
        assert response.headers["content-security-policy"] == (
            "default-src 'self'; img-src 'self' data:; style-src 'self'; frame-ancestors 'none'"
        )
        assert response.headers["x-content-type-options"] == "nosniff"
        assert response.headers["referrer-policy"] == "same-origin"


def test_requests_filter_by_score_feedback_and_prompt_version(site: ConsoleSite) -> None:
    analyst = site.credentials["analyst"]

    def listed(query: str) -> set[str]:
        text = _get(site, f"/console/requests?since={SINCE}&{query}", analyst).text
        return {request for request in (site.request_id, site.injected_request_id) if request in text}

    both = {site.request_id, site.injected_request_id}
    assert listed("") == both
    assert listed("metric=faithfulness&min_score=0.5") == {site.request_id}
    assert listed("metric=faithfulness&max_score=0.5") == {site.injected_request_id}
    assert listed("feedback=down") == {site.request_id}
    assert listed("feedback=none") == set()
    assert listed("prompt_version=1") == both
    assert listed("prompt_version=7") == set()
    # A tenant's caller names no other tenant: the parameter is ignored.
    assert listed("tenant=globex") == both


def test_login_sets_a_strict_cookie_and_posts_need_the_token_and_this_origin(site: ConsoleSite) -> None:
    origin = {"origin": site.url}
    with httpx.Client(base_url=site.url, follow_redirects=False, timeout=60) as browser:
        wrong = browser.post("/console/login", data={"credential": "rgk_nope"}, headers=origin)
        assert wrong.status_code == 401 and "Not a valid credential." in wrong.text and COOKIE not in wrong.cookies
        elsewhere = browser.post(
            "/console/login", data={"credential": site.credentials["reviewer"]}, headers={"origin": "https://evil"}
        )
        assert elsewhere.status_code == 400 and COOKIE not in elsewhere.cookies
        logged = browser.post("/console/login", data={"credential": site.credentials["reviewer"]}, headers=origin)
        assert (logged.status_code, logged.headers["location"]) == (303, "/console")
        cookie = logged.headers["set-cookie"]
        for flag in ("HttpOnly", "SameSite=strict", "Path=/", "Max-Age=28800"):
            assert flag.lower() in cookie.lower(), cookie
        assert "secure" not in cookie.lower()  # plain http here; https or the setting adds it
        assert browser.get("/console").status_code == 200
        assert browser.get("/console/drift").status_code == 403  # a reviewer's session

        token = hmac.new(SECRET.encode(), site.credentials["reviewer"].encode(), hashlib.sha256).hexdigest()
        assert f'value="{token}"' in browser.get("/console").text
        assert browser.post("/console/logout", data={CSRF_FIELD: "forged"}, headers=origin).status_code == 400
        assert browser.post("/console/logout", data={CSRF_FIELD: token}).status_code == 400  # no Origin/Referer
        label = {"request_id": site.request_id, "answer_event_id": "x", "correct": "true", "grounded": "true"}
        forged = browser.post("/console/review", data=label | {"sampled_as": "random"}, headers=origin)
        assert forged.status_code == 400  # no CSRF token: nothing published
        out = browser.post("/console/logout", data={CSRF_FIELD: token}, headers={"referer": f"{site.url}/console"})
        assert (out.status_code, out.headers["location"]) == (303, "/console/login")
        assert browser.get("/console").status_code == 303


def test_a_revoked_key_ends_its_session_at_once(site: ConsoleSite) -> None:
    with httpx.Client(base_url=site.url, follow_redirects=False, timeout=60) as browser:
        key, credential = site.keys.create("short-lived", "default", [Role.ANALYST])
        browser.post("/console/login", data={"credential": credential}, headers={"origin": site.url})
        assert browser.get("/console/requests").status_code == 200
        site.keys.revoke(key.key_id)
        assert browser.get("/console/requests").headers["location"] == "/console/login"


def test_the_api_page_is_served_from_the_package_behind_the_session(site: ConsoleSite) -> None:
    analyst = site.credentials["analyst"]
    docs = _get(site, "/docs", analyst)
    assert "/docs/assets/swagger-ui-bundle.js" in docs.text and "cdn" not in docs.text.lower()
    assert _get(site, "/docs/assets/swagger-ui-bundle.js", analyst).status_code == 200
    assert _get(site, "/docs/assets/index.html", analyst).status_code == 404
    assert _get(site, "/docs/assets/swagger-ui-bundle.js", None).status_code == 303
    document = _get(site, "/openapi.json", site.credentials["producer"])
    assert document.status_code == 200 and "/v1/queries" in document.json()["paths"]
    assert "/console" not in document.json()["paths"]


def test_request_filters_out_of_bounds_are_refused_with_the_reason(site: ConsoleSite) -> None:
    analyst = site.credentials["analyst"]
    platform = site.keys.create("platform-analyst", "console-tenant", [Role.PLATFORM, Role.ANALYST])[1]
    for query, reason in (
        ("until=9999-12-31&since=9999-12-01", "ends too late"),
        ("since=0001-01-01", "at most 92 are searched"),
        ("since=2026-02-01&until=2026-01-01", "ends (2026-01-01) before it starts"),
        ("page=1000000000000000000000", "past the last one"),
        ("since=yesterday", "malformed"),
    ):
        refused = _get(site, f"/console/requests?{query}", analyst)
        assert (refused.status_code, reason in refused.text) == (400, True), (query, refused.text[:300])
    bad_tenant = _get(site, "/console/requests?tenant=No%20Such%27Tenant", platform)
    assert (bad_tenant.status_code, "not a tenant name" in bad_tenant.text) == (400, True)
    assert _get(site, "/console/requests?tenant=other-tenant", platform).status_code == 200


def test_console_pages_and_api_reads_share_the_tenants_read_rate(tansu: EmbeddedKafka, tmp_path: Path) -> None:
    # Two reads at once, then one per 1000 s: the third read of the tenant is refused, page or API.
    with serving_console(tansu, tmp_path, read_rate=Rate(rate=0.001, burst=2)) as slow:
        analyst = slow.credentials["analyst"]
        assert _get(slow, "/console", analyst).status_code == 200
        answer = httpx.get(
            f"{slow.url}/v1/answers/{slow.request_id}",
            headers={"authorization": f"Bearer {slow.credentials['product']}"},
            timeout=60,
        )
        assert answer.status_code != 429
        page = _get(slow, "/console/requests", analyst)
        assert page.status_code == 429, page.text[:300]
        assert 900 < int(page.headers["retry-after"]) <= 1000  # whole seconds until the next token
        assert "Too many pages at once" in page.text
        api = httpx.get(
            f"{slow.url}/v1/reviews/agreement",
            headers={"authorization": f"Bearer {slow.credentials['analyst']}"},
            timeout=60,
        )
        assert api.status_code == 429 and 900 < int(api.headers["retry-after"]) <= 1000
        assert "over its rate for reads" in api.json()["detail"]
        # Writes keep their own buckets; the login form needs no session and takes no token.
        assert _get(slow, "/console/login", None).status_code == 200

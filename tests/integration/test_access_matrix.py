"""Route x role x tenant: the real gateway (on a real broker) and the real sink (on chDB, serving
HTTP on a local port so the gateway's ``POST /v1/sql`` reaches it) called on every route with
every principal. Each role alone, a key of another tenant, a revoked key, no header and garbage:
the allowed set of each route is exactly the documented one (README "Roles"), a refusal is 401
without a valid credential and 403 without the role, and a refusal's body says nothing more.

The routes come from the applications themselves: a route added without an entry in
:data:`EXPECTED` fails here."""

import asyncio
import socket
import threading
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import pytest
import uvicorn
from fastapi.routing import APIRoute
from fastapi.testclient import TestClient
from faststream.asgi import AsgiFastStream
from structlog.testing import capture_logs

from ragops_analytics.client import AnalyticsSettings
from ragops_analytics.queries import insert_events
from ragops_gateway.app import QueryIn, create_app as create_gateway
from ragops_gateway.console.session import COOKIE
from ragops_gateway.settings import GatewaySettings
from ragops_schemas import AnswerEvaluated, AnswerGenerated, Event, FeedbackRecorded, MessageDeadLettered, utc_now
from ragops_schemas.audit import AuditRecorded
from ragops_schemas.ids import erasure_id, keyed_request_event_id
from ragops_schemas.topics import TOPICS
from ragops_shared.embedded import EmbeddedKafka, create_topics
from ragops_shared.identity import ApiKeyStore, Role
from ragops_shared.settings import KafkaSettings, PlatformSettings
from ragops_shared.watch import EventWatcher
from ragops_sink.app import Writer, create_app as create_sink
from ragops_sink.rows import events_to_arrow, to_row
from ragops_sink.settings import SinkSettings
from tests.helpers import example, record_of

pytestmark = pytest.mark.kafka

OPEN = None  # a probe: anyone, no credential needed
# (application, method, path) -> the roles allowed: exact, no role implies another.
EXPECTED: dict[tuple[str, str, str], frozenset[Role] | None] = {
    ("gateway", "GET", "/health"): OPEN,
    ("gateway", "GET", "/ready"): OPEN,
    ("gateway", "GET", "/metrics"): frozenset({Role.MONITORING}),
    ("gateway", "POST", "/v1/documents"): frozenset({Role.PRODUCER}),
    ("gateway", "DELETE", "/v1/documents/{document_id:path}"): frozenset({Role.PRODUCER, Role.ADMIN}),
    ("gateway", "POST", "/v1/queries"): frozenset({Role.PRODUCER}),
    ("gateway", "POST", "/v1/feedback"): frozenset({Role.PRODUCT}),
    ("gateway", "POST", "/v1/sql"): frozenset({Role.ANALYST, Role.AUDITOR, Role.PLATFORM}),
    ("gateway", "GET", "/v1/admin/keys"): frozenset({Role.ADMIN}),
    ("gateway", "POST", "/v1/admin/keys"): frozenset({Role.ADMIN}),
    ("gateway", "DELETE", "/v1/admin/keys/{key_id}"): frozenset({Role.ADMIN}),
    ("gateway", "POST", "/v1/changes"): frozenset({Role.OPERATOR}),
    ("gateway", "GET", "/v1/changes"): frozenset({Role.OPERATOR, Role.APPROVER, Role.AUDITOR}),
    ("gateway", "POST", "/v1/changes/{change}/approve"): frozenset({Role.APPROVER}),
    ("gateway", "POST", "/v1/changes/{change}/reject"): frozenset({Role.APPROVER}),
    ("gateway", "POST", "/v1/erasures"): frozenset({Role.ADMIN}),
    ("gateway", "GET", "/v1/erasures/{erasure_id}"): frozenset({Role.ADMIN}),
    ("gateway", "POST", "/v1/experiments"): frozenset({Role.OPERATOR}),
    ("gateway", "GET", "/v1/experiments"): frozenset({Role.OPERATOR, Role.APPROVER, Role.AUDITOR, Role.ANALYST}),
    ("gateway", "POST", "/v1/experiments/{experiment_id}/stop"): frozenset({Role.OPERATOR}),
    ("gateway", "POST", "/v1/prompts"): frozenset({Role.OPERATOR}),
    ("gateway", "GET", "/v1/prompts"): frozenset({Role.OPERATOR, Role.APPROVER, Role.AUDITOR, Role.ANALYST}),
    ("gateway", "GET", "/v1/prompts/{name}"): frozenset({Role.OPERATOR, Role.APPROVER, Role.AUDITOR, Role.ANALYST}),
    ("gateway", "GET", "/v1/prompts/{name}/versions/{version}"): frozenset(
        {Role.OPERATOR, Role.APPROVER, Role.AUDITOR, Role.ANALYST}
    ),
    ("gateway", "POST", "/v1/prompts/{name}/labels"): frozenset({Role.OPERATOR}),
    # ---- cli: an answer with its scores and feedback.
    ("gateway", "GET", "/v1/answers/{request_id}"): frozenset({Role.PRODUCER, Role.PRODUCT}),
    # ---- cost: price lists
    ("gateway", "POST", "/v1/prices"): frozenset({Role.OPERATOR}),
    ("gateway", "GET", "/v1/prices"): frozenset({Role.OPERATOR, Role.APPROVER, Role.AUDITOR, Role.ANALYST}),
    # ---- review: human review (ragops_gateway.reviews)
    ("gateway", "GET", "/v1/reviews/queue"): frozenset({Role.REVIEWER}),
    ("gateway", "POST", "/v1/reviews"): frozenset({Role.REVIEWER}),
    ("gateway", "GET", "/v1/reviews/agreement"): frozenset({Role.REVIEWER, Role.ANALYST, Role.OPERATOR, Role.AUDITOR}),
    # ---- console (ragops_gateway.console): the credential travels in the session cookie, not the
    # header (see _call); the login form, its post and its stylesheet come before any session.
    ("gateway", "GET", "/console/login"): OPEN,
    ("gateway", "POST", "/console/login"): OPEN,
    ("gateway", "GET", "/console/static/{name}"): OPEN,
    ("gateway", "POST", "/console/logout"): frozenset(Role),
    ("gateway", "GET", "/console"): frozenset({Role.ANALYST, Role.OPERATOR, Role.REVIEWER, Role.AUDITOR}),
    ("gateway", "GET", "/console/requests"): frozenset({Role.ANALYST, Role.OPERATOR, Role.REVIEWER, Role.AUDITOR}),
    ("gateway", "GET", "/console/requests/{request_id}"): frozenset(
        {Role.ANALYST, Role.OPERATOR, Role.REVIEWER, Role.AUDITOR}
    ),
    ("gateway", "GET", "/console/drift"): frozenset({Role.ANALYST, Role.OPERATOR, Role.APPROVER, Role.AUDITOR}),
    ("gateway", "GET", "/console/versions"): frozenset({Role.ANALYST, Role.OPERATOR, Role.APPROVER, Role.AUDITOR}),
    ("gateway", "GET", "/console/experiments"): frozenset({Role.ANALYST, Role.OPERATOR, Role.APPROVER, Role.AUDITOR}),
    ("gateway", "GET", "/console/dead-letters"): frozenset({Role.ANALYST, Role.OPERATOR, Role.APPROVER, Role.AUDITOR}),
    ("gateway", "GET", "/console/approvals"): frozenset({Role.APPROVER, Role.OPERATOR, Role.AUDITOR}),
    ("gateway", "GET", "/console/review"): frozenset({Role.REVIEWER}),
    ("gateway", "POST", "/console/review"): frozenset({Role.REVIEWER}),
    ("gateway", "GET", "/console/agreement"): frozenset({Role.REVIEWER, Role.ANALYST, Role.OPERATOR, Role.AUDITOR}),
    ("gateway", "GET", "/docs"): frozenset(Role),
    ("gateway", "GET", "/docs/assets/{name}"): frozenset(Role),
    ("gateway", "GET", "/openapi.json"): frozenset(Role),
    ("sink", "GET", "/health"): OPEN,
    ("sink", "GET", "/ready"): OPEN,
    ("sink", "GET", "/metrics"): frozenset({Role.MONITORING}),
    ("sink", "POST", "/sql"): frozenset({Role.ANALYST, Role.AUDITOR, Role.PLATFORM}),
}
BODIES = {
    "/v1/documents": {"content": "a document"},
    "/v1/queries": {"question": "anyone?", "timeout_s": 0.2},
    "/v1/feedback": {"request_id": "r-1", "thumb": "up"},
    "/v1/sql": {"sql": "SELECT 1 AS one"},
    "/sql": {"sql": "SELECT 1 AS one"},
    "/v1/admin/keys": {"name": "made-by-admin", "roles": ["producer"]},
    "/v1/changes": {"change": {"kind": "retrain", "action": "reindex"}, "reason": "matrix"},
    "/v1/changes/{change}/approve": {"reason": "matrix"},
    "/v1/changes/{change}/reject": {"reason": "matrix"},
    "/v1/erasures": {"subject": "matrix-subject", "key": "matrix"},
    # Past the guard: 422, no such prompt version (no traffic moves in the matrix).
    "/v1/experiments": {
        "target": "prompt",
        "target_name": "matrix",
        "variants": [{"name": "a", "version": "1", "weight": 50}, {"name": "b", "version": "2", "weight": 50}],
        "unit": "request",
        "reason": "matrix",
    },
    "/v1/experiments/{experiment_id}/stop": {"reason": "matrix"},
    "/v1/prompts": {"name": "matrix", "description": "d", "system": "Be brief.", "user": "{{ question }}"},
    "/v1/prompts/{name}/labels": {"label": "staging", "version": 1, "reason": "matrix"},
    "/v1/prices": {"prices": [{"unit": "cpu_core_hour", "usd": 0.05}], "reason": "matrix"},
    # Past the guard: 422 (not the queue's token for it).
    "/v1/reviews": {
        "request_id": "r-1",
        "answer_event_id": "a-1",
        "correct": True,
        "grounded": True,
        "sampled_as": "random",
        "token": "0" * 64,
    },
}
TENANT, OTHER_TENANT = "acme", "globex"
CONSOLE_PATHS = ("/console", "/docs", "/openapi.json")
# Past the session check a console post fails on its form (no CSRF token, no Origin): 400.
CONSOLE_FORMS = {"/console/login": {"credential": "rgk_nope"}, "/console/review": {}, "/console/logout": {}}


@dataclass
class Platform:
    gateway: TestClient
    sink: httpx.Client
    sink_app: AsgiFastStream
    keys: ApiKeyStore
    credentials: dict[str, str | None]  # principal -> Authorization header (None: no header)
    target_key_id: str  # a key of TENANT that DELETE /v1/admin/keys/{key_id} revokes
    kafka: KafkaSettings
    writer: Writer  # the sink's store: tests put the rows that the gateway reads there


def _free_socket() -> socket.socket:
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen(64)
    return sock


@pytest.fixture
def platform(tansu: EmbeddedKafka, tmp_path: Path) -> Iterator[Platform]:
    kafka = KafkaSettings(bootstrap_servers=tansu.bootstrap_servers)
    asyncio.run(create_topics(kafka, TOPICS))
    # Both read <tmp_path>/auth/api-keys.json; TENANT is the platform's (only its people request changes).
    data = PlatformSettings(data_dir=tmp_path, tenant=TENANT)
    keys = ApiKeyStore(tmp_path / "auth" / "api-keys.json")
    credentials: dict[str, str | None] = {
        role.value: f"Bearer {keys.create(role.value, TENANT, [role])[1]}" for role in Role
    }
    credentials[f"{OTHER_TENANT} admin"] = f"Bearer {keys.create('x', OTHER_TENANT, [Role.ADMIN])[1]}"
    revoked, revoked_credential = keys.create("revoked", TENANT, list(Role))
    keys.revoke(revoked.key_id)
    credentials |= {
        "revoked key of every role": f"Bearer {revoked_credential}",
        "no header": None,
        "garbage bearer": "Bearer garbage",
        "garbage key": "Bearer rgk_0123456789abcdef_" + "A" * 43,
        "basic auth": "Basic YWRtaW46YWRtaW4=",
    }
    target, _ = keys.create("target", TENANT, [Role.PRODUCER])

    sink_settings = SinkSettings(platform=data)
    writer = Writer(sink_settings)
    writer.open()
    # The sink's HTTP routes on a real port, its consumer not started (lifespan off).
    sock = _free_socket()
    sink_app = create_sink(sink_settings, writer)
    server = uvicorn.Server(uvicorn.Config(sink_app, lifespan="off", log_config=None))
    serving = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    serving.start()
    sink_url = f"http://127.0.0.1:{sock.getsockname()[1]}"
    # The gateway's own reader holds a platform key (ragops.platform.ANALYTICS_READERS).
    _, gateway_key = keys.create("gateway", TENANT, [Role.PLATFORM])
    analytics = AnalyticsSettings(sql_url=f"{sink_url}/sql", api_key=gateway_key)
    settings = GatewaySettings(kafka=kafka, platform=data, analytics=analytics, default_timeout_s=1)
    try:
        with TestClient(create_gateway(settings)) as gateway, httpx.Client(base_url=sink_url) as sink:
            yield Platform(gateway, sink, sink_app, keys, credentials, target.key_id, kafka, writer)
    finally:
        server.should_exit = True
        serving.join()
        sock.close()
        writer.close()


def _routes(platform: Platform) -> set[tuple[str, str, str]]:
    """Every (application, method, path) the two applications serve (HEAD is GET without a body)."""
    gateway = {
        ("gateway", method, route.path)
        for route in platform.gateway.app.routes  # type: ignore[attr-defined]
        if isinstance(route, APIRoute)
        for method in route.methods
    }
    sink = {("sink", method, path) for path, handler in platform.sink_app.routes for method in handler.methods}
    return {route for route in gateway | sink if route[1] != "HEAD"}


def _call(platform: Platform, app: str, method: str, path: str, authorization: str | None) -> httpx.Response:
    client = platform.gateway if app == "gateway" else platform.sink
    # An unknown change: past the guard it is 404, the same for every caller allowed to decide.
    url = (
        path.replace("{key_id}", platform.target_key_id)
        .replace("{change}", "chg-unknown")
        .replace("{document_id:path}", "handbook/intro.md")  # an id with a slash, as a path may be
        .replace("{erasure_id}", "era-00000000000000000000")
        .replace("{experiment_id}", "exp-00000000000000000000")
        .replace("{name}", _name_in(path))
        .replace("{version}", "1")
        .replace("{request_id}", "r-unknown")
    )
    if path.startswith(CONSOLE_PATHS):
        # The console authenticates its session cookie exactly as the API does the header.
        credential = None if authorization is None else authorization.split(" ", 1)[-1]
        client.cookies.clear()
        if credential is not None:
            client.cookies.set(COOKIE, credential)
        try:
            return client.request(method, url, data=CONSOLE_FORMS.get(path), follow_redirects=False)
        finally:
            client.cookies.clear()
    headers = {"authorization": authorization} if authorization is not None else {}
    return client.request(method, url, json=BODIES.get(path), headers=headers)


def _name_in(path: str) -> str:
    """The ``{name}`` of a path: a prompt's, or a file the console serves."""
    if path.startswith("/docs"):
        return "swagger-ui.css"
    return "console.css" if path.startswith("/console") else "rag-answer"


def _outcome(response: httpx.Response) -> str:
    if response.status_code == 303 and response.headers["location"] == "/console/login":
        return "401"  # a console page without a valid session: to the login form
    return str(response.status_code) if response.status_code in (401, 403) else "allowed"


def _expected(allowed: frozenset[Role] | None, principal: str) -> str:
    if allowed is OPEN:
        return "allowed"
    if principal in Role._value2member_map_:
        return "allowed" if Role(principal) in allowed else "403"
    if principal.startswith(OTHER_TENANT):
        return "allowed" if Role.ADMIN in allowed else "403"
    return "401"  # revoked, none, garbage


def test_every_route_allows_exactly_its_roles(platform: Platform) -> None:
    assert _routes(platform) == set(EXPECTED), "a route without an entry in EXPECTED (or an entry without a route)"
    observed, wanted, refusals = {}, {}, {}
    for (app, method, path), allowed in EXPECTED.items():
        for principal, authorization in platform.credentials.items():
            response = _call(platform, app, method, path, authorization)
            observed[app, method, path, principal] = _outcome(response)
            wanted[app, method, path, principal] = _expected(allowed, principal)
            if response.status_code in (401, 403) and not path.startswith(CONSOLE_PATHS):
                refusals.setdefault((app, response.status_code), set()).add(response.json()["detail"])
            if (principal, path) in {("analyst", "/v1/sql"), ("platform", "/v1/sql"), ("analyst", "/sql")}:
                assert response.json() == {"columns": ["one"], "rows": [[1]]}, "answered on the caller's credential"
    assert observed == wanted
    # One body per kind of refusal: nothing tells which check failed, or why.
    assert refusals == {
        ("gateway", 401): {"authentication required"},
        ("gateway", 403): {"not allowed"},
        ("sink", 401): {"authentication required"},
        ("sink", 403): {"not allowed"},
    }


def _without_trace(response: httpx.Response) -> dict[str, object]:
    return {name: value for name, value in response.json().items() if name != "trace_id"}


def test_an_admin_sees_and_revokes_only_its_tenants_keys(platform: Platform) -> None:
    ours, theirs = platform.credentials["admin"], platform.credentials[f"{OTHER_TENANT} admin"]
    stored = platform.keys.keys()
    their_key_id = next(key.key_id for key in stored if key.tenant == OTHER_TENANT)
    listed = platform.gateway.get("/v1/admin/keys", headers={"authorization": ours})
    assert listed.status_code == 200
    assert {key["tenant"] for key in listed.json()} == {TENANT} and their_key_id not in listed.text
    assert "secret" not in listed.text and platform.keys.find(platform.target_key_id).secret_sha256 not in listed.text

    # Another tenant's key answers exactly like one that does not exist, and stays valid.
    other = platform.gateway.delete(f"/v1/admin/keys/{their_key_id}", headers={"authorization": ours})
    unknown = platform.gateway.delete(f"/v1/admin/keys/{'0' * 16}", headers={"authorization": ours})
    assert (other.status_code, _without_trace(other)) == (unknown.status_code, _without_trace(unknown))
    assert other.status_code == 404 and other.headers.keys() == unknown.headers.keys()
    assert platform.keys.find(their_key_id).revoked_at is None
    assert platform.gateway.delete(f"/v1/admin/keys/{platform.target_key_id}", headers={"authorization": theirs})
    assert platform.keys.find(platform.target_key_id).revoked_at is None

    # A key an admin creates is of the admin's tenant; no body names another one.
    created = platform.gateway.post(
        "/v1/admin/keys", json={"name": "bot", "roles": ["producer"]}, headers={"authorization": theirs}
    )
    assert created.status_code == 201 and created.json()["key"]["tenant"] == OTHER_TENANT
    assert platform.keys.authenticate(created.json()["api_key"]).tenant == OTHER_TENANT
    smuggled = {"name": "bot", "roles": ["producer"], "tenant": TENANT}
    assert platform.gateway.post("/v1/admin/keys", json=smuggled, headers={"authorization": theirs}).status_code == 422
    cross = {"name": "bot", "roles": ["platform"]}
    assert platform.gateway.post("/v1/admin/keys", json=cross, headers={"authorization": ours}).status_code == 422

    revoked = platform.gateway.delete(f"/v1/admin/keys/{platform.target_key_id}", headers={"authorization": ours})
    assert revoked.status_code == 200 and revoked.json()["revoked_at"] is not None


def test_an_admin_erases_in_its_own_tenant_only(platform: Platform) -> None:
    ours = {"authorization": platform.credentials["admin"]}
    theirs = {"authorization": platform.credentials[f"{OTHER_TENANT} admin"]}
    asked = platform.gateway.post("/v1/erasures", json={"subject": "user-1", "key": "ticket-1"}, headers=ours)
    assert asked.status_code == 202 and asked.json()["state"] == "in_progress"
    erasure = asked.json()["erasure_id"]
    assert erasure == erasure_id(TENANT, "user-1", "ticket-1")  # the tenant of the credential
    assert "user-1" not in asked.text
    mine = platform.gateway.get(f"/v1/erasures/{erasure}", headers=ours)
    assert mine.status_code == 200 and mine.json()["state"] == "in_progress"
    # Another tenant's erasure answers exactly like one that does not exist.
    other = platform.gateway.get(f"/v1/erasures/{erasure}", headers=theirs)
    unknown = platform.gateway.get("/v1/erasures/era-00000000000000000000", headers=theirs)
    assert other.status_code == unknown.status_code == 404
    assert _without_trace(other) == {"detail": f"no erasure {erasure}"}
    # No body names a tenant; a malformed subject is refused.
    smuggled = {"subject": "user-1", "tenant": OTHER_TENANT}
    assert platform.gateway.post("/v1/erasures", json=smuggled, headers=ours).status_code == 422
    assert platform.gateway.post("/v1/erasures", json={"subject": ""}, headers=ours).status_code == 422
    assert platform.gateway.post("/v1/erasures", json={"subject": "a\nb"}, headers=ours).status_code == 422


def test_a_key_file_that_cannot_be_written_gets_503_with_no_path(platform: Platform) -> None:
    admin = {"authorization": platform.credentials["admin"]}
    lock = platform.keys.path.with_name(platform.keys.path.name + ".lock")
    lock.unlink()
    lock.mkdir()  # no write can take the lock now: a read-only Secret, as far as writes go
    created = platform.gateway.post("/v1/admin/keys", json={"name": "bot", "roles": ["producer"]}, headers=admin)
    revoked = platform.gateway.delete(f"/v1/admin/keys/{platform.target_key_id}", headers=admin)
    for response in (created, revoked):
        assert response.status_code == 503 and str(platform.keys.path.parent) not in response.text
    assert platform.keys.find(platform.target_key_id).revoked_at is None


def test_sql_through_the_gateway_refuses_with_the_reason_and_hides_the_backend(platform: Platform, tmp_path) -> None:
    analyst = {"authorization": platform.credentials["analyst"]}
    refused = platform.gateway.post("/v1/sql", json={"sql": "SELECT file('/etc/passwd')"}, headers=analyst)
    assert refused.status_code == 400 and "file" in refused.json()["detail"]
    assert str(platform.sink.base_url.port) not in refused.text
    sock = _free_socket()
    port = sock.getsockname()[1]
    sock.close()  # nothing listens there now
    settings = GatewaySettings(
        kafka=KafkaSettings(bootstrap_servers="127.0.0.1:1"),
        platform=PlatformSettings(data_dir=tmp_path),
        analytics=AnalyticsSettings(sql_url=f"http://127.0.0.1:{port}/sql"),
    )
    down = TestClient(create_gateway(settings)).post("/v1/sql", json={"sql": "SELECT 1"}, headers=analyst)
    assert down.status_code == 503 and str(port) not in down.text and "127.0.0.1" not in down.text


def test_sql_through_the_gateway_reads_the_audit_log_for_auditors_only(platform: Platform) -> None:
    audit = {"sql": "SELECT count() FROM audit_log"}
    answers = {
        role: platform.gateway.post("/v1/sql", json=audit, headers={"authorization": platform.credentials[role]})
        for role in ("analyst", "auditor", "platform")
    }
    assert {role: answer.status_code for role, answer in answers.items()} == {
        "analyst": 400,
        "auditor": 200,
        "platform": 200,
    }
    assert answers["analyst"].json()["detail"] == "audit_log is readable by auditors only"


def test_sql_through_the_gateway_tells_an_engine_errors_gist_and_the_sink_logs_the_rest(platform: Platform) -> None:
    analyst = {"authorization": platform.credentials["analyst"]}
    with capture_logs() as logs:
        failed = platform.gateway.post("/v1/sql", json={"sql": "SELECT no_such_column FROM events"}, headers=analyst)
    assert failed.status_code == 400
    assert failed.json()["detail"] == "UNKNOWN_IDENTIFIER: Unknown expression identifier `no_such_column`."
    # The statement as rewritten for the tenant stays in the sink's log, under the gateway's trace id.
    [logged] = [entry for entry in logs if entry["event"] == "analyst_sql_failed"]
    assert logged["trace_id"] == failed.json()["trace_id"] and "__ragops_rows" in logged["error"]


async def _audited(kafka: KafkaSettings, count: int) -> list[AuditRecorded]:
    """The first ``count`` entries of the audit topic, read from its beginning."""
    seen: list[Event] = []
    enough = asyncio.Event()

    def collect(event: Event) -> None:
        seen.append(event)
        if len(seen) >= count:
            enough.set()

    watcher = EventWatcher(kafka, [AuditRecorded], client_id="test-audit-reader", from_beginning=True)
    watcher.listen(collect)
    await watcher.start()
    try:
        await asyncio.wait_for(enough.wait(), 60)
    finally:
        await watcher.stop()
    return [entry for entry in seen if isinstance(entry, AuditRecorded)]


def test_refused_calls_and_key_changes_are_audited_with_their_actor(platform: Platform) -> None:
    """401 and 403 at the gateway, and an admin's key creation, each become an
    ``AuditRecorded``: a refusal in the caller's tenant (an anonymous one in the
    gateway's), the key change with the admin as actor and never the secret."""
    product, admin = platform.credentials["product"], platform.credentials["admin"]
    assert platform.gateway.post("/v1/documents", json=BODIES["/v1/documents"], headers={"authorization": product})
    assert platform.gateway.get("/metrics").status_code == 401
    created = platform.gateway.post(
        "/v1/admin/keys", json={"name": "audited", "roles": ["producer"]}, headers={"authorization": admin}
    )
    assert created.status_code == 201

    # Keyed by tenant: entries of different tenants arrive in any order.
    entries = {(entry.action, entry.target): entry for entry in asyncio.run(_audited(platform.kafka, 3))}
    key_target = f"key:{created.json()['key']['key_id']}"
    assert set(entries) == {
        ("auth.refused", "POST /v1/documents"),
        ("auth.refused", "GET /metrics"),
        ("key.created", key_target),
    }
    forbidden, anonymous = entries["auth.refused", "POST /v1/documents"], entries["auth.refused", "GET /metrics"]
    key_created = entries["key.created", key_target]
    assert (forbidden.action, forbidden.outcome, forbidden.tenant) == ("auth.refused", "refused", TENANT)
    assert forbidden.actor.kind == "api_key" and forbidden.target == "POST /v1/documents"
    assert forbidden.reason.startswith("403")
    assert (anonymous.actor.kind, anonymous.tenant, anonymous.target) == ("anonymous", TENANT, "GET /metrics")
    assert anonymous.reason.startswith("401")
    assert (key_created.action, key_created.tenant, key_created.outcome) == ("key.created", TENANT, "applied")
    assert key_created.actor.name == "admin" and key_created.target == f"key:{created.json()['key']['key_id']}"
    assert created.json()["api_key"] not in key_created.model_dump_json()


# ---- cli: GET /v1/answers/{request_id}


def test_an_answer_is_read_in_the_callers_tenant_only(platform: Platform) -> None:
    """The answer with its scores and feedback for its tenant's producer and product; another
    tenant's request answers exactly like an unknown one (404), whatever the caller's role."""
    answer = example(AnswerGenerated).model_copy(update={"request_id": "r-ans", "tenant": TENANT})
    evaluated = example(AnswerEvaluated).model_copy(
        update={"request_id": "r-ans", "tenant": TENANT, "answer_event_id": str(answer.event_id)}
    )
    recorded = example(FeedbackRecorded).model_copy(
        update={"request_id": "r-ans", "tenant": TENANT, "answer_event_id": str(answer.event_id), "thumb": "down"}
    )
    theirs = example(AnswerGenerated).model_copy(
        update={"request_id": "r-theirs", "tenant": OTHER_TENANT, "event_id": uuid.uuid4()}
    )
    rows = [to_row(record_of(e, i), datetime.now(UTC)) for i, e in enumerate([answer, evaluated, recorded, theirs])]
    insert_events(platform.writer.store, events_to_arrow(rows))

    for role in ("producer", "product"):
        got = platform.gateway.get("/v1/answers/r-ans", headers={"authorization": platform.credentials[role]})
        assert got.status_code == 200, got.text
        body = got.json()
        assert body["answer"]["event_id"] == str(answer.event_id) and body["answer"]["answer"] == answer.answer
        assert body["scores"] == {s.name: s.value for s in evaluated.scores}
        assert [f["thumb"] for f in body["feedback"]] == ["down"]
        assert "user_id" not in body["feedback"][0]

    _, other_producer = platform.keys.create("their-producer", OTHER_TENANT, [Role.PRODUCER])
    their_header = {"authorization": f"Bearer {other_producer}"}
    assert platform.gateway.get("/v1/answers/r-theirs", headers=their_header).status_code == 200
    ours = platform.gateway.get("/v1/answers/r-theirs", headers={"authorization": platform.credentials["producer"]})
    crossed = platform.gateway.get("/v1/answers/r-ans", headers=their_header)
    unknown = platform.gateway.get("/v1/answers/r-nothing", headers=their_header)
    assert ours.status_code == crossed.status_code == unknown.status_code == 404
    assert _without_trace(crossed) == {"detail": "no answer of request r-ans"}
    assert _without_trace(unknown) == {"detail": "no answer of request r-nothing"}
    # The calls are on the gateway's /metrics by route template (OpenTelemetry HTTP conventions), never by raw path.
    exposed = platform.gateway.get("/metrics", headers={"authorization": platform.credentials["monitoring"]}).text
    http_lines = [line for line in exposed.splitlines() if line.startswith("http_server_request_duration_seconds")]
    assert any(
        'http_route="/v1/answers/{request_id}"' in line and 'http_response_status_code="404"' in line
        for line in http_lines
    )
    assert not [line for line in http_lines if "r-ans" in line or "r-theirs" in line]
    assert "http_server_active_requests" in exposed


def test_a_retry_gets_the_answer_stored_while_no_one_waited_in_its_tenant_only(platform: Platform) -> None:
    """A keyed question was answered while no one waited (its gateway restarted under it). The
    consumers skip the retry's republished request as one they handled, so no answer comes on
    the bus again: the retry takes the one the sink stored. The same key and question from
    another tenant is another request, which that answer never serves."""
    question = QueryIn(question="Where is the Eiffel Tower?")
    body = question.model_dump(mode="json", exclude={"timeout_s"})  # not part of the request
    keyed = keyed_request_event_id(TENANT, "POST /v1/queries", "retry-7", body)
    answer = example(AnswerGenerated).model_copy(
        update={
            "event_id": uuid.uuid4(),
            "request_id": str(keyed),
            "trace_id": keyed.hex,
            "tenant": TENANT,
            "answer": "In Paris [1].",
        }
    )
    insert_events(platform.writer.store, events_to_arrow([to_row(record_of(answer, 0), datetime.now(UTC))]))
    retried = platform.gateway.post(
        "/v1/queries",
        json={"question": question.question, "timeout_s": 30},
        headers={"authorization": platform.credentials["producer"], "Idempotency-Key": "retry-7"},
    )
    assert retried.status_code == 200, retried.text
    assert (retried.json()["event_id"], retried.json()["answer"]) == (str(answer.event_id), "In Paris [1].")
    _, their_producer = platform.keys.create("their-producer", OTHER_TENANT, [Role.PRODUCER])
    theirs = platform.gateway.post(
        "/v1/queries",
        json={"question": question.question, "timeout_s": 3},
        headers={"authorization": f"Bearer {their_producer}", "Idempotency-Key": "retry-7"},
    )
    assert theirs.status_code == 504 and str(keyed) not in theirs.text


def test_a_retry_whose_request_was_dead_lettered_while_no_one_waited_gets_502(platform: Platform) -> None:
    """The first attempt was dead-lettered in retrieval while no one waited: the retry gets the
    502 it would have got, not a 504 after its whole timeout. A dead letter of the request's
    feedback (keyed by the same request id, off the question's path) is not its outcome."""
    question = QueryIn(question="Where is the Louvre?")
    keyed = keyed_request_event_id(
        TENANT, "POST /v1/queries", "retry-8", question.model_dump(mode="json", exclude={"timeout_s"})
    )
    letters = [
        example(MessageDeadLettered).model_copy(
            update={
                "event_id": uuid.uuid4(),
                "tenant": TENANT,
                "original_topic": topic,
                "original_key": str(keyed),
                "error_type": error_type,
                "occurred_at": utc_now() - timedelta(seconds=seconds_ago),
            }
        )
        for topic, error_type, seconds_ago in [
            ("ragops.feedback.submitted.v1", "rejected", 60),  # older, and not the question's
            ("ragops.query.embedded.v1", "processing", 30),
        ]
    ]
    rows = [to_row(record_of(letter, i), datetime.now(UTC)) for i, letter in enumerate(letters)]
    insert_events(platform.writer.store, events_to_arrow(rows))
    retried = platform.gateway.post(
        "/v1/queries",
        json={"question": question.question, "timeout_s": 30},
        headers={"authorization": platform.credentials["producer"], "Idempotency-Key": "retry-8"},
    )
    assert retried.status_code == 502, retried.text
    assert "(processing)" in retried.json()["detail"]

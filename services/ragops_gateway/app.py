"""The HTTP gateway, for producers that do not speak Kafka. It publishes events and owns no
state: ``POST /v1/documents`` -> ``DocumentSubmitted`` (content above
``RAGOPS_INLINE_CONTENT_BYTES`` left in the blob store and sent by reference; 413 when it
cannot be, or above ``RAGOPS_GATEWAY_MAX_DOCUMENT_BYTES`` or the tenant's own limit in
``RAGOPS_GATEWAY_TENANT_LIMITS``); ``DELETE /v1/documents/{id}`` -> ``DocumentDeleted`` (of
the caller's tenant), optionally waiting for the indexer's ``DocumentRemoved``; ``POST /v1/queries`` ->
``QuerySubmitted``, then waits for the ``AnswerGenerated`` with the same ``request_id``
(or the dead letter of the request, or the timeout); ``POST /v1/feedback`` ->
``FeedbackSubmitted`` (both take an ``Idempotency-Key`` header: a retry with the same key and
body is the same request, answered or recorded once); ``POST /v1/sql`` -> the analytics SQL endpoint (read-only, on the
caller's credential); ``GET``/``POST /v1/admin/keys``, ``DELETE /v1/admin/keys/{key_id}``:
the API keys of the admin's tenant; ``POST /v1/erasures``, ``GET /v1/erasures/{erasure_id}``:
erasure of a data subject of the admin's tenant (:mod:`ragops_gateway.erasures`); ``/v1/prompts``:
prompt versions and their labels (:mod:`ragops_gateway.prompts`); ``/console``, ``/docs``: the
console (:mod:`ragops_gateway.console`, a session cookie instead of the header). ``GET /health``
is liveness, ``GET /ready`` readiness (Kafka reachable, answer topics watched), ``GET /metrics``
Prometheus metrics.

Every route but the probes needs ``Authorization: Bearer <API key or JWT>`` and one of the
roles :data:`ROUTE_ROLES` names for it (401 without a valid credential, 403 without the
role); the envelope's ``tenant`` is the caller's, never the body's. A tenant over its rate on
documents, queries or feedback (``RAGOPS_GATEWAY_RATE``, ``RAGOPS_GATEWAY_TENANT_LIMITS``), or
on its reads (:data:`RATED_READS` and the console's pages, ``RAGOPS_GATEWAY_READ_RATE``), gets
429 with ``Retry-After`` (seconds): counted per replica (:mod:`ragops_gateway.limits`)."""

import asyncio
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from datetime import datetime
from typing import Annotated, Any, Literal

import httpx
import structlog
import uvicorn
from aiokafka.errors import KafkaError
from fastapi import Depends, FastAPI, Header, HTTPException, Query, Request, Response, status
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, PlainTextResponse
from prometheus_client import CONTENT_TYPE_LATEST, REGISTRY, generate_latest
from pydantic import BaseModel, ConfigDict, Field, StringConstraints, model_validator
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.routing import BaseRoute, Route

from ragops_analytics.budgets import SpendWatch
from ragops_analytics.queries import request_outcome
from ragops_analytics.store import public_error
from ragops_gateway.answers import add_answer_routes
from ragops_gateway.changes import ControlPlane, add_change_routes, control_publisher
from ragops_gateway.console import Sessions, add_console_routes
from ragops_gateway.erasures import ErasureView, add_erasure_routes
from ragops_gateway.experiments import add_experiment_routes
from ragops_gateway.http_metrics import HttpMetrics
from ragops_gateway.limits import BUDGET_REFUSED, TokenBuckets, budget_refusal
from ragops_gateway.prices import add_price_routes
from ragops_gateway.prompts import PromptBook, add_prompt_routes
from ragops_gateway.reviews import add_review_routes
from ragops_gateway.settings import GatewaySettings, RouteClass
from ragops_gateway.spec import SPEC
from ragops_schemas import (
    AnswerGenerated,
    DocumentDeleted,
    DocumentRemoved,
    DocumentSubmitted,
    Event,
    FeedbackSubmitted,
    MessageDeadLettered,
    Producer,
    QuerySubmitted,
    VersionRegistered,
)
from ragops_schemas.audit import AuditRecorded
from ragops_schemas.envelope import utc_now
from ragops_schemas.erasure import ErasureRequested, SubjectErased, SubjectErasureApplied
from ragops_schemas.events import (
    ContentType,
    Filters,
    Metadata,
    PromptName,
    Source,
    SubjectId,
    Title,
    UserId,
    require_feedback_content,
)
from ragops_schemas.experiments import ExperimentStarted, ExperimentStopped
from ragops_schemas.ids import (
    keyed_request_event_id,
    new_document_id,
    new_event_id,
    new_request_id,
    new_span_id,
    new_trace_id,
)
from ragops_schemas.review import ReviewSubmitted
from ragops_shared.access import guard_for
from ragops_shared.audit import actor_of, audited_refusals, publish_entry
from ragops_shared.blobs import ContentTooLarge, check_in, open_blob_store
from ragops_shared.broker import make_broker
from ragops_shared.identity import ApiKey, ApiKeyStore, Principal, Role
from ragops_shared.logs import configure_logging, event_fields, without_literals
from ragops_shared.parts import RECORD_OVERHEAD_BYTES, serialised_size
from ragops_shared.registry_view import ExperimentView
from ragops_shared.service import asyncapi, load_settings, platform_version, producer_for
from ragops_shared.signing import verifier_for
from ragops_shared.tracing import declare
from ragops_shared.watch import EventWatcher, WatcherStopped

SERVICE = SPEC.name
log = structlog.get_logger(__name__)

# Ids a caller chooses travel as record keys and into log lines: printable, bounded.
DocumentId = Annotated[str, StringConstraints(min_length=1, max_length=512, pattern=r"^[^\x00-\x1f\x7f]+$")]
CallerId = Annotated[str, StringConstraints(min_length=1, max_length=128, pattern=r"^[^\x00-\x1f\x7f]+$")]

_READERS_OF_REQUESTS = frozenset({Role.ANALYST, Role.OPERATOR, Role.REVIEWER, Role.AUDITOR})
_READERS_OF_THE_LOOP = frozenset({Role.ANALYST, Role.OPERATOR, Role.APPROVER, Role.AUDITOR})

# Who may call what (README "Roles"): exact allow-lists, one entry per route; no role implies
# another (admin is not everything). A route missing here makes create_app fail.
# Reads that query ClickHouse for a caller, counted together on the tenant's "reads" bucket (with
# the console's pages): a tight loop of them would load the store every tenant shares.
RATED_READS = frozenset(
    {("GET", "/v1/answers/{request_id}"), ("GET", "/v1/reviews/queue"), ("GET", "/v1/reviews/agreement")}
)
ROUTE_ROLES: dict[tuple[str, str], frozenset[Role]] = {
    ("POST", "/v1/documents"): frozenset({Role.PRODUCER}),
    # Deleting a document of the caller's tenant: who submits documents, and the tenant's admin.
    ("DELETE", "/v1/documents/{document_id:path}"): frozenset({Role.PRODUCER, Role.ADMIN}),
    ("POST", "/v1/queries"): frozenset({Role.PRODUCER}),
    ("POST", "/v1/feedback"): frozenset({Role.PRODUCT}),
    ("POST", "/v1/sql"): frozenset({Role.ANALYST, Role.AUDITOR, Role.PLATFORM}),
    ("GET", "/metrics"): frozenset({Role.MONITORING}),
    ("GET", "/v1/admin/keys"): frozenset({Role.ADMIN}),
    ("POST", "/v1/admin/keys"): frozenset({Role.ADMIN}),
    ("DELETE", "/v1/admin/keys/{key_id}"): frozenset({Role.ADMIN}),
    ("POST", "/v1/changes"): frozenset({Role.OPERATOR}),
    ("GET", "/v1/changes"): frozenset({Role.OPERATOR, Role.APPROVER, Role.AUDITOR}),
    # Who may decide: every role RAGOPS_GATEWAY_APPROVER_ROLES names for some kind (see
    # route_roles), checked again against the change's own kind; never its requester.
    ("POST", "/v1/changes/{change}/approve"): frozenset({Role.APPROVER}),
    ("POST", "/v1/changes/{change}/reject"): frozenset({Role.APPROVER}),
    # Erasure of a data subject of the caller's tenant (ragops_gateway.erasures).
    ("POST", "/v1/erasures"): frozenset({Role.ADMIN}),
    ("GET", "/v1/erasures/{erasure_id}"): frozenset({Role.ADMIN}),
    # Prompts as data (ragops_gateway.prompts): operators push and label (a label needing
    # approval becomes a change); the text of every version is readable by who reviews it.
    ("POST", "/v1/prompts"): frozenset({Role.OPERATOR}),
    ("GET", "/v1/prompts"): frozenset({Role.OPERATOR, Role.APPROVER, Role.AUDITOR, Role.ANALYST}),
    ("GET", "/v1/prompts/{name}"): frozenset({Role.OPERATOR, Role.APPROVER, Role.AUDITOR, Role.ANALYST}),
    ("GET", "/v1/prompts/{name}/versions/{version}"): frozenset(
        {Role.OPERATOR, Role.APPROVER, Role.AUDITOR, Role.ANALYST}
    ),
    ("POST", "/v1/prompts/{name}/labels"): frozenset({Role.OPERATOR}),
    # Experiments over the platform's traffic (ragops_gateway.experiments): the platform's tenant only.
    ("POST", "/v1/experiments"): frozenset({Role.OPERATOR}),
    ("GET", "/v1/experiments"): frozenset({Role.OPERATOR, Role.APPROVER, Role.AUDITOR, Role.ANALYST}),
    ("POST", "/v1/experiments/{experiment_id}/stop"): frozenset({Role.OPERATOR}),
    # ---- console (ragops_gateway.console): pages behind the session cookie, README "Console".
    # Requests and their traces: who reads answers and their quality.
    ("GET", "/console"): _READERS_OF_REQUESTS,
    ("GET", "/console/requests"): _READERS_OF_REQUESTS,
    ("GET", "/console/requests/{request_id}"): _READERS_OF_REQUESTS,
    # The platform's loop (drift, training, versions, experiments, dead letters): who runs or approves it.
    ("GET", "/console/drift"): _READERS_OF_THE_LOOP,
    ("GET", "/console/versions"): _READERS_OF_THE_LOOP,
    ("GET", "/console/experiments"): _READERS_OF_THE_LOOP,
    ("GET", "/console/dead-letters"): _READERS_OF_THE_LOOP,
    ("GET", "/console/approvals"): frozenset({Role.APPROVER, Role.OPERATOR, Role.AUDITOR}),
    # Human review: the queue is the reviewers'; how the evaluators agree with them, everyone who reads scores.
    ("GET", "/console/review"): frozenset({Role.REVIEWER}),
    ("POST", "/console/review"): frozenset({Role.REVIEWER}),
    ("GET", "/console/agreement"): frozenset({Role.REVIEWER, Role.ANALYST, Role.OPERATOR, Role.AUDITOR}),
    # The API's own page and its document, and ending a session: anyone who may log in.
    ("GET", "/docs"): frozenset(Role),
    ("GET", "/docs/assets/{name}"): frozenset(Role),
    ("GET", "/openapi.json"): frozenset(Role),
    ("POST", "/console/logout"): frozenset(Role),
    # ---- cli: an answer with its scores and feedback (ragops_gateway.answers): who asked, who gives feedback.
    ("GET", "/v1/answers/{request_id}"): frozenset({Role.PRODUCER, Role.PRODUCT}),
    # ---- cost: price lists (ragops_gateway.prices): published in the platform's tenant only.
    ("POST", "/v1/prices"): frozenset({Role.OPERATOR}),
    ("GET", "/v1/prices"): frozenset({Role.OPERATOR, Role.APPROVER, Role.AUDITOR, Role.ANALYST}),
    # ---- review: human review (ragops_gateway.reviews): reviewers take the queue and label;
    # who answers for the evaluators' quality reads their agreement with the labels.
    ("GET", "/v1/reviews/queue"): frozenset({Role.REVIEWER}),
    ("POST", "/v1/reviews"): frozenset({Role.REVIEWER}),
    ("GET", "/v1/reviews/agreement"): frozenset({Role.REVIEWER, Role.ANALYST, Role.OPERATOR, Role.AUDITOR}),
}
DECISION_ROUTES = (("POST", "/v1/changes/{change}/approve"), ("POST", "/v1/changes/{change}/reject"))
# Open on purpose: the kubelet's liveness and readiness probes carry no credential; the console's
# login form, the post that checks the credential it takes, and the stylesheet the form uses
# come before any session (the post is refused from another origin).
OPEN_ROUTES = frozenset(
    {
        ("GET", "/health"),
        ("GET", "/ready"),
        ("GET", "/console/login"),
        ("POST", "/console/login"),
        ("GET", "/console/static/{name}"),
    }
)


def _key_change(action: str, key: ApiKey, principal: Principal, producer: Producer) -> AuditRecorded:
    """The audit entry of an admin's change to an API key (never its secret or hash)."""
    return AuditRecorded(
        producer=producer,
        tenant=key.tenant,
        actor=actor_of(principal),
        action=action,
        target=f"key:{key.key_id}",
        outcome="applied",
        after={"name": key.name, "roles": list(key.roles), "revoked": key.revoked_at is not None},
    )


def _log_as(event: Event) -> None:
    """Bind ``event``'s ids to every line logged for the rest of this HTTP request, the
    access line and any error included. Uvicorn runs each request in a task of its own,
    so the ids end with it and never reach another request's lines."""
    structlog.contextvars.bind_contextvars(**event_fields(event))


def _trace_id() -> str:
    """The correlation id of this HTTP request: its event's trace id once :func:`_log_as`
    bound it, else a new one, bound now so that the log lines that follow carry it too."""
    bound = structlog.contextvars.get_contextvars().get("trace_id")
    if isinstance(bound, str):
        return bound
    trace_id = new_trace_id()
    structlog.contextvars.bind_contextvars(trace_id=trace_id)
    return trace_id


def _error(status_code: int, detail: object) -> JSONResponse:
    """An error response: ``{"detail": ..., "trace_id": ...}``; the trace id finds the
    details (backend errors, addresses, paths) in the gateway's log, never in the body."""
    return JSONResponse({"detail": detail, "trace_id": _trace_id()}, status_code=status_code)


def _cut(part: int | str) -> int | str:
    """A field location's part as a response may repeat it: a key longer than 64 characters cut."""
    return part if isinstance(part, int) or len(part) <= 64 else f"{part[:64]}… <{len(part)} characters>"


class DocumentIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    document_id: DocumentId | None = Field(default=None, description="None = a new UUID.")
    content: str = Field(
        min_length=1,
        description="At most RAGOPS_GATEWAY_MAX_DOCUMENT_BYTES (UTF-8), or the tenant's own lower limit, else 413.",
    )
    content_type: ContentType = "text/plain"
    title: Title | None = None
    source: Source | None = None
    metadata: Metadata = Field(default_factory=dict)
    subject_id: SubjectId | None = Field(default=None, description="The data subject the document is about.")


class Accepted(BaseModel):
    document_id: str
    event_id: uuid.UUID


class DeletionAccepted(BaseModel):
    document_id: str
    event_id: uuid.UUID = Field(description="The DocumentDeleted event's id.")
    removed_points: dict[str, int] | None = Field(
        default=None,
        description="Points removed per collection (the indexer's DocumentRemoved) when the call waited for "
        "it (wait_s); None: accepted, not waited for.",
    )


class FeedbackIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    request_id: CallerId = Field(description="The request the answer belongs to.")
    thumb: Literal["up", "down"] | None = None
    rating: int | None = Field(default=None, ge=1, le=5)
    comment: str | None = Field(default=None, max_length=4000)
    corrected_answer: str | None = Field(default=None, min_length=1, max_length=4000)
    user_id: Annotated[str, StringConstraints(max_length=256, pattern=r"^[^\x00-\x1f\x7f]*$")] | None = None

    @model_validator(mode="after")
    def _says_something(self) -> "FeedbackIn":
        require_feedback_content(self.thumb, self.rating, self.comment, self.corrected_answer)
        return self


class FeedbackAccepted(BaseModel):
    request_id: str
    event_id: uuid.UUID


class SqlIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    sql: str = Field(min_length=1, max_length=100_000, description="One read-only statement.")
    parameters: dict[str, Any] = Field(default_factory=dict, description="Values of its {name:Type} placeholders.")


class SqlResult(BaseModel):
    columns: list[str]
    rows: list[list[Any]]


class KeyIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str = Field(min_length=1, max_length=128)
    roles: list[Role] = Field(min_length=1)

    @model_validator(mode="after")
    def _within_a_tenant(self) -> "KeyIn":
        # platform reads across tenants: a tenant's admin cannot hand it out (the CLI can).
        if Role.PLATFORM in self.roles:
            raise ValueError("the platform role is given with `ragops keys create` only")
        return self


class KeyOut(BaseModel):
    """An API key as listed: never its secret nor the secret's hash."""

    key_id: str
    name: str
    tenant: str
    roles: list[Role]
    owner: str = Field(description="Who answers for it (person:<sub> or key:<key_id>); never chosen in a body.")
    created_at: datetime
    revoked_at: datetime | None

    @classmethod
    def of(cls, key: ApiKey) -> "KeyOut":
        return cls(**key.model_dump(exclude={"secret_sha256"}))


class KeyCreated(BaseModel):
    key: KeyOut
    api_key: str = Field(description="The credential: shown this once, never stored.")


class QueryIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    question: str = Field(min_length=1, max_length=4000)
    top_k: int = Field(default=5, ge=1, le=100)
    filters: Filters = Field(default_factory=dict)
    prompt_name: PromptName | None = None
    prompt_version: int | None = Field(default=None, ge=1)
    user_id: UserId | None = Field(default=None, description="Who asks; pseudonymized before it is kept.")
    session_id: UserId | None = Field(
        default=None, description="The product's session (an experiment's unit); pseudonymized before it is kept."
    )
    timeout_s: float | None = Field(default=None, gt=0, description="Seconds to wait for the answer.")


IdempotencyKey = Annotated[
    str | None,
    Header(
        alias="Idempotency-Key",
        min_length=1,
        max_length=255,
        description="Makes a retry safe: the same key with the same body, from the same tenant, names the same "
        "request (IETF draft-ietf-httpapi-idempotency-key-header). Send it again after a lost response.",
    ),
]


def _event_id(
    tenant: str, route: str, key: str | None, body: BaseModel, *, exclude: set[str] | None = None
) -> uuid.UUID:
    """The id of the event a request publishes: with ``Idempotency-Key: key``, derived from
    (tenant, route, key, the body less ``exclude``) by
    :func:`ragops_schemas.ids.keyed_request_event_id`; without one, random."""
    if key is None:
        return new_event_id()
    return keyed_request_event_id(tenant, route, key, body.model_dump(mode="json", exclude=exclude))


STORED_OUTCOME_FIRST_WAIT_S = 1.0
STORED_OUTCOME_MAX_WAIT_S = 15.0
"""A retried request (``Idempotency-Key``) looks for its outcome in ClickHouse at once, then after
waits doubling from the first to the max (s): the sink stores an outcome within its batch wait,
and a request that waits long is one still in the pipeline, which the bus answers."""
STORED_OUTCOME_LOOKUPS = 2
"""Lookups in flight at once per gateway; a poll that finds them busy is skipped, so slow
analytics never holds the worker threads every route's authentication uses."""

Lookup = Callable[[], Awaitable[Event | None]]


async def _first_of(reply: "asyncio.Future[Event]", stored: Lookup | None) -> Event:
    """``reply``'s event or, with ``stored``, what it finds first (see
    :data:`STORED_OUTCOME_FIRST_WAIT_S`), whichever comes first. ``reply`` is never cancelled
    here. ``stored`` must not raise: a failed lookup is None (the bus may still answer)."""
    if stored is None:
        return await reply

    async def poll() -> Event:
        wait_s = STORED_OUTCOME_FIRST_WAIT_S
        while True:
            if (found := await stored()) is not None:
                return found
            await asyncio.sleep(wait_s)
            wait_s = min(2 * wait_s, STORED_OUTCOME_MAX_WAIT_S)

    polling = asyncio.ensure_future(poll())
    try:
        done, _ = await asyncio.wait({reply, polling}, return_when=asyncio.FIRST_COMPLETED)
        return done.pop().result()
    finally:
        polling.cancel()


def create_app(settings: GatewaySettings | None = None) -> FastAPI:
    settings = settings or GatewaySettings()
    broker = make_broker(settings.kafka, f"ragops-{SERVICE}")
    producer = producer_for(SERVICE)
    instruments = declare(SERVICE)
    publisher = control_publisher(
        settings,
        broker,
        producer,
        [
            DocumentSubmitted,
            DocumentDeleted,
            QuerySubmitted,
            FeedbackSubmitted,
            AuditRecorded,
            VersionRegistered,
            ExperimentStarted,
            ExperimentStopped,
            ReviewSubmitted,
        ],
    )
    watcher = EventWatcher(
        settings.kafka, [AnswerGenerated, DocumentRemoved, MessageDeadLettered], client_id=f"ragops-{SERVICE}"
    )
    state = {"ready": False}
    blobs = open_blob_store(settings.platform)
    control = ControlPlane(settings, publisher)
    prompts = PromptBook(control)
    # The experiments, verified like the registry (PromptBook's view: the versions an experiment may name).
    experiments = ExperimentView(
        settings.kafka,
        client_id=f"ragops-{SERVICE}-experiments",
        verifier=verifier_for(settings.platform),
        dead_letters=publisher,
    )
    erasures = ErasureView()
    # Every erasure from the start: GET /v1/erasures/{id} answers on any replica.
    erasure_watcher = EventWatcher(
        settings.kafka,
        [ErasureRequested, SubjectErasureApplied, SubjectErased],
        client_id=f"ragops-{SERVICE}-erasures",
        from_beginning=True,
    )
    erasure_watcher.listen(erasures.apply)

    async def audit(entry: AuditRecorded) -> None:
        await publish_entry(publisher, entry, settings.publish_timeout_s)

    # Every call the gateway refuses (401/403): logged, and audited (``auth.refused``).
    guard = guard_for(
        settings.platform,
        audited_refusals(publisher, tenant=settings.platform.tenant, timeout_s=settings.publish_timeout_s),
    )
    keys = guard.authenticator.keys
    analytics = httpx.AsyncClient(timeout=settings.analytics.timeout_s)
    # The gateway's own reader (GET /v1/answers, reviews, the console): the platform key, or the
    # server; each call restricted to the caller's tenant (every tenant for a platform caller).
    reader = settings.analytics.client() if settings.analytics.configured else None

    roles = route_roles(settings)

    buckets = TokenBuckets(settings.rate_of)

    def rated(
        allowed: Callable[[Request], Awaitable[Principal]], route: RouteClass
    ) -> Callable[..., Awaitable[Principal]]:
        """The caller ``allowed`` gives, once its tenant had a token for ``route``; 429 else."""

        async def within_rate(principal: Annotated[Principal, Depends(allowed)]) -> Principal:
            retry_after = buckets.take(principal.tenant, route)
            if retry_after:
                raise HTTPException(
                    status.HTTP_429_TOO_MANY_REQUESTS,
                    f"tenant {principal.tenant} is over its rate for {route}; retry after {retry_after} s",
                    headers={"Retry-After": str(retry_after)},
                )
            return principal

        return within_rate

    def caller(method: str, path: str) -> Callable[..., Awaitable[Principal]]:
        allowed = guard.dependency(*roles[method, path])
        return rated(allowed, "reads") if (method, path) in RATED_READS else allowed

    def limited(route: RouteClass) -> Callable[..., Awaitable[Principal]]:
        """The caller of ``POST /v1/<route>``, once its tenant had a token for the route; 429 else."""
        return rated(caller("POST", f"/v1/{route}"), route)

    # Month-to-date spend per tenant, read in the background (only where budgets are set).
    spend = SpendWatch(settings.analytics.client, settings.platform.budget_refresh_s)
    watching = bool(settings.platform.budgets) and settings.analytics.configured

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        # The requests' root events become the root spans (no stage clock: no compute).
        instruments.start(SERVICE, platform_version(), settings.platform.otel)
        if watching:  # once before the first request, so a tenant over budget is refused from the start
            await asyncio.to_thread(spend.refresh)
        spending = asyncio.create_task(spend.run()) if watching else None
        await broker.start()
        await watcher.start()
        await control.start()
        await prompts.start()
        await experiments.start()
        await experiments.send_dead_letters()
        await erasure_watcher.start()
        state["ready"] = True
        try:
            yield
        finally:
            state["ready"] = False
            await erasure_watcher.stop()
            await experiments.stop()
            await prompts.stop()
            await control.stop()
            await watcher.stop()
            await broker.stop()
            await analytics.aclose()
            if reader is not None:
                await asyncio.to_thread(reader.close)
            await asyncio.to_thread(instruments.stop)
            if spending is not None:
                spending.cancel()

    # /docs and /openapi.json are the console's (behind its session, assets from the package);
    # no /redoc. The OpenAPI document is also published as schemas/openapi/gateway.json.
    app = FastAPI(
        title="RAGOps gateway", description=__doc__, lifespan=lifespan, docs_url=None, redoc_url=None, openapi_url=None
    )
    app.state.asyncapi = asyncapi(SERVICE, __doc__ or "", broker)  # what it publishes, for `make schemas`
    app.add_middleware(HttpMetrics)
    add_change_routes(app, caller, control)
    add_erasure_routes(app, caller, control, erasures, audit)
    add_prompt_routes(app, caller, prompts)
    add_experiment_routes(app, caller, control, prompts.registry, experiments)
    add_answer_routes(app, caller, reader)
    add_price_routes(app, caller, control, reader)

    @app.exception_handler(StarletteHTTPException)
    async def refused(_: Request, error: StarletteHTTPException) -> JSONResponse:
        response = _error(error.status_code, error.detail)
        response.headers.update(error.headers or {})  # Retry-After, WWW-Authenticate
        return response

    @app.exception_handler(RequestValidationError)
    async def invalid(_: Request, error: RequestValidationError) -> JSONResponse:
        # Where and why, without the input (a megabyte of title would come back whole) or
        # the context (exception objects); a location names a dict key: cut too.
        fields = [
            {"loc": [_cut(part) for part in found["loc"]], "msg": found["msg"], "type": found["type"]}
            for found in error.errors()
        ]
        return _error(status.HTTP_422_UNPROCESSABLE_CONTENT, fields)

    @app.exception_handler(Exception)
    async def failed(_: Request, error: Exception) -> JSONResponse:
        log.error("request_failed", exc_info=error)
        return _error(status.HTTP_500_INTERNAL_SERVER_ERROR, "internal error")

    async def publish(event: Event) -> None:
        """Publish ``event``; 503 when the broker does not take it within
        ``publish_timeout_s`` (it may still arrive later: a resubmission is harmless)."""
        try:
            await asyncio.wait_for(publisher.publish(event), settings.publish_timeout_s)
        except (KafkaError, OSError, TimeoutError) as error:
            log.error("publish_failed", error=repr(error))
            raise HTTPException(
                status.HTTP_503_SERVICE_UNAVAILABLE, "the event broker cannot take the request now; try again later"
            ) from None

    sessions = Sessions(settings, guard)
    add_review_routes(app, caller, publish, producer, reader, sessions.key)
    add_console_routes(
        app,
        sessions,
        roles,
        reader,
        control,
        experiments,
        publish,
        producer,
        buckets=buckets,
        max_days=settings.console_max_days,
    )

    @app.get("/health")
    async def health() -> dict[str, str]:
        return {"status": "ok"}

    @app.get("/ready")
    async def ready() -> dict[str, str]:
        if not state["ready"] or not await broker.ping(timeout=2.0):
            raise HTTPException(status.HTTP_503_SERVICE_UNAVAILABLE, "Kafka is not reachable (yet)")
        return {"status": "ready"}

    @app.get("/metrics", response_class=PlainTextResponse, dependencies=[Depends(caller("GET", "/metrics"))])
    async def metrics() -> PlainTextResponse:
        return PlainTextResponse(generate_latest(REGISTRY), media_type=CONTENT_TYPE_LATEST)

    @app.post("/v1/documents", status_code=status.HTTP_202_ACCEPTED)
    async def submit_document(
        document: DocumentIn, principal: Annotated[Principal, Depends(limited("documents"))]
    ) -> Accepted:
        event = DocumentSubmitted(
            producer=producer,
            tenant=principal.tenant,
            **document.model_dump(exclude={"document_id"}),
            document_id=document.document_id or new_document_id(),
        )
        _log_as(event)
        # Refused at the door: content ingestion would reject, or a record the broker would refuse.
        size, limit = len(event.content.encode()), settings.max_document_bytes_of(principal.tenant)
        if size > limit:
            raise HTTPException(
                status.HTTP_413_CONTENT_TOO_LARGE, f"content of {size} bytes: the limit is {limit} bytes of content"
            )
        try:
            # Large content travels by reference (claim check); blob writes block: a worker thread.
            event = await asyncio.to_thread(check_in, event, blobs, settings.platform.inline_content_bytes)
        except ContentTooLarge as error:
            raise HTTPException(status.HTTP_413_CONTENT_TOO_LARGE, str(error)) from None
        except OSError as error:
            log.error("blob_store_write_failed", error=repr(error))
            raise HTTPException(
                status.HTTP_503_SERVICE_UNAVAILABLE, "the document store cannot take the content now; try again later"
            ) from None
        event_size, max_event_bytes = serialised_size(event), settings.kafka.max_message_bytes - RECORD_OVERHEAD_BYTES
        if event_size > max_event_bytes:
            raise HTTPException(
                status.HTTP_413_CONTENT_TOO_LARGE,
                f"content of {size} bytes is {event_size} bytes as an event: the limit is {max_event_bytes} bytes",
            )
        await publish(event)
        return Accepted(document_id=event.document_id, event_id=event.event_id)

    async def outcome_of(
        event: Event,
        key: str,
        expected: type[Event],
        timeout_s: float,
        *,
        what: str,
        awaited: str,
        stored: Lookup | None = None,
    ) -> Event:
        """Publish ``event`` and wait for the event of type ``expected`` of its trace keyed
        ``key`` (``what`` names the request in errors, ``awaited`` the outcome), or for what
        ``stored`` finds (an outcome that came while no one waited). 503 when the gateway stops
        meanwhile, 504 after ``timeout_s``, 502 when the request was dead-lettered."""
        reply = watcher.expect(key, (expected, MessageDeadLettered), trace_id=event.trace_id)
        try:
            await publish(event)
            outcome = await asyncio.wait_for(_first_of(reply, stored), timeout_s)
        except WatcherStopped as error:
            log.warning("outcome_watch_stopped", error_type=type(error).__name__)
            raise HTTPException(status.HTTP_503_SERVICE_UNAVAILABLE, f"{what}: the gateway is stopping") from None
        except TimeoutError:
            raise HTTPException(
                status.HTTP_504_GATEWAY_TIMEOUT, f"no {awaited} for {what} within {timeout_s:g} s"
            ) from None
        finally:
            if not reply.done():  # a timeout, a refused publish, an outcome found in the store
                watcher.forget(key, reply)
        if isinstance(outcome, MessageDeadLettered):
            # The reason can quote a backend's answer, a file path, an address or the question: it
            # stays in the dead letter, which this id finds (the dead_letters table, the topic).
            log.warning(
                "request_dead_lettered",
                failed_in=outcome.producer.name,
                error_type=outcome.error_type,
                dead_letter_id=str(outcome.event_id),
            )
            raise HTTPException(
                status.HTTP_502_BAD_GATEWAY, f"{what} failed in {outcome.producer.name} ({outcome.error_type})"
            )
        return outcome

    lookups = asyncio.Semaphore(STORED_OUTCOME_LOOKUPS)

    def stored_answer(request_id: str, tenant: str) -> Lookup | None:
        """For a retry: the outcome of ``request_id`` (its answer, or its dead letter) as
        ClickHouse holds it, read with the gateway's reader in ``tenant`` (None: no analytics).
        Consumers skip an event they handled already (``ragops_shared.broker``), so a retry
        whose first attempt ended while no one waited for it (the gateway restarted
        meanwhile) gets nothing on the bus again: its outcome is where the sink stored it."""
        if reader is None:
            return None
        analytics = reader

        async def find() -> Event | None:
            if lookups.locked():
                return None
            async with lookups:
                try:
                    found = await asyncio.to_thread(request_outcome, analytics, request_id, tenant=tenant)
                    if found is None:
                        return None
                    kind = AnswerGenerated if found[0] == "query.answer_generated" else MessageDeadLettered
                    return kind.model_validate(found[1])
                except Exception as error:  # noqa: BLE001 - a fallback only: the bus may still answer
                    log.warning("stored_outcome_unreadable", error_type=type(error).__name__)
                    return None

        return find

    @app.delete("/v1/documents/{document_id:path}", status_code=status.HTTP_202_ACCEPTED)
    async def delete_document(
        document_id: DocumentId,
        principal: Annotated[Principal, Depends(caller("DELETE", "/v1/documents/{document_id:path}"))],
        response: Response,
        wait_s: Annotated[
            float | None,
            Query(gt=0, description="Seconds to wait for the removal from the index (200 then); none: 202 at once."),
        ] = None,
    ) -> DeletionAccepted:
        """Delete the caller's tenant's document ``document_id``: its points leave every index
        build, replays skip it, no later answer cites it; submitting it again makes it live
        again. Idempotent in effect: deleting a document that is not indexed (or deleted
        already) removes nothing. It never touches another tenant's document of the same id,
        and says nothing about whether one exists. Audited (``document.deleted``, its actor)."""
        event = DocumentDeleted(producer=producer, tenant=principal.tenant, document_id=document_id)
        _log_as(event)
        removal = None
        if wait_s is None:
            await publish(event)
        else:
            outcome = await outcome_of(
                event,
                document_id,
                DocumentRemoved,
                min(wait_s, settings.max_timeout_s),
                what=f"document {document_id}",
                awaited="removal",
            )
            assert isinstance(outcome, DocumentRemoved)  # the only other type outcome_of returns
            removal = outcome
            response.status_code = status.HTTP_200_OK
        # Who deleted what: the deletion event names no one.
        await audit(
            event.caused(
                AuditRecorded,
                producer,
                actor=actor_of(principal),
                action="document.deleted",
                target=f"document:{document_id}",
                outcome="accepted" if removal is None else "applied",
                after=None if removal is None else {"removed_points": removal.total_removed},
            )
        )
        return DeletionAccepted(
            document_id=document_id,
            event_id=event.event_id,
            removed_points=None if removal is None else removal.removed_points,
        )

    @app.post("/v1/feedback", status_code=status.HTTP_202_ACCEPTED)
    async def send_feedback(
        feedback: FeedbackIn,
        principal: Annotated[Principal, Depends(limited("feedback"))],
        idempotency_key: IdempotencyKey = None,
    ) -> FeedbackAccepted:
        """Accepted for validation by the feedback service: an unknown request id is
        dead-lettered there with the reason (the gateway holds no state to check it). With an
        ``Idempotency-Key``, a retry is the same feedback event (recorded once)."""
        event = FeedbackSubmitted(
            producer=producer,
            tenant=principal.tenant,
            event_id=_event_id(principal.tenant, "POST /v1/feedback", idempotency_key, feedback),
            **feedback.model_dump(),
        )
        _log_as(event)
        await publish(event)
        return FeedbackAccepted(request_id=event.request_id, event_id=event.event_id)

    @app.post("/v1/queries")
    async def ask(
        query: QueryIn,
        principal: Annotated[Principal, Depends(limited("queries"))],
        idempotency_key: IdempotencyKey = None,
    ) -> AnswerGenerated:
        """Ask, and wait for the answer (see the module's docstring). With an
        ``Idempotency-Key``, the request's ids (event, request, trace) derive from the key and the
        body (``timeout_s`` aside): a retry after a lost response publishes the same request again
        and takes that request's outcome (its answer, or the 502 of its dead letter), as it comes
        on the bus or, when it came while no one waited, as ClickHouse stored it."""
        refusal = budget_refusal(settings.platform.budgets, spend.spend, principal.tenant, utc_now())
        if refusal is not None:
            reason, retry_after = refusal
            BUDGET_REFUSED.labels(tenant=principal.tenant).inc()
            log.info("budget_refused", tenant=principal.tenant, retry_after_s=retry_after)
            raise HTTPException(status.HTTP_429_TOO_MANY_REQUESTS, reason, headers={"Retry-After": str(retry_after)})
        timeout_s = min(query.timeout_s or settings.default_timeout_s, settings.max_timeout_s)
        event_id = _event_id(principal.tenant, "POST /v1/queries", idempotency_key, query, exclude={"timeout_s"})
        # Keyed, the request and its trace derive from the key too: a retry's watcher then takes
        # the first attempt's answer (same request, same trace) for its own.
        request_id, trace_id = (str(event_id), event_id.hex) if idempotency_key else (new_request_id(), new_trace_id())
        event = QuerySubmitted(
            producer=producer,
            tenant=principal.tenant,
            event_id=event_id,
            request_id=request_id,
            trace_id=trace_id,
            **query.model_dump(exclude={"timeout_s"}),
        )
        _log_as(event)
        outcome = await outcome_of(
            event,
            event.request_id,
            AnswerGenerated,
            timeout_s,
            what=f"request {event.request_id}",
            awaited="answer",
            stored=stored_answer(event.request_id, principal.tenant) if idempotency_key else None,
        )
        assert isinstance(outcome, AnswerGenerated)  # the only other type the watcher was asked for
        return outcome

    @app.post("/v1/sql", dependencies=[Depends(caller("POST", "/v1/sql"))])
    async def sql(query: SqlIn, request: Request) -> SqlResult:
        """One read-only statement, answered by the analytics SQL endpoint on the caller's own
        credential (it sees what the caller may see). 400: refused or failed statement, with
        the engine's reason (its error name and first line: the full error is in the endpoint's
        log under this request's trace id); 503: no endpoint configured, or it does not answer."""
        if settings.analytics.sql_url is None:
            raise HTTPException(status.HTTP_503_SERVICE_UNAVAILABLE, "analytics SQL is not available here")
        try:
            response = await analytics.post(
                settings.analytics.sql_url,
                json=query.model_dump(),
                headers={
                    "authorization": request.headers["authorization"],
                    # The endpoint logs a failed statement under this request's trace id.
                    "traceparent": f"00-{_trace_id()}-{new_span_id()}-01",
                },
            )
        except httpx.HTTPError as error:
            log.error("analytics_sql_unreachable", error=repr(error))
            raise HTTPException(
                status.HTTP_503_SERVICE_UNAVAILABLE, "analytics SQL cannot answer now; try again later"
            ) from None
        if response.status_code in (400, 422):
            raise HTTPException(status.HTTP_400_BAD_REQUEST, _sql_refusal(response))
        if response.status_code != 200:
            # 401/403 there (a key file out of step) or a failure: the caller learns nothing about the backend.
            log.error("analytics_sql_failed", status=response.status_code, body=without_literals(response.text[:1000]))
            raise HTTPException(status.HTTP_503_SERVICE_UNAVAILABLE, "analytics SQL cannot answer now; try again later")
        return SqlResult.model_validate(response.json())

    @app.get("/v1/admin/keys")
    async def list_keys(principal: Annotated[Principal, Depends(caller("GET", "/v1/admin/keys"))]) -> list[KeyOut]:
        """The API keys of the admin's tenant, revoked ones included, oldest first."""
        found = await asyncio.to_thread(keys.keys)
        return [KeyOut.of(key) for key in found if key.tenant == principal.tenant]

    @app.post("/v1/admin/keys", status_code=status.HTTP_201_CREATED)
    async def create_key(
        wanted: KeyIn, principal: Annotated[Principal, Depends(caller("POST", "/v1/admin/keys"))]
    ) -> KeyCreated:
        """A new key of the admin's tenant, owned by the admin's owner (so it never approves the
        admin's own changes); the credential is in this answer only."""
        async with _key_file_writable():
            key, credential = await asyncio.to_thread(
                keys.create, wanted.name, principal.tenant, wanted.roles, principal.owner
            )
        log.info("api_key_created", key_id=key.key_id, tenant=key.tenant, roles=list(key.roles), by=principal.subject)
        await audit(_key_change("key.created", key, principal, producer))
        return KeyCreated(key=KeyOut.of(key), api_key=credential)

    @app.delete("/v1/admin/keys/{key_id}")
    async def revoke_key(
        key_id: str, principal: Annotated[Principal, Depends(caller("DELETE", "/v1/admin/keys/{key_id}"))]
    ) -> KeyOut:
        """Revoke a key of the admin's tenant (idempotent). 404 for an unknown key and for
        another tenant's, alike: nothing tells whether it exists."""
        async with _key_file_writable():
            key = await asyncio.to_thread(_revoke_within, keys, key_id, principal.tenant)
        if key is None:
            raise HTTPException(status.HTTP_404_NOT_FOUND, "no such key")
        log.info("api_key_revoked", key_id=key.key_id, tenant=key.tenant, by=principal.subject)
        await audit(_key_change("key.revoked", key, principal, producer))
        return KeyOut.of(key)

    _check_route_roles(app.routes)
    return app


@asynccontextmanager
async def _key_file_writable() -> AsyncIterator[None]:
    """503 when the key file cannot be written: in Kubernetes it is a read-only Secret, changed
    with ``ragops keys`` (the path stays in the log)."""
    try:
        yield
    except OSError as error:
        log.error("api_key_file_not_writable", error=repr(error))
        raise HTTPException(
            status.HTTP_503_SERVICE_UNAVAILABLE, "API keys cannot be changed here; use `ragops keys` on the key file"
        ) from None


def _revoke_within(store: ApiKeyStore, key_id: str, tenant: str) -> ApiKey | None:
    """``key_id`` revoked if it belongs to ``tenant``; ``None`` when it does not exist or is another tenant's."""
    key = store.find(key_id)
    return store.revoke(key_id) if key is not None and key.tenant == tenant else None


def _sql_refusal(response: httpx.Response) -> str:
    """The reason the analytics endpoint gave for refusing a statement, as a caller may see it
    (:func:`~ragops_analytics.store.public_error`: whatever the endpoint sent, bounded, no
    paths or addresses)."""
    try:
        return public_error(str(response.json()["error"]))
    except (ValueError, KeyError, TypeError):
        return "the statement was refused"


def route_roles(settings: GatewaySettings) -> dict[tuple[str, str], frozenset[Role]]:
    """:data:`ROUTE_ROLES` as configured: the decision routes admit the roles
    ``settings.approver_roles`` names (by default exactly :data:`ROUTE_ROLES`')."""
    deciders = frozenset[Role]().union(*settings.approver_roles.values())
    return ROUTE_ROLES | dict.fromkeys(DECISION_ROUTES, deciders)


def _check_route_roles(routes: list[BaseRoute]) -> None:
    """Every route is in :data:`ROUTE_ROLES` or :data:`OPEN_ROUTES`, and every entry is a route.

    Raises:
        RuntimeError: a route without an entry (it would be served unguarded) or an entry
            without a route.
    """
    served = {(method, route.path) for route in routes if isinstance(route, Route) for method in route.methods or ()}
    served -= {("HEAD", path) for _, path in served}
    listed = set(ROUTE_ROLES) | OPEN_ROUTES
    if served != listed:
        raise RuntimeError(
            f"routes without roles: {sorted(served - listed)}; roles without routes: {sorted(listed - served)}"
        )


def main() -> None:
    settings = load_settings(GatewaySettings)
    configure_logging(SERVICE, settings.platform.log_level, settings.platform.log_format)
    # In-flight questions get a few seconds to be answered when the gateway is told to stop
    # (well inside the embedded supervisor's 20 s); connections still waiting then are closed.
    uvicorn.run(
        create_app(settings), host=settings.host, port=settings.port, log_config=None, timeout_graceful_shutdown=5
    )

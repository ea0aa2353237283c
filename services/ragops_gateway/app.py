"""The HTTP gateway, for producers that do not speak Kafka. It publishes events and owns no
state: ``POST /v1/documents`` -> ``DocumentSubmitted`` (content above
``RAGOPS_INLINE_CONTENT_BYTES`` left in the blob store and sent by reference; 413 when it
cannot be, or above ``RAGOPS_GATEWAY_MAX_DOCUMENT_BYTES``); ``POST /v1/queries`` ->
``QuerySubmitted``, then waits for the ``AnswerGenerated`` with the same ``request_id``
(or the dead letter of the request, or the timeout); ``POST /v1/feedback`` ->
``FeedbackSubmitted``. ``GET /health`` is liveness, ``GET /ready`` readiness (Kafka
reachable, answer topics watched), ``GET /metrics`` Prometheus metrics."""

import asyncio
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Annotated, Literal

import structlog
import uvicorn
from aiokafka.errors import KafkaError
from fastapi import FastAPI, HTTPException, Request, status
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, PlainTextResponse
from prometheus_client import CONTENT_TYPE_LATEST, REGISTRY, generate_latest
from pydantic import BaseModel, ConfigDict, Field, StringConstraints, model_validator
from starlette.exceptions import HTTPException as StarletteHTTPException

from ragops_gateway.changes import ControlPlane, changes_router, control_publisher
from ragops_gateway.settings import GatewaySettings
from ragops_gateway.spec import SPEC
from ragops_schemas import (
    AnswerGenerated,
    DocumentSubmitted,
    Event,
    FeedbackSubmitted,
    MessageDeadLettered,
    QuerySubmitted,
)
from ragops_schemas.events import (
    ContentType,
    Filters,
    Metadata,
    PromptName,
    Source,
    Title,
    require_feedback_content,
)
from ragops_schemas.ids import new_document_id, new_request_id, new_trace_id
from ragops_shared.access import Guard
from ragops_shared.blobs import ContentTooLarge, check_in, open_blob_store
from ragops_shared.broker import make_broker
from ragops_shared.identity import authenticator_for
from ragops_shared.logs import configure_logging, event_fields
from ragops_shared.parts import RECORD_OVERHEAD_BYTES, serialised_size
from ragops_shared.service import asyncapi, load_settings, producer_for
from ragops_shared.watch import EventWatcher, WatcherStopped

SERVICE = SPEC.name
log = structlog.get_logger(__name__)

# Ids a caller chooses travel as record keys and into log lines: printable, bounded.
DocumentId = Annotated[str, StringConstraints(min_length=1, max_length=512, pattern=r"^[^\x00-\x1f\x7f]+$")]
CallerId = Annotated[str, StringConstraints(min_length=1, max_length=128, pattern=r"^[^\x00-\x1f\x7f]+$")]


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
    content: str = Field(min_length=1, description="At most RAGOPS_GATEWAY_MAX_DOCUMENT_BYTES (UTF-8), else 413.")
    content_type: ContentType = "text/plain"
    title: Title | None = None
    source: Source | None = None
    metadata: Metadata = Field(default_factory=dict)


class Accepted(BaseModel):
    document_id: str
    event_id: uuid.UUID


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


class QueryIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    question: str = Field(min_length=1, max_length=4000)
    top_k: int = Field(default=5, ge=1, le=100)
    filters: Filters = Field(default_factory=dict)
    prompt_name: PromptName | None = None
    prompt_version: int | None = Field(default=None, ge=1)
    timeout_s: float | None = Field(default=None, gt=0, description="Seconds to wait for the answer.")


def create_app(settings: GatewaySettings | None = None) -> FastAPI:
    settings = settings or GatewaySettings()
    broker = make_broker(settings.kafka, f"ragops-{SERVICE}")
    producer = producer_for(SERVICE)
    publisher = control_publisher(settings, broker, producer, [DocumentSubmitted, QuerySubmitted, FeedbackSubmitted])
    watcher = EventWatcher(settings.kafka, [AnswerGenerated, MessageDeadLettered], client_id=f"ragops-{SERVICE}")
    state = {"ready": False}
    blobs = open_blob_store(settings.platform)
    guard = Guard(authenticator_for(settings.platform.auth, settings.platform.data_dir))
    control = ControlPlane(settings, publisher)

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        await broker.start()
        await watcher.start()
        await control.start()
        state["ready"] = True
        try:
            yield
        finally:
            state["ready"] = False
            await control.stop()
            await watcher.stop()
            await broker.stop()

    app = FastAPI(title="RAGOps gateway", description=__doc__, lifespan=lifespan)
    app.state.asyncapi = asyncapi(SERVICE, __doc__ or "", broker)  # what it publishes, for `make schemas`
    app.include_router(changes_router(guard, control))

    @app.exception_handler(StarletteHTTPException)
    async def refused(_: Request, error: StarletteHTTPException) -> JSONResponse:
        return _error(error.status_code, error.detail)

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

    @app.get("/health")
    async def health() -> dict[str, str]:
        return {"status": "ok"}

    @app.get("/ready")
    async def ready() -> dict[str, str]:
        if not state["ready"] or not await broker.ping(timeout=2.0):
            raise HTTPException(status.HTTP_503_SERVICE_UNAVAILABLE, "Kafka is not reachable (yet)")
        return {"status": "ready"}

    @app.get("/metrics", response_class=PlainTextResponse)
    async def metrics() -> PlainTextResponse:
        return PlainTextResponse(generate_latest(REGISTRY), media_type=CONTENT_TYPE_LATEST)

    @app.post("/v1/documents", status_code=status.HTTP_202_ACCEPTED)
    async def submit_document(document: DocumentIn) -> Accepted:
        event = DocumentSubmitted(
            producer=producer,
            tenant=settings.platform.tenant,
            **document.model_dump(exclude={"document_id"}),
            document_id=document.document_id or new_document_id(),
        )
        _log_as(event)
        # Refused at the door: content ingestion would reject, or a record the broker would refuse.
        size = len(event.content.encode())
        if size > settings.max_document_bytes:
            raise HTTPException(
                status.HTTP_413_CONTENT_TOO_LARGE,
                f"content of {size} bytes: the limit is {settings.max_document_bytes} bytes of content",
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

    @app.post("/v1/feedback", status_code=status.HTTP_202_ACCEPTED)
    async def send_feedback(feedback: FeedbackIn) -> FeedbackAccepted:
        """Accepted for validation by the feedback service: an unknown request id is
        dead-lettered there with the reason (the gateway holds no state to check it)."""
        event = FeedbackSubmitted(producer=producer, tenant=settings.platform.tenant, **feedback.model_dump())
        _log_as(event)
        await publish(event)
        return FeedbackAccepted(request_id=event.request_id, event_id=event.event_id)

    @app.post("/v1/queries")
    async def ask(query: QueryIn) -> AnswerGenerated:
        timeout_s = min(query.timeout_s or settings.default_timeout_s, settings.max_timeout_s)
        event = QuerySubmitted(
            producer=producer,
            tenant=settings.platform.tenant,
            request_id=new_request_id(),
            **query.model_dump(exclude={"timeout_s"}),
        )
        _log_as(event)
        reply = watcher.expect(event.request_id, (AnswerGenerated, MessageDeadLettered))
        try:
            await publish(event)
        except HTTPException:
            watcher.forget(event.request_id)
            raise
        try:
            outcome = await asyncio.wait_for(reply, timeout_s)
        except WatcherStopped as error:
            log.warning("answer_watch_stopped", error=repr(error))
            raise HTTPException(
                status.HTTP_503_SERVICE_UNAVAILABLE, f"request {event.request_id}: the gateway is stopping"
            ) from None
        except TimeoutError:
            watcher.forget(event.request_id)
            raise HTTPException(
                status.HTTP_504_GATEWAY_TIMEOUT, f"no answer for request {event.request_id} within {timeout_s:g} s"
            ) from None
        if isinstance(outcome, MessageDeadLettered):
            # The reason can quote a backend's answer, a file path or an address: logged only.
            log.warning("request_dead_lettered", failed_in=outcome.producer.name, reason=outcome.reason)
            raise HTTPException(
                status.HTTP_502_BAD_GATEWAY,
                f"request {event.request_id} failed in {outcome.producer.name} ({outcome.error_type})",
            )
        assert isinstance(outcome, AnswerGenerated)  # the only other type the watcher was asked for
        return outcome

    return app


def main() -> None:
    settings = load_settings(GatewaySettings)
    configure_logging(SERVICE, settings.platform.log_level, settings.platform.log_format)
    # In-flight questions get a few seconds to be answered when the gateway is told to stop
    # (well inside the embedded supervisor's 20 s); connections still waiting then are closed.
    uvicorn.run(
        create_app(settings), host=settings.host, port=settings.port, log_config=None, timeout_graceful_shutdown=5
    )

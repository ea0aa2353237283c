"""Stage instrumentation: what each published event cost its stage, and one OpenTelemetry
span per published event.

**Compute.** :meth:`~ragops_shared.broker.EventSubscriber.run` opens a :class:`StageClock`
for each batch it handles (:func:`stage_clock`); :meth:`~ragops_shared.broker.EventPublisher.publish`
fills an outgoing event's ``compute`` (:class:`~ragops_schemas.envelope.ComputeUsage`) from
it: ``seconds = (publish time - batch start) / batch size`` on the device and units the
service declared once (:class:`ComputeSpec`, given to :func:`~ragops_shared.service.service_app`;
default :data:`LIGHT`, one CPU core). An event published outside a batch (the gateway's
root events) or that already has its ``compute`` is left as it is; so is a signed control
event (its signature covers the envelope).

**Spans.** With ``RAGOPS_OTEL_EXPORTER_OTLP_ENDPOINT`` set (:class:`~ragops_shared.settings.OtelSettings`), each
published event becomes one span exported over OTLP/HTTP (``<endpoint>/v1/traces``,
protobuf) by the OpenTelemetry SDK's ``BatchSpanProcessor``: trace id, span id and parent
are the event's own (``trace_id``, ``span_id``, ``parent_span_id``), so the spans of one
request link across services without any context propagation; the span starts when the
stage's batch started (else at publication) and ends at publication. Names and attributes
follow the OpenTelemetry GenAI semantic conventions (https://opentelemetry.io/docs/specs/semconv/gen-ai/)
and the messaging ones (:func:`span_attributes`); no question, answer or document text is
ever put on a span. Without the endpoint no SDK object exists.
"""

import contextvars
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Literal

from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import ReadableSpan, SpanProcessor
from opentelemetry.sdk.util.instrumentation import InstrumentationScope
from opentelemetry.trace import SpanContext, SpanKind, TraceFlags

from ragops_schemas import Event, SignedEvent
from ragops_schemas.envelope import ComputeUsage, DocumentEvent, RequestEvent
from ragops_schemas.events import (
    AnswerEvaluated,
    AnswerGenerated,
    ChunksEmbedded,
    ContextRetrieved,
    QueryEmbedded,
)
from ragops_shared.settings import OtelSettings


@dataclass(frozen=True, slots=True)
class ComputeSpec:
    """What a service computes on: ``device`` and ``units`` (CPU threads it computes with,
    or GPUs held)."""

    device: Literal["cpu", "cuda"] = "cpu"
    units: int = 1


LIGHT = ComputeSpec()
"""A service that runs no model: one CPU core."""


@dataclass(frozen=True, slots=True)
class StageClock:
    """The batch being handled: ``started`` (``time.monotonic()`` seconds), ``started_ns``
    (wall clock, ns since the epoch, for span starts) and ``size`` (events in the batch)."""

    started: float
    started_ns: int
    size: int


_CLOCK: contextvars.ContextVar[StageClock | None] = contextvars.ContextVar("ragops_stage_clock", default=None)


@contextmanager
def stage_clock(size: int) -> Iterator[StageClock]:
    """Time a batch of ``size`` events: events published inside (tasks started inside too,
    which copy the context) are charged ``1/size`` of the elapsed time each."""
    clock = StageClock(time.monotonic(), time.time_ns(), max(size, 1))
    token = _CLOCK.set(clock)
    try:
        yield clock
    finally:
        _CLOCK.reset(token)


def current_clock() -> StageClock | None:
    """The clock of the batch being handled here, None outside one."""
    return _CLOCK.get()


def with_compute(event: Event, spec: ComputeSpec, clock: StageClock | None) -> Event:
    """``event`` with its ``compute`` filled from ``clock`` on ``spec``; unchanged without a
    clock, when it already has one, or for a signed control event. A shallow copy: no
    serialization."""
    if clock is None or event.compute is not None or isinstance(event, SignedEvent):
        return event
    seconds = (time.monotonic() - clock.started) / clock.size
    return event.model_copy(update={"compute": ComputeUsage(device=spec.device, seconds=seconds, units=spec.units)})


AttributeValue = str | bool | int | float | list[str]


def span_name(event: Event, attributes: dict[str, AttributeValue]) -> str:
    """``{gen_ai.operation.name} {gen_ai.request.model}`` for a GenAI stage (the GenAI span
    name), ``send {topic}`` for any other (the messaging span name)."""
    operation = attributes.get("gen_ai.operation.name")
    if operation is None:
        return f"send {event.TOPIC.value}"
    model = attributes.get("gen_ai.request.model") or attributes.get("gen_ai.data_source.id")
    return f"{operation} {model}" if model else str(operation)


def span_attributes(event: Event) -> dict[str, AttributeValue]:
    """The span attributes of a published event: messaging (``messaging.system``,
    ``messaging.destination.name``, ``messaging.message.id``), the event's identity
    (``ragops.event_type``, ``ragops.tenant``, ``ragops.request_id`` or
    ``ragops.document_id``), its stage's compute, and the GenAI semantic conventions where
    the stage is one: ``embeddings`` (query and chunk embedding), ``retrieval``, ``chat``
    (generation: provider, model, usage, finish reasons) and evaluation
    (``gen_ai.evaluation.name`` / ``gen_ai.evaluation.score.value`` for a single score,
    ``ragops.evaluation.<name>`` for each of several). Identifiers, counts and model names
    only: never a question, answer, chunk or document text (personal data)."""
    attributes: dict[str, AttributeValue] = {
        "messaging.system": "kafka",
        "messaging.operation.type": "send",
        "messaging.destination.name": event.TOPIC.value,
        "messaging.message.id": str(event.event_id),
        "ragops.event_type": event.event_type,
        "ragops.tenant": event.tenant,
    }
    if isinstance(event, RequestEvent):
        attributes["ragops.request_id"] = event.request_id
    if isinstance(event, DocumentEvent):
        attributes["ragops.document_id"] = event.document_id
    if event.compute is not None:
        attributes["ragops.compute.device"] = event.compute.device
        attributes["ragops.compute.seconds"] = event.compute.seconds
        attributes["ragops.compute.units"] = event.compute.units
    if isinstance(event, QueryEmbedded):
        attributes["gen_ai.operation.name"] = "embeddings"
        attributes["gen_ai.request.model"] = event.embedding.name
        attributes["gen_ai.embeddings.dimension.count"] = event.embedding.dimension
        if event.input_tokens is not None:
            attributes["gen_ai.usage.input_tokens"] = event.input_tokens
    elif isinstance(event, ChunksEmbedded):
        attributes["gen_ai.operation.name"] = "embeddings"
        attributes["gen_ai.request.model"] = event.embedding.name
        attributes["gen_ai.embeddings.dimension.count"] = event.embedding.dimension
        tokens = [chunk.input_tokens for chunk in event.chunks if chunk.input_tokens is not None]
        if tokens:
            attributes["gen_ai.usage.input_tokens"] = sum(tokens)
    elif isinstance(event, ContextRetrieved):
        attributes["gen_ai.operation.name"] = "retrieval"
        attributes["gen_ai.data_source.id"] = event.retrieval.collection
        attributes["gen_ai.request.top_k"] = event.retrieval.top_k
        attributes["ragops.retrieval.mode"] = event.retrieval.mode
        attributes["ragops.retrieval.documents"] = len(event.contexts)
    elif isinstance(event, AnswerGenerated):
        generation = event.generation
        attributes["gen_ai.operation.name"] = "chat"
        attributes["gen_ai.provider.name"] = generation.provider_name
        attributes["gen_ai.request.model"] = generation.request_model
        attributes["gen_ai.request.temperature"] = generation.temperature
        attributes["gen_ai.request.max_tokens"] = generation.max_tokens
        attributes["gen_ai.response.finish_reasons"] = list(generation.finish_reasons)
        attributes["gen_ai.usage.input_tokens"] = generation.usage.input_tokens
        attributes["gen_ai.usage.output_tokens"] = generation.usage.output_tokens
        attributes["ragops.prompt.name"] = event.lineage.prompt.name
        attributes["ragops.prompt.version"] = event.lineage.prompt.version
    elif isinstance(event, AnswerEvaluated):
        if len(event.scores) == 1:
            attributes["gen_ai.evaluation.name"] = event.scores[0].name
            attributes["gen_ai.evaluation.score.value"] = event.scores[0].value
        for score in event.scores:
            attributes[f"ragops.evaluation.{score.name}"] = score.value
    return attributes


class SpanEmitter:
    """Turns published events into spans for one service: an OTLP/HTTP exporter behind a
    ``BatchSpanProcessor`` (or any ``processor``, for tests), with the resource
    ``service.name=ragops-<service>``, ``service.version``. :meth:`shutdown` flushes."""

    def __init__(self, service: str, version: str, processor: SpanProcessor) -> None:
        self._resource = Resource.create({"service.name": f"ragops-{service}", "service.version": version})
        self._scope = InstrumentationScope("ragops_shared.tracing", version)
        self._processor = processor

    @classmethod
    def over_otlp(cls, service: str, version: str, settings: OtelSettings) -> "SpanEmitter | None":
        """An emitter exporting to ``settings.endpoint`` (None when unset or empty: no SDK object)."""
        if not settings.endpoint:
            return None
        # The exporter (requests, protobuf) is loaded only where spans are exported.
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
        from opentelemetry.sdk.trace.export import BatchSpanProcessor
        from opentelemetry.util.re import parse_env_headers

        headers = parse_env_headers(settings.headers.get_secret_value(), liberal=True) if settings.headers else None
        exporter = OTLPSpanExporter(endpoint=settings.endpoint.rstrip("/") + "/v1/traces", headers=headers)
        return cls(service, version, BatchSpanProcessor(exporter))

    def emit(self, event: Event, clock: StageClock | None) -> None:
        """Hand ``event``'s span to the processor (queued; exported in the background)."""
        trace_id = int(event.trace_id, 16)
        end = time.time_ns()
        parent = (
            None
            if event.parent_span_id is None
            else SpanContext(trace_id, int(event.parent_span_id, 16), is_remote=True, trace_flags=TraceFlags(1))
        )
        attributes = span_attributes(event)
        self._processor.on_end(
            ReadableSpan(
                span_name(event, attributes),
                context=SpanContext(trace_id, int(event.span_id, 16), is_remote=False, trace_flags=TraceFlags(1)),
                parent=parent,
                resource=self._resource,
                attributes=attributes,
                # GenAI conventions: INTERNAL for a model running in the same process.
                kind=SpanKind.INTERNAL,
                instrumentation_scope=self._scope,
                start_time=min(clock.started_ns, end) if clock is not None else end,
                end_time=end,
            )
        )

    def shutdown(self) -> None:
        """Export what is queued and stop (blocking: call it off the event loop)."""
        self._processor.shutdown()


@dataclass(slots=True)
class Instruments:
    """A service's compute spec and, while it runs with an endpoint, its span emitter."""

    compute: ComputeSpec = LIGHT
    spans: SpanEmitter | None = None

    def start(self, service: str, version: str, settings: OtelSettings) -> None:
        """Emit ``service``'s spans from now on when ``settings`` name an endpoint."""
        self.spans = SpanEmitter.over_otlp(service, version, settings)

    def stop(self) -> None:
        """Flush and drop the span emitter, if any (blocking: call it off the event loop)."""
        spans, self.spans = self.spans, None
        if spans is not None:
            spans.shutdown()


_SERVICES: dict[str, Instruments] = {}
"""Per service name (the publisher's ``producer.name``): several services may share a process
(tests, the embedded platform's helpers)."""

_UNDECLARED = Instruments()


def declare(service: str, compute: ComputeSpec = LIGHT) -> Instruments:
    """Declare ``service``'s compute (:func:`~ragops_shared.service.service_app` does)."""
    instruments = _SERVICES.setdefault(service, Instruments())
    instruments.compute = compute
    return instruments


def instruments_of(service: str) -> Instruments:
    """What ``service`` declared (:data:`LIGHT` and no spans if nothing)."""
    return _SERVICES.get(service, _UNDECLARED)


def instrument(event: Event, service: str) -> Event:
    """What :meth:`~ragops_shared.broker.EventPublisher.publish` sends: ``event`` with its
    compute filled (:func:`with_compute`) from the batch being handled here."""
    return with_compute(event, _SERVICES.get(service, _UNDECLARED).compute, _CLOCK.get())


def published(event: Event, service: str) -> None:
    """Emit ``event``'s span once the broker took it, when ``service``'s spans are on."""
    spans = _SERVICES.get(service, _UNDECLARED).spans
    if spans is not None:
        spans.emit(event, _CLOCK.get())

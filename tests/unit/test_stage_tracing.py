"""Stage instrumentation without a broker (:mod:`ragops_shared.tracing`): the compute an event
published inside a subscriber's batch is charged, none outside a batch or on a signed
control event; the span attributes of each event type (GenAI and messaging names, no text);
the span an event becomes (its own ids, the batch's start) and no SDK without an endpoint."""

import itertools
import uuid
from collections.abc import Sequence
from types import SimpleNamespace

import pytest
from faststream.kafka import KafkaBroker
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from ragops_schemas import (
    AnswerEvaluated,
    AnswerGenerated,
    ChunksEmbedded,
    ContextRetrieved,
    DocumentChunked,
    Event,
    PricesPublished,
    QueryEmbedded,
    QueryRedacted,
    QuerySubmitted,
)
from ragops_schemas.envelope import ComputeUsage
from ragops_shared import tracing
from ragops_shared.broker import EventPublisher, EventSubscriber
from ragops_shared.settings import KafkaSettings, OtelSettings, PlatformSettings
from ragops_shared.signing import Signer
from ragops_shared.tracing import ComputeSpec, SpanEmitter, declare, span_attributes, stage_clock
from tests.helpers import GATEWAY_SIGNER, VERIFIER, example


class _Sent:
    """Stands in for FastStream's publisher: keeps what it was given."""

    def __init__(self) -> None:
        self.events: list[Event] = []

    async def publish(self, event: Event, **_: object) -> None:
        self.events.append(event)


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> SimpleNamespace:
    """The tracing module's time, moved by the test: ``now.s`` seconds (monotonic and wall)."""
    now = SimpleNamespace(s=100.0)
    monkeypatch.setattr(
        tracing, "time", SimpleNamespace(monotonic=lambda: now.s, time_ns=lambda: int(now.s * 1_000_000_000))
    )
    return now


def _publisher(service: str, sent: _Sent, signer: Signer | None = None) -> EventPublisher:
    producer = example(QueryRedacted).producer.model_copy(update={"name": service})
    publisher = EventPublisher(KafkaBroker(), producer, [QueryRedacted, QueryEmbedded, PricesPublished], signer)
    publisher._publishers = dict.fromkeys(publisher._publishers, sent)  # type: ignore[arg-type]
    return publisher


async def test_outputs_published_inside_a_run_carry_their_share_of_the_batch_on_the_declared_compute(
    clock: SimpleNamespace,
) -> None:
    declare("test-gpu-stage", ComputeSpec("cuda", 2))
    sent = _Sent()
    publisher = _publisher("test-gpu-stage", sent)
    subscriber = EventSubscriber(KafkaBroker(), publisher, QueryRedacted, kafka=KafkaSettings(), group_id="g")
    queries = [
        example(QueryRedacted).model_copy(update={"request_id": f"r{i}", "event_id": uuid.uuid4()}) for i in range(4)
    ]
    embedded = example(QueryEmbedded)

    async def process(batch: Sequence[QueryRedacted]) -> list[QueryEmbedded]:
        clock.s += 8.0  # the model's work on the whole batch
        return [embedded.model_copy(update={"request_id": q.request_id, "compute": None}) for q in batch]

    await subscriber.run(queries, process)
    assert [event.compute for event in sent.events] == [ComputeUsage(device="cuda", seconds=2.0, units=2)] * 4
    assert tracing.current_clock() is None, "the clock ends with the batch"


async def test_an_event_published_outside_a_batch_or_already_measured_or_signed_keeps_its_compute(
    clock: SimpleNamespace,
) -> None:
    sent = _Sent()
    publisher = _publisher("test-light-stage", sent, signer=GATEWAY_SIGNER)
    root = example(QueryRedacted).model_copy(update={"compute": None})
    await publisher.publish(root)
    assert sent.events[-1].compute is None, "a root event (the gateway's) has no stage clock"

    measured = ComputeUsage(device="cpu", seconds=0.5, units=3)
    prices = example(PricesPublished).model_copy(update={"signature": None, "compute": None})
    with stage_clock(2):
        clock.s += 1.0
        await publisher.publish(root.model_copy(update={"compute": measured}))
        await publisher.publish(prices)
        await publisher.publish(root)
    kept, signed, light = sent.events[1:]
    assert kept.compute == measured
    assert signed.compute is None and signed.signature is not None
    VERIFIER.check(signed)  # the signature covers what was sent
    assert light.compute == ComputeUsage(device="cpu", seconds=0.5, units=1), "undeclared: one CPU core"


@pytest.mark.parametrize(
    ("event_type", "expected"),
    [
        (QueryEmbedded, {"gen_ai.operation.name": "embeddings", "gen_ai.request.model": str}),
        (ChunksEmbedded, {"gen_ai.operation.name": "embeddings", "ragops.document_id": str}),
        (ContextRetrieved, {"gen_ai.operation.name": "retrieval", "gen_ai.data_source.id": str}),
        (
            AnswerGenerated,
            {
                "gen_ai.operation.name": "chat",
                "gen_ai.provider.name": str,
                "gen_ai.request.model": str,
                "gen_ai.usage.input_tokens": int,
                "gen_ai.usage.output_tokens": int,
                "gen_ai.response.finish_reasons": list,
            },
        ),
        (AnswerEvaluated, {"ragops.request_id": str}),
        (QuerySubmitted, {"ragops.request_id": str}),
        (DocumentChunked, {"ragops.document_id": str}),
    ],
)
def test_span_attributes_use_the_genai_and_messaging_names_and_carry_no_text(
    event_type: type[Event], expected: dict[str, object]
) -> None:
    event = example(event_type)
    attributes = span_attributes(event)
    for name, value in expected.items():
        assert isinstance(attributes[name], value) if isinstance(value, type) else attributes[name] == value, name
    assert attributes["messaging.system"] == "kafka"
    assert attributes["messaging.destination.name"] == event.TOPIC.value
    assert attributes["ragops.tenant"] == event.tenant
    assert "gen_ai.system" not in attributes, "deprecated: gen_ai.provider.name replaces it"
    if "gen_ai.operation.name" not in attributes:
        assert not any(name.startswith("gen_ai.operation") for name in attributes)
    texts = _texts(event.model_dump())
    leaked = [value for value in attributes.values() if isinstance(value, str) and len(value) > 12 and value in texts]
    assert not leaked, "question, answer, chunk and document text never go on a span"


def _texts(value: object) -> set[str]:
    """Every text field of an event's dump (question, answer, chunk text, content)."""
    if isinstance(value, dict):
        found = {v for k, v in value.items() if k in {"question", "answer", "text", "content"} and isinstance(v, str)}
        return found | set(itertools.chain.from_iterable(_texts(v) for v in value.values()))
    if isinstance(value, list):
        return set(itertools.chain.from_iterable(_texts(v) for v in value))
    return set()


def test_a_single_evaluation_score_uses_the_genai_evaluation_attributes() -> None:
    evaluated = example(AnswerEvaluated)
    one = evaluated.model_copy(update={"scores": evaluated.scores[:1]})
    attributes = span_attributes(one)
    assert attributes["gen_ai.evaluation.name"] == one.scores[0].name
    assert attributes["gen_ai.evaluation.score.value"] == one.scores[0].value


def test_an_event_becomes_a_span_with_its_own_ids_from_its_batch_start_to_its_publication(
    clock: SimpleNamespace,
) -> None:
    exported = InMemorySpanExporter()
    emitter = SpanEmitter("embedding", "1.2.3", SimpleSpanProcessor(exported))
    embedded = example(QueryEmbedded).model_copy(update={"parent_span_id": "a3ce929d0e0e4736"})
    with stage_clock(1) as batch:
        clock.s += 3.0
        emitter.emit(embedded, batch)
    emitter.emit(example(QuerySubmitted), None)
    emitter.shutdown()
    span, root = exported.get_finished_spans()
    assert span.context is not None and span.parent is not None
    assert f"{span.context.trace_id:032x}" == embedded.trace_id and f"{span.context.span_id:016x}" == embedded.span_id
    assert f"{span.parent.span_id:016x}" == embedded.parent_span_id
    assert span.end_time is not None and span.start_time is not None
    assert span.end_time - span.start_time == 3_000_000_000
    assert span.name == f"embeddings {embedded.embedding.name}"
    assert span.resource.attributes["service.name"] == "ragops-embedding"
    assert span.resource.attributes["service.version"] == "1.2.3"
    assert root.parent is None and root.start_time == root.end_time
    assert root.name == f"send {QuerySubmitted.TOPIC.value}"


def test_without_an_endpoint_no_sdk_object_exists_and_the_settings_read_the_ragops_names(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    assert SpanEmitter.over_otlp("privacy", "0", OtelSettings()) is None
    monkeypatch.setenv("RAGOPS_OTEL_EXPORTER_OTLP_ENDPOINT", "http://collector:4318")
    monkeypatch.setenv("RAGOPS_OTEL_EXPORTER_OTLP_HEADERS", "api_key=secret")
    otel = PlatformSettings().otel
    assert otel.endpoint == "http://collector:4318"
    assert otel.headers is not None and otel.headers.get_secret_value() == "api_key=secret"
    emitter = SpanEmitter.over_otlp("privacy", "0", otel)
    assert emitter is not None
    emitter.shutdown()

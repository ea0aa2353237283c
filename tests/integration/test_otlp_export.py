"""Stage instrumentation on a real broker, exported to a real OTLP/HTTP receiver: the events
privacy and embedding publish for one question carry their stage's compute, and each
becomes one span whose ids are the event's own, so the two services' spans link into one
trace (the embedding span's parent is the privacy span) with GenAI attribute names and no
question text."""

import asyncio
from contextlib import AsyncExitStack
from pathlib import Path

import pytest
from pydantic import SecretStr

from ragops.client import PlatformClient
from ragops_embedding.app import create_app as embedding_app
from ragops_embedding.settings import EmbeddingSettings
from ragops_privacy.app import create_app as privacy_app
from ragops_privacy.settings import PrivacySettings
from ragops_schemas import QueryEmbedded, QueryRedacted
from ragops_schemas.envelope import ComputeUsage
from ragops_shared.settings import OtelSettings, PlatformSettings
from ragops_shared.tracing import declare
from tests.integration.services import running, wait_for, watching
from tests.otlp_receiver import otlp_receiver

pytestmark = [pytest.mark.kafka, pytest.mark.model]

QUESTION = "When are refunds paid to Jane Doe?"


async def test_a_question_through_privacy_and_embedding_exports_linked_genai_spans(kafka, tmp_path: Path) -> None:
    with otlp_receiver() as receiver:
        otel = OtelSettings(endpoint=receiver.endpoint, headers=SecretStr("authorization=Bearer%20test-token"))
        platform = PlatformSettings(data_dir=tmp_path, torch_threads=1, otel=otel)
        async with AsyncExitStack() as stack:
            seen = await stack.enter_async_context(watching(kafka, [QueryRedacted, QueryEmbedded]))
            # Left in this order, the services stop (and flush their spans) before the watcher.
            await stack.enter_async_context(running(privacy_app(PrivacySettings(kafka=kafka, platform=platform))))
            await stack.enter_async_context(running(embedding_app(EmbeddingSettings(kafka=kafka, platform=platform))))
            # The client's root event becomes the root span, as the gateway's do.
            root = declare("test")
            root.start("test", "0", otel)
            async with PlatformClient(kafka, "test", platform) as client:
                question = client.question(QUESTION)
                await client.publish(question)
                await wait_for(seen, lambda events: any(isinstance(e, QueryEmbedded) for e in events), 60)
            await asyncio.to_thread(root.stop)
        # Every service has stopped: its BatchSpanProcessor was flushed on shutdown.
        spans = receiver.received()

    [redacted] = [e for e in seen if isinstance(e, QueryRedacted)]
    [embedded] = [e for e in seen if isinstance(e, QueryEmbedded)]
    # Compute per stage: one CPU core for privacy, the torch threads for the embedding model.
    assert isinstance(redacted.compute, ComputeUsage) and redacted.compute.device == "cpu"
    assert redacted.compute.units == 1 and redacted.compute.seconds >= 0
    assert isinstance(embedded.compute, ComputeUsage)
    assert (embedded.compute.device, embedded.compute.units) == ("cpu", 1)

    by_id = {span.span_id: span for span in spans}
    root_span, privacy_span, embedding_span = by_id[question.span_id], by_id[redacted.span_id], by_id[embedded.span_id]
    assert {root_span.trace_id, privacy_span.trace_id, embedding_span.trace_id} == {question.trace_id}
    assert root_span.parent_span_id is None and "ragops.compute.device" not in root_span.attributes, "no stage clock"
    assert privacy_span.parent_span_id == root_span.span_id
    assert embedding_span.parent_span_id == privacy_span.span_id
    assert privacy_span.resource["service.name"] == "ragops-privacy"
    assert embedding_span.resource["service.name"] == "ragops-embedding"
    assert all(span.resource.get("service.version") for span in (privacy_span, embedding_span))
    assert privacy_span.start_ns <= privacy_span.end_ns and embedding_span.start_ns <= embedding_span.end_ns

    attributes = embedding_span.attributes
    assert attributes["gen_ai.operation.name"] == "embeddings"
    assert attributes["gen_ai.request.model"] == embedded.embedding.name
    assert attributes["gen_ai.usage.input_tokens"] == embedded.input_tokens
    assert embedding_span.name == f"embeddings {embedded.embedding.name}"
    assert attributes["messaging.system"] == "kafka"
    assert attributes["messaging.destination.name"] == QueryEmbedded.TOPIC.value
    assert attributes["ragops.request_id"] == question.request_id
    assert "gen_ai.system" not in attributes
    assert privacy_span.name == f"send {QueryRedacted.TOPIC.value}"
    # No question text on any span (personal data).
    for span in spans:
        assert not any("refunds" in str(value) or "Jane" in str(value) for value in span.attributes.values())
    assert all(headers.get("authorization") == "Bearer test-token" for headers in receiver.headers)

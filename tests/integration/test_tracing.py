"""W3C trace context on a real broker: every published event carries a ``traceparent``
Kafka header naming its own ``trace_id`` and ``span_id``, and the event a service derives
from it continues the same trace in a new span."""

import pytest

from ragops.client import PlatformClient
from ragops_ingestion.app import IngestionSettings, create_app
from ragops_privacy.app import create_app as privacy_app
from ragops_privacy.settings import PrivacySettings
from ragops_schemas import DocumentChunked, DocumentRedacted, DocumentSubmitted
from ragops_shared.settings import PlatformSettings
from tests.integration.services import read_records, running

pytestmark = [pytest.mark.kafka, pytest.mark.model]


async def test_published_events_carry_their_traceparent_and_derived_events_continue_the_trace(kafka, tmp_path) -> None:
    async with PlatformClient(kafka, name="test") as client:
        submitted = client.document(
            "traced.md", "# Traced\n\nA document whose trace is followed.", content_type="text/markdown"
        )
        await client.publish(submitted)
    [(sent, sent_headers)] = await read_records(kafka, DocumentSubmitted, 1)
    assert sent_headers["traceparent"].decode() == f"00-{submitted.trace_id}-{submitted.span_id}-01"
    assert (sent.trace_id, sent.span_id) == (submitted.trace_id, submitted.span_id)

    privacy = PrivacySettings(kafka=kafka, platform=PlatformSettings(data_dir=tmp_path))
    async with running(privacy_app(privacy)), running(create_app(IngestionSettings(kafka=kafka))):
        [(chunked, chunked_headers)] = await read_records(kafka, DocumentChunked, 1, timeout_s=120)
    [(redacted, redacted_headers)] = await read_records(kafka, DocumentRedacted, 1)
    assert redacted.trace_id == submitted.trace_id and redacted.span_id != submitted.span_id
    assert redacted_headers["traceparent"].decode() == f"00-{submitted.trace_id}-{redacted.span_id}-01"
    assert chunked.trace_id == submitted.trace_id and chunked.span_id != submitted.span_id
    assert chunked_headers["traceparent"].decode() == f"00-{submitted.trace_id}-{chunked.span_id}-01"

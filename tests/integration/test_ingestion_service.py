"""The ingestion service over a real broker: valid documents are chunked, empty ones are
rejected with a reason, malformed records are dead-lettered with their bytes, and the
stream goes on after each."""

import base64

import pytest

from ragops_ingestion.app import create_app
from ragops_ingestion.settings import IngestionSettings
from ragops_schemas import DocumentChunked, DocumentRejected, DocumentSubmitted, MessageDeadLettered, Topic
from tests.helpers import PRODUCER
from tests.integration.services import produce_raw, running, wait_for, watching

pytestmark = [pytest.mark.kafka, pytest.mark.model]


async def test_bad_records_are_dead_lettered_and_the_stream_goes_on(kafka) -> None:
    not_json = b"\xff\xfe definitely not json"
    no_producer = b'{"document_id": "d0", "content": "text"}'
    valid = DocumentSubmitted(
        producer=PRODUCER, document_id="doc-1", content="# Title\n\nSome *markdown* text.", content_type="text/markdown"
    )
    empty = DocumentSubmitted(
        producer=PRODUCER,
        document_id="doc-empty",
        content="<html><script>x()</script></html>",
        content_type="text/html",
    )

    async with watching(kafka, [DocumentChunked, DocumentRejected, MessageDeadLettered]) as seen:
        await produce_raw(
            kafka,
            Topic.DOCUMENT_SUBMITTED,
            [
                (b"bad-1", not_json),
                (b"d0", no_producer),
                (valid.key, valid.model_dump_json().encode()),
                (empty.key, empty.model_dump_json().encode()),
            ],
        )
        async with running(create_app(IngestionSettings(kafka=kafka))):
            await wait_for(seen, lambda events: len(events) >= 4)

    letters = {letter.original_key: letter for letter in seen if isinstance(letter, MessageDeadLettered)}
    assert set(letters) == {"bad-1", "d0"}
    assert base64.b64decode(letters["bad-1"].original_value_b64) == not_json
    assert letters["bad-1"].original_topic == Topic.DOCUMENT_SUBMITTED
    assert letters["bad-1"].error_type == "schema_validation"
    assert letters["bad-1"].consumer_group == "ragops-ingestion"
    assert "producer" in letters["d0"].reason and "Field required" in letters["d0"].reason
    assert {letters["bad-1"].partition, letters["d0"].partition} <= {0, 1, 2}

    [chunked] = [e for e in seen if isinstance(e, DocumentChunked)]
    assert chunked.document_id == "doc-1" and chunked.title == "Title"
    assert chunked.trace_id == valid.trace_id, "the output continues the submitter's trace"
    assert "Some markdown text." in chunked.chunks[0].text

    [rejected] = [e for e in seen if isinstance(e, DocumentRejected)]
    assert rejected.document_id == "doc-empty" and rejected.stage == "ingestion"
    assert "empty" in rejected.reason

"""The ingestion service over a real broker: valid documents are chunked, empty ones are
rejected with a reason, malformed records are dead-lettered with their bytes, and the
stream goes on after each."""

import base64
from contextlib import AsyncExitStack

import pytest

from ragops_ingestion.app import create_app
from ragops_ingestion.settings import IngestionSettings
from ragops_schemas import (
    ChunksEmbedded,
    DocumentChunked,
    DocumentIndexed,
    DocumentRedacted,
    DocumentRejected,
    MessageDeadLettered,
    Topic,
)
from tests.helpers import PRODUCER
from tests.integration.services import produce_raw, running, wait_for, watching

pytestmark = [pytest.mark.kafka, pytest.mark.model]


async def test_bad_records_are_dead_lettered_and_the_stream_goes_on(kafka) -> None:
    not_json = b"\xff\xfe definitely not json"
    no_producer = b'{"document_id": "d0", "content": "text"}'
    valid = DocumentRedacted(
        producer=PRODUCER, document_id="doc-1", content="# Title\n\nSome *markdown* text.", content_type="text/markdown"
    )
    empty = DocumentRedacted(
        producer=PRODUCER,
        document_id="doc-empty",
        content="<html><script>x()</script></html>",
        content_type="text/html",
    )

    async with watching(kafka, [DocumentChunked, DocumentRejected, MessageDeadLettered]) as seen:
        await produce_raw(
            kafka,
            Topic.DOCUMENT_REDACTED,
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
    assert letters["bad-1"].original_topic == Topic.DOCUMENT_REDACTED
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


@pytest.mark.qdrant
@pytest.mark.slow
async def test_a_re_ingested_folder_embeds_only_what_changed(kafka, tmp_path, corpus_rows: list[dict]) -> None:
    from ragops.cli import ingest_summary
    from ragops.client import PlatformClient
    from ragops_embedding.app import create_app as embedding_app
    from ragops_embedding.settings import EmbeddingSettings
    from ragops_privacy.app import create_app as privacy_app
    from ragops_privacy.settings import PrivacySettings
    from ragops_retrieval.app import create_app as retrieval_app
    from ragops_retrieval.settings import RetrievalSettings

    article = "\n\n".join(row["text"] for row in corpus_rows if row["title"] == "Normans")
    passages = {row["id"]: row["text"] for row in corpus_rows[:4]}
    platform = {"data_dir": tmp_path, "torch_threads": 1}

    async def ingest_all(client: PlatformClient, edited: str) -> list:
        documents = [client.document(key, text) for key, text in {**passages, "normans": edited}.items()]
        return [outcome for _, outcome in await client.ingest(documents, timeout_s=120)]

    def front(kafka):  # ingestion and embedding: their views of the index are read at start
        return (
            privacy_app(PrivacySettings(kafka=kafka, platform=platform)),
            create_app(IngestionSettings(kafka=kafka)),
            embedding_app(EmbeddingSettings(kafka=kafka, platform=platform)),
        )

    async with running(retrieval_app(RetrievalSettings(kafka=kafka, platform=platform))):
        async with AsyncExitStack() as stack:
            for app in front(kafka):
                await stack.enter_async_context(running(app))
            client = await stack.enter_async_context(PlatformClient(kafka))
            first = await ingest_all(client, article)
        assert all(isinstance(o, DocumentIndexed) and not o.unchanged for o in first), first
        # Started again, they know what is indexed (a running service learns it within a fetch).
        async with AsyncExitStack() as stack:
            for app in front(kafka):
                await stack.enter_async_context(running(app))
            client = await stack.enter_async_context(PlatformClient(kafka))
            async with watching(kafka, [ChunksEmbedded]) as embedded:
                again = await ingest_all(client, article.replace(" the ", " this ", 1))

    [changed] = [o for o in again if isinstance(o, DocumentIndexed) and not o.unchanged]
    [normans] = [o for o in first if o.document_id == "normans"]
    assert changed.document_id == "normans" and 0 < changed.reused_chunks < changed.chunk_count == normans.chunk_count
    assert sum(isinstance(o, DocumentIndexed) and o.unchanged for o in again) == len(passages)
    # Only this run's work: a stopped embedding service may see its last batch again at the next
    # start (at-least-once; same ids), under the first run's traces.
    [work] = [e for e in embedded if e.trace_id in {o.trace_id for o in again}]
    assert work.document_id == "normans" and len(work.chunks) == changed.chunk_count - changed.reused_chunks
    assert (
        ingest_summary(first)
        == f"5 documents indexed ({sum(o.chunk_count for o in first)} chunks), 0 unchanged, 0 failed"
    )
    assert ingest_summary(again) == (
        f"1 documents indexed ({changed.chunk_count} chunks, {changed.reused_chunks} reused), 4 unchanged, 0 failed"
    )

"""The privacy service on the real broker: what producers send on the intake topics comes
out redacted on the kept topics (ids derived, trace continued), a document sent by claim
check leaves a redacted blob and no raw one, and a record it cannot redact is dead-lettered
with the reason. Then the whole pipeline: personal data in a document, a question and a
feedback comment never reaches a chunk, an answer, a feedback record or ClickHouse."""

import asyncio
from contextlib import AsyncExitStack
from pathlib import Path

import pytest

from ragops.client import PlatformClient
from ragops_privacy.app import create_app
from ragops_privacy.settings import PrivacySettings
from ragops_schemas import (
    AnswerGenerated,
    DocumentChunked,
    DocumentIndexed,
    DocumentRedacted,
    FeedbackRecorded,
    FeedbackRedacted,
    FeedbackSubmitted,
    MessageDeadLettered,
    QueryRedacted,
    QuerySubmitted,
    Topic,
)
from ragops_schemas.ids import derived_event_id
from ragops_shared.blobs import open_blob_store
from ragops_shared.settings import PlatformSettings
from tests.helpers import PRODUCER
from tests.integration.services import produce_raw, running, wait_for, watching

pytestmark = pytest.mark.kafka

ADDRESS = "jane.doe@example.com"
ASKER = "john.smith@example.org"
PHONE = "+1 415 555 0100"


def _raw(event) -> tuple[bytes, bytes]:
    return event.key, event.model_dump_json().encode()


async def test_intake_records_come_out_redacted_once_and_a_broken_one_is_dead_lettered(kafka, tmp_path: Path) -> None:
    platform = PlatformSettings(data_dir=tmp_path, inline_content_bytes=1024)
    question = QuerySubmitted(producer=PRODUCER, request_id="q-1", question=f"Refund for {ASKER}?", user_id="john")
    feedback = FeedbackSubmitted(producer=PRODUCER, request_id="q-1", thumb="down", comment=f"Write to {ASKER}")
    async with (
        watching(kafka, [QueryRedacted, FeedbackRedacted, DocumentRedacted, MessageDeadLettered]) as seen,
        running(create_app(PrivacySettings(kafka=kafka, platform=platform))),
        PlatformClient(kafka, "test", platform) as client,
    ):
        # Delivered twice: one redaction.
        await produce_raw(kafka, Topic.QUERY_SUBMITTED, [_raw(question), _raw(question), (b"q-broken", b"{}")])
        await produce_raw(kafka, Topic.FEEDBACK_SUBMITTED, [_raw(feedback)])
        big = client.document("big", f"Mail {ADDRESS} about refunds. " * 200, subject_id="jane")
        await client.publish(big_sent := await asyncio.to_thread(_checked_in, big, platform))
        await wait_for(
            seen,
            lambda events: (
                {type(e) for e in events} >= {QueryRedacted, FeedbackRedacted, DocumentRedacted}
                and any(isinstance(e, MessageDeadLettered) for e in events)
            ),
        )

    [redacted] = {e.event_id: e for e in seen if isinstance(e, QueryRedacted)}.values()
    assert redacted.event_id == derived_event_id("QueryRedacted", question.event_id, "")
    assert redacted.trace_id == question.trace_id and redacted.request_id == "q-1"
    assert "<EMAIL_ADDRESS>" in redacted.question and redacted.redactions["EMAIL_ADDRESS"] == 1
    assert redacted.user_id not in {None, "john"}
    [commented] = [e for e in seen if isinstance(e, FeedbackRedacted)]
    assert commented.comment == "Write to <EMAIL_ADDRESS>" and commented.user_id is None
    [document] = [e for e in seen if isinstance(e, DocumentRedacted)]
    assert document.content_ref is not None and document.redactions["EMAIL_ADDRESS"] == 200
    blobs = open_blob_store(platform)
    assert blobs is not None and ADDRESS not in blobs.get(document.content_ref).decode()
    assert big_sent.content_ref is not None
    assert not (tmp_path / "blobs" / big_sent.content_ref.sha256).exists(), "the raw blob is gone"
    assert all(ADDRESS not in e.model_dump_json() and ASKER not in e.model_dump_json() for e in seen)
    [letter] = [e for e in seen if isinstance(e, MessageDeadLettered)]
    assert letter.original_key == "q-broken" and letter.consumer_group == "ragops-privacy-queries"
    assert letter.error_type == "schema_validation"
    assert letter.truncated and letter.original_value_b64 == "" and letter.original_size == 2, "no raw bytes kept"


def _checked_in(event, platform: PlatformSettings):
    from ragops_shared.blobs import check_in

    return check_in(event, open_blob_store(platform), platform.inline_content_bytes)


async def test_a_document_whose_raw_blob_is_gone_is_dead_lettered_and_its_producer_told(kafka, tmp_path: Path) -> None:
    platform = PlatformSettings(data_dir=tmp_path, inline_content_bytes=1024)
    async with (
        running(create_app(PrivacySettings(kafka=kafka, platform=platform))),
        PlatformClient(kafka, "test", platform) as client,
    ):
        sent = await asyncio.to_thread(_checked_in, client.document("gone", "x " * 2000), platform)
        assert sent.content_ref is not None
        (tmp_path / "blobs" / sent.content_ref.sha256).unlink()
        [(_, outcome)] = await client.ingest([sent], timeout_s=60)
    assert isinstance(outcome, MessageDeadLettered) and outcome.producer.name == "privacy"
    assert outcome.error_type == "rejected" and "is not in" in outcome.reason


@pytest.mark.qdrant
@pytest.mark.model
@pytest.mark.clickhouse
@pytest.mark.slow
async def test_personal_data_never_reaches_a_chunk_an_answer_a_feedback_record_or_clickhouse(
    kafka, tmp_path: Path
) -> None:
    from ragops_analytics import queries
    from ragops_analytics.chdb_store import ChdbStore
    from ragops_embedding.app import create_app as embedding_app
    from ragops_embedding.settings import EmbeddingSettings
    from ragops_feedback.app import create_app as feedback_app
    from ragops_feedback.settings import FeedbackSettings
    from ragops_generation.app import create_app as generation_app
    from ragops_generation.settings import GenerationSettings
    from ragops_ingestion.app import create_app as ingestion_app
    from ragops_ingestion.settings import IngestionSettings
    from ragops_retrieval.app import create_app as retrieval_app
    from ragops_retrieval.settings import RetrievalSettings
    from ragops_sink.app import create_app as sink_app
    from ragops_sink.settings import SinkSettings

    platform = PlatformSettings(data_dir=tmp_path, torch_threads=1)
    apps = [
        create_app(PrivacySettings(kafka=kafka, platform=platform)),
        ingestion_app(IngestionSettings(kafka=kafka, platform=platform)),
        embedding_app(EmbeddingSettings(kafka=kafka, platform=platform)),
        retrieval_app(RetrievalSettings(kafka=kafka, platform=platform)),
        generation_app(GenerationSettings(kafka=kafka, platform=platform)),
        feedback_app(FeedbackSettings(kafka=kafka, platform=platform)),
        sink_app(SinkSettings(kafka=kafka, platform=platform, batch_wait_ms=50)),
    ]
    text = f"Refunds are paid within 30 days. Write to {ADDRESS} or call {PHONE} for a refund."
    async with AsyncExitStack() as stack:
        seen = await stack.enter_async_context(watching(kafka, [DocumentChunked, FeedbackRecorded]))
        for app in apps:
            await stack.enter_async_context(running(app))
        client = await stack.enter_async_context(PlatformClient(kafka, "test", platform))
        [(_, indexed)] = await client.ingest([client.document("refunds", text, subject_id="jane")], timeout_s=300)
        assert isinstance(indexed, DocumentIndexed), indexed
        [trace] = await client.ask(
            [client.question(f"I am {ASKER}, phone {PHONE}: when are refunds paid?", user_id="john")], timeout_s=300
        )
        answer = trace.outcome
        assert isinstance(answer, AnswerGenerated), answer
        comment = FeedbackSubmitted(
            producer=client.producer, request_id=answer.request_id, comment=f"Mail {ASKER}", user_id="john"
        )
        [recorded] = await client.send_feedback([comment])
        assert isinstance(recorded, FeedbackRecorded), recorded
        probe = ChdbStore(tmp_path / "clickhouse")
        kinds = {"document", "query", "feedback"}
        deadline = asyncio.get_running_loop().time() + 120
        try:
            while not queries.row_count(probe, "feedback") or {k for k, _ in queries.redaction_counts(probe)} != kinds:
                assert asyncio.get_running_loop().time() < deadline, "the sink did not store the events in time"
                await asyncio.sleep(0.5)
            stored = probe.query("SELECT payload FROM events").rows
            question = probe.query("SELECT question, redactions FROM queries FINAL").rows
            counts = queries.redaction_counts(probe)
        finally:
            probe.close()

    assert "<EMAIL_ADDRESS>" in answer.question and ASKER not in answer.model_dump_json()
    assert recorded.comment == "Mail <EMAIL_ADDRESS>" and recorded.user_id not in {None, "john"}
    chunks = [chunk.text for event in seen if isinstance(event, DocumentChunked) for chunk in event.chunks]
    assert chunks and all(ADDRESS not in chunk for chunk in chunks) and any("<EMAIL_ADDRESS>" in c for c in chunks)
    assert stored and not [payload for (payload,) in stored if ADDRESS in payload or ASKER in payload]
    [(asked, redactions)] = question
    assert "<EMAIL_ADDRESS>" in asked and redactions["EMAIL_ADDRESS"] == 1
    assert {("document", "EMAIL_ADDRESS"), ("query", "EMAIL_ADDRESS"), ("feedback", "EMAIL_ADDRESS")} <= set(counts)

"""Redelivery on a real broker: a service killed after publishing its outputs and before
committing its offsets gets the same batch again and publishes the same event ids (outputs
and dead letters alike), and a restarted embedding service republishes its model's
registration as the same fact (same id, same ``occurred_at``)."""

import pytest
from aiokafka import AIOKafkaConsumer

from ragops_embedding.app import create_app as embedding_app
from ragops_embedding.settings import EmbeddingSettings
from ragops_feedback.app import record
from ragops_generation.app import create_app as generation_app
from ragops_generation.settings import GenerationSettings
from ragops_ingestion.app import create_app as ingestion_app
from ragops_ingestion.settings import IngestionSettings
from ragops_schemas import (
    AnswerGenerated,
    ContextRetrieved,
    DocumentChunked,
    DocumentRedacted,
    DocumentRejected,
    FeedbackRedacted,
    MessageDeadLettered,
    Topic,
    VersionRegistered,
)
from ragops_schemas.ids import dead_letter_event_id, derived_event_id
from ragops_shared.settings import PlatformSettings
from ragops_shared.shredding import FileKeyStore, Shredder
from tests.helpers import PRODUCER, example
from tests.integration.services import produce_raw, running, wait_for, watching


async def _no_commit(self: AIOKafkaConsumer, offsets: object = None) -> None:
    """The process dies between publishing and committing: the commit never happens."""


@pytest.mark.kafka
@pytest.mark.model
async def test_a_batch_redelivered_after_publishing_republishes_the_same_ids(
    kafka, monkeypatch: pytest.MonkeyPatch
) -> None:
    valid = DocumentRedacted(producer=PRODUCER, document_id="doc-1", content="Refunds within 30 days.")
    empty = DocumentRedacted(
        producer=PRODUCER, document_id="doc-empty", content="<html></html>", content_type="text/html"
    )
    records = [
        (valid.key, valid.model_dump_json().encode()),
        (empty.key, empty.model_dump_json().encode()),
        (b"bad", b"not json"),
    ]
    async with watching(kafka, [DocumentChunked, DocumentRejected, MessageDeadLettered]) as seen:
        await produce_raw(kafka, Topic.DOCUMENT_REDACTED, records)
        with monkeypatch.context() as crash:
            crash.setattr(AIOKafkaConsumer, "commit", _no_commit)
            async with running(ingestion_app(IngestionSettings(kafka=kafka))):
                await wait_for(seen, lambda events: len(events) >= 3)
        # Restarted with nothing committed: the group starts again at the earliest offset.
        async with running(ingestion_app(IngestionSettings(kafka=kafka))):
            await wait_for(seen, lambda events: len(events) >= 6)

    by_type: dict[type, list] = {}
    for event in seen:
        by_type.setdefault(type(event), []).append(event)
    assert {t: len(events) for t, events in by_type.items()} == {
        DocumentChunked: 2,
        DocumentRejected: 2,
        MessageDeadLettered: 2,
    }, "each output was published twice (once per delivery)"
    for events in by_type.values():
        first, again = events
        assert first.event_id == again.event_id, type(first).__name__
    assert by_type[DocumentChunked][0].event_id == derived_event_id("DocumentChunked", valid.event_id)
    assert by_type[DocumentRejected][0].event_id == derived_event_id("DocumentRejected", empty.event_id)
    letter = by_type[MessageDeadLettered][0]
    assert letter.event_id == dead_letter_event_id(
        letter.original_topic, letter.partition, letter.offset, "ragops-ingestion"
    )


@pytest.mark.kafka
@pytest.mark.model
async def test_generation_killed_between_publishing_and_committing_answers_again_under_the_same_id(
    kafka, tmp_path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The publish-then-commit window of generation, made certain: the first process never
    commits, so the restarted one gets the same retrieval again; its answer has the first
    answer's id, so ClickHouse and the consumers see one answer."""
    retrieved = example(ContextRetrieved)
    settings = GenerationSettings(kafka=kafka, platform=PlatformSettings(data_dir=tmp_path))
    async with watching(kafka, [AnswerGenerated]) as seen:
        await produce_raw(kafka, Topic.CONTEXT_RETRIEVED, [(retrieved.key, retrieved.model_dump_json().encode())])
        with monkeypatch.context() as crash:
            crash.setattr(AIOKafkaConsumer, "commit", _no_commit)
            async with running(generation_app(settings)):
                await wait_for(seen, lambda events: len(events) >= 1, timeout_s=300)
        async with running(generation_app(settings)):
            await wait_for(seen, lambda events: len(events) >= 2, timeout_s=300)
    first, again = seen
    assert first.request_id == again.request_id == retrieved.request_id
    assert first.event_id == again.event_id == derived_event_id("AnswerGenerated", retrieved.event_id)


@pytest.mark.kafka
@pytest.mark.model
async def test_a_restarted_embedding_service_republishes_the_same_registration(kafka, tmp_path) -> None:
    settings = EmbeddingSettings(kafka=kafka, platform=PlatformSettings(data_dir=tmp_path))
    async with watching(kafka, [VersionRegistered]) as seen:
        async with running(embedding_app(settings)):
            await wait_for(seen, lambda events: len(events) >= 1)
        async with running(embedding_app(settings)):
            await wait_for(seen, lambda events: len(events) >= 2, timeout_s=300)
    first, again = seen
    assert isinstance(first, VersionRegistered) and isinstance(again, VersionRegistered)
    assert (again.event_id, again.occurred_at) == (first.event_id, first.occurred_at)
    assert again.model_dump(include={"kind", "name", "version", "uri"}) == first.model_dump(
        include={"kind", "name", "version", "uri"}
    )


def test_feedback_recorded_again_gets_the_same_ids(tmp_path) -> None:
    answer = example(AnswerGenerated)
    feedback = FeedbackRedacted(producer=PRODUCER, request_id=answer.request_id, thumb="down", corrected_answer="X")
    shredder = Shredder(FileKeyStore.under(tmp_path))
    first, again = (record(feedback, answer, PRODUCER, "feedback", shredder) for _ in range(2))
    assert [e.event_id for e in first] == [e.event_id for e in again]
    assert [e.event_id for e in first] == [
        derived_event_id("FeedbackRecorded", feedback.event_id),
        derived_event_id("DatasetExampleAdded", feedback.event_id),
    ]

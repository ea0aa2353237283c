"""The trainer service on a real broker: requests it cannot act on end in
``RetrainingRejected`` with the reason, nothing is registered or promoted for them, and a
redelivered request is not run twice. (The runs that succeed are exercised end to end in
tests/e2e/test_improvement_loop.py.)"""

import json
from datetime import UTC, datetime
from pathlib import Path

import pytest

from ragops_schemas import (
    CandidateEvaluated,
    Chunk,
    ChunkerInfo,
    DatasetExampleAdded,
    DocumentChunked,
    Event,
    RetrainingRejected,
    RetrainingRequested,
    TrainingFailed,
    TrainingStarted,
    VersionPromoted,
    VersionRegistered,
)
from ragops_schemas.lifecycle import LIFECYCLE_EVENT_TYPES, VersionRef
from ragops_shared.broker import EventPublisher, make_broker
from ragops_shared.settings import KafkaSettings
from ragops_shared.signing import signer_for
from ragops_trainer.app import create_app
from ragops_trainer.pairs import TrainingPair, latest_documents, training_pairs
from ragops_trainer.settings import TrainerSettings
from tests.helpers import PRODUCER as P, VERIFIER
from tests.integration.services import running, wait_for, watching

CHUNKER = ChunkerInfo(tokenizer="t", chunk_size=200, overlap=32)


def chunked(document_id: str, version: str, *texts: str, at: datetime | None = None) -> DocumentChunked:
    return DocumentChunked(
        producer=P,
        occurred_at=at or datetime.now(UTC),
        document_id=document_id,
        document_version=version,
        content_type="text/plain",
        chunker=CHUNKER,
        chunks=[
            Chunk(chunk_id=f"{document_id}-{i}", index=i, text=t, token_count=5, char_start=0, char_end=len(t))
            for i, t in enumerate(texts)
        ],
    )


def example(question: str, answer: str, *documents: str) -> DatasetExampleAdded:
    return DatasetExampleAdded(
        producer=P,
        dataset="feedback",
        example_id=question,
        question=question,
        reference_answer=answer,
        reference_context_ids=list(documents),
        source="correction",
        request_id=question,
        feedback_event_id=question,
    )


def test_training_pairs_keep_only_passages_that_hold_the_answer() -> None:
    old = chunked("rhine", "v1", "The Rhine is long.", at=datetime(2026, 1, 1, tzinfo=UTC))
    new = chunked(
        "rhine",
        "v2",
        "The Rhine flows through Basel.",
        "It ends in the North Sea.",
        at=datetime(2026, 1, 2, tzinfo=UTC),
    )
    documents = latest_documents([new, old], VERIFIER)
    assert documents["rhine"].document_version == "v2", "the latest version, whatever the read order"
    pairs = training_pairs(
        [
            example("Where does the Rhine end?", "the North Sea", "rhine"),
            example("Where does the Rhine end?", "the North Sea", "rhine"),  # the same pair twice counts once
            example("Who wrote Faust?", "Goethe", "rhine"),  # the referenced passage does not hold the answer
            example("Which city?", "Basel", "unknown-document"),
        ],
        documents,
    )
    assert pairs == [TrainingPair(question="Where does the Rhine end?", passage="It ends in the North Sea.")]


@pytest.mark.kafka
async def test_requests_the_trainer_cannot_act_on_are_rejected_with_the_reason(
    kafka: KafkaSettings, tmp_path: Path
) -> None:
    settings = TrainerSettings(kafka=kafka, min_pairs=5, platform={"data_dir": tmp_path})
    broker = make_broker(kafka, "test-producer")
    publisher = EventPublisher(  # signs the registration as the embedding service would
        broker,
        P,
        [RetrainingRequested, VersionRegistered, DocumentChunked, DatasetExampleAdded],
        signer=signer_for(settings.platform, "embedding"),
    )
    await broker.start()
    try:
        # The embedding service registers its model; two examples are far below min_pairs.
        await publisher.publish(
            VersionRegistered(
                producer=P,
                kind="embedding_model",
                name=settings.embedding_model_name,
                version="base",
                uri=str(tmp_path / "models" / "base"),
            )
        )
        await publisher.publish(chunked("rhine", "v1", "It ends in the North Sea."))
        await publisher.publish(example("Where does the Rhine end?", "the North Sea", "rhine"))
        requests = [
            RetrainingRequested(producer=P, action="finetune_embedding", reason="test"),
            RetrainingRequested(
                producer=P,
                action="reindex",
                reason="test",
                target=VersionRef(kind="embedding_model", name="m", version="nope"),
            ),
            RetrainingRequested(producer=P, action="refresh_corpus", reason="test"),
            RetrainingRequested(producer=P, action="rollback_prompt", reason="test"),
        ]
        async with watching(kafka, LIFECYCLE_EVENT_TYPES) as seen, running(create_app(settings)):
            for request in requests:
                await publisher.publish(request)
            await wait_for(seen, lambda events: len([e for e in events if isinstance(e, RetrainingRejected)]) == 4, 120)
            rejected = {e.action: e.reason for e in seen if isinstance(e, RetrainingRejected)}
            assert "too little data: 1 usable (question, passage) pairs" in rejected["finetune_embedding"]
            assert "unknown version embedding_model/m@nope" in rejected["reindex"]
            assert "no corpus sources configured" in rejected["refresh_corpus"]
            assert "no ClickHouse" in rejected["rollback_prompt"]
            assert not [e for e in seen if isinstance(e, TrainingStarted | VersionPromoted)], (
                "nothing started or promoted"
            )

            # A redelivered request (same event id) is answered once.
            await publisher.publish(requests[0])
            await publisher.publish(RetrainingRequested(producer=P, action="refresh_corpus", reason="after"))
            await wait_for(seen, lambda events: len([e for e in events if isinstance(e, RetrainingRejected)]) >= 5, 60)
            answered: list[Event] = [e for e in seen if isinstance(e, RetrainingRejected)]
            assert [e.request_event_id for e in answered].count(str(requests[0].event_id)) == 1
    finally:
        await broker.stop()


@pytest.mark.kafka
@pytest.mark.model
async def test_a_fine_tune_that_runs_out_of_time_fails_and_promotes_nothing(
    kafka: KafkaSettings,
    tmp_path: Path,
    data_dir: Path,
) -> None:
    from ragops_models.defaults import DEFAULT_EMBEDDING_MODEL_NAME, default_embedding_model_dir
    from ragops_shared.datasets import load_corpus, load_questions

    passages = [d for d in load_corpus(data_dir / "corpus.jsonl") if d.id.startswith("Packet_switching-")]
    questions = [
        q for q in load_questions(data_dir / "questions-all.jsonl") if q.context_ids[0].startswith("Packet_switching-")
    ]
    holdout = tmp_path / "holdout.jsonl"
    holdout.write_text("".join(json.dumps(q.__dict__) + "\n" for q in questions[:12]))
    settings = TrainerSettings(
        kafka=kafka,
        min_pairs=4,
        holdout=holdout,
        max_train_seconds=0.01,
        platform={"data_dir": tmp_path},
    )
    broker = make_broker(kafka, "test-producer")
    publisher = EventPublisher(  # signs the registration as the embedding service would
        broker,
        P,
        [RetrainingRequested, VersionRegistered, DocumentChunked, DatasetExampleAdded],
        signer=signer_for(settings.platform, "embedding"),
    )
    await broker.start()
    try:
        await publisher.publish(
            VersionRegistered(
                producer=P,
                kind="embedding_model",
                name=DEFAULT_EMBEDDING_MODEL_NAME,
                version="base",
                uri=str(default_embedding_model_dir()),
            )
        )
        for passage in passages:
            await publisher.publish(chunked(passage.id, "v1", passage.text))
        for q in questions[12:40]:
            await publisher.publish(example(q.question, q.answers[0], q.context_ids[0]))
        request = RetrainingRequested(producer=P, action="finetune_embedding", reason="test")
        async with watching(kafka, LIFECYCLE_EVENT_TYPES) as seen, running(create_app(settings)):
            await publisher.publish(request)
            await wait_for(seen, lambda events: any(isinstance(e, TrainingFailed) for e in events), 180)
        failed = next(e for e in seen if isinstance(e, TrainingFailed))
        assert (
            failed.timed_out and failed.request_event_id == str(request.event_id) and "ran out of time" in failed.reason
        )
        assert any(isinstance(e, TrainingStarted) for e in seen)
        assert not [e for e in seen if isinstance(e, VersionPromoted | CandidateEvaluated)], "nothing half-promoted"
        assert not [e for e in seen if isinstance(e, VersionRegistered) and e.kind == "embedding_model"]
        assert not list((tmp_path / "models" / "embedding").glob("*")), "no half-written model left behind"
    finally:
        await broker.stop()

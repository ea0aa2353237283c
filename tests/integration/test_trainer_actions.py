"""The trainer's actions that succeed or break, on a real broker (Tansu), a real ClickHouse
engine (chDB) and the real embedding model: requests in, lifecycle events out.

- ``rollback_prompt`` promotes the last earlier prompt version that scored better over
  enough answers;
- a run that crashes ends in ``TrainingFailed`` with the error, and the next request is
  served;
- the fine-tune's promotion: a candidate that wins on held-out questions is promoted (after
  its index is rebuilt by the real embedding and retrieval services); one that wins by less
  than ``min_improvement``, or without McNemar's p below ``promotion_alpha``, is rejected.

The fine-tune's outcome is made known in advance: the held-out questions are ones the live
model misses (its hit@5 on them is measured first), and the feedback holds the same questions
lowercased (the model's tokenizer lowercases, so the trainer's exact-text split keeps them
held out while training sees what they ask). The candidate then gains most of them (11 of 12
when this was written), the live model none."""

import json
import re
import uuid
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pytest
from aiokafka import TopicPartition

from ragops_analytics.chdb_store import ChdbStore
from ragops_models.defaults import DEFAULT_EMBEDDING_MODEL_NAME, default_embedding_model_dir
from ragops_schemas import (
    AnswerEvaluated,
    CandidateEvaluated,
    Chunk,
    ChunkerInfo,
    DatasetExampleAdded,
    DocumentChunked,
    EvaluationScore,
    Event,
    Producer,
    PromptRef,
    RetrainingRejected,
    RetrainingRequested,
    Topic,
    TrainingFailed,
    TrainingStarted,
    VersionPromoted,
    VersionRegistered,
    VersionRejected,
)
from ragops_schemas.changes import ChangeRequested, PromoteChange
from ragops_schemas.ids import change_id
from ragops_schemas.lifecycle import LIFECYCLE_EVENT_TYPES
from ragops_schemas.registry import Registry
from ragops_shared.broker import EventPublisher, make_broker
from ragops_shared.datasets import CorpusDocument, Question, load_corpus, load_questions
from ragops_shared.settings import KafkaSettings, PlatformSettings
from ragops_shared.signing import embedded_keys, signer_for
from ragops_shared.watch import end_offsets
from ragops_trainer.app import Trainer, create_app
from ragops_trainer.context import TrainerContext
from ragops_trainer.settings import TrainerSettings
from tests.integration.services import running, wait_for, watching
from tests.integration.test_monitor import save

P = Producer(name="test", version="0")
ARTICLE = "Super_Bowl_50"
"""54 passages about one game: alike enough that the base model misses 1 question in 9."""
HELD_OUT = 12


@pytest.fixture
def store(chdb_store: ChdbStore) -> ChdbStore:
    """A migrated chDB store in tmp_path (the monitor reads it directly)."""
    return chdb_store


# Declared before the broker starts; the lifecycle events also serve a Trainer driven directly.
PUBLISHED = [*LIFECYCLE_EVENT_TYPES, ChangeRequested, DocumentChunked, DatasetExampleAdded]


@pytest.fixture
async def publisher(kafka: KafkaSettings, tmp_path: Path) -> AsyncIterator[EventPublisher]:
    broker = make_broker(kafka, "test-producer")
    await broker.start()
    try:
        # Signs the live model's registration as the embedding service would (tmp_path's embedded keys).
        yield EventPublisher(broker, P, PUBLISHED, signer=signer_for(PlatformSettings(data_dir=tmp_path), "embedding"))
    finally:
        await broker.stop()


def request(action: str) -> RetrainingRequested:
    return RetrainingRequested(producer=P, action=action, reason="test")


def ended(events: list[Event]) -> list[Event]:
    """The events that end a request."""
    return [
        e
        for e in events
        if isinstance(e, RetrainingRejected | TrainingFailed)
        or (isinstance(e, VersionRejected) and e.kind == "embedding_model")
        or (isinstance(e, VersionPromoted) and e.kind == "embedding_model" and e.alias == "production")
    ]


# ------------------------------------------------------------------------ prompt rollback


def scored(version: int, mean: float, count: int, start: datetime, rng: np.random.Generator) -> list[Event]:
    """``count`` answers of prompt ``rag-answer`` ``version`` with faithfulness about ``mean``, a second apart."""
    return [
        AnswerEvaluated(
            producer=P,
            occurred_at=start + timedelta(seconds=i),
            request_id=str(uuid.uuid4()),
            scores=[
                EvaluationScore(
                    name="faithfulness",
                    value=float(np.clip(rng.normal(mean, 0.05), 0, 1)),
                    method="token_support_v1",
                    reference_based=False,
                )
            ],
            answer_event_id="a",
            prompt=PromptRef(name="rag-answer", version=version, sha256=str(version)),
            generation_model="g",
            embedding_model="m",
            collection="c",
        )
        for i in range(count)
    ]


def prompt_history(store: ChdbStore) -> Registry:
    """Answers of four prompt versions in ``store``: versions 1 and 2 served well, 2 the later;
    version 3 scored best but on too few answers; version 4 is in production (the registry
    returned) and scores worst."""
    rng = np.random.default_rng(0)
    day = datetime(2026, 11, 1, tzinfo=UTC)
    save(
        store,
        scored(1, 0.85, 40, day, rng)
        + scored(2, 0.8, 40, day + timedelta(hours=1), rng)
        + scored(3, 0.95, 10, day + timedelta(hours=2), rng)
        + scored(4, 0.5, 40, day + timedelta(hours=3), rng),
    )
    registry = Registry()
    registry.apply(
        VersionPromoted(
            producer=P,
            occurred_at=day + timedelta(hours=3),
            kind="prompt",
            name="rag-answer",
            version="4",
            previous_version="3",
            reason="a new prompt",
        )
    )
    return registry


@pytest.mark.kafka
@pytest.mark.clickhouse
async def test_rollback_promotes_the_last_earlier_prompt_that_scored_better_over_enough_answers(
    kafka: KafkaSettings,
    publisher: EventPublisher,
    store: ChdbStore,
    tmp_path: Path,
) -> None:
    registry = prompt_history(store)
    settings = TrainerSettings(kafka=kafka, min_answers=30, platform={"data_dir": tmp_path})
    trainer = Trainer(TrainerContext(settings, publisher, registry, store))
    rollback = request("rollback_prompt")
    async with watching(kafka, LIFECYCLE_EVENT_TYPES) as seen:
        await trainer.handle([rollback])
        await wait_for(
            seen,
            lambda events: any(isinstance(e, VersionPromoted | RetrainingRejected | TrainingFailed) for e in events),
        )
    assert not [e for e in seen if isinstance(e, RetrainingRejected | TrainingFailed)], seen
    assert any(isinstance(e, TrainingStarted) and e.request_event_id == str(rollback.event_id) for e in seen)
    [promoted] = [e for e in seen if isinstance(e, VersionPromoted)]
    assert (promoted.kind, promoted.name, promoted.version, promoted.previous_version) == (
        "prompt",
        "rag-answer",
        "2",
        "4",
    )
    assert promoted.alias == "production" and promoted.request_event_id == str(rollback.event_id)
    assert promoted.metrics["faithfulness_restored"] > 0.75 and promoted.metrics["faithfulness_replaced"] < 0.55
    assert registry.alias("prompt", "rag-answer").ref.version == "2", "the trainer's own registry moved too"


@pytest.mark.kafka
@pytest.mark.clickhouse
async def test_under_the_approval_policy_the_trainer_requests_its_promotion_and_moves_nothing(
    kafka: KafkaSettings,
    publisher: EventPublisher,
    store: ChdbStore,
    tmp_path: Path,
) -> None:
    registry = prompt_history(store)
    settings = TrainerSettings(kafka=kafka, min_answers=30, promotion="approval", platform={"data_dir": tmp_path})
    trainer = Trainer(TrainerContext(settings, publisher, registry, store))
    rollback = request("rollback_prompt")
    async with watching(kafka, [*LIFECYCLE_EVENT_TYPES, ChangeRequested]) as seen:
        await trainer.handle([rollback])
        await wait_for(
            seen,
            lambda events: any(isinstance(e, ChangeRequested | RetrainingRejected | TrainingFailed) for e in events),
        )
    assert not [e for e in seen if isinstance(e, VersionPromoted | RetrainingRejected | TrainingFailed)], seen
    [requested] = [e for e in seen if isinstance(e, ChangeRequested)]
    change = requested.change
    assert isinstance(change, PromoteChange)
    assert (change.version.kind, change.version.name, change.version.version, change.previous_version) == (
        "prompt",
        "rag-answer",
        "2",
        "4",
    )
    assert change.alias == "production" and change.request_event_id == str(rollback.event_id)
    assert (requested.requested_by.subject, requested.requested_by.kind) == (f"service:{P.name}", "service")
    assert requested.change_id == change_id(requested.event_id)
    assert registry.alias("prompt", "rag-answer").ref.version == "4", "nothing moves before a person approves"

    # Restarted, the trainer finds the request answered (its promotion awaits a person) and
    # does not run it again when it is redelivered.
    restarted = Trainer(TrainerContext(settings, publisher, registry, store))
    await restarted.restore()
    await restarted.handle([rollback])
    started = [TopicPartition(Topic.TRAINING_STARTED.value, partition) for partition in range(3)]
    assert sum((await end_offsets(kafka, started)).values()) == 1, "the rollback ran once"


# ------------------------------------------------------------------------ fine-tune


@pytest.fixture(scope="module")
def article(data_dir: Path) -> tuple[list[CorpusDocument], list[Question]]:
    """ARTICLE's passages, and HELD_OUT of its questions whose gold passage the live (base)
    model does not rank in its top 5 among them."""
    from ragops_trainer.finetune import hits_at_k

    documents = [d for d in load_corpus(data_dir / "corpus.jsonl") if d.id.rsplit("-p", 1)[0] == ARTICLE]
    questions = [
        q
        for q in load_questions(data_dir / "questions-all.jsonl", count=None)
        if q.context_ids[0].rsplit("-p", 1)[0] == ARTICLE
    ][:200]
    hits = hits_at_k(
        default_embedding_model_dir(),
        [(d.id, d.text) for d in documents],
        [(q.question, set(q.context_ids)) for q in questions],
        k=5,
        torch_threads=2,
    )
    missed = [q for q, hit in zip(questions, hits, strict=True) if not hit][:HELD_OUT]
    assert len(missed) == HELD_OUT
    return documents, missed


def trainer_settings(
    kafka: KafkaSettings, tmp_path: Path, holdout: list[Question], **overrides: object
) -> TrainerSettings:
    path = tmp_path / "holdout.jsonl"
    path.write_text("".join(json.dumps(q.__dict__) + "\n" for q in holdout))
    return TrainerSettings(
        **{
            "kafka": kafka,
            "min_pairs": 4,
            "holdout": path,
            "epochs": 2,
            "batch_size": 8,
            "learning_rate": 1e-4,
            "build_timeout_s": 300,
            "platform": {"data_dir": tmp_path, "torch_threads": 2},
            **overrides,
        }
    )


async def seed_feedback(
    publisher: EventPublisher, documents: list[CorpusDocument], questions: list[Question], live_model: Path
) -> None:
    """The live model's registration, the article as the index holds it (one chunk per
    passage), and the feedback: each question lowercased with its answer and gold passage."""
    await publisher.publish(
        VersionRegistered(
            producer=P, kind="embedding_model", name=DEFAULT_EMBEDDING_MODEL_NAME, version="base", uri=str(live_model)
        )
    )
    chunker = ChunkerInfo(tokenizer="t", chunk_size=512, overlap=0)
    for d in documents:
        await publisher.publish(
            DocumentChunked(
                producer=P,
                document_id=d.id,
                document_version="v1",
                content_type="text/plain",
                chunker=chunker,
                chunks=[
                    Chunk(
                        chunk_id=f"{d.id}-0",
                        index=0,
                        text=d.text,
                        token_count=len(d.text.split()),
                        char_start=0,
                        char_end=len(d.text),
                    )
                ],
            )
        )
    for q in questions:
        asked = q.question.lower()
        await publisher.publish(
            DatasetExampleAdded(
                producer=P,
                dataset="feedback",
                example_id=asked,
                question=asked,
                reference_answer=q.answers[0],
                reference_context_ids=q.context_ids,
                source="correction",
                request_id=asked,
                feedback_event_id=asked,
            )
        )


@asynccontextmanager
async def indexer(kafka: KafkaSettings, data_dir: Path) -> AsyncIterator[None]:
    """The real embedding and retrieval services, which build the index a promotion waits for.
    Their data lives in ``data_dir``; they trust the keys of, and load models from, its parent
    (the trainer's data directory)."""
    from ragops_embedding.app import EmbeddingSettings, create_app as embedding_app
    from ragops_retrieval.app import RetrievalSettings, create_app as retrieval_app

    trainer_dir = data_dir.parent
    signing = {
        "key_file": trainer_dir / "keys" / "embedding.pem",
        "trust_file": embedded_keys(trainer_dir / "keys"),
        "model_dirs": [trainer_dir / "models"],
    }
    platform = {"data_dir": data_dir, "torch_threads": 2, "signing": signing}
    async with AsyncExitStack() as stack:
        await stack.enter_async_context(running(embedding_app(EmbeddingSettings(kafka=kafka, platform=platform))))
        await stack.enter_async_context(running(retrieval_app(RetrievalSettings(kafka=kafka, platform=platform))))
        yield


@pytest.mark.kafka
@pytest.mark.model
@pytest.mark.slow
async def test_a_crash_mid_run_ends_in_training_failed_and_the_next_request_is_served(
    kafka: KafkaSettings,
    publisher: EventPublisher,
    tmp_path: Path,
    article,
) -> None:
    documents, held_out = article
    # The live model's files are gone: training breaks after it started.
    broken = tmp_path / "models" / "no-model"
    broken.mkdir(parents=True)
    await seed_feedback(publisher, documents, held_out, broken)
    finetune, after = request("finetune_embedding"), request("rollback_prompt")
    async with (
        watching(kafka, LIFECYCLE_EVENT_TYPES) as seen,
        running(create_app(trainer_settings(kafka, tmp_path, held_out))),
    ):
        await publisher.publish(finetune)
        await wait_for(seen, lambda events: bool(ended(events)), 300)
        await publisher.publish(after)  # after the crash: requests of distinct keys may be read in any order
        await wait_for(seen, lambda events: len(ended(events)) == 2, 60)
    failed, rejected = ended(seen)
    assert isinstance(failed, TrainingFailed) and failed.request_event_id == str(finetune.event_id)
    # The reason is the error (its type, which transformers version decides, and message).
    assert re.fullmatch(r"\w+Error: .+", failed.reason, re.DOTALL) and not failed.timed_out, failed.reason
    assert any(isinstance(e, TrainingStarted) and e.request_event_id == str(finetune.event_id) for e in seen)
    assert isinstance(rejected, RetrainingRejected) and rejected.request_event_id == str(after.event_id)
    assert not [e for e in seen if isinstance(e, VersionPromoted | CandidateEvaluated)]
    assert not [
        e for e in seen if isinstance(e, VersionRegistered) and e.kind == "embedding_model" and e.version != "base"
    ]


@pytest.mark.kafka
@pytest.mark.qdrant
@pytest.mark.model
@pytest.mark.slow
@pytest.mark.parametrize(
    ("gates", "decision"),
    [
        ({"min_improvement": 0.25, "promotion_alpha": 0.05}, "promote"),  # a clear win passes both gates
        ({"min_improvement": 1.0}, "reject"),  # hit@5 cannot gain more than 1: any gain is too small
        ({"promotion_alpha": 1e-4}, "reject"),  # 12 questions cannot give McNemar p below 2 / 2^12
    ],
)
async def test_a_fine_tune_is_promoted_only_through_both_gates(
    kafka: KafkaSettings,
    publisher: EventPublisher,
    tmp_path: Path,
    article,
    gates: dict,
    decision: str,
) -> None:
    documents, held_out = article
    await seed_feedback(publisher, documents, held_out, default_embedding_model_dir())
    finetune = request("finetune_embedding")
    # Without an indexer a wrongful promotion would wait for its build: let it fail fast.
    settings = trainer_settings(
        kafka, tmp_path, held_out, build_timeout_s=300 if decision == "promote" else 20, **gates
    )
    async with AsyncExitStack() as stack:
        seen = await stack.enter_async_context(watching(kafka, LIFECYCLE_EVENT_TYPES))
        if decision == "promote":
            await stack.enter_async_context(indexer(kafka, tmp_path / "services"))
        await stack.enter_async_context(running(create_app(settings)))
        await publisher.publish(finetune)
        await wait_for(seen, lambda events: bool(ended(events)), 600)
    [evaluated] = [e for e in seen if isinstance(e, CandidateEvaluated)]
    assert evaluated.questions == HELD_OUT and evaluated.decision == decision
    # The candidate did win: a rejection below is the gate's doing, not a worse model.
    assert evaluated.candidate_value > evaluated.live_value, (evaluated.candidate_value, evaluated.live_value)
    [outcome] = ended(seen)
    promotions = [e for e in seen if isinstance(e, VersionPromoted) and e.alias == "production"]
    if decision == "promote":
        assert isinstance(outcome, VersionPromoted), outcome
        assert outcome.version == evaluated.candidate.version and outcome.previous_version == "base"
        # The index of the new model was built and went live first (by time: the two
        # promotions have different keys, so they may sit on different partitions).
        promotions.sort(key=lambda e: e.occurred_at)
        assert [e.kind for e in promotions] == ["index", "embedding_model"]
        assert promotions[0].metrics["documents"] == len(documents)
    else:
        assert isinstance(outcome, VersionRejected), outcome
        assert outcome.version == evaluated.candidate.version and not promotions
        gain = evaluated.candidate_value - evaluated.live_value
        assert gain < gates.get("min_improvement", 0) or evaluated.p_value >= gates["promotion_alpha"]

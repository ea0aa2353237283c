"""The review queue and labels on a real ClickHouse engine (chDB, migrated): the queue mixes
its three strata, leaves out reviewed answers, evaluation runs and other tenants; labels read
the latest per (answer, reviewer); a subject's erasure removes the reviews of its requests."""

import uuid
from datetime import UTC, datetime, timedelta

import pytest

from ragops_analytics import queries
from ragops_analytics.chdb_store import ChdbStore
from ragops_schemas import AnswerEvaluated, AnswerGenerated, Event, FeedbackRecorded
from ragops_schemas.events import EvaluationContext
from ragops_schemas.review import AnswerReviewed
from ragops_sink.rows import events_to_arrow, to_row
from tests.helpers import example, record_of

pytestmark = pytest.mark.clickhouse
T0 = datetime(2026, 12, 1, 9, 0, tzinfo=UTC)


def _store(store: ChdbStore, events: list[Event]) -> None:
    now = datetime.now(UTC)
    queries.insert_events(
        store, events_to_arrow([to_row(record_of(event, offset), now) for offset, event in enumerate(events)])
    )


def _answer(request_id: str, minute: int, *, tenant: str = "acme", run_id: str | None = None) -> AnswerGenerated:
    return example(AnswerGenerated).model_copy(
        update={
            "tenant": tenant,
            "request_id": request_id,
            "event_id": uuid.uuid4(),
            "occurred_at": T0 + timedelta(minutes=minute),
            "answer": f"answer {request_id}",
            "evaluation": EvaluationContext(run_id=run_id) if run_id else None,
        }
    )


def _scores(request_id: str, faithfulness: float, *, tenant: str = "acme") -> AnswerEvaluated:
    scored = example(AnswerEvaluated)
    scores = [
        score.model_copy(update={"value": faithfulness}) if score.name == "faithfulness" else score
        for score in scored.scores
    ]
    return scored.model_copy(
        update={"tenant": tenant, "request_id": request_id, "event_id": uuid.uuid4(), "scores": scores}
    )


def _review(request_id: str, *, correct: bool, minute: int = 0, reviewer: str = "person:rita") -> AnswerReviewed:
    return example(AnswerReviewed).model_copy(
        update={
            "tenant": "acme",
            "request_id": request_id,
            "event_id": uuid.uuid4(),
            "correct": correct,
            "reviewer": reviewer,
            "occurred_at": T0 + timedelta(minutes=minute),
        }
    )


def test_the_queue_mixes_the_strata_and_leaves_out_reviewed_runs_and_other_tenants(chdb_store: ChdbStore) -> None:
    answers = [_answer(f"r{i}", i) for i in range(6)]
    down = example(FeedbackRecorded).model_copy(
        update={"tenant": "acme", "request_id": "r5", "event_id": uuid.uuid4(), "thumb": "down"}
    )
    _store(
        chdb_store,
        [
            *answers,
            *(_scores(f"r{i}", 0.9) for i in range(6) if i != 3),
            _scores("r3", 0.1),  # the lowest-scoring
            down,
            _review("r0", correct=True),  # reviewed: out of the queue
            _answer("run-1", 7, run_id="eval-1"),  # an evaluation run's: out
            _answer("o1", 8, tenant="other"),
        ],
    )

    queue = queries.review_queue(chdb_store, "acme", 10)

    ids = [item.request_id for item in queue]
    assert sorted(ids) == ["r1", "r2", "r3", "r4", "r5"]
    # Round-robin: one of each stratum first (the lowest score, the thumbs-down), then the rest.
    assert [item.sampled_as for item in queue[:3]] == ["random", "low_score", "negative_feedback"]
    assert {item.sampled_as for item in queue[3:]} <= {"random", "low_score"}
    by_id = {item.request_id: item for item in queue}
    assert "r3" in ids[:2] and "r5" in ids[:3] and by_id["r5"].thumb == "down"
    first = by_id["r3"]
    assert first.answer == "answer r3" and first.question == answers[3].question
    assert first.answer_event_id == str(answers[3].event_id)
    assert first.scores["faithfulness"] == pytest.approx(0.1) and first.contexts[0]["chunk_id"]
    # Repeatable: the same queue again; every tenant's for a platform caller.
    assert [item.request_id for item in queries.review_queue(chdb_store, "acme", 10)] == ids
    assert "o1" in {item.request_id for item in queries.review_queue(chdb_store, None, 10)}
    assert len(queries.review_queue(chdb_store, "acme", 2)) == 2


def test_labels_are_the_latest_per_answer_and_reviewer_and_erased_with_the_subject(chdb_store: ChdbStore) -> None:
    _store(
        chdb_store,
        [
            _review("r1", correct=False, minute=1),
            _review("r1", correct=True, minute=2),  # replaces the first
            _review("r1", correct=False, minute=1, reviewer="person:sam"),
            _review("r2", correct=True, minute=1),
        ],
    )

    labels = queries.review_labels(chdb_store, "acme")

    assert [(label.request_id, label.reviewer, label.correct) for label in labels] == [
        ("r1", "person:rita", True),
        ("r1", "person:sam", False),
        ("r2", "person:rita", True),
    ]
    assert labels[0].corrected_answer == "France, since 911. Mail <EMAIL_ADDRESS>" and labels[0].grounded is True
    assert queries.review_labels(chdb_store, "other") == []
    assert queries.subject_rows(chdb_store, "acme", ["r1"], [])["reviews"] == 3
    queries.delete_subject_rows(chdb_store, "acme", ["r1"], [])
    assert [label.request_id for label in queries.review_labels(chdb_store, "acme")] == ["r2"]

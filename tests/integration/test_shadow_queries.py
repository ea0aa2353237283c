"""What a shadow replay reads and what the monitor counts, on a real ClickHouse engine (chDB with
the platform's migrations): the retained production questions of a tenant (a window or a
seeded sample; evaluation-run and shadow traffic left out), and the monitor's signals, which
must not count tagged runs as production."""

import uuid
from datetime import UTC, datetime, timedelta

import pytest

from ragops_analytics import queries
from ragops_analytics.chdb_store import ChdbStore
from ragops_schemas import AnswerEvaluated, EvaluationContext, QueryRedacted
from tests.helpers import example
from tests.integration.test_monitor import save

pytestmark = pytest.mark.clickhouse

START = datetime(2026, 11, 1, tzinfo=UTC)


def question(i: int, *, tenant: str = "default", run_id: str | None = None, reference: bool = False) -> QueryRedacted:
    """Question ``i``, asked ``i`` minutes after START; tagged with ``run_id`` if given."""
    evaluation = None
    if run_id is not None or reference:
        evaluation = EvaluationContext(run_id=run_id, reference_answers=["x"] if reference else [])
    return example(QueryRedacted).model_copy(
        update={
            "event_id": uuid.uuid4(),
            "request_id": f"q-{tenant}-{run_id or 'prod'}-{i:03d}",
            "question": f"question {i}",
            "tenant": tenant,
            "occurred_at": START + timedelta(minutes=i),
            "evaluation": evaluation,
        }
    )


def test_retained_questions_are_the_tenants_production_questions_in_a_window_or_a_seeded_sample(
    chdb_store: ChdbStore,
) -> None:
    production = [question(i) for i in range(30)]
    # A drift-demo style question: a reference but no run; it is production traffic.
    production.append(question(30, reference=True))
    save(
        chdb_store,
        [
            *production,
            *(question(i, run_id="shadow-20261101T000000Z-candidate") for i in range(10)),
            *(question(i, run_id="eval-20261101T000000Z") for i in range(10)),
            *(question(i, tenant="other") for i in range(10)),
        ],
    )

    everything = queries.retained_questions(chdb_store, "default")
    assert [q.request_id for q in everything] == [q.request_id for q in production]
    first = everything[0]
    assert (first.question, first.top_k, first.filters) == ("question 0", 5, {"title": ["Normans"]})
    assert first.asked_at == START

    window = queries.retained_questions(
        chdb_store, "default", since=START + timedelta(minutes=10), until=START + timedelta(minutes=20)
    )
    assert [q.question for q in window] == [f"question {i}" for i in range(10, 20)]

    sample = queries.retained_questions(chdb_store, "default", sample=12, seed=7)
    assert len(sample) == 12 and {q.request_id for q in sample} <= {q.request_id for q in production}
    assert queries.retained_questions(chdb_store, "default", sample=12, seed=7) == sample
    assert queries.retained_questions(chdb_store, "default", sample=12, seed=8) != sample
    assert (
        queries.retained_questions(chdb_store, "other", limit=3) == queries.retained_questions(chdb_store, "other")[:3]
    )


def test_the_monitors_signals_leave_out_evaluation_run_and_shadow_traffic(chdb_store: ChdbStore) -> None:
    template = example(AnswerEvaluated)
    metric = template.scores[0].name

    def scored(q: QueryRedacted, value: float) -> AnswerEvaluated:
        score = template.scores[0].model_copy(update={"value": value})
        return template.model_copy(
            update={
                "event_id": uuid.uuid4(),
                "request_id": q.request_id,
                "occurred_at": q.occurred_at + timedelta(seconds=1),
                "scores": [score],
                "run_id": q.evaluation.run_id if q.evaluation else None,
            }
        )

    production = [question(i) for i in range(5)]
    shadow = [question(i, run_id="shadow-20261101T000000Z-candidate") for i in range(5)]
    save(chdb_store, [*production, *shadow, *(scored(q, 0.9) for q in production), *(scored(q, 0.1) for q in shadow)])

    window = queries.reference_window(chdb_store, "evaluation_score", {"metric": metric}, since_ms=0, size=100)
    assert [value for _, value in window] == [0.9] * 5
    current = queries.current_window(chdb_store, "evaluation_score", {"metric": metric}, after_ms=0, size=100)
    assert [value for _, value in current] == [0.9] * 5

"""The monitor's answer-quality signals and its baseline, against a real ClickHouse engine
(chDB with the platform's migrations): ``AnswerEvaluated`` and ``FeedbackRecorded`` rows in,
``DriftDetected`` / ``RetrainingRequested`` out.

- ``evaluation.<metric>`` fires when the scores fall, ``negative_feedback_rate`` when the
  share of negative feedback rises, and neither on unchanged traffic;
- a prompt promotion leaves the reference window where it was (a worse prompt shows as
  drift), a corpus, index or embedding-model promotion starts a new one (the new version is
  the new normal);
- a rule with ``only_if_prompt_changed`` asks for a rollback only when the production prompt
  changed after the reference window began."""

import uuid
from datetime import timedelta
from pathlib import Path

import numpy as np
import pytest

from ragops_analytics.chdb_store import ChdbStore
from ragops_monitor.app import Monitor
from ragops_monitor.policy import RetrainingPolicy
from ragops_schemas import (
    AnswerEvaluated,
    DriftDetected,
    EmbeddingModelInfo,
    EvaluationScore,
    Event,
    FeedbackRecorded,
    Lineage,
    PromptRef,
    RetrainingRequested,
    VersionPromoted,
)
from ragops_schemas.registry import Registry
from tests.integration.test_monitor import PRODUCER, START, run_ticks, settings

pytestmark = pytest.mark.clickhouse


@pytest.fixture
def store(chdb_store: ChdbStore) -> ChdbStore:
    """A migrated chDB store in tmp_path (the monitor reads it directly)."""
    return chdb_store


PROMPT = "rag-answer"
LINEAGE = Lineage(
    chunk_ids=["c"],
    document_versions={"d": "1"},
    embedding=EmbeddingModelInfo(name="m", version="v1", dimension=16),
    collection="c",
    retrieval_mode="hybrid",
    prompt=PromptRef(name=PROMPT, version=1, sha256="x"),
    generation_model="g",
    generation_model_version="1",
)
REGRESSION_POLICY = """
[[rules]]
name = "prompt-regression"
signals = ["evaluation.*"]
action = "rollback_prompt"
only_if_prompt_changed = true
"""


def evaluated(start: int, mean: float, count: int, rng: np.random.Generator) -> list[Event]:
    """``count`` answers scored ``faithfulness`` around ``mean``, one second apart from
    ``START + start`` seconds. (run_ticks stores ``2 * step`` events per tick.)"""
    return [
        AnswerEvaluated(
            producer=PRODUCER,
            occurred_at=START + timedelta(seconds=i),
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
            prompt=LINEAGE.prompt,
            generation_model="g",
            embedding_model="m",
            collection="c",
        )
        for i in range(start, start + count)
    ]


def feedback(start: int, negative_per_10: int, count: int) -> list[Event]:
    """``count`` feedback rows, ``negative_per_10`` of every 10 negative, one second apart."""
    return [
        FeedbackRecorded(
            producer=PRODUCER,
            occurred_at=START + timedelta(seconds=i),
            request_id=str(uuid.uuid4()),
            feedback_event_id="f",
            thumb="down" if i % 10 < negative_per_10 else "up",
            sentiment="negative" if i % 10 < negative_per_10 else "positive",
            question="q",
            answer="a",
            answer_event_id="a",
            lineage=LINEAGE,
        )
        for i in range(start, start + count)
    ]


def promotion(kind: str, at_s: float, version: str = "2") -> VersionPromoted:
    name = PROMPT if kind == "prompt" else "default"
    return VersionPromoted(
        producer=PRODUCER,
        occurred_at=START + timedelta(seconds=at_s),
        kind=kind,
        name=name,
        version=version,
        reason="test",
    )


def detected(events: list[Event]) -> list[str]:
    return sorted(e.signal for e in events if isinstance(e, DriftDetected))


async def test_falling_evaluation_scores_raise_an_evaluation_alert_and_steady_ones_do_not(store: ChdbStore) -> None:
    rng = np.random.default_rng(0)
    monitor = Monitor(settings(), store, Registry(), PRODUCER, RetrainingPolicy.load())
    steady = await run_ticks(monitor, store, evaluated(0, 0.8, 100, rng), step=5)
    assert steady == [], "no alert while the scores do not change"
    fallen = await run_ticks(monitor, store, evaluated(100, 0.5, 60, rng), step=5)
    assert detected(fallen) == ["evaluation.faithfulness"]
    alert = next(e for e in fallen if isinstance(e, DriftDetected))
    assert alert.test == "ks" and alert.p_value is not None and alert.p_value < settings().alpha


async def test_more_negative_feedback_raises_an_alert_and_a_steady_share_does_not(store: ChdbStore) -> None:
    monitor = Monitor(settings(), store, Registry(), PRODUCER, RetrainingPolicy.load())
    steady = await run_ticks(monitor, store, feedback(0, 1, 100), step=5)
    assert steady == [], "no alert while one answer in ten is rated down"
    unhappy = await run_ticks(monitor, store, feedback(100, 7, 60), step=5)
    assert detected(unhappy) == ["negative_feedback_rate"]
    alert = next(e for e in unhappy if isinstance(e, DriftDetected))
    assert alert.test == "fisher_exact" and alert.statistic > 0.4


@pytest.mark.parametrize(
    ("kind", "moves"),
    [
        ("prompt", False),
        ("corpus", True),
        ("index", True),
        ("embedding_model", True),
    ],
)
async def test_only_a_corpus_index_or_model_promotion_moves_the_baseline(
    store: ChdbStore, kind: str, moves: bool
) -> None:
    """Scores fall right after a promotion and stay low. After a prompt promotion that is a
    regression to report; after a new corpus, index or model it is the new normal."""
    rng = np.random.default_rng(1)
    registry = Registry()
    monitor = Monitor(settings(), store, registry, PRODUCER, RetrainingPolicy.load())
    assert await run_ticks(monitor, store, evaluated(0, 0.8, 100, rng), step=5) == []
    registry.apply(promotion(kind, 100))
    after = await run_ticks(monitor, store, evaluated(101, 0.5, 100, rng), step=5)
    assert detected(after) == ([] if moves else ["evaluation.faithfulness"])


@pytest.mark.parametrize(
    ("promoted_at_s", "asks"),
    [
        (None, False),  # no prompt was ever promoted
        (-3600, False),  # promoted before the reference window began: not what changed
        (100, True),  # promoted between the reference window and the fall
    ],
)
async def test_a_prompt_rule_asks_for_a_rollback_only_after_a_prompt_change(
    store: ChdbStore,
    tmp_path: Path,
    promoted_at_s: int | None,
    asks: bool,
) -> None:
    policy = tmp_path / "policy.toml"
    policy.write_text(REGRESSION_POLICY)
    rng = np.random.default_rng(2)
    registry = Registry()
    monitor = Monitor(settings(), store, registry, PRODUCER, RetrainingPolicy.load(policy))
    if promoted_at_s is not None and promoted_at_s < 0:
        registry.apply(promotion("prompt", promoted_at_s, version="1"))
    await run_ticks(monitor, store, evaluated(0, 0.8, 100, rng), step=5)
    if promoted_at_s is not None and promoted_at_s >= 0:
        registry.apply(promotion("prompt", promoted_at_s))
    published = await run_ticks(monitor, store, evaluated(101, 0.5, 60, rng), step=5)
    assert detected(published) == ["evaluation.faithfulness"], "the alert itself does not depend on the rule"
    requests = [(e.action, e.rule) for e in published if isinstance(e, RetrainingRequested)]
    assert requests == ([("rollback_prompt", "prompt-regression")] if asks else [])

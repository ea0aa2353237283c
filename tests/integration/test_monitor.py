"""The monitor's evaluation loop against a real ClickHouse engine (chDB with the platform's
migrations): events stored as the sink stores them, windows read by SQL, alerts, recovery
after a re-baseline, the retraining policy, and a restart that neither repeats nor forgets."""

import uuid
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pytest

from ragops_analytics.chdb_store import ChdbStore
from ragops_analytics.client import AnalyticsSettings
from ragops_analytics.queries import insert_events
from ragops_monitor.app import Monitor
from ragops_monitor.policy import RetrainingPolicy
from ragops_monitor.settings import MonitorSettings
from ragops_schemas import (
    ContextRetrieved,
    DatasetExampleAdded,
    DriftDetected,
    DriftRecovered,
    EmbeddingModelInfo,
    Event,
    QueryEmbedded,
    RetrainingRequested,
    RetrievalInfo,
    VersionPromoted,
)
from ragops_schemas.registry import Registry
from ragops_sink.rows import events_to_arrow, to_row
from tests.helpers import PRODUCER, record_of

pytestmark = pytest.mark.clickhouse

MODEL = EmbeddingModelInfo(name="m", version="v1", dimension=16)
START = datetime(2026, 11, 1, tzinfo=UTC)


def save(store: ChdbStore, events: Sequence[Event]) -> None:
    rows = [to_row(record_of(event, i), datetime.now(UTC)) for i, event in enumerate(events)]
    insert_events(store, events_to_arrow(rows))


def queries(start: int, count: int, center: np.ndarray, similarity: float, rng: np.random.Generator) -> list[Event]:
    """``count`` questions (vector near ``center``, nearest chunk at about ``similarity``),
    one second apart from ``START + start`` seconds."""
    events: list[Event] = []
    for i in range(start, start + count):
        at = START + timedelta(seconds=i)
        vector = center + rng.normal(0, 0.3, size=center.shape)
        vector /= np.linalg.norm(vector)
        request = str(uuid.uuid4())
        events.append(
            QueryEmbedded(
                producer=PRODUCER,
                occurred_at=at,
                request_id=request,
                question="q",
                top_k=5,
                embedding=MODEL,
                vector=vector.tolist(),
            )
        )
        events.append(
            ContextRetrieved(
                producer=PRODUCER,
                occurred_at=at,
                request_id=request,
                question="q",
                contexts=[],
                retrieval=RetrievalInfo(
                    collection="c",
                    mode="hybrid",
                    top_k=5,
                    embedding=MODEL,
                    top_similarity=float(np.clip(rng.normal(similarity, 0.05), -1, 1)),
                ),
            )
        )
    return events


def settings() -> MonitorSettings:
    return MonitorSettings(
        analytics=AnalyticsSettings(sql_url="http://unused/sql"),
        reference_size=40,
        current_size=20,
        min_new=5,
        consecutive=2,
        evaluation_metrics=["faithfulness"],
    )


async def run_ticks(monitor: Monitor, store: ChdbStore, stream: list[Event], step: int) -> list[Event]:
    """Store ``stream`` ``step`` query pairs at a time, ticking after each step; stores the
    monitor's own events too (as the sink would) and returns them."""
    published: list[Event] = []
    for start in range(0, len(stream), 2 * step):
        save(store, stream[start : start + 2 * step])
        out = await monitor.tick()
        if out:
            save(store, out)
        published += out
    return published


async def test_detects_a_topic_shift_once_per_signal_asks_for_a_refresh_and_recovers_after_a_rebaseline(
    chdb_store: ChdbStore,
) -> None:
    store = chdb_store
    rng = np.random.default_rng(0)
    old, new = np.eye(16)[0], np.eye(16)[1]
    registry = Registry()
    monitor = Monitor(settings(), store, registry, PRODUCER, RetrainingPolicy.load())

    unchanged = await run_ticks(monitor, store, queries(0, 100, old, 0.6, rng), step=5)
    assert unchanged == [], "no alert while the questions do not change"

    shifted = await run_ticks(monitor, store, queries(100, 60, new, 0.25, rng), step=5)
    detected = [e for e in shifted if isinstance(e, DriftDetected)]
    assert sorted(e.signal for e in detected) == ["no_context_rate", "query_embedding", "retrieval_top_similarity"]
    alert = next(e for e in detected if e.signal == "retrieval_top_similarity")
    assert alert.test == "ks" and alert.p_value is not None and alert.p_value < 0.001
    assert alert.reference.size == 40 and alert.current.size == 20 and alert.reference.end < alert.current.start
    requests = [e for e in shifted if isinstance(e, RetrainingRequested)]
    # Two signals map to the same rule: one request (the rule's cooldown), with its evidence.
    assert [(r.action, r.rule) for r in requests] == [("refresh_corpus", "new-topics")]
    assert requests[0].evidence[0] in {str(e.event_id) for e in detected}

    # The trainer refreshed the corpus: the new topics are the new normal.
    registry.apply(
        VersionPromoted(
            producer=PRODUCER,
            occurred_at=START + timedelta(seconds=160),
            kind="corpus",
            name="default",
            version="2",
            reason="refreshed",
        )
    )
    after = await run_ticks(monitor, store, queries(160, 100, new, 0.6, rng), step=5)
    recovered = [e for e in after if isinstance(e, DriftRecovered)]
    assert sorted(e.signal for e in recovered) == sorted(e.signal for e in detected)
    assert {e.alert_id for e in recovered} == {e.alert_id for e in detected}
    assert not [e for e in after if isinstance(e, DriftDetected)]


async def test_a_restarted_monitor_keeps_open_alerts_and_pending_rules(chdb_store: ChdbStore) -> None:
    store = chdb_store
    rng = np.random.default_rng(1)
    old, new = np.eye(16)[0], np.eye(16)[1]
    first = Monitor(settings(), store, Registry(), PRODUCER, RetrainingPolicy.load())
    await run_ticks(first, store, queries(0, 100, old, 0.6, rng), step=5)
    published = await run_ticks(first, store, queries(100, 60, new, 0.25, rng), step=5)
    assert any(isinstance(e, DriftDetected) for e in published)

    second = Monitor(settings(), store, Registry(), PRODUCER, RetrainingPolicy.load())
    second.restore()
    assert set(second.alerts) == set(first.alerts)
    assert second.last_request.keys() == {"new-topics"}
    again = await run_ticks(second, store, queries(160, 30, new, 0.25, rng), step=5)
    assert not [e for e in again if isinstance(e, DriftDetected | RetrainingRequested)], (
        "no repeated alert after a restart"
    )


async def test_a_rule_waiting_for_feedback_fires_once_enough_examples_arrived(
    chdb_store: ChdbStore, tmp_path: Path
) -> None:
    store = chdb_store
    policy_file = tmp_path / "policy.toml"
    policy_file.write_text(
        '[[rules]]\nname = "tune"\nsignals = ["retrieval_top_similarity"]\naction = "finetune_embedding"\n'
        "min_examples_after = 3\n"
    )
    rng = np.random.default_rng(2)
    old = np.eye(16)[0]
    monitor = Monitor(settings(), store, Registry(), PRODUCER, RetrainingPolicy.load(policy_file))
    await run_ticks(monitor, store, queries(0, 100, old, 0.6, rng), step=5)
    published = await run_ticks(monitor, store, queries(100, 60, old, 0.3, rng), step=5)
    detected = next(e for e in published if isinstance(e, DriftDetected) and e.signal == "retrieval_top_similarity")
    assert not [e for e in published if isinstance(e, RetrainingRequested)], (
        "waits for feedback gathered after the alert"
    )
    examples = [
        DatasetExampleAdded(
            producer=PRODUCER,
            occurred_at=detected.occurred_at + timedelta(seconds=i + 1),
            dataset="feedback",
            example_id=str(i),
            question="q",
            reference_answer="a",
            reference_context_ids=["d"],
            source="correction",
            request_id=str(i),
            feedback_event_id=str(i),
        )
        for i in range(3)
    ]
    save(store, examples[:2])
    assert not [e for e in await monitor.tick() if isinstance(e, RetrainingRequested)]
    save(store, examples[2:])
    requests = [e for e in await monitor.tick() if isinstance(e, RetrainingRequested)]
    assert [(r.action, r.rule, r.evidence) for r in requests] == [
        ("finetune_embedding", "tune", [str(detected.event_id)])
    ]
    assert not [e for e in await monitor.tick() if isinstance(e, RetrainingRequested)]


def test_the_packaged_policy_is_valid_and_a_bad_one_names_the_problem(tmp_path: Path) -> None:
    policy = RetrainingPolicy.load()
    assert {rule.action for rule in policy.rules} >= {"refresh_corpus", "finetune_embedding", "rollback_prompt"}
    bad = tmp_path / "policy.toml"
    bad.write_text('[[rules]]\nname = "x"\nsignals = ["a"]\naction = "retrain_everything"\n')
    with pytest.raises(ValueError, match="action"):
        RetrainingPolicy.load(bad)

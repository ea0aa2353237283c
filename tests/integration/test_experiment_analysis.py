"""Experiments in ClickHouse and the monitor's conclusion, on real components: answers of two
variants, their feedback and evaluations stored by the sink's own row code in chDB (migration
0014); the observations per metric in arrival order; on a real broker, a running experiment
(signed as the gateway signs it) whose variant gets far more thumbs-down is concluded once by
the monitor (a verified ExperimentConcluded, loser, rolled back), also after a restart, by its
components and by the monitor service itself (its own key, the platform's trust list); a winner
is concluded once without a rollback; ``ragops experiment show`` prints the same comparisons."""

import json
import uuid
from collections.abc import AsyncIterator, Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from types import SimpleNamespace

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from typer.testing import CliRunner

from ragops import cli
from ragops_analytics.chdb_store import ChdbStore
from ragops_analytics.client import AnalyticsSettings
from ragops_analytics.experiments import experiment_results
from ragops_analytics.queries import experiment_observations, insert_events
from ragops_monitor.app import create_app as monitor_app
from ragops_monitor.experiments import Conclusions, ExperimentConcluder
from ragops_monitor.settings import MonitorSettings
from ragops_schemas import AnswerEvaluated, AnswerGenerated, Event, FeedbackRecorded
from ragops_schemas.experiments import ExperimentConcluded, ExperimentPolicy, ExperimentStarted
from ragops_schemas.ids import derived_event_id, experiment_id
from ragops_shared.broker import EventPublisher, make_broker
from ragops_shared.registry_view import EXPERIMENT_READERS, ControlView, ExperimentView
from ragops_shared.settings import KafkaSettings, PlatformSettings
from ragops_shared.signing import DEFAULT_ALLOWED, Signer, TrustedKey, TrustStore, Verifier, signer_for, verifier_for
from ragops_sink.rows import events_to_arrow, to_row
from ragops_sink.schema import migrate, migrate_down, set_prices
from tests.helpers import GATEWAY_SIGNER, PRODUCER, example, record_of
from tests.integration.services import running, wait_for, watching

pytestmark = pytest.mark.clickhouse

START = datetime(2026, 12, 1, tzinfo=UTC)
MODEL = "SmolLM2-135M-Instruct"  # the golden answer's model


def started(min_samples: int = 100) -> ExperimentStarted:
    """A new experiment over rag-answer (control, v4), as the gateway starts it (unsigned)."""
    event_id = uuid.uuid4()
    return example(ExperimentStarted).model_copy(
        update={
            "event_id": event_id,
            "experiment_id": experiment_id(event_id),
            "occurred_at": datetime.now(UTC),
            "signature": None,
            "policy": ExperimentPolicy(min_samples=min_samples),
        }
    )


def answer(experiment: str | None, variant: str | None, at: datetime, latency_ms: float = 800.0) -> AnswerGenerated:
    golden = example(AnswerGenerated)
    return golden.model_copy(
        update={
            "event_id": uuid.uuid4(),
            "request_id": str(uuid.uuid4()),
            "occurred_at": at,
            "lineage": golden.lineage.model_copy(update={"experiment_id": experiment, "variant": variant}),
            "generation": golden.generation.model_copy(update={"latency_ms": latency_ms}),
        }
    )


def feedback(of: AnswerGenerated, thumb: str | None, at: datetime) -> FeedbackRecorded:
    return example(FeedbackRecorded).model_copy(
        update={
            "event_id": uuid.uuid4(),
            "request_id": of.request_id,
            "answer_event_id": str(of.event_id),
            "occurred_at": at,
            "thumb": thumb,
            "lineage": of.lineage,
        }
    )


def evaluation(of: AnswerGenerated, at: datetime) -> AnswerEvaluated:
    return example(AnswerEvaluated).model_copy(
        update={
            "event_id": uuid.uuid4(),
            "request_id": of.request_id,
            "answer_event_id": str(of.event_id),
            "occurred_at": at,
            "run_id": None,
            "example_id": None,
        }
    )


def store_events(store: ChdbStore, events: Sequence[Event]) -> None:
    """As the sink stores them: its rows, one Arrow batch."""
    rows = [to_row(record_of(event, offset), datetime.now(UTC)) for offset, event in enumerate(events)]
    insert_events(store, events_to_arrow(rows))


def test_the_observations_of_an_experiment_per_metric_in_arrival_order(chdb_store: ChdbStore) -> None:
    experiment = started().experiment_id
    control, treated, outside = (
        answer(experiment, "control", START, 700.0),
        answer(experiment, "v4", START + timedelta(seconds=1), 900.0),
        answer(None, None, START + timedelta(seconds=2)),
    )
    later = START + timedelta(minutes=1)
    events: list[Event] = [control, treated, outside]
    # Feedback stored out of order: the observations come back in the order they occurred.
    events += [feedback(treated, "down", later + timedelta(seconds=2)), feedback(control, "up", later)]
    events += [feedback(control, None, later + timedelta(seconds=3))]  # a comment only: no thumb
    events += [feedback(outside, "down", later), evaluation(treated, later), evaluation(outside, later)]
    store_events(chdb_store, events)
    store_events(chdb_store, [events[3]])  # a replay counts once

    assert experiment_observations(chdb_store, experiment, "thumbs_down_rate") == [("control", 0.0), ("v4", 1.0)]
    assert experiment_observations(chdb_store, experiment, "faithfulness") == [("v4", 1.0)]
    assert experiment_observations(chdb_store, experiment, "latency_ms") == [("control", 700.0), ("v4", 900.0)]
    assert experiment_observations(chdb_store, experiment, "cost_usd") == [], "no price, no cost"
    set_prices(chdb_store, {MODEL: (1.0, 2.0)})
    cost = (312 * 1.0 + 3 * 2.0) / 1e6  # the golden answer's tokens
    assert experiment_observations(chdb_store, experiment, "cost_usd") == [("control", cost), ("v4", cost)]
    assert experiment_observations(chdb_store, "exp-00000000000000000000", "latency_ms") == []
    rows = chdb_store.execute(
        "SELECT variant, count() FROM generations FINAL WHERE experiment_id = {e:String} GROUP BY variant "
        "ORDER BY variant",
        {"e": experiment},
    ).rows
    assert [tuple(row) for row in rows] == [("control", 1), ("v4", 1)]


def test_answers_and_feedback_stored_before_the_migration_get_their_variant(chdb_store: ChdbStore) -> None:
    migrate_down(chdb_store, to=13)
    experiment = started().experiment_id
    served = answer(experiment, "v4", START)
    store_events(chdb_store, [served, feedback(served, "down", START + timedelta(seconds=1))])
    migrate(chdb_store)
    assert experiment_observations(chdb_store, experiment, "latency_ms") == [("v4", 800.0)]
    assert experiment_observations(chdb_store, experiment, "thumbs_down_rate") == [("v4", 1.0)]


def test_repeated_feedback_on_one_answer_is_one_observation_its_latest_thumb(chdb_store: ChdbStore) -> None:
    """One client sending ten thumbs down on one answer (then changing its mind) cannot swing
    the test: each answer is one observation, its latest thumb."""
    experiment = started().experiment_id
    rated, changed = answer(experiment, "v4", START), answer(experiment, "control", START)
    events: list[Event] = [rated, changed]
    events += [feedback(rated, "down", START + timedelta(seconds=n)) for n in range(1, 11)]
    events += [feedback(changed, "down", START + timedelta(seconds=1)), feedback(changed, "up", START)]
    events += [feedback(changed, "up", START + timedelta(seconds=2))]
    store_events(chdb_store, events)
    assert sorted(experiment_observations(chdb_store, experiment, "thumbs_down_rate")) == [
        ("control", 0.0),
        ("v4", 1.0),
    ]


MONITOR_SIGNER = Signer(Ed25519PrivateKey.generate())
TRUST = Verifier(
    TrustStore(
        {
            GATEWAY_SIGNER.key_id: TrustedKey("gateway", GATEWAY_SIGNER.public_key),
            MONITOR_SIGNER.key_id: TrustedKey("monitor", MONITOR_SIGNER.public_key),
        },
        DEFAULT_ALLOWED,
    ),
    max_clock_skew_s=60,
    model_dirs=[],
)
"""Trusts the gateway's and the monitor's keys, as the platform's trust list does."""


@pytest.fixture
async def broker(kafka: KafkaSettings) -> AsyncIterator[object]:
    broker = make_broker(kafka, "test-producer")
    await broker.start()
    try:
        yield broker
    finally:
        await broker.stop()


async def monitor_concludes(kafka: KafkaSettings, broker: object, store: ChdbStore) -> list[ExperimentConcluded]:
    """One analysis by the monitor's experiment loop as its app wires it (verified views of the
    experiments and of the conclusions read from the start, a publisher signing as the
    monitor); returns what it published."""
    publisher = EventPublisher(broker, PRODUCER, [ExperimentConcluded], signer=MONITOR_SIGNER)  # type: ignore[arg-type]
    experiments = ExperimentView(kafka, "test-monitor-experiments", verifier=TRUST)
    conclusions = Conclusions()
    concluded = ControlView(
        kafka,
        "test-monitor-conclusions",
        [ExperimentConcluded],
        conclusions.apply,
        verifier=TRUST,
        readers=EXPERIMENT_READERS,
    )
    await experiments.start()
    await concluded.start()
    try:
        return await ExperimentConcluder(store, PRODUCER, experiments.book, conclusions).tick(publisher.publish)
    finally:
        await experiments.stop()
        await concluded.stop()


@pytest.mark.kafka
async def test_the_monitor_concludes_a_variant_with_far_more_thumbs_down_a_loser_once_and_rolls_it_back(
    kafka: KafkaSettings, broker: object, chdb_store: ChdbStore
) -> None:
    experiment = await stream(kafka, broker, chdb_store, down_rates=(1, 6))

    async with watching(kafka, [ExperimentConcluded]) as seen:
        published = await monitor_concludes(kafka, broker, chdb_store)
        assert len(published) == 1
        await wait_for(seen, lambda s: len(s) == 1)
    conclusion = seen[0]
    assert isinstance(conclusion, ExperimentConcluded)
    TRUST.check(conclusion)  # signed by the monitor
    assert (conclusion.decision, conclusion.variant, conclusion.metric) == ("loser", "v4", "thumbs_down_rate")
    assert conclusion.rolled_back is True and conclusion.experiment_id == experiment.experiment_id
    assert conclusion.event_id == derived_event_id("ExperimentConcluded", experiment.event_id)
    assert conclusion.results == experiment_results(chdb_store, experiment)
    assert {(r.metric, r.outcome) for r in conclusion.results} == {
        ("thumbs_down_rate", "worse"),
        ("latency_ms", "undecided"),
    }

    # The experiment has ended for every reader of the experiments (the embedding service
    # assigns no more units to it), and a restarted monitor concludes nothing again.
    view = ExperimentView(kafka, "test-embedding-experiments", verifier=TRUST)
    await view.start()
    try:
        assert view.book.running() == [] and view.book.ended(experiment.experiment_id) == conclusion
    finally:
        await view.stop()
    assert await monitor_concludes(kafka, broker, chdb_store) == []


def served(experiment: ExperimentStarted, down_rates: tuple[int, int]) -> list[Event]:
    """60 answers per variant of ``experiment``, interleaved, latency alike, each with a
    feedback: ``down_rates`` thumbs down in 10 (control, v4)."""
    events: list[Event] = []
    for i in range(120):
        variant = "control" if i % 2 == 0 else "v4"
        at = START + timedelta(seconds=i)
        given = answer(experiment.experiment_id, variant, at, latency_ms=800.0 + (i // 2) % 7 * 10)
        down = (i // 2) % 10 < down_rates[i % 2]
        events += [given, feedback(given, "down" if down else "up", at + timedelta(milliseconds=500))]
    return events


async def stream(
    kafka: KafkaSettings, broker: object, store: ChdbStore, down_rates: tuple[int, int]
) -> ExperimentStarted:
    """A running experiment (signed by the gateway, on the broker) and :func:`served` in ``store``."""
    experiment = started(min_samples=40)
    gateway = EventPublisher(broker, PRODUCER, [ExperimentStarted], signer=GATEWAY_SIGNER)  # type: ignore[arg-type]
    await gateway.publish(experiment)
    store_events(store, served(experiment, down_rates))
    return experiment


@pytest.mark.kafka
async def test_a_winner_is_concluded_once_without_a_rollback_and_not_again_after_a_restart(
    kafka: KafkaSettings, broker: object, chdb_store: ChdbStore
) -> None:
    await stream(kafka, broker, chdb_store, down_rates=(6, 1))
    [conclusion] = await monitor_concludes(kafka, broker, chdb_store)
    assert (conclusion.decision, conclusion.variant, conclusion.rolled_back) == ("winner", "v4", False)
    assert "operator promotes" in conclusion.reason
    # Still running (an operator promotes the winner and stops it), yet never concluded twice.
    assert await monitor_concludes(kafka, broker, chdb_store) == []


def test_ragops_experiment_show_prints_the_monitors_comparisons(
    chdb_store: ChdbStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    experiment = GATEWAY_SIGNER.sign(started(min_samples=40))
    store_events(chdb_store, [experiment, *served(experiment, down_rates=(1, 6))])
    analytics = SimpleNamespace(query=chdb_store.query, close=lambda: None)
    monkeypatch.setattr(cli, "_analytics", lambda data_dir: analytics)

    shown = CliRunner().invoke(cli.app, ["experiment", "show", experiment.experiment_id, "--json"])
    assert shown.exit_code == 0, shown.output
    readout = json.loads(shown.stdout)
    expected = [result.model_dump(mode="json") for result in experiment_results(chdb_store, experiment)]
    assert readout["results"] == expected and readout["ended"] is None
    assert (readout["decision"]["decision"], readout["decision"]["variant"]) == ("loser", "v4")

    table = CliRunner().invoke(cli.app, ["experiment", "show", experiment.experiment_id])
    assert table.exit_code == 0 and "thumbs_down_rate" in table.stdout and "decision: loser" in table.stdout
    unknown = CliRunner().invoke(cli.app, ["experiment", "show", "exp-00000000000000000000"])
    assert unknown.exit_code == 1


@pytest.mark.kafka
async def test_the_monitor_service_concludes_the_loser_with_its_own_key_and_the_experiment_ends(
    kafka: KafkaSettings, broker: object, chdb_store: ChdbStore, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    platform = PlatformSettings(data_dir=tmp_path)
    # The monitor reads ClickHouse through its analytics client: here the test's chDB.
    monkeypatch.setattr(
        AnalyticsSettings, "client", lambda self: SimpleNamespace(query=chdb_store.query, close=lambda: None)
    )
    settings = MonitorSettings(
        analytics=AnalyticsSettings(sql_url="http://unused/sql"),
        platform=platform,
        kafka=kafka,
        experiment_interval_s=0.2,
    )
    experiment = started(min_samples=40)
    store_events(chdb_store, served(experiment, down_rates=(1, 6)))
    gateway = EventPublisher(broker, PRODUCER, [ExperimentStarted], signer=signer_for(platform, "gateway"))  # type: ignore[arg-type]
    async with watching(kafka, [ExperimentConcluded]) as seen, running(monitor_app(settings)):
        await gateway.publish(experiment)
        await wait_for(seen, lambda s: len(s) >= 1)
    [conclusion] = seen
    assert isinstance(conclusion, ExperimentConcluded)
    verifier_for(platform).check(conclusion)  # the platform's trust list: the monitor's key
    assert (conclusion.decision, conclusion.variant, conclusion.rolled_back) == ("loser", "v4", True)
    view = ExperimentView(kafka, "test-embedding-experiments", verifier=verifier_for(platform))
    await view.start()
    try:
        assert view.book.running() == [], "every service that assigns sees it ended"
    finally:
        await view.stop()

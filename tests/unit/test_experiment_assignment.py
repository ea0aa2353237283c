"""Sticky assignment of units to the arms of an experiment, and its stamping on questions."""

import math
import subprocess
import sys
from collections import Counter
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from ragops_embedding.experiments import assign, experiment_key
from ragops_embedding.settings import EmbeddingSettings
from ragops_schemas import QueryRedacted
from ragops_schemas.changes import ChangeActor
from ragops_schemas.experiments import ExperimentBook, ExperimentStarted, ExperimentStopped, ExperimentVariant
from ragops_schemas.ids import experiment_id, new_event_id
from ragops_shared.settings import PlatformSettings
from tests.helpers import PRODUCER

KEY = bytes(range(32))
OPERATOR = ChangeActor(subject="key:1", name="ops", kind="api_key")


def started(weights: tuple[int, ...] = (50, 50), unit: str = "user", target: str = "prompt") -> ExperimentStarted:
    event_id = new_event_id()
    return ExperimentStarted(
        event_id=event_id,
        producer=PRODUCER,
        experiment_id=experiment_id(event_id),
        target=target,
        target_name="rag-answer",
        variants=[ExperimentVariant(name=f"v{n}", version=str(n), weight=w) for n, w in enumerate(weights, 3)],
        unit=unit,
        started_by=OPERATOR,
        reason="try v4",
    )


def asked(**fields: object) -> QueryRedacted:
    return QueryRedacted(producer=PRODUCER, request_id=str(fields.pop("request_id", "r-1")), question="Hi?", **fields)


def test_weights_are_respected_within_binomial_tolerance() -> None:
    experiment = started((95, 5))
    arms = Counter(experiment.assign(KEY, f"user-{n}").name for n in range(20_000))
    # 5 standard deviations of Binomial(20000, 0.05): a correct split fails this ~once in 3.5 million.
    tolerance = 5 * math.sqrt(20_000 * 0.05 * 0.95)
    assert abs(arms["v4"] - 1_000) < tolerance and arms["v3"] + arms["v4"] == 20_000


def test_the_arm_is_stable_across_processes_and_moves_with_the_key_and_experiment() -> None:
    experiment = started()
    here = [experiment.assign(KEY, f"u{n}").name for n in range(200)]
    code = (
        "import sys; from ragops_schemas.experiments import ExperimentStarted as E; "
        "e = E.model_validate_json(sys.stdin.read()); "
        "print(','.join(e.assign(bytes(range(32)), f'u{n}').name for n in range(200)))"
    )
    there = subprocess.run(
        [sys.executable, "-c", code], input=experiment.model_dump_json(), capture_output=True, text=True, check=True
    )
    assert there.stdout.strip().split(",") == here, "another process (a replica, a restart) assigns alike"
    other_key = [experiment.assign(b"k" * 32, f"u{n}").name for n in range(200)]
    other_experiment = [started().assign(KEY, f"u{n}").name for n in range(200)]
    assert other_key != here and other_experiment != here


def test_a_unit_cannot_pick_its_arm_without_the_key() -> None:
    """Whoever knows the experiment id and the rule but not the key predicts arms no better than chance."""
    experiment = started()
    guesses = [experiment.assign(b"\0" * 32, f"u{n}").name for n in range(4_000)]
    actual = [experiment.assign(KEY, f"u{n}").name for n in range(4_000)]
    hits = sum(guess == arm for guess, arm in zip(guesses, actual, strict=True))
    assert abs(hits - 2_000) < 5 * math.sqrt(4_000 * 0.25)


def test_questions_are_stamped_with_the_running_experiments_arm_or_counted_out() -> None:
    book = ExperimentBook()
    out: list[tuple[str, str]] = []
    count = lambda experiment, reason: out.append((experiment, reason))  # noqa: E731
    assert assign(book, KEY, asked(user_id="jane"), count) is None, "no experiment, no arm"
    experiment = started(unit="user")
    book.apply(experiment)
    arm = assign(book, KEY, asked(user_id="jane"), count)
    assert arm is not None and (arm.experiment_id, arm.target, arm.target_name) == (
        experiment.experiment_id,
        "prompt",
        "rag-answer",
    )
    assert (arm.variant, arm.version) == ((chosen := experiment.assign(KEY, "jane")).name, chosen.version)
    assert assign(book, KEY, asked(user_id="jane", request_id="r-2"), count) == arm, "sticky per user"
    assert assign(book, KEY, asked(), count) is None
    assert assign(book, KEY, asked(user_id="jane", prompt_version=2), count) is None
    assert assign(book, KEY, asked(user_id="jane", prompt_name="other"), count) is None
    assert out == [(experiment.experiment_id, "no_user_id"), *[(experiment.experiment_id, "pinned_prompt")] * 2]
    book.apply(
        experiment.caused(
            ExperimentStopped, PRODUCER, experiment_id=experiment.experiment_id, stopped_by=OPERATOR, reason="done"
        )
    )
    assert assign(book, KEY, asked(user_id="jane"), count) is None, "a stopped experiment assigns nobody"


@pytest.mark.parametrize(
    ("unit", "fields", "value"), [("session", {"session_id": "s-9"}, "s-9"), ("request", {}, "r-1")]
)
def test_session_and_request_units(unit: str, fields: dict[str, str], value: str) -> None:
    book = ExperimentBook()
    book.apply(experiment := started(unit=unit))
    arm = assign(book, KEY, asked(**fields), lambda *_: None)
    assert arm is not None and arm.variant == experiment.assign(KEY, value).name


def test_the_embedded_key_is_created_once_and_refused_at_defaults_in_production(tmp_path: Path) -> None:
    settings = EmbeddingSettings(platform=PlatformSettings(data_dir=tmp_path))
    key = experiment_key(settings)
    path = tmp_path / "keys" / "experiment.key"
    assert len(key) == 32 and path.stat().st_mode & 0o777 == 0o600 and experiment_key(settings) == key
    with pytest.raises(ValueError, match="RAGOPS_EMBEDDING_EXPERIMENT_KEY_FILE"):
        EmbeddingSettings(platform=PlatformSettings(data_dir=tmp_path, environment="production"))


def at(experiment: ExperimentStarted, moment: datetime) -> ExperimentStarted:
    return experiment.model_copy(update={"occurred_at": moment})


def stop_of(experiment: ExperimentStarted, moment: datetime) -> ExperimentStopped:
    stop = experiment.caused(
        ExperimentStopped, PRODUCER, experiment_id=experiment.experiment_id, stopped_by=OPERATOR, reason="done"
    )
    return stop.model_copy(update={"occurred_at": moment})


def test_of_two_racing_starts_the_one_read_first_runs_on_every_reader() -> None:
    """Two gateway replicas race: A's start is read first but stamped later (its clock ahead).
    Every reader, whatever it has read of the other, runs A and voids B (not the oldest by
    ``occurred_at``, which left both replicas answering 201)."""
    t = datetime(2026, 12, 5, 9, 0, tzinfo=UTC)
    first, second = at(started(), t + timedelta(milliseconds=5)), at(started(), t)
    only_first, both = ExperimentBook(), ExperimentBook()
    only_first.apply(first)  # replica A's read-back
    for event in (first, second):  # replica B's read-back (the topic's one partition: A, then B)
        both.apply(event)
    for book in (only_first, both):
        assert [e.experiment_id for e in book.running()] == [first.experiment_id]
        assert book.void(first.experiment_id) is None
    assert first.experiment_id in (both.void(second.experiment_id) or "")
    assert [e.experiment_id for e in both.all()] == [second.experiment_id, first.experiment_id], "listed, void too"
    both.apply(stop_of(first, t + timedelta(seconds=1)))
    assert both.running() == [] and both.void(second.experiment_id) is not None, "a void start never runs"


def test_a_start_after_the_earlier_ones_end_runs_whichever_order_the_end_is_read_in() -> None:
    t = datetime(2026, 12, 5, 9, 0, tzinfo=UTC)
    first, later = at(started(), t), at(started(), t + timedelta(minutes=1))
    for events in ([first, stop_of(first, t + timedelta(seconds=30)), later], [first, later, stop_of(first, t)]):
        book = ExperimentBook()
        for event in events:
            book.apply(event)
        assert [e.experiment_id for e in book.running()] == [later.experiment_id]
    # Stopped only after the later start happened: it was running then, so the later one is void.
    book = ExperimentBook()
    for event in (first, later, stop_of(first, t + timedelta(minutes=2))):
        book.apply(event)
    assert book.running() == [] and book.void(later.experiment_id) is not None

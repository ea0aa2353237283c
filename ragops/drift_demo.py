"""``ragops demo --drift``: the closed improvement loop on real data.

Half of the articles of the corpus are ingested and questions about them are streamed
(with simulated user feedback); then the stream switches to questions about the other
half, which the index does not hold yet but which have just been added to the corpus
source the trainer refreshes from. The monitor must notice, the retraining policy must ask
for a corpus refresh and, once feedback has been gathered, a fine-tune of the embedding
model; the trainer acts, and the report shows quality before, during and after, the
detection delay in questions, and the hit@5 of the candidate and the live model.

False alarms are counted twice: live, over the unchanged phase, and on 2,000 questions drawn
from the unchanged distribution, tested with the monitor's own tests, windows and alert
rule (:func:`null_false_alarms`)."""

import asyncio
import json
import random
import time
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any, TypeVar

import numpy as np
from pydantic import SecretStr
from rich.console import Console
from rich.table import Table

from ragops.client import PlatformClient, QueryTrace
from ragops.demo import simulated_feedback
from ragops.platform import EmbeddedPlatform
from ragops_analytics import queries
from ragops_analytics.client import AnalyticsSettings
from ragops_monitor.replay import replay_alerts
from ragops_monitor.settings import MonitorSettings
from ragops_monitor.signals import Kind
from ragops_schemas import (
    AnswerEvaluated,
    CandidateEvaluated,
    DriftDetected,
    EvaluationContext,
    Event,
    RetrainingRejected,
    TrainingFailed,
    VersionPromoted,
    VersionRejected,
)
from ragops_schemas.lifecycle import LIFECYCLE_EVENT_TYPES
from ragops_shared.datasets import CorpusDocument, Question, load_corpus, load_questions
from ragops_shared.settings import KafkaSettings
from ragops_shared.watch import EventWatcher

# Monitor settings of the scenario: windows sized for a run of a few hundred questions.
MONITOR_ENV = {
    "RAGOPS_MONITOR_INTERVAL_S": "2",
    "RAGOPS_MONITOR_REFERENCE_SIZE": "100",
    "RAGOPS_MONITOR_CURRENT_SIZE": "50",
    "RAGOPS_MONITOR_MIN_NEW": "10",
}
FINETUNE_OUTCOMES = (CandidateEvaluated, RetrainingRejected, TrainingFailed)
E = TypeVar("E", bound=Event)


def article(passage_id: str) -> str:
    """``Normans-p003`` -> ``Normans``."""
    return passage_id.rsplit("-p", 1)[0]


@dataclass
class Scenario:
    """The corpus split into the half ingested first and the half that arrives later, and
    the questions about each (questions are about one passage, so about one article)."""

    first: list[CorpusDocument]
    later: list[CorpusDocument]
    first_questions: list[Question]
    later_questions: list[Question]

    @classmethod
    def split(cls, corpus: Path, questions: Path, seed: int = 0) -> "Scenario":
        documents = load_corpus(corpus)
        titles = sorted({article(doc.id) for doc in documents})
        random.Random(seed).shuffle(titles)
        first = set(titles[: len(titles) // 2])
        asked = load_questions(questions)
        random.Random(seed).shuffle(asked)
        return cls(
            first=[d for d in documents if article(d.id) in first],
            later=[d for d in documents if article(d.id) not in first],
            first_questions=[q for q in asked if article(q.context_ids[0]) in first],
            later_questions=[q for q in asked if article(q.context_ids[0]) not in first],
        )


@dataclass
class Asked:
    question: Question
    phase: str
    trace: QueryTrace
    thumb: str | None = None

    @property
    def scores(self) -> dict[str, float]:
        outcome = self.trace.outcome
        return {s.name: s.value for s in outcome.scores} if isinstance(outcome, AnswerEvaluated) else {}

    @property
    def submitted_at(self) -> datetime:
        return self.trace.submitted.occurred_at


@dataclass
class Loop:
    """What the stream has seen of the improvement loop so far."""

    events: list[Event] = field(default_factory=list)

    def of(self, event_type: type[E]) -> list[E]:
        return [event for event in self.events if isinstance(event, event_type)]

    def promoted(self, kind: str) -> VersionPromoted | None:
        return next((e for e in self.of(VersionPromoted) if e.kind == kind and e.alias == "production"), None)

    def finetune_outcome(self) -> CandidateEvaluated | RetrainingRejected | TrainingFailed | None:
        return next(
            (e for e in self.events if isinstance(e, FINETUNE_OUTCOMES) and e.action == "finetune_embedding"), None
        )

    def finetune_settled(self) -> bool:
        outcome = self.finetune_outcome()
        if outcome is None:
            return False
        if isinstance(outcome, CandidateEvaluated) and outcome.decision == "promote":
            return self.promoted("embedding_model") is not None or any(
                isinstance(e, TrainingFailed) and e.action == "finetune_embedding" for e in self.events
            )
        return True


async def stream(
    client: PlatformClient,
    questions: Sequence[Question],
    phase: str,
    *,
    concurrency: int,
    seed: int,
) -> list[Asked]:
    """Ask with references (so answers are scored against gold) and send each answer's
    simulated feedback right away, as a product would."""
    asked = [
        client.question(
            q.question,
            evaluation=EvaluationContext(
                example_id=q.id, reference_answers=q.answers, reference_context_ids=q.context_ids
            ),
        )
        for q in questions
    ]
    traces = await client.ask(asked, concurrency=concurrency, until_evaluated=True, timeout_s=900)
    feedback = simulated_feedback(client, questions, traces, seed=seed)
    await client.send_feedback(feedback, timeout_s=300)
    thumbs = {f.request_id: f.thumb for f in feedback}
    return [Asked(q, phase, t, thumbs.get(t.submitted.request_id)) for q, t in zip(questions, traces, strict=True)]


def quality(asked: Sequence[Asked]) -> dict[str, dict[str, float | None]]:
    """Mean of every score and the thumbs-down rate per phase, with the number of questions."""
    by_phase: dict[str, list[Asked]] = defaultdict(list)
    for item in asked:
        by_phase[item.phase].append(item)
    table = {}
    for phase, items in by_phase.items():
        values: dict[str, list[float]] = defaultdict(list)
        for item in items:
            for name, value in item.scores.items():
                values[name].append(value)
        rates = [item.thumb == "down" for item in items if item.thumb]
        table[phase] = {
            "questions": len(items),
            **{k: round(float(np.mean(v)), 4) for k, v in sorted(values.items())},
            "thumbs_down_rate": round(float(np.mean(rates)), 4) if rates else None,
        }
    return table


def null_false_alarms(
    settings: MonitorSettings,
    embedder_dir: Path | None,
    passages: Sequence[str],
    questions: Sequence[Question],
    unchanged: Sequence[Asked],
    *,
    n: int = 2000,
    seed: int = 0,
) -> dict[str, dict[str, int | str]]:
    """Alerts the monitor's tests raise on ``n`` questions from the unchanged distribution,
    with the monitor's windows, step and alert rule.

    ``query_embedding``, ``retrieval_top_similarity`` and ``no_context_rate`` use ``n``
    distinct real questions, embedded with the platform's model and matched against the
    ingested passages (the dense top-1 similarity the retrieval service reports).
    ``evaluation.*`` and ``negative_feedback_rate`` need answers, which take about a second
    each here, so they are drawn with replacement from the unchanged phase's (a bootstrap
    of the unchanged distribution)."""
    from ragops_models.defaults import default_embedding_model_dir
    from ragops_models.embedder import Embedder

    rng = np.random.default_rng(seed)
    embedder = Embedder(embedder_dir or default_embedding_model_dir())
    embedder.warm_up()
    sample = [questions[i] for i in rng.choice(len(questions), size=min(n, len(questions)), replace=False)]
    vectors = embedder.embed([q.question for q in sample])
    similarity = (vectors @ embedder.embed(list(passages)).T).max(axis=1).astype(np.float64)
    streams: dict[str, tuple[Kind, np.ndarray, str]] = {
        "query_embedding": ("embedding", vectors, "distinct questions"),
        "retrieval_top_similarity": ("numeric", similarity, "distinct questions"),
        "no_context_rate": (
            "proportion",
            (similarity < settings.no_context_similarity).astype(np.float64),
            "distinct questions",
        ),
    }
    for metric in settings.evaluation_metrics:
        pool = np.array([a.scores[metric] for a in unchanged if metric in a.scores])
        if len(pool):
            streams[f"evaluation.{metric}"] = ("numeric", rng.choice(pool, size=n), f"bootstrap of {len(pool)} answers")
    thumbs = np.array([a.thumb == "down" for a in unchanged if a.thumb], dtype=np.float64)
    if len(thumbs):
        streams["negative_feedback_rate"] = (
            "proportion",
            rng.choice(thumbs, size=n),
            f"bootstrap of {len(thumbs)} feedbacks",
        )
    results: dict[str, dict[str, int | str]] = {}
    for signal, (kind, values, source) in streams.items():
        evaluations, alarms = replay_alerts(settings, signal, kind, values)
        results[signal] = {"questions": len(values), "evaluations": evaluations, "alerts": alarms, "source": source}
    return results


def write_jsonl(path: Path, rows: Sequence[dict[str, Any]]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(row, ensure_ascii=False) + "\n" for row in rows), encoding="utf-8")


def corpus_rows(documents: Sequence[CorpusDocument]) -> list[dict[str, Any]]:
    return [asdict(d) for d in documents]


def monitor_settings(platform: EmbeddedPlatform) -> MonitorSettings:
    """The monitor's settings as the platform runs it (its ``RAGOPS_MONITOR_*`` environment)."""
    prefix = "RAGOPS_MONITOR_"
    # Strings as in the environment: pydantic parses each into its field's type.
    values: dict[str, Any] = {
        key.removeprefix(prefix).lower(): value for key, value in platform.env.items() if key.startswith(prefix)
    }
    assert platform.keys is not None, "start the platform first"
    analytics = AnalyticsSettings(sql_url=platform.sql_url, api_key=SecretStr(platform.keys.platform))
    return MonitorSettings(analytics=analytics, **values)


async def run_scenario(
    platform: EmbeddedPlatform,
    scenario: Scenario,
    sources: Path,
    *,
    baseline: int,
    after: int,
    max_questions: int,
    concurrency: int,
    null_questions: int,
    console: Console,
) -> dict[str, Any]:
    kafka: KafkaSettings = platform.kafka_settings
    loop = Loop()
    watcher = EventWatcher(kafka, LIFECYCLE_EVENT_TYPES, client_id="ragops-drift-demo")
    watcher.listen(loop.events.append)
    await watcher.start()
    asked: list[Asked] = []
    timings: dict[str, float] = {}
    started = time.perf_counter()
    try:
        async with PlatformClient(kafka, name="drift-demo") as client:
            with console.status(f"ingesting the first half: {len(scenario.first)} passages..."):
                await client.ingest([doc.submitted(client.producer) for doc in scenario.first])
            timings["ingest_first_half_s"] = round(time.perf_counter() - started, 1)
            before = scenario.first_questions[:baseline]
            for start in range(0, len(before), 2 * concurrency):
                asked += await stream(
                    client, before[start : start + 2 * concurrency], "before", concurrency=concurrency, seed=start
                )
                console.print(
                    f"before the switch: {len(asked)}/{len(before)} questions, "
                    f"drift alerts {len(loop.of(DriftDetected))}"
                )
            switched_at = time.perf_counter()
            # The world changes: new articles reach the source; nobody ingests them.
            write_jsonl(sources, corpus_rows(scenario.first + scenario.later))
            later = iter(scenario.later_questions)
            phase, remaining_after, total = "drifted", after, 0
            while total < max_questions:
                if phase == "drifted" and loop.promoted("corpus"):
                    phase = "refreshed"
                    timings["refreshed_after_s"] = round(time.perf_counter() - switched_at, 1)
                if phase == "refreshed" and loop.finetune_settled():
                    phase = "after"
                    timings["finetune_settled_after_s"] = round(time.perf_counter() - switched_at, 1)
                if phase == "after" and remaining_after <= 0:
                    break
                batch = [q for _, q in zip(range(2 * concurrency), later, strict=False)]
                if not batch:
                    break
                asked += await stream(client, batch, phase, concurrency=concurrency, seed=total)
                total += len(batch)
                remaining_after -= len(batch) if phase == "after" else 0
                console.print(
                    f"after the switch [{phase}]: {total} questions; "
                    f"alerts {sorted({e.signal for e in loop.of(DriftDetected)})}; "
                    f"steps {[type(e).__name__ for e in loop.events if not isinstance(e, DriftDetected)][-4:]}"
                )
            timings["scenario_s"] = round(time.perf_counter() - started, 1)
    finally:
        await watcher.stop()
    return report(platform, scenario, asked, loop, timings, null_questions=null_questions, console=console)


def detection(asked: Sequence[Asked], loop: Loop) -> dict[str, Any]:
    """Detection delay in questions: questions about the new half submitted before the first
    alert (per signal too)."""
    switched = [a for a in asked if a.phase != "before"]
    first_switched = switched[0].submitted_at if switched else None
    alerts = [e for e in loop.of(DriftDetected) if first_switched and e.occurred_at >= first_switched]
    false_alarms = [e for e in loop.of(DriftDetected) if first_switched is None or e.occurred_at < first_switched]
    per_signal: dict[str, int] = {}
    for alert in alerts:
        if alert.signal not in per_signal:
            per_signal[alert.signal] = sum(a.submitted_at < alert.occurred_at for a in switched)
    return {
        "detected": bool(alerts),
        "detection_delay": min(per_signal.values()) if per_signal else None,
        "detection_delay_by_signal": per_signal,
        "live_false_alarms": len(false_alarms),
        "live_false_alarm_signals": [e.signal for e in false_alarms],
    }


def report(
    platform: EmbeddedPlatform,
    scenario: Scenario,
    asked: list[Asked],
    loop: Loop,
    timings: dict[str, float],
    *,
    null_questions: int,
    console: Console,
) -> dict[str, Any]:
    settings = monitor_settings(platform)
    with console.status(f"testing the monitor on {null_questions} questions from the unchanged distribution..."):
        null = null_false_alarms(
            settings,
            None,
            [d.text for d in scenario.first],
            scenario.first_questions[len([a for a in asked if a.phase == "before"]) :],
            [a for a in asked if a.phase == "before"],
            n=null_questions,
        )
    evaluated = loop.finetune_outcome()
    steps = [
        {
            "event": e.event_type,
            "at": e.occurred_at.isoformat(),
            **{
                k: v
                for k, v in e.model_dump(mode="json").items()
                if k
                in {
                    "signal",
                    "test",
                    "statistic",
                    "p_value",
                    "action",
                    "reason",
                    "rule",
                    "kind",
                    "version",
                    "decision",
                    "metric",
                    "candidate_value",
                    "live_value",
                    "questions",
                    "timed_out",
                }
            },
        }
        for e in loop.events
    ]
    analytics = platform.analytics()
    try:
        decisions = queries.version_decisions(analytics)
    finally:
        analytics.close()
    return {
        "questions_before_switch": sum(a.phase == "before" for a in asked),
        "questions_after_switch": sum(a.phase != "before" for a in asked),
        **detection(asked, loop),
        "false_alarms": sum(int(v["alerts"]) for v in null.values()),
        "false_alarm_questions": null_questions,
        "false_alarms_by_signal": null,
        "quality_by_phase": quality(asked),
        "finetune": (
            {
                "decision": evaluated.decision,
                "hit_at_5_candidate": evaluated.candidate_value,
                "hit_at_5_live": evaluated.live_value,
                "held_out_questions": evaluated.questions,
                "mcnemar_p_value": evaluated.p_value,
            }
            if isinstance(evaluated, CandidateEvaluated)
            else {"decision": "not run", "reason": getattr(evaluated, "reason", "no fine-tune request within the run")}
        ),
        "versions_promoted": [f"{e.kind}@{e.version}" for e in loop.of(VersionPromoted) if e.alias == "production"],
        "versions_rejected": [f"{e.kind}@{e.version}" for e in loop.of(VersionRejected)],
        "loop_events": steps,
        "version_decisions_in_clickhouse": decisions,
        "timings_s": timings,
    }


def print_drift_report(result: dict[str, Any], console: Console) -> None:
    table = Table(title="RAGOps drift scenario")
    table.add_column("figure")
    table.add_column("value", justify="right")
    table.add_row(
        "questions before / after the switch",
        f"{result['questions_before_switch']} / {result['questions_after_switch']}",
    )
    table.add_row("drift detected", "yes" if result["detected"] else "NO")
    table.add_row("detection_delay (questions)", str(result["detection_delay"]))
    for signal, delay in result["detection_delay_by_signal"].items():
        table.add_row(f"  {signal}", str(delay))
    table.add_row(f"false_alarms ({result['false_alarm_questions']} unchanged questions)", str(result["false_alarms"]))
    table.add_row("live false alarms before the switch", str(result["live_false_alarms"]))
    finetune = result["finetune"]
    table.add_row("fine-tune decision", str(finetune["decision"]))
    if "hit_at_5_candidate" in finetune:
        table.add_row(
            "held-out hit@5 candidate / live",
            f"{finetune['hit_at_5_candidate']:.3f} / {finetune['hit_at_5_live']:.3f} "
            f"({finetune['held_out_questions']} q, "
            f"McNemar p {finetune['mcnemar_p_value']:.3f})",
        )
    table.add_row("versions promoted", ", ".join(result["versions_promoted"]) or "-")
    console.print(table)
    phases = Table(title="quality by phase (means of the evaluation service's scores)")
    metrics = ["questions", "hit@5", "f1", "contains_answer", "faithfulness", "context_relevance", "thumbs_down_rate"]
    for column in ["phase", *metrics]:
        phases.add_column(column, justify="right")
    for phase, figures in result["quality_by_phase"].items():
        phases.add_row(phase, *(str(figures.get(m, "-")) for m in metrics))
    console.print(phases)


def run_drift_demo(
    *,
    data_dir: Path,
    corpus: Path,
    questions_file: Path,
    report_path: Path,
    console: Console,
    baseline: int = 200,
    after: int = 100,
    max_questions: int = 800,
    concurrency: int = 8,
    null_questions: int = 2000,
) -> dict[str, Any]:
    scenario = Scenario.split(corpus, questions_file)
    sources = data_dir / "sources" / "corpus.jsonl"
    holdout = data_dir / "sources" / "holdout.jsonl"
    write_jsonl(sources, corpus_rows(scenario.first))
    # Held out from the stream: the trainer compares models on these, never trains on them.
    held = scenario.first_questions[-150:] + scenario.later_questions[-150:]
    write_jsonl(holdout, [asdict(q) for q in held])
    scenario.first_questions = scenario.first_questions[:-150]
    scenario.later_questions = scenario.later_questions[:-150]
    env = {
        **MONITOR_ENV,
        "RAGOPS_TRAINER_SOURCES": json.dumps([str(sources.resolve())]),
        "RAGOPS_TRAINER_HOLDOUT": str(holdout.resolve()),
        "RAGOPS_TRAINER_MAX_TRAIN_SECONDS": "600",
    }
    with EmbeddedPlatform(data_dir=data_dir, env=env) as platform:
        with console.status("starting the platform..."):
            platform.wait_ready()
        result = asyncio.run(
            run_scenario(
                platform,
                scenario,
                sources,
                baseline=baseline,
                after=after,
                max_questions=max_questions,
                concurrency=concurrency,
                null_questions=null_questions,
                console=console,
            )
        )
        platform.check()
    report_path.write_text(json.dumps(result, indent=2, ensure_ascii=False, default=str))
    print_drift_report(result, console)
    console.print(f"report written to {report_path}")
    return result

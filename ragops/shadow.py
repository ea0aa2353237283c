"""Shadow replay (``ragops shadow``): ask retained production questions again through a
candidate (a prompt version) and through the baseline (production, or a pinned version),
beside production and answering nobody, score both sides with the same reference-free
evaluators, and gate the candidate's promotion on paired tests.

Each side is a tagged evaluation run (``<run>-baseline`` / ``<run>-candidate``) with new
request ids; ``example_id`` is the original request's id, which pairs the two sides. Tagged
runs are not production traffic: the monitor's signals and the retained-question query leave
them out (:mod:`ragops_analytics.queries`).

Per metric the paired comparison is :func:`ragops_analytics.paired.paired_comparison`
(Wilcoxon signed-rank on the scores), and on ``answered`` (a non-empty answer against a dead
letter or an empty one) McNemar's exact test. The gate blocks when a metric is significantly
worse (two-sided p < alpha with a negative difference), when fewer than ``min_questions``
questions were paired, or when the candidate's answers were not rendered with the pinned
version."""

import asyncio
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from rich.console import Console
from rich.table import Table

from ragops.client import PlatformClient, QueryTrace
from ragops.evaluate import evaluate_asked
from ragops.gate import Side, comparison_table, scores_of, served_check
from ragops_analytics import queries
from ragops_analytics.paired import GateCheck, compare as compare_scores
from ragops_analytics.queries import RetainedQuestion
from ragops_analytics.store import Reader
from ragops_schemas import EvaluationComparisonCompleted, EvaluationContext, Event, PairedMetric
from ragops_schemas.ids import dataset_file_hash
from ragops_shared.settings import KafkaSettings

ANSWERED = "answered"
"""The 0/1 outcome compared with McNemar's test: 1 when the side gave a non-empty answer."""
DISAGREEMENT = 0.5
"""A score difference at least this large makes a question a disagreement."""
EXCERPT = 160
"""Characters of a question or an answer printed per disagreement."""
MAX_DISAGREEMENTS = 100
"""Request ids the published comparison lists (its schema's limit)."""


@dataclass(frozen=True)
class Outcome:
    """One side's result on one question: its answer (None: dead-lettered), the prompt version
    that rendered it, and the evaluators' scores by metric name."""

    answer: str | None
    prompt_version: int | None
    scores: dict[str, float]

    @property
    def answered(self) -> bool:
        return bool(self.answer and self.answer.strip())

    @property
    def values(self) -> dict[str, float]:
        """The scores and :data:`ANSWERED` (0/1): what :func:`compare` pairs."""
        return {**self.scores, ANSWERED: float(self.answered)}

    @classmethod
    def of(cls, trace: QueryTrace) -> "Outcome":
        answer = trace.answer
        return cls(
            answer.answer if answer else None, answer.lineage.prompt.version if answer else None, scores_of(trace)
        )


@dataclass(frozen=True)
class ShadowPair:
    """A retained question and what each side made of it."""

    question: RetainedQuestion
    baseline: Outcome
    candidate: Outcome


@dataclass(frozen=True)
class Disagreement:
    """A question on which the sides disagree: one answered and the other did not, or a score
    differs by at least :data:`DISAGREEMENT` (``metrics``: those metrics)."""

    request_id: str
    question: str
    baseline_answer: str | None
    candidate_answer: str | None
    metrics: dict[str, tuple[float, float]] = field(default_factory=dict)


@dataclass(frozen=True)
class ShadowResult:
    """The paired comparison and the gate's decision."""

    run_id: str
    pairs: list[ShadowPair]
    paired: list[PairedMetric]
    disagreements: list[Disagreement]
    checks: list[GateCheck]
    """The gate's checks (:func:`gate_checks`); the candidate passes when every one does."""

    @property
    def passed(self) -> bool:
        return all(check.passed for check in self.checks)

    @property
    def reasons(self) -> list[str]:
        """The messages of the checks that block the candidate."""
        return [check.message for check in self.checks if not check.passed]

    def summary(self, disagreements_shown: int = 5) -> dict[str, Any]:
        """The result as JSON values (a report's): the paired metrics, the decision and the
        first ``disagreements_shown`` disagreements (excerpts)."""
        return {
            "run_id": self.run_id,
            "pairs": len(self.pairs),
            "paired": [m.model_dump(mode="json") for m in self.paired],
            "passed": self.passed,
            "reasons": self.reasons,
            "disagreements": len(self.disagreements),
            "disagreement_examples": [
                {
                    "request_id": d.request_id,
                    "question": excerpt(d.question),
                    "baseline_answer": excerpt(d.baseline_answer),
                    "candidate_answer": excerpt(d.candidate_answer),
                    "scores": {metric: list(scores) for metric, scores in d.metrics.items()},
                }
                for d in self.disagreements[:disagreements_shown]
            ],
        }


def pair_by_request(
    questions: Sequence[RetainedQuestion], baseline: Sequence[QueryTrace], candidate: Sequence[QueryTrace]
) -> list[ShadowPair]:
    """The two sides' traces paired by the original request id (their ``example_id``), in the
    order of ``questions``; a question either side lacks is left out."""
    sides = [
        {t.submitted.evaluation.example_id: Outcome.of(t) for t in traces if t.submitted.evaluation}
        for traces in (baseline, candidate)
    ]
    return [
        ShadowPair(q, sides[0][q.request_id], sides[1][q.request_id])
        for q in questions
        if q.request_id in sides[0] and q.request_id in sides[1]
    ]


def compare(pairs: Sequence[ShadowPair]) -> list[PairedMetric]:
    """McNemar on :data:`ANSWERED`, then a Wilcoxon comparison per metric both sides were
    scored on, over the questions scored on both (:func:`ragops_analytics.paired.compare`:
    metrics with fewer than 2 such pairs left out)."""
    paired = compare_scores(
        {p.question.request_id: p.baseline.values for p in pairs},
        {p.question.request_id: p.candidate.values for p in pairs},
        binary={ANSWERED},
    )
    return sorted(paired, key=lambda m: m.metric != ANSWERED)  # answered first, then by name


def _scored(pair: ShadowPair, metric: str) -> bool:
    return metric in pair.baseline.scores and metric in pair.candidate.scores


MIN_QUESTIONS_CHECK = "min-questions"


def gate_checks(
    paired: Sequence[PairedMetric],
    pairs: int,
    *,
    alpha: float,
    min_questions: int,
    candidate: Side | None = None,
    served: Sequence[int | None] = (),
) -> list[GateCheck]:
    """The gate's checks, each failed when it blocks the candidate, in this order:
    :data:`MIN_QUESTIONS_CHECK` (fewer than ``min_questions`` pairs); one per compared metric
    (fails when significantly worse: p < ``alpha`` and difference < 0); :data:`SERVED_CHECK`
    for a pinned candidate (fails when its answers, ``served`` = the prompt version of each,
    name another version)."""
    checks = [
        GateCheck(
            MIN_QUESTIONS_CHECK,
            None,
            pairs >= min_questions,
            f"{pairs} pairs, at least {min_questions} needed"
            if pairs >= min_questions
            else f"{pairs} paired questions, fewer than --min-questions {min_questions}",
        )
    ]
    for m in paired:
        worse = m.p_value is not None and m.p_value < alpha and m.difference < 0
        message = (
            f"{m.metric}: candidate worse by {-m.difference:.4f} ({m.test} p={m.p_value:.3g} < alpha {alpha:g}, "
            f"{m.pairs} pairs)"
            if worse
            else f"{m.test}: baseline {m.baseline_mean:.4f}, candidate {m.candidate_mean:.4f}, "
            f"difference {m.difference:+.4f} [{m.ci_low:+.4f}, {m.ci_high:+.4f}], p={m.p_value}"
        )
        checks.append(GateCheck(m.metric, m.metric, not worse, message))
    if candidate is not None and (check := served_check(candidate, served)) is not None:
        checks.append(check)
    return checks


def disagreements(pairs: Sequence[ShadowPair], threshold: float = DISAGREEMENT) -> list[Disagreement]:
    """The questions on which the sides disagree, in question order."""
    found = []
    for pair in pairs:
        metrics = {
            metric: (pair.baseline.scores[metric], pair.candidate.scores[metric])
            for metric in sorted(pair.baseline.scores)
            if _scored(pair, metric) and abs(pair.candidate.scores[metric] - pair.baseline.scores[metric]) >= threshold
        }
        if metrics or pair.baseline.answered != pair.candidate.answered:
            found.append(
                Disagreement(
                    pair.question.request_id,
                    pair.question.question,
                    pair.baseline.answer,
                    pair.candidate.answer,
                    metrics,
                )
            )
    return found


def excerpt(text: str | None, size: int = EXCERPT) -> str:
    """``text`` on one line, cut to ``size`` characters with an ellipsis; ``-`` for none."""
    if text is None:
        return "-"
    flat = " ".join(text.split())
    return flat if len(flat) <= size else flat[: size - 1] + "…"


async def replay(
    client: PlatformClient,
    questions: Sequence[RetainedQuestion],
    *,
    run_id: str,
    tenant: str,
    baseline: Side,
    candidate: Side,
    alpha: float,
    min_questions: int,
    concurrency: int = 8,
    timeout_s: float = 600.0,
    on_done: Callable[[Event], None] = lambda _: None,
) -> ShadowResult:
    """Ask ``questions`` through both sides at once (each a tagged run of ``tenant``, half the
    ``concurrency`` each), pair, compare, gate, and publish the
    ``EvaluationComparisonCompleted`` (mode shadow). Raises what
    :meth:`PlatformClient.ask` raises (``RequestTimeoutError`` after ``timeout_s``)."""
    # The replayed set's identity: the hash of its request ids, one a line, in replay order.
    replayed = dataset_file_hash("\n".join(q.request_id for q in questions).encode())

    async def side(name: str, pin: Side) -> list[QueryTrace]:
        side_run = f"{run_id}-{name}"
        asked = [
            client.question(
                q.question,
                top_k=q.top_k,
                filters=q.filters,
                prompt_name=pin.prompt_name,
                prompt_version=pin.prompt_version,
                evaluation=EvaluationContext(run_id=side_run, example_id=q.request_id),
            ).model_copy(update={"tenant": tenant})
            for q in questions
        ]
        traces, _ = await evaluate_asked(
            client,
            asked,
            run_id=side_run,
            dataset=f"shadow:{tenant}",
            dataset_sha256=replayed,
            side="baseline" if name == "baseline" else "candidate",
            concurrency=max(1, concurrency // 2),
            timeout_s=timeout_s,
            on_done=on_done,
        )
        return traces

    baseline_traces, candidate_traces = await asyncio.gather(side("baseline", baseline), side("candidate", candidate))
    pairs = pair_by_request(questions, baseline_traces, candidate_traces)
    paired = compare(pairs)
    result = ShadowResult(
        run_id=run_id,
        pairs=pairs,
        paired=paired,
        disagreements=disagreements(pairs),
        checks=gate_checks(
            paired,
            len(pairs),
            alpha=alpha,
            min_questions=min_questions,
            candidate=candidate,
            served=[p.candidate.prompt_version for p in pairs if p.candidate.answer is not None],
        ),
    )
    await client.publish(
        EvaluationComparisonCompleted(
            producer=client.producer,
            tenant=tenant,
            run_id=run_id,
            mode="shadow",
            baseline=baseline.label,
            candidate=candidate.label,
            questions=len(questions),
            paired=paired,
            disagreements=[d.request_id for d in result.disagreements[:MAX_DISAGREEMENTS]],
            passed=result.passed,
            reasons=result.reasons,
        )
    )
    return result


async def replay_retained(
    kafka: KafkaSettings,
    analytics: Reader,
    *,
    run_id: str,
    tenant: str,
    baseline: Side,
    candidate: Side,
    alpha: float,
    min_questions: int,
    since: datetime | None = None,
    until: datetime | None = None,
    sample: int | None = None,
    seed: int = 0,
    concurrency: int = 8,
    timeout_s: float = 600.0,
    on_questions: Callable[[int], None] = lambda _: None,
    on_done: Callable[[Event], None] = lambda _: None,
) -> ShadowResult:
    """:func:`replay` of the retained production questions of ``tenant`` that
    :func:`ragops_analytics.queries.retained_questions` selects (``on_questions`` is told how
    many: each is asked twice). Raises ``PlatformUnreachableError``, what the query raises."""
    questions = await asyncio.to_thread(
        queries.retained_questions, analytics, tenant, since=since, until=until, sample=sample, seed=seed
    )
    on_questions(len(questions))
    async with PlatformClient(kafka, name="shadow") as client:
        return await replay(
            client,
            questions,
            run_id=run_id,
            tenant=tenant,
            baseline=baseline,
            candidate=candidate,
            alpha=alpha,
            min_questions=min_questions,
            concurrency=concurrency,
            timeout_s=timeout_s,
            on_done=on_done,
        )


def print_result(result: ShadowResult, console: Console, *, baseline: Side, candidate: Side) -> None:
    """The comparison table (:func:`ragops.gate.comparison_table`), the disagreements and the decision."""
    title = f"{result.run_id}: {candidate.label} against {baseline.label} on {len(result.pairs)} retained questions"
    console.print(comparison_table(result.paired, result.checks, title))
    if result.disagreements:
        shown = Table(
            "request",
            "question",
            "baseline answer",
            "candidate answer",
            "scores (baseline -> candidate)",
            title=f"{len(result.disagreements)} questions on which the sides disagree",
        )
        for d in result.disagreements[:MAX_DISAGREEMENTS]:
            shown.add_row(
                d.request_id,
                excerpt(d.question),
                excerpt(d.baseline_answer),
                excerpt(d.candidate_answer),
                ", ".join(f"{metric} {b:.2f} -> {c:.2f}" for metric, (b, c) in d.metrics.items()),
            )
        console.print(shown)
    if result.passed:
        console.print(f"[green]passed: {candidate.label} may be promoted")
    for reason in result.reasons:
        console.print(f"[red]blocked: {reason}")

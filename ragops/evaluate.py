"""Offline evaluation runs (``ragops eval``, and the demo's questions): send a question set
with its references through the platform, collect the ``AnswerEvaluated`` events, summarise
them, and publish the summary as ``EvaluationRunCompleted`` (so it lands in ClickHouse).

The summary says whether the production (reference-free) metrics track real quality: the
Spearman rank correlation of each with token F1 over the run (scipy.stats.spearmanr)."""

from collections import defaultdict
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Literal

import numpy as np
from scipy.stats import spearmanr

from ragops.client import PlatformClient, QueryTrace
from ragops_schemas import AnswerEvaluated, EvaluationContext, EvaluationRunCompleted, Event, QuerySubmitted
from ragops_schemas.ids import dataset_file_hash
from ragops_shared.datasets import Question

REFERENCE_METRIC = "f1"


def file_sha256(path: Path) -> str:
    return dataset_file_hash(path.read_bytes())


def spearman_vs_reference(evaluations: Sequence[AnswerEvaluated]) -> dict[str, float | None]:
    """Spearman rho between each reference-free metric and token F1 over the answers that
    have both; None where it is undefined (fewer than 3 pairs, or a constant series)."""
    by_metric: dict[str, list[tuple[float, float]]] = defaultdict(list)
    for evaluation in evaluations:
        scores = {score.name: score for score in evaluation.scores}
        if REFERENCE_METRIC not in scores:
            continue
        for score in scores.values():
            if not score.reference_based:
                by_metric[score.name].append((score.value, scores[REFERENCE_METRIC].value))
    result: dict[str, float | None] = {}
    for metric, pairs in sorted(by_metric.items()):
        values, reference = zip(*pairs, strict=True)
        if len(pairs) < 3 or len(set(values)) < 2 or len(set(reference)) < 2:
            result[metric] = None
        else:
            result[metric] = round(float(spearmanr(values, reference).statistic), 4)
    return result


def mean_scores(evaluations: Sequence[AnswerEvaluated]) -> dict[str, float]:
    values: dict[str, list[float]] = defaultdict(list)
    for evaluation in evaluations:
        for score in evaluation.scores:
            values[score.name].append(score.value)
    return {name: round(float(np.mean(v)), 4) for name, v in sorted(values.items())}


async def run_evaluation(
    client: PlatformClient,
    questions: Sequence[Question],
    *,
    run_id: str,
    dataset: str,
    dataset_sha256: str,
    dataset_version: str | None = None,
    side: Literal["baseline", "candidate"] | None = None,
    prompt_name: str | None = None,
    prompt_version: int | None = None,
    concurrency: int = 8,
    timeout_s: float = 600.0,
    on_done: Callable[[Event], None] = lambda _: None,
) -> tuple[list[QueryTrace], EvaluationRunCompleted]:
    """Ask every question with its references tagged with ``run_id`` (pinned to
    ``prompt_name``/``prompt_version`` when given: one side of a comparison); wait for each
    answer's evaluation; publish and return the run summary with the traces."""
    asked = [
        client.question(
            q.question,
            prompt_name=prompt_name,
            prompt_version=prompt_version,
            evaluation=EvaluationContext(
                run_id=run_id, example_id=q.id, reference_answers=q.answers, reference_context_ids=q.context_ids
            ),
        )
        for q in questions
    ]
    return await evaluate_asked(
        client,
        asked,
        run_id=run_id,
        dataset=dataset,
        dataset_sha256=dataset_sha256,
        dataset_version=dataset_version,
        side=side,
        concurrency=concurrency,
        timeout_s=timeout_s,
        on_done=on_done,
    )


async def evaluate_asked(
    client: PlatformClient,
    asked: Sequence[QuerySubmitted],
    *,
    run_id: str,
    dataset: str,
    dataset_sha256: str,
    dataset_version: str | None = None,
    side: Literal["baseline", "candidate"] | None = None,
    concurrency: int = 8,
    timeout_s: float = 600.0,
    on_done: Callable[[Event], None] = lambda _: None,
) -> tuple[list[QueryTrace], EvaluationRunCompleted]:
    """Ask ``asked`` (questions already tagged with ``run_id``: their ``evaluation``); wait for
    each answer's evaluation; publish and return the run summary (``side`` of a comparison,
    if one; ``dataset_version``: the pushed dataset version, if one) with the traces, in input
    order."""
    traces = await client.ask(
        asked, concurrency=concurrency, timeout_s=timeout_s, on_done=on_done, until_evaluated=True
    )
    evaluations = [t.outcome for t in traces if isinstance(t.outcome, AnswerEvaluated)]
    first = next((t.answer for t in traces if t.answer is not None), None)
    summary = EvaluationRunCompleted(
        producer=client.producer,
        run_id=run_id,
        dataset=dataset,
        dataset_sha256=dataset_sha256,
        dataset_version=dataset_version,
        side=side,
        questions=len(asked),
        answered=len(evaluations),
        prompt=first.lineage.prompt if first else None,
        generation_model=first.lineage.generation_model if first else None,
        embedding_model=first.lineage.embedding.name if first else None,
        collection=first.lineage.collection if first else None,
        mean_scores=mean_scores(evaluations),
        spearman_vs_f1=spearman_vs_reference(evaluations),
    )
    await client.publish(summary)
    return traces, summary

"""The analysis of a running experiment: each variant against the control, on the policy's
primary metric and on each guardrail metric, with the always-valid sequential test
(:func:`ragops_analytics.sequential.sequential_test`, mSPRT), and the decision it supports.
The monitor concludes experiments with it; ``ragops experiment show`` prints the same numbers.

Metrics (observations from :func:`ragops_analytics.queries.experiment_observations`):
``thumbs_down_rate`` (0/1 per feedback, Bernoulli), each evaluation score by its RAGAS/SQuAD
name (higher is better), ``latency_ms`` (the model call) and ``cost_usd`` (lower is better).

Several comparisons are made at once (every non-control variant on every metric), so each
runs at ``alpha / comparisons`` (Bonferroni): the chance that any of them declares a
difference where none exists stays at most the policy's ``alpha``.
"""

import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Literal

from ragops_analytics.queries import experiment_events, experiment_observations
from ragops_analytics.sequential import sequential_test
from ragops_analytics.store import Reader
from ragops_schemas import Event
from ragops_schemas.experiments import EXPERIMENT_EVENT_TYPES, ExperimentBook, ExperimentStarted, VariantResult

LOWER_IS_BETTER = frozenset({"thumbs_down_rate", "latency_ms", "cost_usd"})
"""Metrics whose lower values are better; every other metric (the evaluation scores, in
[0, 1]) is better higher."""
BERNOULLI = frozenset({"thumbs_down_rate"})
"""Metrics whose observations are 0/1."""

UNBOUNDED = frozenset({"latency_ms", "cost_usd"})
"""Metrics not in [0, 1] (every other one, rates and evaluation scores, is)."""

Observations = Sequence[tuple[str, float]]
"""``(variant, value)`` in arrival order."""


def metrics_of(started: ExperimentStarted) -> list[str]:
    """The primary metric, then each guardrail metric once (in the policy's order)."""
    policy = started.policy
    return list(dict.fromkeys([policy.primary_metric, *policy.guardrail_metrics]))


def comparison_alpha(started: ExperimentStarted) -> float:
    """The type I error of each comparison: the policy's ``alpha`` over (non-control
    variants x metrics), Bonferroni."""
    return started.policy.alpha / ((len(started.variants) - 1) * len(metrics_of(started)))


def compare(started: ExperimentStarted, metric: str, observations: Observations) -> list[VariantResult]:
    """Each non-control variant of ``started`` against its control (the first variant) on
    ``metric``: the mSPRT over the two arms' observations in arrival order (the other arms'
    left out), at :func:`comparison_alpha` and the policy's ``min_samples`` per arm.
    Observations of a variant the experiment does not have are ignored."""
    control = started.variants[0].name
    results = []
    for variant in started.variants[1:]:
        arms = [(0 if name == control else 1, value) for name, value in observations if name in (control, variant.name)]
        result = sequential_test(
            [arm for arm, _ in arms],
            [value for _, value in arms],
            alpha=comparison_alpha(started),
            min_samples=started.policy.min_samples,
            higher_is_better=metric not in LOWER_IS_BETTER,
            bernoulli=metric in BERNOULLI,
        )
        # The confidence sequence is unbounded before the first look, which JSON cannot carry:
        # it is cut to the range a difference of the metric can take.
        bound = sys.float_info.max if metric in UNBOUNDED else 1.0
        results.append(
            VariantResult(
                variant=variant.name,
                metric=metric,
                samples=result.samples,
                control_samples=result.control_samples,
                mean=result.mean,
                control_mean=result.control_mean,
                difference=result.difference,
                ci_low=max(result.ci_low, -bound),
                ci_high=min(result.ci_high, bound),
                p_value=result.p_value,
                outcome=result.outcome,
            )
        )
    return results


def analyse(started: ExperimentStarted, observations: Mapping[str, Observations]) -> list[VariantResult]:
    """Every comparison of :func:`compare` over :func:`metrics_of` (``observations``: metric ->
    its observations; a metric missing there has none), metric by metric, variant by variant."""
    return [
        result for metric in metrics_of(started) for result in compare(started, metric, observations.get(metric, ()))
    ]


def experiment_results(reader: Reader, started: ExperimentStarted) -> list[VariantResult]:
    """:func:`analyse` of what ClickHouse holds on experiment ``started`` now. Raises what the
    reader raises (QueryError, StoreUnavailable)."""
    return analyse(
        started,
        {metric: experiment_observations(reader, started.experiment_id, metric) for metric in metrics_of(started)},
    )


@dataclass(frozen=True)
class Decision:
    """What the test supports: a variant ``winner`` (better on the primary metric, harmless),
    ``loser`` (worse on it) or ``harmful`` (worse on a guardrail metric), on ``metric``."""

    decision: Literal["winner", "loser", "harmful"]
    variant: str
    metric: str
    reason: str


def _describe(result: VariantResult, control: str, alpha: float) -> str:
    return (
        f"{result.variant} is {result.outcome} than {control} on {result.metric}: {result.mean:.4g} vs "
        f"{result.control_mean:.4g} ({result.samples} vs {result.control_samples} observations, difference "
        f"{result.difference:+.4g}, always-valid CI [{result.ci_low:.4g}, {result.ci_high:.4g}], "
        f"p={result.p_value:.3g} < {alpha:.3g}: mSPRT, alpha split over the comparisons by Bonferroni)"
    )


def decide(started: ExperimentStarted, results: Sequence[VariantResult]) -> Decision | None:
    """The decision ``results`` (of :func:`analyse`) support, None while undecided. A variant
    significantly worse on a guardrail metric is ``harmful`` (checked first: harm ends the
    experiment whatever the primary metric says); else worse on the primary metric ``loser``;
    else better on it ``winner``. Among several, the first variant in the experiment's order."""
    primary = started.policy.primary_metric
    guardrails = set(started.policy.guardrail_metrics) - {primary}
    control = started.variants[0].name
    alpha = comparison_alpha(started)
    rules: list[tuple[Literal["winner", "loser", "harmful"], set[str], str]] = [
        ("harmful", guardrails, "worse"),
        ("loser", {primary}, "worse"),
        ("winner", {primary}, "better"),
    ]
    for decision, metrics, outcome in rules:
        for result in results:
            if result.metric in metrics and result.outcome == outcome:
                reason = _describe(result, control, alpha)
                if decision == "winner":
                    reason += "; the experiment goes on until an operator promotes the winner"
                return Decision(decision, result.variant, result.metric, reason)
    return None


_EXPERIMENT_EVENTS: dict[str, type[Event]] = {
    event.model_fields["event_type"].default: event for event in EXPERIMENT_EVENT_TYPES
}


@dataclass(frozen=True)
class Readout:
    """An experiment as ClickHouse holds it now: its start, the event that ended it (a stop, or
    a conclusion that rolled it back; None while it runs), every comparison of
    :func:`experiment_results` and the decision they support now (None: undecided)."""

    started: ExperimentStarted
    ended: Event | None
    results: list[VariantResult]
    decision: Decision | None


def readout(reader: Reader, experiment_id: str) -> Readout | None:
    """The :class:`Readout` of experiment ``experiment_id`` (None if its start is not stored):
    what ``ragops experiment show`` prints, the monitor's computation. Its events are read as
    the sink stored them, folded as every service folds them (:class:`ExperimentBook`). A
    reader restricted to one tenant sees that tenant's observations only; the monitor's (and a
    platform credential's) sees every tenant's. Raises what the reader raises."""
    book = ExperimentBook()
    for event_type, payload in experiment_events(reader, experiment_id):
        book.apply(_EXPERIMENT_EVENTS[event_type].model_validate_json(payload))
    started = book.get(experiment_id)
    if started is None:
        return None
    results = experiment_results(reader, started)
    return Readout(started, book.ended(experiment_id), results, decide(started, results))

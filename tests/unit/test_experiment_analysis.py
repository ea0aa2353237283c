"""The experiment analysis (ragops_analytics.experiments) on constructed observation streams:
each variant against the control with the mSPRT, Bonferroni over the comparisons, and the
decision (harmful before loser before winner; nothing while undecided or short of samples)."""

import numpy as np
import pytest

from ragops_analytics.experiments import analyse, comparison_alpha, decide, metrics_of
from ragops_schemas.experiments import ExperimentPolicy, ExperimentStarted, ExperimentVariant
from tests.helpers import example

CONTROL, VARIANT = "control", "v4"


def started(min_samples: int = 100, variants: int = 2, **policy: object) -> ExperimentStarted:
    arms = [ExperimentVariant(name=CONTROL, version="3", weight=100 - 10 * (variants - 1))]
    arms += [ExperimentVariant(name=f"v{4 + i}", version=str(4 + i), weight=10) for i in range(variants - 1)]
    return example(ExperimentStarted).model_copy(
        update={
            "variants": arms,
            "policy": ExperimentPolicy.model_validate(
                {"primary_metric": "thumbs_down_rate", "guardrail_metrics": ["latency_ms"], "min_samples": min_samples}
                | policy
            ),
        }
    )


def stream(
    n: int, control: float, variant: float, *, bernoulli: bool, seed: int, scale: float = 50.0
) -> list[tuple[str, float]]:
    """``n`` observations per arm, interleaved at random: 0/1 with the given rates, or normal
    with the given means and ``scale``."""
    rng = np.random.default_rng(seed)
    names = rng.permutation([CONTROL] * n + [VARIANT] * n)
    out = []
    for name in names:
        mean = control if name == CONTROL else variant
        value = float(rng.random() < mean) if bernoulli else float(rng.normal(mean, scale))
        out.append((str(name), value))
    return out


def observations(
    down: tuple[float, float], latency: tuple[float, float], n: int = 600
) -> dict[str, list[tuple[str, float]]]:
    return {
        "thumbs_down_rate": stream(n, *down, bernoulli=True, seed=1),
        "latency_ms": stream(n, *latency, bernoulli=False, seed=2),
    }


def test_a_variant_with_far_more_thumbs_down_loses() -> None:
    experiment = started()
    results = analyse(experiment, observations(down=(0.1, 0.4), latency=(800, 800)))
    assert [(r.variant, r.metric, r.outcome) for r in results] == [
        (VARIANT, "thumbs_down_rate", "worse"),
        (VARIANT, "latency_ms", "undecided"),
    ]
    primary = results[0]
    assert primary.samples == primary.control_samples == 600
    assert primary.mean > primary.control_mean and primary.ci_low > 0
    decision = decide(experiment, results)
    assert decision is not None
    assert (decision.decision, decision.variant, decision.metric) == ("loser", VARIANT, "thumbs_down_rate")
    assert "Bonferroni" in decision.reason


def test_a_variant_with_fewer_thumbs_down_wins_and_the_reason_says_an_operator_promotes_it() -> None:
    experiment = started()
    decision = decide(experiment, analyse(experiment, observations(down=(0.3, 0.05), latency=(800, 800))))
    assert decision is not None and (decision.decision, decision.variant) == ("winner", VARIANT)
    assert "operator promotes" in decision.reason


def test_a_variant_worse_on_a_guardrail_is_harmful_even_when_it_wins_on_the_primary_metric() -> None:
    experiment = started()
    results = analyse(experiment, observations(down=(0.3, 0.05), latency=(800, 900)))
    assert {r.metric: r.outcome for r in results} == {"thumbs_down_rate": "better", "latency_ms": "worse"}
    decision = decide(experiment, results)
    assert decision is not None and (decision.decision, decision.metric) == ("harmful", "latency_ms")


def test_no_difference_decides_nothing() -> None:
    experiment = started()
    results = analyse(experiment, observations(down=(0.2, 0.2), latency=(800, 800)))
    assert {r.outcome for r in results} == {"undecided"}
    assert decide(experiment, results) is None


def test_nothing_is_decided_before_min_samples_per_arm_however_large_the_difference() -> None:
    data = observations(down=(0.0, 1.0), latency=(800, 800), n=99)
    short = analyse(started(min_samples=100), data)
    assert {r.outcome for r in short} == {"undecided"}
    assert short[0].p_value == 1.0 and (short[0].ci_low, short[0].ci_high) == (-1.0, 1.0), "the bounds a rate allows"
    assert short[1].ci_high == pytest.approx(np.finfo(float).max), "latency is unbounded, yet finite for JSON"
    assert decide(started(min_samples=100), short) is None
    assert decide(started(min_samples=50), analyse(started(min_samples=50), data)) is not None


def test_alpha_is_split_over_variants_and_metrics_and_other_arms_are_left_out() -> None:
    three = started(variants=3, alpha=0.06, guardrail_metrics=["latency_ms", "faithfulness", "thumbs_down_rate"])
    assert metrics_of(three) == ["thumbs_down_rate", "latency_ms", "faithfulness"]
    assert comparison_alpha(three) == pytest.approx(0.06 / (2 * 3))
    data = observations(down=(0.1, 0.4), latency=(800, 800), n=300)
    # Observations of the third arm do not count in the second arm's comparison.
    data["thumbs_down_rate"] = data["thumbs_down_rate"] + [("v5", 0.0)] * 50
    results = analyse(three, data)
    by = {(r.variant, r.metric): r for r in results}
    assert by[("v4", "thumbs_down_rate")].samples == 300 and by[("v5", "thumbs_down_rate")].samples == 50
    assert by[("v5", "faithfulness")].samples == 0 and by[("v5", "faithfulness")].outcome == "undecided"
    decision = decide(three, results)
    assert decision is not None and (decision.decision, decision.variant) == ("loser", "v4")

"""The mSPRT (ragops_analytics.sequential): its formula on a stream worked by hand, its
validity under continuous peeking on thousands of simulated A/A experiments (where the naive
fixed-horizon test peeked at the same looks is not valid), its power, the coverage of its
confidence sequence, and its edge cases. Simulations: bench.ab_simulation (seeded)."""

import math

import numpy as np
import pytest

from bench.ab_simulation import NULL_STREAMS, Stream, simulate
from ragops_analytics.sequential import DEFAULT_TAU_SD, msprt_paths, sequential_test

ALPHA = 0.05


# --- the formula ----------------------------------------------------------------------------


def test_a_single_look_gives_the_mixture_likelihood_ratio_and_its_interval_worked_by_hand() -> None:
    rng = np.random.default_rng(1)
    control, treatment = rng.normal(0.0, 1.0, 150), rng.normal(0.4, 1.5, 150)
    # All control first: both arms reach min_samples only with the very last observation.
    result = sequential_test([0] * 150 + [1] * 150, [*control, *treatment], min_samples=150, tau=0.3)
    d = treatment.mean() - control.mean()
    v = control.var(ddof=1) / 150 + treatment.var(ddof=1) / 150
    lam = math.sqrt(v / (v + 0.09)) * math.exp(0.09 * d * d / (2 * v * (v + 0.09)))
    half = math.sqrt(v * (v + 0.09) / 0.09 * (math.log((v + 0.09) / v) - 2 * math.log(ALPHA)))
    assert result.p_value == pytest.approx(min(1.0, 1 / lam))
    assert (result.ci_low, result.ci_high) == pytest.approx((d - half, d + half))
    assert result.difference == pytest.approx(d)
    assert (result.samples, result.control_samples) == (150, 150)
    assert (result.mean, result.control_mean) == pytest.approx((treatment.mean(), control.mean()))


def test_bernoulli_variance_is_p_times_one_minus_p_and_the_default_tau_scales_with_it() -> None:
    control, treatment = [1.0] * 30 + [0.0] * 120, [1.0] * 60 + [0.0] * 90
    result = sequential_test([0] * 150 + [1] * 150, control + treatment, min_samples=150, bernoulli=True)
    var_a, var_b = 0.2 * 0.8, 0.4 * 0.6
    v = var_a / 150 + var_b / 150
    tau2 = DEFAULT_TAU_SD**2 * (var_a + var_b) / 2
    lam = math.sqrt(v / (v + tau2)) * math.exp(tau2 * 0.04 / (2 * v * (v + tau2)))
    assert result.p_value == pytest.approx(min(1.0, 1 / lam))


def test_the_p_value_never_rises_and_the_interval_never_widens_as_observations_arrive() -> None:
    rng = np.random.default_rng(2)
    arms, values = rng.integers(0, 2, 3000), rng.normal(0.05, 1.0, 3000)
    paths = msprt_paths(arms, values)
    assert np.all(np.diff(paths.p_value[0]) <= 0)
    low, high = paths.ci_low[0], paths.ci_high[0]
    assert np.all(low[1:] >= low[:-1]) and np.all(high[1:] <= high[:-1])
    # p <= alpha exactly when 0 has left the confidence sequence.
    rejected = paths.p_value[0] <= ALPHA
    assert np.array_equal(rejected, (paths.ci_low[0] > 0) | (paths.ci_high[0] < 0))


def test_the_test_is_free_of_location_and_with_the_default_tau_of_scale() -> None:
    rng = np.random.default_rng(3)
    arms, values = rng.integers(0, 2, 2000), rng.normal(0.0, 1.0, 2000) + 0.1
    values = np.where(arms == 1, values + 0.12, values)
    base = sequential_test(arms, values)
    # Latency in ms around 10^6: the sums of squares must not cancel.
    moved = sequential_test(arms, values * 1000 + 1e6)
    assert moved.p_value == pytest.approx(base.p_value, rel=1e-6)
    assert moved.ci_low == pytest.approx(base.ci_low * 1000, rel=1e-6)
    assert moved.outcome == base.outcome


# --- decisions --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("higher_is_better", "shift", "outcome"),
    [
        (True, 0.5, "better"),
        (True, -0.5, "worse"),
        (False, 0.5, "worse"),
        (False, -0.5, "better"),
    ],
)
def test_a_clear_difference_is_better_or_worse_by_its_sign_and_the_metric_direction(
    higher_is_better: bool, shift: float, outcome: str
) -> None:
    rng = np.random.default_rng(4)
    arms = rng.integers(0, 2, 1000)
    values = rng.normal(0.0, 1.0, 1000) + shift * arms
    result = sequential_test(arms, values, higher_is_better=higher_is_better)
    assert result.p_value <= ALPHA
    assert result.outcome == outcome
    assert result.ci_low <= result.difference <= result.ci_high
    assert (result.ci_low > 0) == (shift > 0)


def test_no_difference_is_undecided_with_its_p_value_above_alpha() -> None:
    rng = np.random.default_rng(5)
    result = sequential_test(rng.integers(0, 2, 1000), rng.normal(0.0, 1.0, 1000))
    assert result.p_value > ALPHA
    assert result.outcome == "undecided"
    assert result.ci_low < 0 < result.ci_high


# --- validity under continuous peeking (simulated streams) ------------------------------------


@pytest.mark.parametrize("stream", NULL_STREAMS, ids=lambda s: s.name)
def test_under_a_a_with_a_look_after_every_observation_the_false_positive_rate_stays_at_most_alpha(
    stream: Stream,
) -> None:
    decisions = simulate(stream, experiments=2000, observations=2000, rng=np.random.default_rng(15), alpha=ALPHA)
    assert decisions["msprt"].rate <= ALPHA
    # The same harness on the naive fixed-horizon z-test, peeked at the same looks: far above
    # alpha, which is why the monitor cannot use it.
    assert decisions["naive"].rate > 2 * ALPHA
    # The confidence sequence holds the true difference (0) in at least 1 - alpha of the runs.
    assert decisions["msprt"].covered.mean() >= 1 - ALPHA


def test_a_clear_effect_is_found_within_the_horizon_with_power_of_at_least_0_8() -> None:
    thumbs_down = Stream("thumbs-down 0.10 vs 0.20", True, 0.10, 0.20)
    decisions = simulate(thumbs_down, experiments=500, observations=2000, rng=np.random.default_rng(16))["msprt"]
    assert decisions.rate >= 0.8
    assert decisions.stopping_percentile(50) is not None and decisions.stopping_percentile(50) < 2000
    # Under an effect the confidence sequence still holds the true difference.
    assert decisions.covered.mean() >= 1 - ALPHA


# --- edge cases -------------------------------------------------------------------------------


def test_fewer_than_min_samples_per_arm_is_undecided_with_p_1_and_an_unbounded_interval() -> None:
    result = sequential_test([0] * 500 + [1] * 99, [0.0] * 500 + [5.0] * 99)
    assert (result.p_value, result.outcome) == (1.0, "undecided")
    assert (result.ci_low, result.ci_high) == (-math.inf, math.inf)
    assert (result.samples, result.control_samples, result.difference) == (99, 500, 5.0)
    empty = sequential_test([], [])
    assert (empty.samples, empty.p_value, empty.outcome) == (0, 1.0, "undecided")


def test_constant_equal_arms_are_undecided_and_constant_different_arms_are_certain() -> None:
    arms = [0, 1] * 200
    same = sequential_test(arms, [1.0] * 400)
    assert (same.p_value, same.outcome, same.difference) == (1.0, "undecided", 0.0)
    # Zero variance with a nonzero difference: the likelihood ratio's limit is infinite, the
    # arms differ for certain (every control answer kept, every treatment answer thumbed down).
    apart = sequential_test(arms, [0.0, 1.0] * 200, bernoulli=True, higher_is_better=False)
    assert (apart.p_value, apart.outcome) == (0.0, "worse")
    assert (apart.ci_low, apart.ci_high) == (1.0, 1.0)


def test_bad_input_is_refused_with_the_reason() -> None:
    with pytest.raises(ValueError, match="3 arms but 2 values"):
        sequential_test([0, 1, 0], [1.0, 2.0])
    with pytest.raises(ValueError, match="0 \\(control\\) or 1"):
        sequential_test([0, 2], [1.0, 2.0])
    with pytest.raises(ValueError, match="bernoulli values must be 0 or 1"):
        sequential_test([0, 1], [0.5, 1.0], bernoulli=True)
    with pytest.raises(ValueError, match="finite"):
        sequential_test([0, 1], [math.nan, 1.0])
    with pytest.raises(ValueError, match="tau must be positive"):
        sequential_test([0, 1], [0.0, 1.0], tau=0.0)
    with pytest.raises(ValueError, match="alpha"):
        sequential_test([0, 1], [0.0, 1.0], alpha=1.0)

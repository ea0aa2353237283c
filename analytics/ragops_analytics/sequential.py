"""Always-valid A/B statistics: the mixture sequential probability ratio test (mSPRT).

A fixed-horizon test (z or t) is valid only if it is looked at once, at a sample size chosen
in advance; looked at after every observation and stopped at the first p <= alpha, its false
positive rate grows far above alpha. The mSPRT gives a p-value and a confidence interval
that stay valid at every look, so a monitor may check after every observation and stop as
soon as the p-value crosses alpha.

Source: R. Johari, P. Koomen, L. Pekelis, D. Walsh, "Peeking at A/B Tests: Why it matters,
and what to do about it", KDD 2017; R. Johari, L. Pekelis, D. Walsh, "Always valid
inference: continuous monitoring of A/B tests", Operations Research 70(3), 2022
(arXiv:1512.04922): the two-stream normal mSPRT with a normal mixing distribution
N(0, tau^2) over the difference of means, variances plugged in.

At a look with ``n_A`` control and ``n_B`` treatment observations, difference of means
``d = mean_B - mean_A`` and ``V = var_A/n_A + var_B/n_B`` (plug-in variances, ``p(1-p)`` for
0/1 values), the mixture likelihood ratio against "no difference" is::

    Lambda = sqrt(V / (V + tau^2)) * exp(tau^2 * d^2 / (2 * V * (V + tau^2)))

The always-valid p-value is the running minimum over the looks of ``min(1, 1/Lambda)``;
the confidence sequence is the running intersection over the looks of::

    d +- sqrt(V * (V + tau^2) / tau^2 * (log((V + tau^2) / V) - 2 * log(alpha)))

(the differences theta not rejected at level alpha), so ``p <= alpha`` exactly when 0 has
left the confidence sequence.
"""

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

import numpy as np
from numpy.typing import NDArray

# tau, as a multiple of the pooled standard deviation of the observations: the scale of
# the effects worth detecting (Johari et al.: the mixing distribution should put its mass
# where the effects of the experiments are). The effects an experiment on a few thousand
# answers can see are 0.1-0.3 sd (a thumbs-down rate of 0.10 against 0.13 is 0.1 sd, against
# 0.20 0.3 sd); on simulated streams of 4,000 observations, tau = 0.2 sd decided 0.2-0.3 sd
# effects in 15-30 % fewer samples than 0.1 sd, with about the same power at 0.1 sd (0.66 vs
# 0.68). Like the variances, the pooled standard deviation is plugged in at each look; the
# A/A simulations (bench row S1) show the false positive rate stays below alpha with it.
DEFAULT_TAU_SD = 0.2

Outcome = Literal["better", "worse", "undecided"]


@dataclass(frozen=True, slots=True)
class SequentialResult:
    """The treatment arm against the control on one metric, after every look.

    ``samples``/``control_samples``: observations per arm; ``mean``/``control_mean``: their
    means (the metric's unit); ``difference = mean - control_mean``; ``ci_low``/``ci_high``:
    the always-valid confidence sequence of the difference at level ``1 - alpha`` (the whole
    real line before the first look); ``p_value``: the always-valid p-value in [0, 1];
    ``outcome``: "better"/"worse" only when ``p_value <= alpha``, else "undecided".
    Field names are those of ``ragops_schemas.experiments.VariantResult``; the interval is
    ``(-inf, inf)`` while nothing bounds it (before the first look, or both arms constant
    and equal), which JSON cannot carry: a caller putting it on an event maps it first.
    """

    samples: int
    control_samples: int
    mean: float
    control_mean: float
    difference: float
    ci_low: float
    ci_high: float
    p_value: float
    outcome: Outcome


@dataclass(frozen=True, slots=True)
class MsprtPaths:
    """The mSPRT at every look of a batch of streams, each array of shape ``(streams, looks)``
    (look ``j`` = after the ``j+1``-th observation in arrival order).

    ``difference``: treatment mean minus control mean; ``variance``: ``V`` above;
    ``p_value``: the always-valid p-value (running minimum, 1 before the first look);
    ``ci_low``/``ci_high``: the confidence sequence (running intersection, -inf/+inf before
    the first look); ``looking``: whether both arms had ``min_samples`` at that point.
    """

    difference: NDArray[np.float64]
    variance: NDArray[np.float64]
    p_value: NDArray[np.float64]
    ci_low: NDArray[np.float64]
    ci_high: NDArray[np.float64]
    looking: NDArray[np.bool_]


def _arm_moments(
    treated: NDArray[np.bool_], values: NDArray[np.float64], bernoulli: bool
) -> tuple[NDArray[np.float64], NDArray[np.float64], NDArray[np.float64]]:
    """Running count, mean and variance of one arm's observations, shape ``(streams, looks)``.

    Values are shifted by each stream's first value before summing (variance is shift
    invariant), so large means (latency in ms) do not cancel the sums of squares.
    """
    shift = values[:, :1]
    centred = np.where(treated, values - shift, 0.0)
    count = np.cumsum(treated, axis=1, dtype=np.float64)
    total = np.cumsum(centred, axis=1)
    squares = np.cumsum(centred * centred, axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        mean = total / count
        if bernoulli:
            rate = mean + shift
            variance = rate * (1.0 - rate)
        else:
            variance = (squares - count * mean * mean) / (count - 1.0)
    return count, mean + shift, np.maximum(variance, 0.0)


def msprt_paths(
    arms: NDArray[np.integer] | Sequence[Sequence[int]],
    values: NDArray[np.floating] | Sequence[Sequence[float]],
    *,
    alpha: float = 0.05,
    min_samples: int = 100,
    bernoulli: bool = False,
    tau: float | None = None,
) -> MsprtPaths:
    """The mSPRT after every observation of each stream (vectorised over streams and looks).

    ``arms``: shape ``(streams, n)``, 0 = control, 1 = treatment, in arrival order;
    ``values``: the same shape, the metric (0/1 when ``bernoulli``). ``tau``: the standard
    deviation of the normal mixing distribution over the difference, in the metric's unit;
    ``None`` = ``DEFAULT_TAU_SD`` times the pooled standard deviation at each look
    (sqrt of the mean of the two arms' variances), which makes the test scale free.

    Zero variance (both arms constant so far): no evidence when the means are equal
    (p stays, interval unbounded), certainty when they differ (p = 0, interval = the point).

    Raises ``ValueError`` for mismatched shapes, arms other than 0/1, non-finite values,
    ``bernoulli`` values other than 0/1, ``alpha`` outside (0, 1), ``min_samples < 2`` or
    ``tau <= 0``.
    """
    arm = np.atleast_2d(np.asarray(arms))
    value = np.atleast_2d(np.asarray(values, dtype=np.float64))
    if arm.shape != value.shape:
        raise ValueError(f"arms {arm.shape} and values {value.shape} differ in shape")
    if arm.size and not np.isin(arm, (0, 1)).all():
        raise ValueError("arms must be 0 (control) or 1 (treatment)")
    if not np.isfinite(value).all():
        raise ValueError("values must be finite")
    if bernoulli and not np.isin(value, (0.0, 1.0)).all():
        raise ValueError("bernoulli values must be 0 or 1")
    if not 0.0 < alpha < 1.0:
        raise ValueError(f"alpha must be in (0, 1), got {alpha}")
    if min_samples < 2:
        raise ValueError(f"min_samples must be at least 2, got {min_samples}")
    if tau is not None and not tau > 0.0:
        raise ValueError(f"tau must be positive, got {tau}")

    treatment = arm == 1
    n_a, mean_a, var_a = _arm_moments(~treatment, value, bernoulli)
    n_b, mean_b, var_b = _arm_moments(treatment, value, bernoulli)
    looking = (n_a >= min_samples) & (n_b >= min_samples)
    with np.errstate(invalid="ignore", divide="ignore", over="ignore"):
        difference = mean_b - mean_a
        variance = var_a / n_a + var_b / n_b
        tau2 = (DEFAULT_TAU_SD**2) * (var_a + var_b) / 2.0 if tau is None else np.full_like(variance, tau * tau)
        degenerate = variance <= 0.0
        # log Lambda; with V = 0 its limit is -inf for d = 0 and +inf otherwise.
        log_lambda = 0.5 * np.log(variance / (variance + tau2)) + tau2 * difference**2 / (
            2.0 * variance * (variance + tau2)
        )
        log_lambda = np.where(degenerate, np.where(difference != 0.0, np.inf, -np.inf), log_lambda)
        half_width = np.sqrt(
            variance * (variance + tau2) / tau2 * (np.log((variance + tau2) / variance) - 2 * np.log(alpha))
        )
        half_width = np.where(degenerate, np.where(difference != 0.0, 0.0, np.inf), half_width)
    p_look = np.where(looking, np.minimum(1.0, np.exp(-np.maximum(log_lambda, 0.0))), 1.0)
    low = np.where(looking, difference - half_width, -np.inf)
    high = np.where(looking, difference + half_width, np.inf)
    return MsprtPaths(
        difference=np.where(looking, difference, np.nan),
        variance=np.where(looking, variance, np.nan),
        p_value=np.minimum.accumulate(p_look, axis=1),
        ci_low=np.maximum.accumulate(low, axis=1),
        ci_high=np.minimum.accumulate(high, axis=1),
        looking=looking,
    )


def sequential_test(
    arms: Sequence[int],
    values: Sequence[float],
    *,
    alpha: float = 0.05,
    min_samples: int = 100,
    higher_is_better: bool = True,
    bernoulli: bool = False,
    tau: float | None = None,
) -> SequentialResult:
    """The mSPRT of treatment (arm 1) against control (arm 0), looking after every observation.

    ``arms``: 0/1 per observation in arrival order; ``values``: the metric per observation
    (0/1 with ``bernoulli``, e.g. thumbs-down; scores, ms, cost otherwise). Looks start when
    both arms have ``min_samples``. ``tau``: see :func:`msprt_paths`.

    The outcome is "better" or "worse" only when the always-valid p-value is ``<= alpha``:
    the direction is the sign of the difference at the first look where it crossed (the
    test stops there; the confidence sequence stays on that side), read through
    ``higher_is_better``. With fewer than ``min_samples`` per arm: "undecided", p = 1, an
    unbounded interval. Raises ``ValueError`` as :func:`msprt_paths` (``arms`` and
    ``values`` of different lengths included).
    """
    if len(arms) != len(values):
        raise ValueError(f"{len(arms)} arms but {len(values)} values")
    arm = np.asarray(arms, dtype=np.int64).reshape(1, -1)
    value = np.asarray(values, dtype=np.float64).reshape(1, -1)
    paths = msprt_paths(arm, value, alpha=alpha, min_samples=min_samples, bernoulli=bernoulli, tau=tau)
    treated = arm[0] == 1
    samples, control_samples = int(treated.sum()), int((~treated).sum())
    mean = float(value[0, treated].mean()) if samples else 0.0
    control_mean = float(value[0, ~treated].mean()) if control_samples else 0.0
    p_value = float(paths.p_value[0, -1]) if arm.size else 1.0
    outcome: Outcome = "undecided"
    if p_value <= alpha:
        first = int(np.argmax(paths.p_value[0] <= alpha))
        improved = (paths.difference[0, first] > 0) == higher_is_better
        outcome = "better" if improved else "worse"
    return SequentialResult(
        samples=samples,
        control_samples=control_samples,
        mean=mean,
        control_mean=control_mean,
        difference=mean - control_mean,
        ci_low=float(paths.ci_low[0, -1]) if arm.size else -np.inf,
        ci_high=float(paths.ci_high[0, -1]) if arm.size else np.inf,
        p_value=p_value,
        outcome=outcome,
    )

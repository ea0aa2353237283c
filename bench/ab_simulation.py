"""Simulated A/B streams for the sequential test: the false positive rate under continuous
peeking (A/A) and the power and samples-to-decision under known effects (A/B).

Each simulated experiment is a stream of ``observations`` in arrival order, each assigned to
control or treatment with probability 1/2 (as a 50:50 experiment assigns units), its value
drawn from the arm's distribution: 0/1 with the arm's rate (thumbs-down) or normal with the
arm's mean and standard deviation 1 (a score). Both tests look after every observation
once both arms have ``min_samples``:

- the mSPRT (:mod:`ragops_analytics.sequential`), stopping at the first always-valid
  p-value <= alpha;
- the naive fixed-horizon two-sample z-test (unpooled variances, scipy's normal), looked at
  at the same points and stopped at the first p <= alpha: what a dashboard refreshed by
  someone who stops when it turns significant amounts to. For n >= 100 per arm Welch's t
  and z agree to the third decimal, so z stands for both.

Used by the bench row ``S1`` and by ``tests/unit/test_sequential.py``; every draw comes
from a seeded ``numpy.random.Generator``.
"""

from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray
from scipy import stats

from ragops_analytics.sequential import msprt_paths

# Streams are simulated and tested this many experiments at a time: the paths of one chunk
# (a dozen float arrays of chunk x observations) stay near 100 MB at 2,000 observations.
CHUNK = 250


@dataclass(frozen=True)
class Stream:
    """One simulated experiment design: ``control``/``treatment`` are the arms' rates
    (``bernoulli``) or means (standard deviation 1 otherwise); equal for an A/A test."""

    name: str
    bernoulli: bool
    control: float
    treatment: float

    @property
    def difference(self) -> float:
        """The true treatment - control difference the confidence sequence should cover."""
        return self.treatment - self.control


@dataclass(frozen=True)
class Decisions:
    """Per simulated experiment (arrays of shape ``(experiments,)``): ``rejected`` (the test
    crossed alpha within the horizon), ``stopped_at`` (observations, both arms, at the first
    crossing; 0 when it never crossed), ``covered`` (the final confidence interval holds the
    true difference; always true for the naive test, which has none)."""

    rejected: NDArray[np.bool_]
    stopped_at: NDArray[np.int64]
    covered: NDArray[np.bool_]

    @property
    def rate(self) -> float:
        """Share of experiments that rejected (false positive rate under A/A, else power)."""
        return float(self.rejected.mean())

    def stopping_percentile(self, q: float) -> float | None:
        """The ``q``-th percentile of the samples-to-decision of the experiments that decided."""
        decided = self.stopped_at[self.rejected]
        return float(np.percentile(decided, q)) if decided.size else None


def draw(
    stream: Stream, experiments: int, observations: int, rng: np.random.Generator
) -> tuple[NDArray[np.int8], NDArray[np.float64]]:
    """Arms (0/1) and values, each of shape ``(experiments, observations)``."""
    arms = rng.integers(0, 2, size=(experiments, observations), dtype=np.int8)
    centre = np.where(arms == 1, stream.treatment, stream.control)
    if stream.bernoulli:
        values = (rng.random((experiments, observations)) < centre).astype(np.float64)
    else:
        values = rng.standard_normal((experiments, observations)) + centre
    return arms, values


def _first_crossing(p_values: NDArray[np.float64], alpha: float) -> tuple[NDArray[np.bool_], NDArray[np.int64]]:
    crossed = p_values <= alpha
    rejected = np.asarray(crossed.any(axis=1), dtype=np.bool_)
    return rejected, np.where(rejected, crossed.argmax(axis=1) + 1, 0).astype(np.int64)


def simulate(
    stream: Stream,
    *,
    experiments: int,
    observations: int,
    rng: np.random.Generator,
    alpha: float = 0.05,
    min_samples: int = 100,
    tau: float | None = None,
) -> dict[str, Decisions]:
    """Run both tests on the same simulated streams: ``{"msprt": ..., "naive": ...}``."""
    parts: dict[str, list[Decisions]] = {"msprt": [], "naive": []}
    for start in range(0, experiments, CHUNK):
        arms, values = draw(stream, min(CHUNK, experiments - start), observations, rng)
        paths = msprt_paths(arms, values, alpha=alpha, min_samples=min_samples, bernoulli=stream.bernoulli, tau=tau)
        rejected, stopped_at = _first_crossing(paths.p_value, alpha)
        covered = (paths.ci_low[:, -1] <= stream.difference) & (stream.difference <= paths.ci_high[:, -1])
        parts["msprt"].append(Decisions(rejected, stopped_at, covered))
        with np.errstate(invalid="ignore", divide="ignore"):
            z = np.abs(paths.difference) / np.sqrt(paths.variance)
        naive_p = np.where(paths.looking, np.nan_to_num(2.0 * stats.norm.sf(z), nan=1.0), 1.0)
        rejected, stopped_at = _first_crossing(naive_p, alpha)
        parts["naive"].append(Decisions(rejected, stopped_at, np.ones_like(rejected)))
    return {
        name: Decisions(
            np.concatenate([d.rejected for d in chunks]),
            np.concatenate([d.stopped_at for d in chunks]),
            np.concatenate([d.covered for d in chunks]),
        )
        for name, chunks in parts.items()
    }


def fixed_horizon_power(stream: Stream, observations: int, alpha: float = 0.05) -> float:
    """Power of the z-test looked at once, at the horizon (half the observations per arm):
    the reference a sequential test pays for being valid at every look (normal approximation)."""
    per_arm = observations / 2
    if stream.bernoulli:
        sd = np.sqrt((stream.control * (1 - stream.control) + stream.treatment * (1 - stream.treatment)) / per_arm)
    else:
        sd = np.sqrt(2 / per_arm)
    critical = stats.norm.isf(alpha / 2)
    shift = abs(stream.difference) / sd
    return float(stats.norm.sf(critical - shift) + stats.norm.cdf(-critical - shift))


NULL_STREAMS = (
    Stream("thumbs-down 0.10 vs 0.10", True, 0.10, 0.10),
    Stream("thumbs-down 0.30 vs 0.30", True, 0.30, 0.30),
    Stream("score N(0,1) vs N(0,1)", False, 0.0, 0.0),
)
EFFECT_STREAMS = (
    Stream("thumbs-down 0.10 vs 0.13", True, 0.10, 0.13),
    Stream("thumbs-down 0.10 vs 0.15", True, 0.10, 0.15),
    Stream("thumbs-down 0.10 vs 0.20", True, 0.10, 0.20),
    Stream("score +0.1 sd", False, 0.0, 0.1),
    Stream("score +0.2 sd", False, 0.0, 0.2),
    Stream("score +0.3 sd", False, 0.0, 0.3),
)

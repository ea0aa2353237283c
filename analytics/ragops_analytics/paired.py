"""Paired comparison of a candidate against a baseline scored on the same questions, and the
release gate's thresholds over those comparisons.

:func:`paired_comparison` pairs the two sides question by question (the caller aligns them by
example or request id) and answers "is the candidate different, by how much?":

- continuous scores (F1, faithfulness, ...): the Wilcoxon signed-rank test (Wilcoxon 1945;
  ``scipy.stats.wilcoxon``) with ``zero_method="pratt"`` (Pratt 1959): questions on which both
  sides score the same (common: two prompts often give the same answer) are ranked with the
  others and only then dropped, so the ranks of the questions that changed are placed among the
  whole dataset's differences. scipy's default ``"wilcox"`` drops them before ranking, testing
  as if the dataset held only the changed questions; Conover (1973) compares the treatments and
  finds Pratt's the more consistent one when zero differences are frequent. With zeros scipy
  uses the normal approximation (the exact null distribution assumes none).
- 0/1 outcomes (exact match, hit@k): McNemar's test, exact form (McNemar 1947): only the
  discordant questions (one side right, the other wrong) carry information, and under the null
  either side wins each of them with probability 1/2, so the p-value is a two-sided binomial
  test of the candidate's wins among them (``scipy.stats.binomtest``).
- the confidence interval of the mean paired difference is Student's t interval: deterministic
  (the same dataset gives the same gate decision on every CI run, where a bootstrap would need
  a pinned seed and still move with the resample count), closed form, and about the mean that
  the table prints; the differences of bounded scores ([-1, 1]) have every moment, so the
  central limit theorem is good from a few dozen questions.

:class:`Threshold` and :func:`gate` turn ``--fail-under f1=0.15`` and
``--max-regression faithfulness=0.02`` into pass/fail checks with a reason each."""

import math
import re
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass
from typing import Literal

import numpy as np
import numpy.typing as npt
from scipy.stats import binomtest, t, wilcoxon

from ragops_schemas import PairedMetric

__all__ = ["GateCheck", "Threshold", "compare", "gate", "mcnemar_exact", "paired_comparison"]


def mcnemar_exact(baseline: npt.ArrayLike, candidate: npt.ArrayLike) -> float | None:
    """Two-sided exact McNemar p-value of paired 0/1 outcomes (equal-length sequences of 0/1,
    or bools): ``binomtest(candidate wins, discordant pairs, 0.5)``. None when the two sides
    disagree on no pair (no evidence either way). ValueError on other values or lengths."""
    before, after = _pairs(baseline, candidate)
    if not np.isin(np.concatenate([before, after]), (0.0, 1.0)).all():
        raise ValueError("McNemar's test needs 0/1 outcomes")
    gained = int(((after == 1) & (before == 0)).sum())
    lost = int(((after == 0) & (before == 1)).sum())
    return None if gained + lost == 0 else float(binomtest(gained, gained + lost, 0.5).pvalue)


def paired_comparison(
    metric: str,
    baseline: Sequence[float],
    candidate: Sequence[float],
    *,
    binary: bool = False,
    confidence: float = 0.95,
) -> PairedMetric:
    """Candidate against baseline on one metric: ``baseline[i]`` and ``candidate[i]`` are the
    two sides' scores on question ``i`` (at least 2 pairs, finite values). ``binary`` selects
    McNemar's exact test (values must be 0/1), otherwise the Wilcoxon signed-rank test (Pratt's
    zeros); both two-sided, p_value None when every pair is tied. ``ci_low``/``ci_high``: the
    ``confidence`` t interval of the mean of ``candidate - baseline`` (a point when every
    difference is the same). ValueError on unequal lengths, fewer than 2 pairs or non-finite
    values."""
    before, after = _pairs(baseline, candidate)
    if len(before) < 2:
        raise ValueError(f"{metric}: a paired comparison needs at least 2 questions, got {len(before)}")
    if not 0 < confidence < 1:
        raise ValueError(f"confidence must be in (0, 1), got {confidence}")
    differences = after - before
    if binary:
        p_value = mcnemar_exact(before, after)
    elif not differences.any():
        p_value = None
    else:
        p_value = float(wilcoxon(after, before, zero_method="pratt").pvalue)
    mean = float(differences.mean())
    spread = float(differences.std(ddof=1))
    half = (
        0.0
        if spread == 0
        else float(t.ppf((1 + confidence) / 2, len(differences) - 1)) * spread / math.sqrt(len(differences))
    )
    return PairedMetric(
        metric=metric,
        test="mcnemar" if binary else "wilcoxon",
        pairs=len(differences),
        baseline_mean=float(before.mean()),
        candidate_mean=float(after.mean()),
        difference=mean,
        ci_low=mean - half,
        ci_high=mean + half,
        p_value=p_value,
    )


def compare(
    baseline: Mapping[str, Mapping[str, float]],
    candidate: Mapping[str, Mapping[str, float]],
    *,
    binary: Collection[str] = (),
    confidence: float = 0.95,
) -> list[PairedMetric]:
    """:func:`paired_comparison` of every metric, sorted by name: ``baseline[id][metric]`` and
    ``candidate[id][metric]`` are the two sides' scores of one question (an example or request
    id), paired over the ids that both sides scored on that metric (sorted, so the result does
    not depend on arrival order). Metrics in ``binary`` use McNemar's test. A metric with
    fewer than 2 pairs is left out (nothing to compare)."""
    metrics = sorted({m for scores in baseline.values() for m in scores} | {m for s in candidate.values() for m in s})
    compared = []
    for metric in metrics:
        ids = sorted(i for i in baseline.keys() & candidate.keys() if metric in baseline[i] and metric in candidate[i])
        if len(ids) >= 2:
            before, after = [baseline[i][metric] for i in ids], [candidate[i][metric] for i in ids]
            compared.append(paired_comparison(metric, before, after, binary=metric in binary, confidence=confidence))
    return compared


def _pairs(baseline: npt.ArrayLike, candidate: npt.ArrayLike) -> tuple[np.ndarray, np.ndarray]:
    before = np.asarray(baseline, dtype=float)
    after = np.asarray(candidate, dtype=float)
    if before.shape != after.shape or before.ndim != 1:
        raise ValueError(f"paired scores must be two sequences of one length, got {before.shape} and {after.shape}")
    if not (np.isfinite(before).all() and np.isfinite(after).all()):
        raise ValueError("paired scores must be finite")
    return before, after


_THRESHOLD = re.compile(r"^\s*([A-Za-z0-9_@.\-]+)\s*=\s*([-+0-9.eE]+)\s*$")


@dataclass(frozen=True)
class Threshold:
    """One gate condition. ``fail-under``: the candidate's mean must be at least ``value``.
    ``max-regression``: the candidate's mean may be below the baseline's by at most ``value``
    (on the point estimate of the paired mean difference, not a CI bound: on the few dozen to
    few hundred questions of a CI dataset the lower bound would block nearly every candidate
    and the upper bound nearly none; the interval and p-value are printed beside it)."""

    kind: Literal["fail-under", "max-regression"]
    metric: str
    value: float

    @classmethod
    def parse(cls, kind: Literal["fail-under", "max-regression"], text: str) -> "Threshold":
        """``"f1=0.15"`` -> Threshold(kind, "f1", 0.15). ValueError when malformed, or a
        negative margin for max-regression."""
        match = _THRESHOLD.match(text)
        if match is None:
            raise ValueError(f"--{kind} expects METRIC=NUMBER, got {text!r}")
        try:
            value = float(match.group(2))
        except ValueError:
            raise ValueError(f"--{kind} expects METRIC=NUMBER, got {text!r}") from None
        if not math.isfinite(value) or (kind == "max-regression" and value < 0):
            raise ValueError(
                f"--{kind} {text!r}: the number must be finite{' and >= 0' if kind == 'max-regression' else ''}"
            )
        return cls(kind, match.group(1), value)

    def __str__(self) -> str:
        return f"{self.kind} {self.metric}={self.value:g}"

    def check(self, paired: PairedMetric) -> "GateCheck":
        """The check of this threshold against the comparison of its metric."""
        if self.kind == "fail-under":
            passed = paired.candidate_mean >= self.value
            detail = f"candidate mean {paired.candidate_mean:.4f} {'>=' if passed else '<'} {self.value:g}"
        else:
            regression = -paired.difference
            passed = regression <= self.value
            detail = (
                f"candidate mean {paired.candidate_mean:.4f} vs baseline {paired.baseline_mean:.4f}: "
                f"{'regression' if regression > 0 else 'change'} {abs(paired.difference):.4f} "
                f"{'within' if passed else 'exceeds'} margin {self.value:g}"
            )
        return GateCheck(str(self), self.metric, passed, f"{self}: {detail}")


@dataclass(frozen=True)
class GateCheck:
    """One check of a gate (``name``: the threshold, e.g. ``fail-under f1=0.15``; ``metric``
    the metric it is about, if any); ``message`` says the numbers either way."""

    name: str
    metric: str | None
    passed: bool
    message: str


def gate(paired: Sequence[PairedMetric], thresholds: Sequence[Threshold]) -> list[GateCheck]:
    """Every threshold checked against the comparison of its metric, in threshold order; a
    threshold whose metric was not compared (no question scored on both sides) fails, saying so."""
    by_metric = {p.metric: p for p in paired}
    return [
        threshold.check(by_metric[threshold.metric])
        if threshold.metric in by_metric
        else GateCheck(
            str(threshold), threshold.metric, False, f"{threshold}: {threshold.metric} was not scored on both sides"
        )
        for threshold in thresholds
    ]

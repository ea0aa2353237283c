"""How well each automatic evaluation metric agrees with reviewers' labels (human review,
``ragops_schemas.review``): the evidence for trusting, or recalibrating, the evaluators.

For each metric of :data:`METRIC_LABELS` that has scores for labelled answers:

* **Spearman's rho** (``scipy.stats.spearmanr``) between the metric's score and the label it
  estimates (1 for true, 0 for false): does a higher score go with a positive label?
* **the calibrated threshold**: the score above which an answer should be called positive,
  chosen by **Youden's J statistic** (J = sensitivity + specificity - 1, maximised over the
  ROC curve's thresholds: Youden, W. J. (1950), "Index for rating diagnostic tests", Cancer
  3(1):32-35; ROC from ``sklearn.metrics.roc_curve``). Ties go to the highest threshold.
* **Cohen's kappa** (``sklearn.metrics.cohen_kappa_score``) between the label and the score
  thresholded there (``score >= threshold``): agreement beyond chance of the metric used as
  a yes/no judge.

Exactly what each figure is computed on (``n`` labels with a score, ``n_random`` of them in the
``random`` stratum, ``n_fit`` used to choose the threshold):

* ``spearman_rho``/``spearman_p``: all ``n`` labels (nothing is fitted).
* ``threshold``: fitted on the labels of the ``low_score`` and ``negative_feedback`` strata
  (``held_out`` True), so the random stratum stays out of the fit; when those are fewer than
  :data:`MIN_FIT_LABELS` or all of one class, fitted on all ``n`` labels instead (``held_out``
  False).
* ``cohen_kappa``: at the threshold, on the ``n_fit`` labels it was fitted on: in-sample, so
  biased upwards (the threshold maximises agreement there), and over strata that over-sample
  bad answers.
* ``kappa_random``: at the same threshold, on the ``random`` stratum alone: when ``held_out``,
  labels the fit never saw drawn from the traffic as it is, the unbiased estimate of the
  metric's agreement as a judge; when not ``held_out``, in-sample like ``cohen_kappa``.

Each reviewer's label counts once (two reviewers of one answer are two observations). A
statistic that is undefined (fewer than two observations, a constant label or score) is None,
never NaN or 0.
"""

import math
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Literal

import numpy as np
from scipy.stats import spearmanr
from sklearn.metrics import cohen_kappa_score, roc_curve

from ragops_analytics.queries import ReviewLabel

LabelName = Literal["correct", "grounded"]

METRIC_LABELS: Mapping[str, LabelName] = {
    # Claims supported by the retrieved context (RAGAS faithfulness) estimates groundedness.
    "faithfulness": "grounded",
    # The others estimate whether the answer is right: relevance of the answer to the question
    # (RAGAS answer_relevancy), of the context to the question (context_relevance), and, when
    # the question came with a reference, SQuAD's overlap scores.
    "answer_relevancy": "correct",
    "context_relevance": "correct",
    "f1": "correct",
    "exact_match": "correct",
    "contains_answer": "correct",
}
"""Automatic metric (RAGAS/SQuAD name, as the evaluation service names it) -> the human label
it estimates. Metrics not listed (retrieval's context_recall, hit@k) judge retrieval, which a
reviewer does not label, and are left out."""

MIN_FIT_LABELS = 10
"""The fewest non-random labels (of both classes) the threshold is fitted on alone; with fewer,
it is fitted on every label and ``held_out`` is False."""


@dataclass(frozen=True)
class MetricAgreement:
    """Agreement of one metric with one label (see the module's docstring for what each figure
    is computed on): ``n`` labelled answers with a score, ``spearman_rho`` in [-1, 1] and its
    two-sided p-value, the calibrated ``threshold`` (a score) fitted on ``n_fit`` labels,
    ``cohen_kappa`` in [-1, 1] at it on those; ``n_random`` and ``kappa_random`` over the
    ``random`` stratum alone, held out of the fit when ``held_out``. None where undefined."""

    metric: str
    label: LabelName
    n: int
    spearman_rho: float | None
    spearman_p: float | None
    threshold: float | None
    cohen_kappa: float | None
    n_random: int
    kappa_random: float | None
    n_fit: int
    held_out: bool


def _defined(value: float) -> float | None:
    return None if math.isnan(value) else float(value)


def _spearman(scores: Sequence[float], labels: Sequence[int]) -> tuple[float | None, float | None]:
    if len(scores) < 2 or len(set(scores)) < 2 or len(set(labels)) < 2:
        return None, None
    result = spearmanr(scores, labels)
    return _defined(float(result.statistic)), _defined(float(result.pvalue))


def youden_threshold(scores: Sequence[float], labels: Sequence[int]) -> float | None:
    """The score threshold (predict positive when ``score >= threshold``) that maximises
    Youden's J on the ROC curve of ``scores`` against binary ``labels``; the highest such on
    ties. None when the labels are not both present (no ROC curve)."""
    if len(set(labels)) < 2:
        return None
    false_positive_rate, true_positive_rate, thresholds = roc_curve(labels, scores, drop_intermediate=False)
    # The first threshold is +inf (nobody positive): not a threshold one can apply.
    j = (true_positive_rate - false_positive_rate)[1:]
    return float(thresholds[1:][int(np.argmax(j))])


def _kappa(scores: Sequence[float], labels: Sequence[int], threshold: float | None) -> float | None:
    if threshold is None or len(scores) < 2:
        return None
    predicted = [int(score >= threshold) for score in scores]
    if len(set(predicted)) < 2 and len(set(labels)) < 2:
        return None  # chance agreement is 1: kappa is 0/0
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        return _defined(float(cohen_kappa_score(labels, predicted)))


def metric_agreement(labels: Sequence[ReviewLabel], scores: Mapping[str, Mapping[str, float]]) -> list[MetricAgreement]:
    """Agreement of each metric of :data:`METRIC_LABELS` found in ``scores`` (metric ->
    request_id -> score, as :func:`ragops_analytics.queries.evaluation_scores` gives per
    request) with the reviewers' ``labels``, in the table's order. Labels of answers without
    a score of the metric are left out of its figures."""
    agreements = []
    for metric, label_name in METRIC_LABELS.items():
        by_request = scores.get(metric)
        if not by_request:
            continue
        paired = [
            (by_request[label.request_id], int(getattr(label, label_name)), label.sampled_as == "random")
            for label in labels
            if label.request_id in by_request
        ]
        values = [value for value, _, _ in paired]
        truth = [label for _, label, _ in paired]
        random_values = [value for value, _, random in paired if random]
        random_truth = [label for _, label, random in paired if random]
        fit_values = [value for value, _, random in paired if not random]
        fit_truth = [label for _, label, random in paired if not random]
        held_out = len(fit_values) >= MIN_FIT_LABELS and len(set(fit_truth)) == 2
        if not held_out:
            fit_values, fit_truth = values, truth
        rho, p = _spearman(values, truth)
        threshold = youden_threshold(fit_values, fit_truth)
        agreements.append(
            MetricAgreement(
                metric=metric,
                label=label_name,
                n=len(paired),
                spearman_rho=rho,
                spearman_p=p,
                threshold=threshold,
                cohen_kappa=_kappa(fit_values, fit_truth, threshold),
                n_random=len(random_values),
                kappa_random=_kappa(random_values, random_truth, threshold),
                n_fit=len(fit_values),
                held_out=held_out,
            )
        )
    return agreements


def by_metric(scores: Mapping[str, Mapping[str, float]]) -> dict[str, dict[str, float]]:
    """request_id -> metric -> score (:func:`ragops_analytics.queries.evaluation_scores`)
    turned into metric -> request_id -> score (what :func:`metric_agreement` takes)."""
    turned: dict[str, dict[str, float]] = {}
    for request_id, metrics in scores.items():
        for metric, value in metrics.items():
            turned.setdefault(metric, {})[request_id] = value
    return turned


__all__ = ["METRIC_LABELS", "MIN_FIT_LABELS", "MetricAgreement", "by_metric", "metric_agreement", "youden_threshold"]

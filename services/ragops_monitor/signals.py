"""What the monitor watches: each signal's observations (a named query of
:mod:`ragops_analytics.queries`) and the drift test of its kind (:mod:`ragops_monitor.drift`)
with the configured thresholds."""

import math
from dataclasses import dataclass, field
from typing import Literal

import numpy as np

from ragops_analytics import queries
from ragops_monitor.drift import TestResult, embedding_drift, numeric_drift, proportion_increase
from ragops_monitor.settings import MonitorSettings

Kind = Literal["embedding", "numeric", "proportion"]


@dataclass(frozen=True)
class Signal:
    """One monitored quantity: the observations of ``source`` (a named query of
    :mod:`ragops_analytics.queries`) with ``parameters``, tested as ``kind``."""

    name: str
    kind: Kind
    source: queries.SignalSource
    parameters: dict[str, object] = field(default_factory=dict)


def signals(settings: MonitorSettings) -> list[Signal]:
    """Every signal the settings ask for, in evaluation order."""
    return [
        Signal("query_embedding", "embedding", "query_vector"),
        Signal("retrieval_top_similarity", "numeric", "top_similarity"),
        Signal(
            "no_context_rate",
            "proportion",
            "no_context",
            {"no_context_similarity": float(settings.no_context_similarity)},
        ),
        *(
            Signal(f"evaluation.{metric}", "numeric", "evaluation_score", {"metric": metric})
            for metric in settings.evaluation_metrics
        ),
        Signal("negative_feedback_rate", "proportion", "negative_feedback"),
    ]


def run_test(kind: Kind, reference: np.ndarray, current: np.ndarray, settings: MonitorSettings) -> TestResult:
    """The signal kind's test with the configured thresholds (see :mod:`ragops_monitor.app`)."""
    if kind == "embedding":
        # A permutation p-value cannot go below 1 / (permutations + 1): enough of them to reach alpha.
        permutations = max(2000, math.ceil(2 / settings.alpha))
        return embedding_drift(
            reference,
            current,
            roc_auc_threshold=settings.roc_auc_threshold,
            alpha=settings.alpha,
            n_permutations=permutations,
        )
    if kind == "numeric":
        return numeric_drift(
            reference, current, alpha=settings.alpha, wasserstein_threshold=settings.wasserstein_threshold
        )
    return proportion_increase(
        int(reference.sum()),
        len(reference),
        int(current.sum()),
        len(current),
        alpha=settings.alpha,
    )

"""Drift tests for the monitor: pure functions over numpy arrays.

Three tests, each returning a :class:`TestResult`:

* :func:`numeric_drift` - one numerical column (a latency in ms, a score in ``[0, 1]``, ...),
  reference window against current window. Evidently's default rule for numerical columns:
  the two-sample Kolmogorov-Smirnov test (``scipy.stats.ks_2samp``) on small samples, the
  Wasserstein distance normed by the reference's standard deviation
  (``scipy.stats.wasserstein_distance``) on large ones.
* :func:`embedding_drift` - sentence embeddings (e.g. of the questions asked). Evidently's
  default embedding-drift method, a domain classifier scored by ROC AUC (threshold 0.55), made
  safe for repeated evaluation by also requiring a permutation test of the maximum mean
  discrepancy (MMD) to reject.
* :func:`proportion_increase` - a rate (negative-feedback rate, rate of questions answered with
  no good context) that went up: one-sided Fisher's exact test (``scipy.stats.fisher_exact``).

The statistics are computed by scipy and scikit-learn; this module only chooses, validates and
combines them. Nothing here does I/O.

Sources of the defaults (Evidently, https://github.com/evidentlyai/evidently,
``src/evidently/calculations/stattests/registry.py::_get_default_stattest``,
``.../stattests/wasserstein_distance_norm.py`` and
``src/evidently/metrics/data_drift/embedding_drift_methods.py::model``):

* numerical column with more than 5 distinct values: KS test if the reference has <= 1000
  values, otherwise the normed Wasserstein distance with threshold 0.1;
* embeddings: ``model(threshold=0.55)``, a classifier trained to tell reference from current,
  drift when its ROC AUC on held-out rows is above 0.55.

Where this module departs from Evidently (each is repeated on the function concerned):

* the p-value threshold is ``alpha=0.001``, not Evidently's 0.05: the monitor evaluates sliding
  windows many times a day, and at 0.05 one evaluation in twenty would alarm with nothing wrong;
* the KS/Wasserstein switch looks at both samples, not only the reference (see
  :func:`numeric_drift`);
* the domain classifier's AUC is cross-validated (every row scored once, out of fold) instead of
  one 50/50 split, and a drift additionally needs the MMD permutation p-value below ``alpha``.
"""

import math
import operator
from dataclasses import dataclass
from typing import Literal

import numpy as np
from scipy import stats
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import roc_auc_score
from sklearn.metrics.pairwise import euclidean_distances, rbf_kernel
from sklearn.model_selection import StratifiedKFold, cross_val_predict

KS = "ks"
WASSERSTEIN_NORMED = "wasserstein_normed"
DOMAIN_CLASSIFIER_ROC_AUC = "domain_classifier_roc_auc"
FISHER_EXACT = "fisher_exact"

MIN_EMBEDDING_ROWS = 10
"""Fewest rows per side :func:`embedding_drift` accepts: 5-fold stratified cross-validation needs
at least 5 per class, and with fewer than 10 neither the AUC nor the MMD says anything."""

_CV_FOLDS = 5
# Batch of permutations scored at once by the MMD statistic: a (batch, n + m) float64 weight
# matrix, 2.4 MB at 500 x 600 rows; keeps memory flat however many permutations are asked for.
_PERMUTATION_BATCH = 500


@dataclass(frozen=True)
class TestResult:
    """Outcome of one drift test on one signal.

    Attributes:
        test: which test produced it: ``"ks"``, ``"wasserstein_normed"``,
            ``"domain_classifier_roc_auc"`` or ``"fisher_exact"``.
        statistic: the test's statistic: the KS distance D in ``[0, 1]``; the Wasserstein
            distance in units of the reference's standard deviation (``>= 0``, ``inf`` for a
            constant reference that the current sample differs from); the domain classifier's
            ROC AUC in ``[0, 1]``; the rate difference ``current_rate - reference_rate`` in
            ``[-1, 1]``.
        threshold: what ``statistic`` (when ``threshold_on == "statistic"``) or ``p_value``
            (when ``threshold_on == "p_value"``) is compared with.
        threshold_on: which of the two the threshold applies to. For the embedding test the
            threshold is on the AUC and ``p_value`` must in addition be below the ``alpha`` the
            test was called with (see :func:`embedding_drift`).
        p_value: the test's p-value, or ``None`` for the normed Wasserstein distance, which has
            none.
        drifted: whether the test concluded drift.
        reference_size: rows (values, events) in the reference sample.
        current_size: rows (values, events) in the current sample.
    """

    __test__ = False  # not a pytest test class, despite the name (pytest collects Test*)

    test: str
    statistic: float
    threshold: float
    threshold_on: Literal["p_value", "statistic"]
    p_value: float | None
    drifted: bool
    reference_size: int
    current_size: int


# --------------------------------------------------------------------------- numerical columns


def numeric_drift(
    reference: np.ndarray,
    current: np.ndarray,
    *,
    alpha: float = 0.001,
    wasserstein_threshold: float = 0.1,
    large_sample: int = 1000,
) -> TestResult:
    """Whether the distribution of one numerical column moved between two windows.

    Evidently's default for a numerical column, with the switch applied to both samples:

    * when either sample has ``<= large_sample`` values: the two-sample Kolmogorov-Smirnov test,
      ``scipy.stats.ks_2samp(reference, current)`` (two-sided, exact or asymptotic p-value as
      scipy chooses); ``statistic`` is D, drift when ``p_value < alpha``;
    * when both have more than ``large_sample``: the first Wasserstein (earth mover's) distance
      ``scipy.stats.wasserstein_distance(reference, current) / np.std(reference)`` (population
      standard deviation, ``ddof=0``, as Evidently); ``p_value`` is ``None``, drift when the
      normed distance is ``> wasserstein_threshold`` (Evidently: ``>=``; equal is measure-zero).

    Why both samples: with large samples p-values flag differences too small to matter, which is
    why Evidently switches to a distance; but the normed distance from a *small* sample is large
    by chance alone (it falls like ``1/sqrt(size)``). Drawing both samples from one normal
    distribution, 5000 reference values against 100 current ones give a normed distance of 0.13
    on average, above 0.1 in 75% of draws (0.18 and 96% for 50 current values), so the distance
    is used only when both samples are large. Evidently decides on the reference's size alone.

    A constant reference (standard deviation 0) cannot norm the distance. Then the statistic is
    ``0.0`` (not drifted) when the current sample is the same constant, and ``math.inf``
    (drifted) otherwise: any spread or shift away from a value that never varied is a change.
    (Evidently floors the standard deviation at 0.001 instead, which depends on the column's
    unit.) The KS test needs no special case.

    Evidently tests columns with at most 5 distinct values as categories (chi-squared, Z-test,
    Jensen-Shannon); this function does not: use :func:`proportion_increase` for a rate.

    Args:
        reference: 1-D array of shape ``(n,)``, any real dtype (converted to float64), in the
            column's unit (ms, score, token count, ...).
        current: 1-D array of shape ``(m,)``, same unit.
        alpha: p-value threshold of the KS test, in ``(0, 1)``. 0.001 rather than Evidently's
            0.05 because the monitor evaluates many windows (see the module docstring).
        wasserstein_threshold: threshold on the normed distance, in reference standard
            deviations (Evidently's default 0.1), ``>= 0``.
        large_sample: size above which a sample counts as large (Evidently's 1000), ``>= 1``.

    Returns:
        A :class:`TestResult` with ``test`` ``"ks"`` (``threshold = alpha``, ``threshold_on =
        "p_value"``) or ``"wasserstein_normed"`` (``threshold = wasserstein_threshold``,
        ``threshold_on = "statistic"``, ``p_value = None``).

    Raises:
        ValueError: a sample is empty, not 1-D, or holds NaN or infinite values; ``alpha`` is
            not in ``(0, 1)``; ``wasserstein_threshold`` is negative or not finite;
            ``large_sample < 1``.
    """
    _check_alpha(alpha)
    if not (math.isfinite(wasserstein_threshold) and wasserstein_threshold >= 0):
        raise ValueError(f"wasserstein_threshold must be finite and >= 0, got {wasserstein_threshold}")
    if large_sample < 1:
        raise ValueError(f"large_sample must be >= 1, got {large_sample}")
    ref = _column(reference, "reference")
    cur = _column(current, "current")

    if ref.size <= large_sample or cur.size <= large_sample:
        res = stats.ks_2samp(ref, cur)
        p_value = float(res.pvalue)
        return TestResult(
            test=KS,
            statistic=float(res.statistic),
            threshold=alpha,
            threshold_on="p_value",
            p_value=p_value,
            drifted=p_value < alpha,
            reference_size=int(ref.size),
            current_size=int(cur.size),
        )

    distance = float(stats.wasserstein_distance(ref, cur))
    std = float(np.std(ref))
    if std > 0:
        normed = distance / std
    else:
        normed = 0.0 if distance == 0 else math.inf
    return TestResult(
        test=WASSERSTEIN_NORMED,
        statistic=normed,
        threshold=wasserstein_threshold,
        threshold_on="statistic",
        p_value=None,
        drifted=normed > wasserstein_threshold,
        reference_size=int(ref.size),
        current_size=int(cur.size),
    )


# --------------------------------------------------------------------------------- embeddings


def embedding_drift(
    reference: np.ndarray,
    current: np.ndarray,
    *,
    roc_auc_threshold: float = 0.55,
    alpha: float = 0.001,
    n_permutations: int = 2000,
    seed: int = 0,
) -> TestResult:
    """Whether the embeddings of the current window come from elsewhere than the reference's.

    Two tests on the same pooled sample, both of which must find drift:

    1. **Domain classifier** (Evidently's default embedding-drift method, ``model()``, threshold
       0.55): an L2-regularised logistic regression (``sklearn.linear_model.LogisticRegression(
       C=1.0, class_weight="balanced", solver="liblinear")``; liblinear also penalises the
       intercept, which does not change the ranking the AUC scores) learns to tell current rows
       (label 1) from reference rows (label 0). Every row is scored out of fold
       by ``sklearn.model_selection.cross_val_predict(..., method="predict_proba")`` over
       ``StratifiedKFold(5, shuffle=True, random_state=seed)``, and the scores are summarised by
       ``sklearn.metrics.roc_auc_score``. An AUC of 0.5 means the windows are indistinguishable;
       ``statistic`` is this AUC. (Evidently trains an ``SGDClassifier`` on one random half and
       scores the other; cross-validation uses every row for scoring, so the AUC is less noisy.)
    2. **MMD permutation test**: a small sample makes an AUC above 0.55 by chance common (the
       cross-validated AUC of 200 vs 100 rows from one distribution has a standard deviation
       of about 0.05), and the monitor evaluates sliding windows many times, so an AUC threshold
       alone would alarm repeatedly with nothing wrong. The p-value of a permutation test
       controls that. Its statistic is the *biased* (V-statistic) estimate of the squared
       maximum mean discrepancy, ``MMD_b^2 = mean K(ref, ref) + mean K(cur, cur) - 2 mean
       K(ref, cur)`` (Gretton et al., 2012, "A Kernel Two-Sample Test", JMLR 13), always
       ``>= 0``; a permutation test is exact for any statistic, so the unbiased estimator is not
       needed. ``K`` is ``sklearn.metrics.pairwise.rbf_kernel(pooled, gamma=gamma)``, computed
       once on the pooled ``(n + m, d)`` sample, with the median heuristic
       ``gamma = 1 / (2 * median_{i<j} ||x_i - x_j||^2)`` (kernel width = the median pairwise
       Euclidean distance, as in Gretton et al.'s experiments) over all pooled pairs - pooled so that
       the kernel does not depend on which rows are labelled current, which keeps the
       permutation test exact. ``scipy.stats.permutation_test`` permutes the row *indices*
       (``permutation_type="independent"``, ``alternative="greater"``,
       ``n_resamples=n_permutations``, ``random_state=seed``); the vectorised statistic looks
       the permuted split up in the precomputed kernel matrix, as ``w @ K @ w`` with ``w = 1/n``
       on reference rows and ``-1/m`` on current rows.

    ``drifted = statistic > roc_auc_threshold and p_value < alpha``: the p-value says the
    difference is real, the AUC (Evidently's effect-size threshold) that it is large enough to
    matter. A change that leaves the mean embedding unchanged (only the spread, or symmetric
    clusters swapped) is invisible to the linear classifier and is not reported even when the
    MMD test rejects.

    scipy's randomised p-value is ``(count + 1) / (n_permutations + 1)``, never below
    ``1 / (n_permutations + 1)``, so ``n_permutations`` must exceed ``1 / alpha - 1`` for a
    drift to be possible at all; the default 2000 allows p down to 0.0005 < 0.001.

    Cost, 200 x 384 against 100 x 384 float32 rows: 0.055 s median (0.053-0.066 s over 20 runs)
    pinned to one core (``taskset -c 0``) of the 2-core development machine, about half in the
    five logistic regressions and half in the kernel and 2000 permutations; 0.12-0.16 s with
    OpenBLAS's default two threads on the same machine while it was busy. No dimensionality
    reduction is needed at this size. liblinear rather than scikit-learn's default lbfgs because
    lbfgs runs on threaded BLAS, which on a busy machine took 0.2-0.75 s for the same fits. The
    kernel matrix and each permutation batch grow with ``(n + m)^2``.

    Args:
        reference: shape ``(n, d)``, float (float32 sentence embeddings, L2-normalised rows,
            ``d = 384`` for all-MiniLM-L6-v2; any real dtype is converted to float64).
            ``n >= 10``.
        current: shape ``(m, d)``, same ``d``, ``m >= 10``.
        roc_auc_threshold: AUC above which the classifier counts as telling the windows apart
            (Evidently's 0.55), in ``(0, 1)``.
        alpha: threshold of the MMD permutation p-value, in ``(0, 1)``.
        n_permutations: permutations of the MMD test, with ``(n_permutations + 1) * alpha > 1``.
        seed: seeds the cross-validation folds and the permutations; same inputs and seed give
            the same result.

    Returns:
        A :class:`TestResult` with ``test="domain_classifier_roc_auc"``, ``statistic`` the AUC,
        ``threshold=roc_auc_threshold``, ``threshold_on="statistic"`` and ``p_value`` the MMD
        permutation p-value.

    Raises:
        ValueError: an input is not 2-D, has fewer than 10 rows, no columns, or NaN or infinite
            values; the two have different widths ``d``; ``alpha`` or ``roc_auc_threshold`` is
            not in ``(0, 1)``; ``n_permutations`` is too small to reach ``p < alpha``.
    """
    _check_alpha(alpha)
    if not 0 < roc_auc_threshold < 1:
        raise ValueError(f"roc_auc_threshold must be in (0, 1), got {roc_auc_threshold}")
    if n_permutations < 1 or (n_permutations + 1) * alpha <= 1:
        raise ValueError(
            f"n_permutations={n_permutations} can never give a p-value below alpha={alpha}: the "
            f"smallest permutation p-value is 1 / (n_permutations + 1); use at least "
            f"{math.floor(1 / alpha)}"
        )
    ref = _embeddings(reference, "reference")
    cur = _embeddings(current, "current")
    if ref.shape[1] != cur.shape[1]:
        raise ValueError(
            f"reference and current embeddings differ in width: {ref.shape[1]} != {cur.shape[1]} "
            "(different embedding models?)"
        )
    n, m = ref.shape[0], cur.shape[0]
    pooled = np.vstack([ref, cur])

    labels = np.concatenate([np.zeros(n, dtype=np.int8), np.ones(m, dtype=np.int8)])
    auc = _domain_classifier_auc(pooled, labels, seed)
    p_value = _mmd_permutation_p_value(pooled, n, n_permutations, seed)

    return TestResult(
        test=DOMAIN_CLASSIFIER_ROC_AUC,
        statistic=auc,
        threshold=roc_auc_threshold,
        threshold_on="statistic",
        p_value=p_value,
        drifted=auc > roc_auc_threshold and p_value < alpha,
        reference_size=n,
        current_size=m,
    )


def _domain_classifier_auc(pooled: np.ndarray, labels: np.ndarray, seed: int) -> float:
    """Cross-validated ROC AUC of a logistic regression telling label 1 rows from label 0."""
    classifier = LogisticRegression(C=1.0, class_weight="balanced", solver="liblinear")
    folds = StratifiedKFold(n_splits=_CV_FOLDS, shuffle=True, random_state=seed)
    proba = cross_val_predict(classifier, pooled, labels, cv=folds, method="predict_proba")
    return float(roc_auc_score(labels, proba[:, 1]))


def _median_heuristic_gamma(pooled: np.ndarray) -> float:
    """``1 / (2 * median squared pairwise distance)`` over distinct pooled pairs.

    If more than half the pairs coincide (median 0) the median of the non-zero distances is
    used; if every row is the same point the kernel is constant whatever gamma, and 1.0 is
    returned.
    """
    squared = euclidean_distances(pooled, squared=True)
    upper = squared[np.triu_indices_from(squared, k=1)]
    median = float(np.median(upper))
    if median <= 0:
        positive = upper[upper > 0]
        if positive.size == 0:
            return 1.0
        median = float(np.median(positive))
    return 1.0 / (2.0 * median)


def _mmd_permutation_p_value(pooled: np.ndarray, n: int, n_permutations: int, seed: int) -> float:
    """Permutation p-value of the biased MMD^2 of rows ``[:n]`` against rows ``[n:]``."""
    kernel = rbf_kernel(pooled, gamma=_median_heuristic_gamma(pooled))
    total = pooled.shape[0]
    m = total - n

    def mmd2_biased(ref_idx: np.ndarray, cur_idx: np.ndarray, axis: int = -1) -> np.ndarray:
        # ref_idx: (..., n) and cur_idx: (..., m) integer row indices into `kernel`, one split
        # per leading index (scipy passes a batch of permutations, or the observed 1-D split).
        ref_idx = np.asarray(ref_idx).astype(np.intp, copy=False)
        cur_idx = np.asarray(cur_idx).astype(np.intp, copy=False)
        single = ref_idx.ndim == 1
        ref_idx = np.atleast_2d(ref_idx)
        cur_idx = np.atleast_2d(cur_idx)
        rows = np.arange(ref_idx.shape[0])[:, None]
        weights = np.zeros((ref_idx.shape[0], total))
        weights[rows, ref_idx] = 1.0 / n
        weights[rows, cur_idx] = -1.0 / m
        # w K w^T per row = mean K(ref,ref) + mean K(cur,cur) - 2 mean K(ref,cur).
        values: np.ndarray = np.einsum("bi,bi->b", weights @ kernel, weights)
        # The observed split gives a 0-d array, which scipy reads as the scalar statistic.
        return values.reshape(()) if single else values

    result = stats.permutation_test(
        (np.arange(n), np.arange(n, total)),
        mmd2_biased,
        permutation_type="independent",
        vectorized=True,
        n_resamples=n_permutations,
        batch=_PERMUTATION_BATCH,
        alternative="greater",
        random_state=seed,
    )
    return float(result.pvalue)


# -------------------------------------------------------------------------------------- rates


def proportion_increase(
    reference_hits: int,
    reference_total: int,
    current_hits: int,
    current_total: int,
    *,
    alpha: float = 0.001,
) -> TestResult:
    """Whether a rate (hits / total) is higher in the current window than in the reference.

    One-sided Fisher's exact test, ``scipy.stats.fisher_exact(table, alternative="greater")``,
    on the 2x2 table ``[[current_hits, current_misses], [reference_hits, reference_misses]]``:
    with this orientation the table's odds ratio is current odds / reference odds, so
    "greater" is the alternative that the current rate is higher. A lower current rate is never
    a drift here (the signals are all "bad thing" rates: negative feedback, questions answered
    with no good context). Exact at any count, including zero hits; conservative for discrete
    data (the actual false-alarm rate is at most ``alpha``).

    Args:
        reference_hits: events with the property in the reference window (count, ``>= 0``).
        reference_total: events in the reference window (count, ``>= 1``).
        current_hits: events with the property in the current window (``0..current_total``).
        current_total: events in the current window (``>= 1``).
        alpha: p-value threshold, in ``(0, 1)``; 0.001 as for the other tests (many
            evaluations).

    Returns:
        A :class:`TestResult` with ``test="fisher_exact"``, ``statistic`` the rate difference
        ``current_hits / current_total - reference_hits / reference_total`` (in ``[-1, 1]``),
        ``threshold=alpha``, ``threshold_on="p_value"``, drift when ``p_value < alpha``.

    Raises:
        ValueError: a total is below 1, hits are negative or above their total, ``alpha`` is not
            in ``(0, 1)``.
        TypeError: a count is not an integer (``float``, ``bool`` are refused).
    """
    _check_alpha(alpha)
    ref_hits = _count(reference_hits, "reference_hits")
    ref_total = _count(reference_total, "reference_total")
    cur_hits = _count(current_hits, "current_hits")
    cur_total = _count(current_total, "current_total")
    for hits, total, side in ((ref_hits, ref_total, "reference"), (cur_hits, cur_total, "current")):
        if total < 1:
            raise ValueError(f"{side}_total must be >= 1, got {total}")
        if not 0 <= hits <= total:
            raise ValueError(f"{side}_hits must be in [0, {side}_total={total}], got {hits}")

    table = np.array([[cur_hits, cur_total - cur_hits], [ref_hits, ref_total - ref_hits]])
    p_value = float(stats.fisher_exact(table, alternative="greater").pvalue)
    return TestResult(
        test=FISHER_EXACT,
        statistic=cur_hits / cur_total - ref_hits / ref_total,
        threshold=alpha,
        threshold_on="p_value",
        p_value=p_value,
        drifted=p_value < alpha,
        reference_size=ref_total,
        current_size=cur_total,
    )


# ------------------------------------------------------------------------------------ helpers


def _check_alpha(alpha: float) -> None:
    if not 0 < alpha < 1:
        raise ValueError(f"alpha must be in (0, 1), got {alpha}")


def _column(values: np.ndarray, name: str) -> np.ndarray:
    array = np.asarray(values, dtype=np.float64)
    if array.ndim != 1:
        raise ValueError(f"{name} must be 1-D, got shape {array.shape}")
    if array.size == 0:
        raise ValueError(f"{name} is empty")
    if not np.all(np.isfinite(array)):
        raise ValueError(f"{name} contains NaN or infinite values")
    return array


def _embeddings(values: np.ndarray, name: str) -> np.ndarray:
    array = np.asarray(values, dtype=np.float64)
    if array.ndim != 2:
        raise ValueError(f"{name} embeddings must be 2-D (rows, dimension), got shape {array.shape}")
    if array.shape[0] < MIN_EMBEDDING_ROWS:
        raise ValueError(f"{name} has {array.shape[0]} rows; embedding drift needs at least {MIN_EMBEDDING_ROWS}")
    if array.shape[1] == 0:
        raise ValueError(f"{name} embeddings have no columns")
    if not np.all(np.isfinite(array)):
        raise ValueError(f"{name} embeddings contain NaN or infinite values")
    return array


def _count(value: int, name: str) -> int:
    if isinstance(value, bool):
        raise TypeError(f"{name} must be an integer count, got a bool")
    try:
        return operator.index(value)
    except TypeError:
        raise TypeError(f"{name} must be an integer count, got {type(value).__name__}") from None

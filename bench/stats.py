"""Summaries of repeated measurements: median and spread, percentiles, ratios.

Every row reports through these, so "median", "p95" and "ratio" mean the same everywhere:
percentiles are linear interpolations between order statistics (numpy's default), and a
ratio is always ``ours / baseline`` of the row's primary metric.
"""

from collections.abc import Sequence

import numpy as np


def percentile(samples: Sequence[float], q: float) -> float:
    """The ``q``-th percentile (0-100) of ``samples``. Raises ``ValueError`` when empty."""
    if not samples:
        raise ValueError("no samples")
    return float(np.percentile(np.asarray(samples, dtype=float), q))


def summary(samples: Sequence[float], label: str, **extra: object) -> dict:
    """Median, min, max, interquartile range and the samples themselves, plus ``extra``
    (e.g. pooled p95/p99 of a latency side). Values are rounded for the report only."""
    if not samples:
        raise ValueError(f"{label}: no samples")
    return {
        "label": label,
        "median": round(percentile(samples, 50), 4),
        "min": round(float(min(samples)), 4),
        "max": round(float(max(samples)), 4),
        "p25": round(percentile(samples, 25), 4),
        "p75": round(percentile(samples, 75), 4),
        "n": len(samples),
        "samples": [round(float(s), 4) for s in samples],
        **extra,
    }


def latency_summary(samples_ms: Sequence[float], label: str, **extra: object) -> dict:
    """:func:`summary` of per-request latencies (ms) with their p95 and p99."""
    return summary(
        samples_ms,
        label,
        p95=round(percentile(samples_ms, 95), 3),
        p99=round(percentile(samples_ms, 99), 3),
        **extra,
    )


def ratio(ours: Sequence[float], baseline: Sequence[float], *, paired: bool = True) -> dict:
    """``ours / baseline``: the ratio of the medians, and its spread.

    ``paired`` (the sides alternated within each repeat, so each pair saw the same machine,
    and there are as many samples on both sides): the spread is that of the per-repeat
    ratios; otherwise the extreme cross ratios (min/max and max/min).
    """
    median = percentile(ours, 50) / percentile(baseline, 50)
    if paired and len(ours) == len(baseline):
        paired = [a / b for a, b in zip(ours, baseline, strict=True)]
        low, high = min(paired), max(paired)
    else:
        low, high = min(ours) / max(baseline), max(ours) / min(baseline)
    return {"median": round(median, 4), "min": round(low, 4), "max": round(high, 4)}

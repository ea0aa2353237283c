"""The monitor's tests and alert rule replayed offline on a stream of observations, for
whoever wants to know what the monitor would make of a stream without running it (the drift
demo counts false alarms on unchanged traffic with it)."""

import numpy as np

from ragops_monitor.alerts import AlertTracker
from ragops_monitor.settings import MonitorSettings
from ragops_monitor.signals import Kind, run_test


def replay_alerts(settings: MonitorSettings, signal: str, kind: Kind, values: np.ndarray) -> tuple[int, int]:
    """(evaluations, alerts) the monitor would make of ``values`` observed in that order:
    the reference is the first ``reference_size`` values, a current window of
    ``current_size`` values is tested every ``min_new`` values after it, and an alert opens
    after ``consecutive`` drifted results in a row (the monitor's windows, step and rule).

    Args:
        values: shape ``(n,)`` (numeric: the unit of the signal; proportion: 0/1) or
            ``(n, d)`` float32 embeddings.
    """
    tracker, alarms, evaluations = AlertTracker(consecutive=settings.consecutive), 0, 0
    reference = values[: settings.reference_size]
    for end in range(settings.reference_size + settings.current_size, len(values) + 1, settings.min_new):
        result = run_test(kind, reference, values[end - settings.current_size : end], settings)
        evaluations += 1
        alarms += tracker.update(signal, result) == "detected"
    return evaluations, alarms

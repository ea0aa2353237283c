"""The monitor's alert rule: results per signal become at most one ``"detected"`` and one
``"recovered"`` event per episode, so a sustained drift is one alert rather than a storm."""

from dataclasses import dataclass, field
from typing import Literal

from ragops_monitor.drift import TestResult


@dataclass
class AlertTracker:
    """Turns successive results per signal into ``"detected"`` / ``"recovered"`` events.

    Each signal (any string: ``"latency_ms"``, ``"question_embeddings"``, ...) is either
    alerting or not, starting not. :meth:`update` counts evaluations in a row that disagree with
    the signal's state; after ``consecutive`` of them the state flips and the event is returned,
    once. An evaluation that agrees with the state resets the count, so one stray result never
    flips it, and a sustained drift is one ``"detected"`` followed, when it ends, by one
    ``"recovered"``.

    Attributes:
        consecutive: evaluations in a row (``>= 1``) that must agree before the state changes.

    Raises:
        ValueError: ``consecutive < 1`` (at construction).
    """

    consecutive: int = 2
    _alerting: dict[str, bool] = field(default_factory=dict, init=False, repr=False)
    _streak: dict[str, int] = field(default_factory=dict, init=False, repr=False)

    def __post_init__(self) -> None:
        if self.consecutive < 1:
            raise ValueError(f"consecutive must be >= 1, got {self.consecutive}")

    def update(self, signal: str, result: TestResult) -> Literal["detected", "recovered"] | None:
        """Record one evaluation of ``signal``; return the event it completes, if any.

        Returns:
            ``"detected"`` when this is the ``consecutive``-th drifted result in a row while the
            signal was not alerting (it is alerting afterwards); ``"recovered"`` when this is the
            ``consecutive``-th non-drifted result in a row while it was alerting; else ``None``.
        """
        alerting = self._alerting.get(signal, False)
        if result.drifted == alerting:
            self._streak[signal] = 0
            return None
        streak = self._streak.get(signal, 0) + 1
        if streak < self.consecutive:
            self._streak[signal] = streak
            return None
        self._alerting[signal] = not alerting
        self._streak[signal] = 0
        return "recovered" if alerting else "detected"

    def active(self, signal: str) -> bool:
        """Whether ``signal`` is alerting (detected and not yet recovered or reset)."""
        return self._alerting.get(signal, False)

    def restore(self, signal: str) -> None:
        """Mark ``signal`` alerting without an event: a restarted monitor reopening an alert
        it had already published."""
        self._alerting[signal] = True
        self._streak[signal] = 0

    def reset(self, signal: str | None = None) -> None:
        """Forget the state of ``signal``, or of every signal when ``None``.

        Used when the monitor re-baselines (a new version was promoted, so the reference window
        changes). No ``"recovered"`` event is emitted for an alert cleared this way: the caller
        knows it re-baselined.
        """
        if signal is None:
            self._alerting.clear()
            self._streak.clear()
        else:
            self._alerting.pop(signal, None)
            self._streak.pop(signal, None)

"""A signal's reference and current windows, read from ClickHouse.

The reference window is the first ``reference_size`` observations since the baseline; the
current window the latest ``current_size`` observations after the reference."""

from dataclasses import dataclass
from datetime import UTC, datetime

import numpy as np

from ragops_analytics import queries
from ragops_analytics.store import Reader
from ragops_monitor.signals import Signal
from ragops_schemas.lifecycle import DriftWindow


@dataclass(frozen=True)
class Window:
    """Observations of one signal in time order."""

    times_ms: np.ndarray  # (n,) int64, ms since the epoch, ascending
    values: np.ndarray  # (n,) float64, or (n, d) float32 for embeddings

    def describe(self) -> DriftWindow:
        return DriftWindow(start=_time(self.times_ms[0]), end=_time(self.times_ms[-1]), size=len(self.times_ms))

    @property
    def start(self) -> datetime:
        """When the first observation occurred (UTC)."""
        return _time(self.times_ms[0])


def _time(ms: int) -> datetime:
    return datetime.fromtimestamp(int(ms) / 1000, UTC)


def read_windows(
    reader: Reader,
    signal: Signal,
    since: datetime,
    reference_size: int,
    current_size: int,
) -> tuple[Window, Window] | None:
    """The reference and current windows of ``signal`` (blocking: run in a thread), or None
    while there are not yet ``reference_size`` + ``current_size`` observations since ``since``."""

    def window(rows: list[tuple[int, object]]) -> Window:
        rows = sorted(rows, key=lambda row: row[0])
        times = np.array([row[0] for row in rows], dtype=np.int64)
        if signal.kind == "embedding":
            values = np.array([row[1] for row in rows], dtype=np.float32).reshape(len(rows), -1 if rows else 0)
        else:
            values = np.array([row[1] for row in rows], dtype=np.float64)
        return Window(times, values)

    reference = window(
        queries.reference_window(
            reader,
            signal.source,
            signal.parameters,
            since_ms=int(since.timestamp() * 1000),
            size=reference_size,
        )
    )
    if len(reference.times_ms) < reference_size:
        return None
    current = window(
        queries.current_window(
            reader,
            signal.source,
            signal.parameters,
            after_ms=int(reference.times_ms[-1]),
            size=current_size,
        )
    )
    if len(current.times_ms) < current_size:
        return None
    return reference, current

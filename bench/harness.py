"""What every row shares: its command line, the warm-up-then-alternate repeat loop, and the
shape of the result it hands to the runner.

A row module defines ``run(args: RowArgs) -> list[dict]`` (rows built with :func:`result`)
and ends with ``if __name__ == "__main__": row_main(run)``.
"""

import argparse
import inspect
import json
import logging
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from rich.console import Console

from ragops_shared.logs import configure_logging

console = Console(stderr=True, highlight=False)


@dataclass(frozen=True)
class RowArgs:
    """``quick``: tiny sizes that only check the row works; ``repeats``: measured rounds
    after the warm-up; ``workdir``: a temporary folder the row may fill (removed after)."""

    quick: bool
    repeats: int
    workdir: Path

    def pick(self, full: dict, quick: dict) -> dict:
        """The sizes of this run: ``quick`` with ``--quick``, else ``full``."""
        return dict(quick if self.quick else full)


@dataclass(frozen=True)
class Check:
    """One condition of a row's goal: ``ok`` and what was measured against what."""

    text: str
    ok: bool


def step(row_id: str, message: str) -> None:
    """A progress line on stderr (the runner passes it through to the terminal)."""
    console.print(f"[dim]{time.strftime('%H:%M:%S')}[/] [bold]{row_id}[/] {message}")


async def alternate(
    sides: dict[str, Callable[[int], float | Awaitable[float]]],
    repeats: int,
    warmup: int = 1,
) -> dict[str, list[float]]:
    """Run each side ``warmup`` times (discarded), then ``repeats`` rounds of every side.

    A side is called with the round's index (``-1 - k`` for warm-up ``k``) so it can use
    fresh ids, and returns one measurement (sync or async). Sides alternate within a round
    and their order flips every round, so a slow drift of a shared machine hits both sides
    alike; the paired ratios of :func:`bench.stats.ratio` rely on that.
    """
    names = list(sides)
    for k in range(warmup):
        for name in names:
            await _call(sides[name], -1 - k)
    measured: dict[str, list[float]] = {name: [] for name in names}
    for index in range(repeats):
        for name in names if index % 2 == 0 else reversed(names):
            measured[name].append(await _call(sides[name], index))
    return measured


async def _call(side: Callable[[int], float | Awaitable[float]], index: int) -> float:
    value = side(index)
    return float(await value) if inspect.isawaitable(value) else float(value)


def result(
    row_id: str,
    title: str,
    *,
    unit: str,
    better: Literal["higher", "lower"],
    goal: str,
    ours: dict,
    baseline: dict | None,
    ratio: dict | None,
    checks: Sequence[Check],
    notes: Sequence[str] = (),
    highlights: Sequence[str] = (),
    sizes: dict | None = None,
    metrics: dict | None = None,
) -> dict:
    """A row of the report. ``ours``/``baseline`` come from :func:`bench.stats.summary`;
    ``ratio`` is ours/baseline (:func:`bench.stats.ratio`); the row passes when every check
    does. ``highlights`` are the secondary figures printed under the table (all of them are
    in ``metrics``); ``notes`` say why a check misses and what would fix it."""
    return {
        "id": row_id,
        "title": title,
        "unit": unit,
        "better": better,
        "goal": goal,
        "ours": ours,
        "baseline": baseline,
        "ratio": ratio,
        "checks": [{"text": c.text, "ok": c.ok} for c in checks],
        "passed": all(c.ok for c in checks),
        "highlights": list(highlights),
        "notes": list(notes),
        "sizes": sizes or {},
        "metrics": metrics or {},
    }


def failed(row_id: str, title: str, error: str, seconds: float = 0.0) -> dict:
    """The report row of a row process that crashed or ran out of time."""
    return {
        "id": row_id,
        "title": title,
        "unit": "",
        "better": "higher",
        "goal": "",
        "ours": None,
        "baseline": None,
        "ratio": None,
        "checks": [{"text": f"row did not finish: {error}", "ok": False}],
        "passed": False,
        "highlights": [],
        "notes": [error],
        "sizes": {},
        "metrics": {},
        "seconds": round(seconds, 1),
        "error": error,
    }


def row_main(run: Callable[[RowArgs], list[dict]]) -> None:
    """Command line of a row process: ``[--quick] [--repeats N] [--out FILE]``; writes the
    row results as JSON to ``FILE`` (stdout without it)."""
    parser = argparse.ArgumentParser(description=(sys.modules["__main__"].__doc__ or "").split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="tiny sizes: check that the row works")
    parser.add_argument(
        "--repeats", type=int, default=None, help="measured rounds after the warm-up (default 3, quick 2)"
    )
    parser.add_argument("--out", type=Path, default=None)
    options = parser.parse_args()
    # In-process FastStream apps and aiokafka would otherwise log every rebalance step.
    configure_logging("bench", "WARNING", "console")
    logging.getLogger("faststream").setLevel(logging.WARNING)  # it logs through its own handler
    started = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="ragops-bench-") as workdir:
        rows = run(
            RowArgs(quick=options.quick, repeats=options.repeats or (2 if options.quick else 3), workdir=Path(workdir))
        )
    seconds = round(time.perf_counter() - started, 1)
    for row in rows:
        row["seconds"] = seconds
    text = json.dumps(rows, indent=2)
    if options.out is None:
        print(text)
    else:
        options.out.write_text(text)

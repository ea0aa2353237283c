"""The bench's statistics (against values computed by hand) and its report: the verdicts,
the table cells, the Markdown table and the JSON row a report holds."""

import json

import pytest
from rich.console import Console

from bench.harness import Check, alternate, failed, result
from bench.report import COLUMNS, cells, markdown, print_details, print_table
from bench.stats import latency_summary, percentile, ratio, summary

# --- statistics -----------------------------------------------------------------------------


def test_percentiles_interpolate_between_order_statistics() -> None:
    samples = [4.0, 1.0, 3.0, 2.0]  # sorted 1 2 3 4: position q/100 * 3
    assert percentile(samples, 50) == 2.5
    assert percentile(samples, 25) == 1.75
    assert percentile(samples, 95) == pytest.approx(3.85)
    assert percentile([7.0], 99) == 7.0
    with pytest.raises(ValueError, match="no samples"):
        percentile([], 50)


def test_summary_is_median_range_and_quartiles_of_the_samples() -> None:
    assert summary([3, 1, 2, 4], "events/s", rows=10) == {
        "label": "events/s",
        "median": 2.5,
        "min": 1.0,
        "max": 4.0,
        "p25": 1.75,
        "p75": 3.25,
        "n": 4,
        "samples": [3.0, 1.0, 2.0, 4.0],
        "rows": 10,
    }
    assert summary([1 / 3], "x")["median"] == 0.3333  # rounded for the report
    with pytest.raises(ValueError, match="latency: no samples"):
        summary([], "latency")


def test_latency_summary_adds_p95_and_p99() -> None:
    latency = latency_summary([10, 20, 30, 40, 50], "ms")  # p95 at position 3.8, p99 at 3.96
    assert (latency["median"], latency["p95"], latency["p99"]) == (30.0, 48.0, 49.6)


def test_a_paired_ratio_spreads_over_the_per_repeat_ratios() -> None:
    # medians 4 / 2; per-repeat ratios 2, 2, 3
    assert ratio([2, 4, 6], [1, 2, 2]) == {"median": 2.0, "min": 2.0, "max": 3.0}


def test_an_unpaired_ratio_spreads_over_the_extreme_cross_ratios() -> None:
    # medians 4 / 1.5; extremes 2 / 2 and 6 / 1
    assert ratio([2, 4, 6], [1, 2]) == {"median": 2.6667, "min": 1.0, "max": 6.0}
    # Same lengths but not alternated: the cross ratios all the same.
    assert ratio([2, 4], [1, 2], paired=False) == {"median": 2.0, "min": 1.0, "max": 4.0}


async def test_sides_alternate_and_flip_their_order_every_round() -> None:
    order: list[tuple[str, int]] = []

    def side(name: str):
        def measure(index: int) -> float:
            order.append((name, index))
            return float(index)

        return measure

    async def later(index: int) -> float:  # an async side counts alike
        order.append(("b", index))
        return 2.0 * index

    measured = await alternate({"a": side("a"), "b": later}, repeats=3)
    assert order == [("a", -1), ("b", -1), ("a", 0), ("b", 0), ("b", 1), ("a", 1), ("a", 2), ("b", 2)]
    assert measured == {"a": [0.0, 1.0, 2.0], "b": [0.0, 2.0, 4.0]}, "warm-up rounds are discarded"


# --- report -----------------------------------------------------------------------------------


def _row(checks: list[Check], **overrides: object) -> dict:
    return result(
        "P9",
        "Throughput | sink",
        unit="events/s",
        better="higher",
        goal=">= 2x",
        ours={**summary([12000.4, 13000.0, 14000.0], "ours"), "p95": 13900.0},
        baseline=summary([0.5, 1.25, 2.0], "base"),
        ratio={"median": 10400.0, "min": 6000.0, "max": 28000.0},
        checks=checks,
        notes=["a note"],
        sizes={"events": 1000},
        **overrides,
    )


def test_the_verdict_is_pass_when_every_check_holds_miss_otherwise_error_when_the_row_crashed() -> None:
    assert cells(_row([Check("ratio >= 2", True), Check("p95 < 1 s", True)]))[-1] == "PASS"
    assert cells(_row([Check("ratio >= 2", True), Check("p95 < 1 s", False)]))[-1] == "MISS"
    crashed = failed("P9", "Throughput", "exit status 1", seconds=3.04)
    assert (crashed["passed"], crashed["seconds"], cells(crashed)[-1]) == (False, 3.0, "ERROR")


def test_cells_give_median_range_p95_n_and_the_ratio() -> None:
    assert cells(_row([Check("ok", True)])) == [
        "P9 Throughput | sink",
        "events/s",
        "13,000 [12,000-14,000] p95 13,900 n=3",
        "1.25 [0.5-2] n=3",
        "10400.00x [6000.00-28000.00]",
        ">= 2x",
        "PASS",
    ]
    assert cells(failed("P9", "Throughput", "boom"))[2:5] == ["-", "-", "-"]


def test_markdown_has_one_line_per_row_and_escapes_table_syntax() -> None:
    lines = markdown([_row([Check("ok", True)]), failed("P1", "Latency\nfirst", "boom")]).splitlines()
    assert lines[0] == "| " + " | ".join(COLUMNS) + " |" and lines[1] == "|" + "---|" * len(COLUMNS)
    assert lines[2].startswith("| P9 Throughput / sink | events/s |") and lines[2].endswith("| >= 2x | PASS |")
    assert lines[3].startswith("| P1 Latency<br>first |") and lines[3].endswith("| ERROR |")
    assert len(lines) == 4


def test_a_report_row_survives_json_and_the_terminal_shows_verdicts_checks_and_notes() -> None:
    row = _row([Check("ratio 10400x >= 2x", True), Check("p95 13,900 < 1,000", False)])
    assert json.loads(json.dumps(row)) == row  # what bench-report.json holds, as is
    console = Console(record=True, width=250)
    print_table([row], console, "bench")
    print_details([row], console)
    text = console.export_text()
    assert "MISS" in text and "13,000 [12,000-14,000]" in text
    assert "ok   ratio 10400x >= 2x" in text and "MISS p95 13,900 < 1,000" in text
    assert "note: a note" in text and "sizes: events=1000" in text and "ours = ours; baseline = base" in text

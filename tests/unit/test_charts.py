"""ragops_analytics.charts: inline, deterministic, script-free SVG charts."""

import re
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta

from ragops_analytics.charts import NO_DATA, bar_chart, line_chart

T0 = datetime(2026, 12, 1, tzinfo=UTC)
SERIES = {
    "faithfulness": [(T0 + timedelta(days=d), 0.5 + d / 10) for d in range(4)],
    "answer_relevancy": [(T0 + timedelta(days=d), 0.9 - d / 20) for d in range(4)],
}


def _assert_inline_svg(svg: str) -> None:
    assert svg.startswith("<svg")
    assert svg.rstrip().endswith("</svg>")
    lowered = svg.lower()
    assert "<script" not in lowered
    assert "<?xml" not in lowered
    assert "<!doctype" not in lowered
    assert "<metadata" not in lowered
    # No URL anywhere but the SVG and XLink namespace declarations.
    without_namespaces = re.sub(r'xmlns(:\w+)?="[^"]*"', "", lowered)
    assert "://" not in without_namespaces


def test_line_chart_is_inline_deterministic_and_titled() -> None:
    first = line_chart(SERIES, title="Quality by day", y_label="score")
    second = line_chart(dict(reversed(SERIES.items())), title="Quality by day", y_label="score")
    _assert_inline_svg(first)
    assert first == second
    assert "Quality by day" in first
    assert "faithfulness" in first and "answer_relevancy" in first


def test_bar_chart_is_inline_deterministic_and_titled() -> None:
    bars = {"p1": 0.8, "p2": 0.6}
    first = bar_chart(bars, title="Score by prompt version", y_label="mean score")
    _assert_inline_svg(first)
    assert first == bar_chart(bars, title="Score by prompt version", y_label="mean score")
    assert "Score by prompt version" in first and "p1" in first


def test_empty_charts_say_no_data() -> None:
    for svg in (
        line_chart({}, title="Empty", y_label="x"),
        line_chart({"a": []}, title="Empty", y_label="x"),
        bar_chart({}, title="Empty", y_label="x"),
    ):
        _assert_inline_svg(svg)
        assert NO_DATA in svg and "Empty" in svg


def test_charts_drawn_on_threads_equal_the_serial_ones() -> None:
    serial = line_chart(SERIES, title="Quality by day", y_label="score")
    with ThreadPoolExecutor(4) as pool:
        drawn = list(pool.map(lambda _: line_chart(SERIES, title="Quality by day", y_label="score"), range(8)))
    assert set(drawn) == {serial}


def test_two_charts_share_no_element_id() -> None:
    ids = [
        set(re.findall(r'id="([^"]+)"', svg))
        for svg in (
            bar_chart({"a": 1.0}, title="One", y_label="x"),
            bar_chart({"a": 2.0}, title="Two", y_label="x"),
        )
    ]
    assert ids[0] and not ids[0] & ids[1]

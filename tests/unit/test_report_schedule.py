"""ragops.report's schedule as plain functions: the period a run reports on and when the next
one runs."""

from datetime import UTC, datetime, timedelta

from ragops.report import Window, duration, next_run, report_window

WEEK = timedelta(days=7)


def test_the_window_is_the_last_whole_period_counted_from_the_epoch() -> None:
    now = datetime(2026, 12, 5, 12, 10, tzinfo=UTC)
    # 1970-01-01 was a Thursday: weekly periods end on Thursdays, 00:00 UTC.
    assert report_window(now, WEEK) == Window(datetime(2026, 11, 26, tzinfo=UTC), datetime(2026, 12, 3, tzinfo=UTC))
    assert report_window(now, timedelta(days=1)).until == datetime(2026, 12, 5, tzinfo=UTC)


def test_the_next_run_is_strictly_later_even_on_a_boundary() -> None:
    boundary = datetime(2026, 12, 3, tzinfo=UTC)
    assert next_run(boundary, WEEK) == boundary + WEEK
    assert next_run(boundary - timedelta(milliseconds=1), WEEK) == boundary
    assert report_window(boundary, WEEK).until == boundary


def test_a_window_names_its_file_and_durations_parse() -> None:
    window = Window(datetime(2026, 11, 26, tzinfo=UTC), datetime(2026, 12, 3, tzinfo=UTC))
    assert window.file_name("pdf") == "ragops-report-20261126T0000Z--20261203T0000Z.pdf"
    assert (duration("7d"), duration("24h"), duration("30m")) == (WEEK, timedelta(hours=24), timedelta(minutes=30))
    assert duration("0d") is None and duration("7w") is None and duration("2026-12-01") is None

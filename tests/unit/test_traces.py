"""The request tree of `ragops trace` (ragops_analytics.traces.request_tree)."""

from datetime import UTC, datetime, timedelta

from ragops_analytics.queries import RequestEventRow
from ragops_analytics.traces import TraceNode, request_tree

START = datetime(2026, 12, 1, tzinfo=UTC)


def row(name: str, ms: int, span: str, parent: str | None) -> RequestEventRow:
    return RequestEventRow(
        event_id=name,
        event_type=f"test.{name}",
        occurred_at=START + timedelta(milliseconds=ms),
        producer="test",
        span_id=span,
        parent_span_id=parent,
        payload={},
    )


def shape(nodes: list[TraceNode]) -> list[tuple[str, float, float | None, list]]:
    return [(n.row.event_id, n.offset_ms, n.duration_ms, shape(n.children)) for n in nodes]


def test_children_follow_parent_span_ids_with_offsets_and_durations() -> None:
    rows = [
        row("answer", 900, "c", "b"),
        row("query", 0, "a", None),
        row("retrieval", 120, "b", "a"),
        row("evaluation", 1500, "d", "c"),
        row("feedback", 2000, "e", "a"),
    ]
    assert shape(request_tree(rows)) == [
        (
            "query",
            0.0,
            None,
            [
                ("retrieval", 120.0, 120.0, [("answer", 900.0, 780.0, [("evaluation", 1500.0, 600.0, [])])]),
                ("feedback", 2000.0, 2000.0, []),
            ],
        )
    ]


def test_events_without_a_stored_parent_are_roots_in_time_order() -> None:
    """Events stored before the envelope had parent_span_id, and events whose cause is not
    stored (expired, another request's), are kept as roots ordered by time, not lost."""
    rows = [
        row("late", 300, "z", None),
        row("orphan", 200, "y", "gone"),
        row("first", 0, "x", None),
        row("child", 250, "w", "x"),
    ]
    assert shape(request_tree(rows)) == [
        ("first", 0.0, None, [("child", 250.0, 250.0, [])]),
        ("orphan", 200.0, None, []),
        ("late", 300.0, None, []),
    ]


def test_cycles_and_self_parents_do_not_lose_events() -> None:
    rows = [row("a", 0, "a", "b"), row("b", 10, "b", "a"), row("self", 20, "s", "s")]
    assert [n.row.event_id for n in request_tree(rows)] == ["a", "b", "self"]


def test_no_rows_no_tree() -> None:
    assert request_tree([]) == []

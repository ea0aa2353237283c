"""A request's events as a tree of spans (``ragops trace``, the console's request page).

Each event names the span of the event that caused it (``parent_span_id``, set by
``Event.caused``), so the tree comes from the events themselves. Events whose parent is not
among the request's stored events are roots, ordered by time: the request's first event, and
events stored before the envelope carried ``parent_span_id`` (those are shown flat, in time
order, rather than lost), and events whose cause has expired or belongs to another request.
"""

from collections.abc import Sequence
from dataclasses import dataclass, field

from ragops_analytics.queries import RequestEventRow


@dataclass
class TraceNode:
    """One event in a request's tree.

    ``offset_ms``: milliseconds from the request's first event to this one; ``duration_ms``:
    milliseconds from its parent's ``occurred_at`` to its own (the time the stage that produced
    it took, queueing included), None for a root."""

    row: RequestEventRow
    children: list["TraceNode"] = field(default_factory=list)
    offset_ms: float = 0.0
    duration_ms: float | None = None


def request_tree(rows: Sequence[RequestEventRow]) -> list[TraceNode]:
    """The roots of the tree of ``rows`` (one request's events, any order), each node's children
    being the events whose ``parent_span_id`` is its ``span_id``, siblings and roots oldest first
    (``occurred_at``, then event id). An empty ``rows`` gives an empty list. A span that two rows
    share (a replayed event stored under another id) parents its children under the first."""
    ordered = sorted(rows, key=lambda row: (row.occurred_at, row.event_id))
    if not ordered:
        return []
    start = ordered[0].occurred_at
    nodes = [TraceNode(row, offset_ms=(row.occurred_at - start).total_seconds() * 1000) for row in ordered]
    by_span: dict[str, TraceNode] = {}
    for node in nodes:
        by_span.setdefault(node.row.span_id, node)
    roots: list[TraceNode] = []
    for node in nodes:
        parent = by_span.get(node.row.parent_span_id or "")
        if parent is None or parent is node or _descends(parent, node, by_span):
            roots.append(node)
            continue
        node.duration_ms = (node.row.occurred_at - parent.row.occurred_at).total_seconds() * 1000
        parent.children.append(node)
    return roots


def _descends(candidate: TraceNode, node: TraceNode, by_span: dict[str, TraceNode]) -> bool:
    """Whether ``candidate`` has ``node`` among its ancestors (a cycle of parent links, which
    only corrupt data makes: the node becomes a root instead of vanishing)."""
    seen: set[int] = set()
    current: TraceNode | None = candidate
    while current is not None and id(current) not in seen:
        if current is node:
            return True
        seen.add(id(current))
        current = by_span.get(current.row.parent_span_id or "")
    return False

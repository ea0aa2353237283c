"""A request's events as a tree of spans (``ragops trace``, the console's request page).

Each event names the span of the event that caused it (``parent_span_id``, set by
``Event.caused``), so the tree comes from the events themselves. Events whose parent is not
among the request's stored events are roots, ordered by time: the request's first event, and
events stored before the envelope carried ``parent_span_id`` (those are shown flat, in time
order, rather than lost), and events whose cause has expired or belongs to another request.
"""

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

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


def key_facts(row: RequestEventRow) -> dict[str, Any]:
    """What matters about one event of a request, by its type, from its stored JSON (missing
    fields of older schemas are left out): retrieval mode and top similarity, prompt version and
    variant, model, tokens and finish reasons, evaluation scores, feedback (thumb, rating,
    sentiment: no free text, which can hold personal data), review labels, dead-letter reasons,
    and the compute the stage spent where measured. Keys are the fields' own names (GenAI
    semantic conventions for the model's). Empty for a type without facts."""
    payload = row.payload
    facts: dict[str, Any] = {}
    kind = row.event_type
    if kind.startswith("query.") and kind not in ("query.context_retrieved", "query.answer_generated"):
        facts |= _picked(payload, "top_k", "prompt_name", "prompt_version", "input_tokens", "truncated")
    if kind == "query.context_retrieved":
        retrieval = payload.get("retrieval") or {}
        facts |= _picked(retrieval, "mode", "top_similarity", "collection")
        facts["chunks"] = len(payload.get("contexts") or [])
    elif kind == "query.answer_generated":
        lineage = payload.get("lineage") or {}
        generation = payload.get("generation") or {}
        usage = generation.get("usage") or {}
        prompt = lineage.get("prompt") or {}
        facts |= {"prompt": f"{prompt.get('name')}@v{prompt.get('version')}"} if prompt else {}
        facts |= _picked(lineage, "variant", "experiment_id")
        facts |= _picked(generation, "gen_ai.request.model", "gen_ai.response.finish_reasons", "latency_ms")
        facts |= _picked(usage, "gen_ai.usage.input_tokens", "gen_ai.usage.output_tokens")
    elif kind == "query.answer_evaluated":
        facts["scores"] = {
            str(score.get("gen_ai.evaluation.name")): score.get("gen_ai.evaluation.score.value")
            for score in payload.get("scores") or []
        }
        facts |= _picked(payload, "run_id")
    elif kind.startswith("feedback."):
        facts |= _picked(payload, "thumb", "rating", "sentiment")
        facts |= {"correction": True} if payload.get("corrected_answer") else {}
    elif kind.startswith("review."):
        facts |= _picked(payload, "correct", "grounded", "sampled_as")
    elif kind == "message.dead_lettered":
        facts |= _picked(payload, "error_type", "reason", "original_topic", "consumer_group")
    elif kind == "dataset.example_added":
        facts |= _picked(payload, "dataset", "source")
    compute = payload.get("compute")
    if compute:
        facts["compute"] = f"{compute.get('seconds')} s x {compute.get('units')} {compute.get('device')}"
    return facts


def _picked(mapping: Mapping[str, Any], *names: str) -> dict[str, Any]:
    return {name: mapping[name] for name in names if mapping.get(name) is not None}


def tree_dicts(nodes: Sequence[TraceNode]) -> list[dict[str, Any]]:
    """``nodes`` and their descendants as JSON-ready dicts (``ragops trace --format json``):
    event_id, event_type, producer, occurred_at (ISO 8601, UTC), offset_ms, duration_ms (None for
    a root), span_id, parent_span_id, facts (:func:`key_facts`), children."""
    return [
        {
            "event_id": node.row.event_id,
            "event_type": node.row.event_type,
            "producer": node.row.producer,
            "occurred_at": node.row.occurred_at.isoformat(),
            "offset_ms": node.offset_ms,
            "duration_ms": node.duration_ms,
            "span_id": node.row.span_id,
            "parent_span_id": node.row.parent_span_id,
            "facts": key_facts(node.row),
            "children": tree_dicts(node.children),
        }
        for node in nodes
    ]

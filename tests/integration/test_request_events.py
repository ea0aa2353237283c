"""queries.request_events on chDB: one request's stored events, oldest first, with their spans."""

from datetime import UTC, datetime, timedelta

import pytest

from ragops_analytics.chdb_store import ChdbStore
from ragops_analytics.queries import insert_events, request_events
from ragops_analytics.traces import request_tree
from ragops_schemas import AnswerGenerated, ContextRetrieved, QuerySubmitted
from ragops_sink.rows import events_to_arrow, to_row
from tests.helpers import example, record_of

pytestmark = pytest.mark.clickhouse

START = datetime(2026, 11, 1, tzinfo=UTC)


def test_request_events_returns_the_requests_events_with_their_parent_spans(chdb_store: ChdbStore) -> None:
    question = example(QuerySubmitted).model_copy(
        update={"request_id": "r-1", "occurred_at": START, "span_id": "a" * 16}
    )
    retrieved = example(ContextRetrieved).model_copy(
        update={
            "request_id": "r-1",
            "occurred_at": START + timedelta(milliseconds=40),
            "trace_id": question.trace_id,
            "span_id": "b" * 16,
            "parent_span_id": question.span_id,
            "tenant": question.tenant,
        }
    )
    answered = example(AnswerGenerated).model_copy(
        update={
            "request_id": "r-1",
            "occurred_at": START + timedelta(milliseconds=700),
            "span_id": "c" * 16,
            "parent_span_id": retrieved.span_id,
            "tenant": question.tenant,
        }
    )
    other = example(QuerySubmitted).model_copy(update={"request_id": "r-2", "occurred_at": START, "span_id": "d" * 16})
    events = [answered, other, question, retrieved]
    rows = [to_row(record_of(event, i), datetime.now(UTC)) for i, event in enumerate(events)]
    insert_events(chdb_store, events_to_arrow(rows))

    stored = request_events(chdb_store, "r-1")

    assert [r.event_type for r in stored] == ["query.submitted", "query.context_retrieved", "query.answer_generated"]
    assert stored[0].parent_span_id is None
    assert stored[0].occurred_at == START
    assert stored[1].parent_span_id == question.span_id
    assert stored[2].payload["request_id"] == "r-1"
    assert stored[0].producer == question.producer.name
    tree = request_tree(stored)
    assert len(tree) == 1
    assert tree[0].children[0].children[0].row.event_id == str(answered.event_id)
    assert tree[0].children[0].children[0].duration_ms == 660.0
    assert request_events(chdb_store, "r-1", tenant="someone-else") == []

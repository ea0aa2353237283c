"""queries.request_events on chDB: one request's stored events, oldest first, with their spans."""

import json
from datetime import UTC, datetime, timedelta

import pytest
from typer.testing import CliRunner

from ragops import cli
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


class _Kept:
    """The test's store as the CLI's analytics client (the fixture closes it)."""

    def __init__(self, store: ChdbStore) -> None:
        self.query = store.query

    def close(self) -> None:
        pass


def test_ragops_trace_prints_the_tree_with_key_facts(chdb_store: ChdbStore, monkeypatch: pytest.MonkeyPatch) -> None:
    question = example(QuerySubmitted).model_copy(
        update={"request_id": "r-9", "occurred_at": START, "span_id": "a" * 16}
    )
    answered = example(AnswerGenerated).model_copy(
        update={
            "request_id": "r-9",
            "occurred_at": START + timedelta(milliseconds=250),
            "span_id": "b" * 16,
            "parent_span_id": "a" * 16,
            "tenant": question.tenant,
            "answer": "root:x:0:0",
        }
    )
    rows = [to_row(record_of(event, i), datetime.now(UTC)) for i, event in enumerate([question, answered])]
    insert_events(chdb_store, events_to_arrow(rows))
    monkeypatch.setattr(cli, "_analytics", lambda data_dir: _Kept(chdb_store))
    runner = CliRunner()

    shown = runner.invoke(cli.app, ["trace", "r-9"], env={"COLUMNS": "250"})
    assert shown.exit_code == 0, shown.output
    lines = shown.stdout.splitlines()
    assert "request r-9" in lines[0]
    assert "query.submitted" in lines[1]
    assert "+250 ms (+250 ms) " in lines[2] and "query.answer_generated" in lines[2]
    model = answered.generation.request_model
    assert f"gen_ai.request.model={model}" in lines[2]
    assert f"prompt={answered.lineage.prompt.name}@v{answered.lineage.prompt.version}" in lines[2]

    as_json = json.loads(runner.invoke(cli.app, ["trace", "r-9", "--format", "json"]).stdout)
    [root] = as_json["events"]
    [child] = root["children"]
    assert child["duration_ms"] == 250.0
    assert child["facts"]["gen_ai.usage.output_tokens"] == answered.generation.usage.output_tokens

    missing = runner.invoke(cli.app, ["trace", "no-such-request"])
    assert missing.exit_code == 1

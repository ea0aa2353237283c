"""Contract tests of the analytics store, run against both adapters.

Every test in :class:`TestAnalyticsStore` runs on chDB in a temporary directory, and on a
ClickHouse server when ``CLICKHOUSE_URL`` is set (``http://user:pass@host:8123/db``).
The server run drops and re-creates every table of that database: point it at a scratch
database. The rows come from the golden examples in ``schemas/examples``, so the typed
tables are checked against the payloads the services really produce.
"""

from __future__ import annotations

import json
import os
import uuid
from collections.abc import Iterator
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from ragops_analytics import queries
from ragops_analytics.chdb_store import ChdbStore
from ragops_analytics.guard import ReadOnlyViolation
from ragops_analytics.server_store import ServerStore
from ragops_analytics.store import AnalyticsStore, DataRejected, QueryError, StoreUnavailable
from ragops_sink.rows import EventRow, events_to_arrow
from ragops_sink.schema import discover_migrations, migrate, migrate_down, set_prices, set_retention
from tests.helpers import EXAMPLES, KEEP_ROWS

pytestmark = pytest.mark.clickhouse

TYPED_TABLES = {  # rows each table gets from the golden examples
    "queries": 1,
    "retrievals": 1,
    "generations": 1,
    "evaluations": 3,  # one per score
    "feedback": 1,
    "documents": 3,  # indexed + rejected + deleted (removed)
    "dead_letters": 1,
    "evaluation_runs": 1,
    "dataset_examples": 1,
}
VIEWS = [
    "quality_by_day",
    "quality_by_prompt_version",
    "latency_by_stage",
    "feedback_rates",
    "cost_per_request",
    "cost_per_day",
    "dead_letters_by_reason",
    "document_quality",
]
RECEIVED = datetime(2026, 11, 29, 10, 0, tzinfo=UTC)


def row_from_json(raw: str, *, offset: int, received_at: datetime = RECEIVED) -> EventRow:
    """The ``events`` row the sink writes for one valid event."""
    event = json.loads(raw)
    return EventRow(
        event_id=uuid.UUID(event["event_id"]),
        event_type=event["event_type"],
        schema_version=event["schema_version"],
        topic="ragops.test.v1",
        partition=0,
        offset=offset,
        message_key=event.get("request_id") or event.get("document_id") or "",
        occurred_at=datetime.fromisoformat(event["occurred_at"]),
        received_at=received_at,
        producer=event["producer"]["name"],
        producer_version=event["producer"]["version"],
        tenant=event["tenant"],
        trace_id=event["trace_id"],
        request_id=event.get("request_id") or "",
        document_id=event.get("document_id") or "",
        payload=raw,
        parse_error="",
    )


def golden_rows(received_at: datetime = RECEIVED) -> list[EventRow]:
    files = sorted(EXAMPLES.glob("*.json"))
    assert len(files) >= 15, "the golden examples are missing"
    return [row_from_json(path.read_text(), offset=i, received_at=received_at) for i, path in enumerate(files)]


def count(store: AnalyticsStore, table: str) -> int:
    return queries.row_count(store, table)


def insert(store: AnalyticsStore, rows: list[EventRow]) -> None:
    """What the sink does with a batch."""
    queries.insert_events(store, events_to_arrow(rows))


def one(store: AnalyticsStore, sql: str) -> dict:
    result = store.query(sql)
    assert len(result.rows) == 1, result.rows
    return dict(zip(result.columns, result.rows[0], strict=True))


@pytest.fixture(params=["chdb", "server-adapter-on-chdb", "server"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[AnalyticsStore]:
    """A migrated, empty store of each kind, with no TTL (the golden rows have fixed dates).

    ``server-adapter-on-chdb`` runs ServerStore's code (clickhouse-connect's insert, query
    and settings calls) on the engine clickhouse-connect embeds for a ``chdb://`` DSN, so
    that adapter is exercised even where no server is reachable."""
    if request.param == "chdb":
        opened: AnalyticsStore = ChdbStore(tmp_path / "clickhouse")
    elif request.param == "server-adapter-on-chdb":
        opened = ServerStore(f"chdb://{tmp_path / 'clickhouse'}")
    else:
        url = os.environ.get("CLICKHOUSE_URL")
        if not url:
            pytest.skip(
                "CLICKHOUSE_URL is not set: no ClickHouse server to test the clickhouse-connect adapter against"
            )
        opened = ServerStore(url)
        migrate_down(opened)  # a scratch database left over by an interrupted run
    try:
        migrate(opened)
        set_retention(opened, KEEP_ROWS)
        yield opened
    finally:
        opened.close()  # twice after test_a_closed_store_is_unavailable: a no-op
        if request.param == "server":  # a fresh client: the test may have closed this one
            scratch = ServerStore(url)
            migrate_down(scratch)
            scratch.close()


class TestAnalyticsStore:
    def test_migrate_is_idempotent(self, store: AnalyticsStore) -> None:
        assert migrate(store) == []
        tables = {row[0] for row in store.execute("SHOW TABLES").rows}
        assert {"events", "model_prices", "schema_migrations", *TYPED_TABLES, *VIEWS} <= tables

    def test_migrate_down_then_up_again(self, store: AnalyticsStore) -> None:
        names = [migration.name for migration in discover_migrations()]
        assert migrate_down(store, to=1) == names[:0:-1]
        assert {row[0] for row in store.execute("SHOW TABLES").rows} == {"events", "schema_migrations"}
        assert migrate_down(store) == [names[0]]
        assert migrate_down(store) == []
        assert migrate(store) == names
        insert(store, golden_rows())
        assert count(store, "generations") == 1  # the materialized views are back

    def test_golden_examples_fill_the_typed_tables(self, store: AnalyticsStore) -> None:
        rows = golden_rows()
        insert(store, rows)
        assert count(store, "events") == len(rows)
        for table, expected in TYPED_TABLES.items():
            assert count(store, table) == expected, table

        generation = one(store, "SELECT * FROM generations")
        assert generation["request_id"] == "3f0c1c7e-4a8e-4d7e-9a51-0f9b1f5d2a10"
        assert (generation["input_tokens"], generation["output_tokens"]) == (312, 3)
        assert (generation["model"], generation["model_version"]) == ("SmolLM2-135M-Instruct", "q4_1-0a1b2c3d4e5f")
        assert (generation["prompt_name"], generation["prompt_version"], generation["prompt_sha256"]) == (
            "rag-answer",
            1,
            "0a1b2c3d4e5f",
        )
        assert (generation["finish_reason"], generation["latency_ms"], generation["answer"]) == (
            "stop",
            812.5,
            "France [1]",
        )
        assert generation["occurred_at"] == datetime(2026, 11, 29, 9, 0, 0, 123000, tzinfo=UTC)

        scores = store.query(
            "SELECT metric, value, method, reference_based, run_id, prompt_version FROM evaluations ORDER BY metric"
        )
        assert scores.rows == [
            ("answer_relevancy", 0.62, "embedding_cosine_v1", False, "run-2026-11-29-a", 2),
            ("f1", 1.0, "squad_v1.1", True, "run-2026-11-29-a", 2),
            ("faithfulness", 1.0, "token_support_v1", False, "run-2026-11-29-a", 2),
        ]

        query = one(store, "SELECT question, top_k, prompt_name, prompt_version, redactions FROM queries")
        assert query == {
            "question": "In what country is Normandy located? Reply to <EMAIL_ADDRESS>.",
            "top_k": 5,
            "prompt_name": "",
            "prompt_version": 0,
            "redactions": {"EMAIL_ADDRESS": 1},
        }
        assert queries.redaction_counts(store) == {
            ("document", "EMAIL_ADDRESS"): 1,
            ("feedback", "PHONE_NUMBER"): 1,
            ("query", "EMAIL_ADDRESS"): 1,
        }

        retrieval = one(
            store, "SELECT collection, mode, top_k, n_contexts, top_score, document_ids, chunk_ids FROM retrievals"
        )
        assert retrieval == {
            "collection": "default__all-MiniLM-L6-v2__2e8a342051c5", "mode": "hybrid", "top_k": 5, "n_contexts": 1,
            "top_score": 0.5, "document_ids": ["Normans-p000"], "chunk_ids": ["9c1f0e5b2d7a4c3e8f6b1a2d3c4e5f60"],
        }  # fmt: skip

        feedback = one(
            store,
            "SELECT thumb, rating, has_correction, sentiment, prompt_version, generation_model, user_id FROM feedback",
        )
        assert feedback == {
            "thumb": "down", "rating": 2, "has_correction": True, "sentiment": "negative",
            "prompt_version": 2, "generation_model": "SmolLM2-135M-Instruct", "user_id": "u-42",
        }  # fmt: skip

        documents = store.query("SELECT document_id, status, chunk_count, stage, reason FROM documents ORDER BY status")
        assert documents.rows == [
            ("Normans-p000", "deleted", 0, "", ""),
            ("Normans-p000", "indexed", 1, "", ""),
            ("empty.html", "rejected", 0, "ingestion", "document is empty after parsing text/html"),
        ]
        assert one(store, "SELECT superseded_chunks FROM documents WHERE status = 'deleted'") == {
            "superseded_chunks": 6
        }, "the points removed over every collection"

        dead = one(
            store, "SELECT original_topic, partition, offset, consumer_group, error_type, producer FROM dead_letters"
        )
        assert dead == {
            "original_topic": "ragops.document.submitted.v1", "partition": 1, "offset": 42,
            "consumer_group": "ragops-ingestion", "error_type": "schema_validation", "producer": "ingestion",
        }  # fmt: skip

        run = one(
            store,
            "SELECT run_id, questions, answered, prompt_version, mean_scores, spearman_vs_f1 FROM evaluation_runs",
        )
        assert run["mean_scores"] == {"f1": 0.15, "faithfulness": 0.8}
        assert run["spearman_vs_f1"] == {"faithfulness": 0.21, "answer_relevancy": None}
        assert (run["run_id"], run["questions"], run["answered"], run["prompt_version"]) == (
            "run-2026-11-29-a",
            100,
            100,
            2,
        )

        example = one(store, "SELECT dataset, example_id, reference_answer, source, request_id FROM dataset_examples")
        assert example == {
            "dataset": "feedback", "example_id": "1b2c3d4e5f60718293a4b5c6d7e8f901", "reference_answer": "France",
            "source": "correction", "request_id": "3f0c1c7e-4a8e-4d7e-9a51-0f9b1f5d2a10",
        }  # fmt: skip

    def test_a_replay_is_counted_once(self, store: AnalyticsStore) -> None:
        insert(store, golden_rows())
        insert(store, golden_rows(received_at=RECEIVED + timedelta(hours=1)))
        assert count(store, "events") == len(golden_rows())
        for table, expected in TYPED_TABLES.items():
            assert count(store, table) == expected, table
        assert one(store, "SELECT sum(n) AS n FROM quality_by_day")["n"] == 3
        # The copy kept is the latest delivery (the ReplacingMergeTree version column).
        assert one(store, "SELECT max(received_at) AS at FROM events FINAL")["at"] == RECEIVED + timedelta(hours=1)

    def test_one_event_id_is_one_row_whatever_its_occurred_at(self, store: AnalyticsStore) -> None:
        # A service that publishes again after a restart keeps the event id but stamps a new
        # occurred_at, here in another month.
        first = golden_rows()
        again = [
            replace(row, occurred_at=row.occurred_at + timedelta(days=40), received_at=RECEIVED + timedelta(hours=1))
            for row in first
        ]
        insert(store, first)
        insert(store, again)
        assert count(store, "events") == len(first)
        for table, expected in TYPED_TABLES.items():
            assert count(store, table) == expected, table
        # The latest delivery is the copy kept, in `events` and in the typed tables.
        assert store.query("SELECT occurred_at FROM generations FINAL").rows == [
            (datetime(2026, 11, 29, 9, 0, 0, 123000, tzinfo=UTC) + timedelta(days=40),)
        ]

    def test_migration_5_keeps_the_rows_and_keys_every_table_on_the_event_id(self, store: AnalyticsStore) -> None:
        migrate_down(store, to=4)
        rows = golden_rows()
        insert(store, rows)
        applied = migrate(store)
        assert applied[:2] == ["0005_event_id_keys", "0006_unchanged_documents"], "5 and every later one"
        assert count(store, "events") == len(rows)
        for table, expected in TYPED_TABLES.items():
            assert count(store, table) == expected, table
        tables = store.execute("SELECT name, sorting_key FROM system.tables WHERE database = currentDatabase()").rows
        keys = {name: key for name, key in tables if name in queries.COUNTED_TABLES}
        assert keys.keys() == queries.COUNTED_TABLES
        assert all(key.endswith("event_id") and "occurred_at" not in key for key in keys.values()), keys
        insert(store, golden_rows(received_at=RECEIVED + timedelta(hours=1)))  # the views write again
        assert count(store, "generations") == 1

    def test_a_value_the_engine_refuses_is_a_data_error_not_an_outage(self, store: AnalyticsStore) -> None:
        with pytest.raises(DataRejected) as refused:
            store.execute("INSERT INTO events (event_id) SELECT toUUID('not a uuid')")
        assert refused.value.code == 376  # CANNOT_PARSE_UUID
        # A table that is not there (yet) is the store's state, not the rows': wait, do not isolate.
        with pytest.raises(StoreUnavailable):
            store.execute("INSERT INTO no_such_table SELECT 1")
        with pytest.raises(StoreUnavailable):
            store.insert("no_such_table", events_to_arrow(golden_rows()[:1]))

    def test_an_unchanged_resubmission_adds_no_indexed_row(self, store: AnalyticsStore) -> None:
        indexed = json.loads((EXAMPLES / "DocumentIndexed.json").read_text())
        acks = [
            indexed
            | {"event_id": str(uuid.uuid4()), "occurred_at": f"2026-11-29T1{hour}:00:00.000Z", "unchanged": True}
            for hour in (1, 2)
        ]
        insert(store, [row_from_json(json.dumps(e), offset=i) for i, e in enumerate([indexed, *acks])])
        statuses = store.query("SELECT status, count() FROM documents FINAL GROUP BY status ORDER BY status").rows
        assert [tuple(row) for row in statuses] == [("indexed", 1), ("unchanged", 2)]
        assert queries.document_outcomes(store) == (1, 0, indexed["chunk_count"])

    def test_a_deleted_document_shows_as_deleted_until_it_is_indexed_again(self, store: AnalyticsStore) -> None:
        indexed = json.loads((EXAMPLES / "DocumentIndexed.json").read_text())
        removed = json.loads((EXAMPLES / "DocumentRemoved.json").read_text())
        again = indexed | {"event_id": str(uuid.uuid4()), "occurred_at": "2026-11-29T12:00:00.000Z"}
        insert(store, [row_from_json(json.dumps(e), offset=i) for i, e in enumerate([indexed, removed])])
        assert queries.document_states(store, "default") == {"Normans-p000": "deleted"}
        assert queries.document_states(store, "globex") == {}
        insert(store, [row_from_json(json.dumps(again), offset=2)])
        assert queries.document_states(store, "default") == {"Normans-p000": "indexed"}

    def test_an_unparsable_record_is_kept_with_its_error(self, store: AnalyticsStore) -> None:
        broken = EventRow(
            event_id=uuid.uuid5(uuid.NAMESPACE_URL, "ragops.query.submitted.v1:2:7"), event_type="unparsable",
            schema_version=0, topic="ragops.query.submitted.v1", partition=2, offset=7, message_key="k",
            occurred_at=RECEIVED, received_at=RECEIVED,
            producer="", producer_version="", tenant="", trace_id="", request_id="", document_id="",
            payload="not json {", parse_error="JSONDecodeError: Expecting value: line 1 column 1 (char 0)",
        )  # fmt: skip
        insert(store, [broken, broken])
        row = one(
            store,
            "SELECT topic, partition, offset, payload, parse_error FROM events FINAL WHERE event_type = 'unparsable'",
        )
        assert row == {
            "topic": "ragops.query.submitted.v1", "partition": 2, "offset": 7,
            "payload": "not json {", "parse_error": "JSONDecodeError: Expecting value: line 1 column 1 (char 0)",
        }  # fmt: skip
        assert sum(count(store, table) for table in TYPED_TABLES) == 0

    @pytest.mark.parametrize("view", VIEWS)
    def test_every_view_answers(self, store: AnalyticsStore, view: str) -> None:
        insert(store, golden_rows())
        result = store.query(f"SELECT * FROM {view}")
        assert result.rows, view

    def test_latency_by_stage(self, store: AnalyticsStore) -> None:
        start = datetime(2026, 11, 29, 9, 0, tzinfo=UTC)
        stages = [("QueryRedacted", 0), ("QueryEmbedded", 10), ("ContextRetrieved", 30), ("AnswerGenerated", 100)]
        rows = []
        for offset, (name, ms) in enumerate(stages):
            event = json.loads((EXAMPLES / f"{name}.json").read_text())
            event["event_id"] = str(uuid.uuid4())
            event["occurred_at"] = (start + timedelta(milliseconds=ms)).isoformat()
            rows.append(row_from_json(json.dumps(event), offset=offset))
        insert(store, rows)
        latency = store.query("SELECT stage, n, p50_ms, p95_ms FROM latency_by_stage ORDER BY stage")
        assert latency.rows == [
            ("embedding", 1, 10.0, 10.0),
            ("end_to_end", 1, 100.0, 100.0),
            ("generation", 1, 70.0, 70.0),
            ("retrieval", 1, 20.0, 20.0),
        ]

    @pytest.mark.parametrize(
        "sql",
        [
            "INSERT INTO events (event_type) VALUES ('x')",
            "DROP TABLE events",
            "ALTER TABLE events DELETE WHERE 1",
            "SELECT 1; DROP TABLE events",
            "SELECT 1 INTO OUTFILE 'x.csv'",
        ],
    )
    def test_query_refuses_writes(self, store: AnalyticsStore, sql: str) -> None:
        with pytest.raises(ReadOnlyViolation):
            store.query(sql)
        assert "events" in {row[0] for row in store.execute("SHOW TABLES").rows}

    def test_the_engine_refuses_what_the_guard_lets_through(self, store: AnalyticsStore) -> None:
        with pytest.raises(ReadOnlyViolation):
            store.query("SELECT * FROM file('/etc/hostname', 'LineAsString')")
        with pytest.raises(QueryError):  # an allowed table, the engine's verdict on the column
            store.query("SELECT no_such_column FROM events")

    def test_query_accepts_reads_and_parameters(self, store: AnalyticsStore) -> None:
        assert store.query("WITH 2 AS x SELECT x * {factor:UInt32} AS y;", {"factor": 21}).rows == [(42,)]
        assert store.query("SELECT {name:String} AS name", {"name": "it's"}).rows == [("it's",)]
        assert store.query("DESCRIBE TABLE events").columns[:2] == ["name", "type"]

    def test_set_retention_adds_and_removes_a_ttl(self, store: AnalyticsStore) -> None:
        def create() -> str:
            return store.execute("SHOW CREATE TABLE events").rows[0][0]

        assert set_retention(store, {"events": None}) == []  # no TTL: nothing to remove, and no error
        assert set_retention(store, {"events": 30}) == ["events"]
        assert set_retention(store, {"events": 30}) == []
        assert "TTL toDateTime(occurred_at) + toIntervalDay(30)" in create()
        set_retention(store, {"events": 7})
        assert "toIntervalDay(7)" in create()
        assert queries.table_retention(store, "events") == 7
        set_retention(store, {"events": None})
        assert "TTL" not in create()
        with pytest.raises(ValueError, match="days"):
            set_retention(store, {"events": 0})

    def test_set_prices_prices_each_request(self, store: AnalyticsStore) -> None:
        insert(store, golden_rows())
        assert one(store, "SELECT cost_usd FROM cost_per_request")["cost_usd"] == 0  # no price yet
        set_prices(store, {"SmolLM2-135M-Instruct": (1.0, 5.0)})
        set_prices(store, {"SmolLM2-135M-Instruct": (0.5, 2.0), "other-model": (3.0, 3.0)})  # the latest price wins
        cost = one(store, "SELECT model, input_tokens, output_tokens, cost_usd FROM cost_per_request")
        assert cost["cost_usd"] == pytest.approx((312 * 0.5 + 3 * 2.0) / 1e6)
        day = one(store, "SELECT requests, input_tokens, output_tokens, cost_usd FROM cost_per_day")
        assert (day["requests"], day["input_tokens"], day["output_tokens"]) == (1, 312, 3)
        assert day["cost_usd"] == pytest.approx(cost["cost_usd"])
        with pytest.raises(ValueError):
            set_prices(store, {"m": (-1.0, 0.0)})

    def test_a_closed_store_is_unavailable(self, store: AnalyticsStore) -> None:
        insert(store, [])  # an empty batch is a no-op
        store.close()
        with pytest.raises(StoreUnavailable):
            insert(store, golden_rows())
        with pytest.raises(StoreUnavailable):
            store.query("SELECT 1")


def test_a_second_chdb_directory_in_the_process_is_refused(tmp_path: Path) -> None:
    """chDB runs one engine directory per process: the second store must fail loudly."""
    first = ChdbStore(tmp_path / "a")
    try:
        with pytest.raises(StoreUnavailable):
            ChdbStore(tmp_path / "b")
    finally:
        first.close()
    ChdbStore(tmp_path / "b").close()  # free again once the first is closed

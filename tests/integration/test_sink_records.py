"""The sink's writer on a real engine (chDB), fed Kafka records built by hand: what a record
may carry (a valid event's id on a broken payload, values outside their columns, values
ClickHouse refuses) never replaces a valid event's row nor stops the writer."""

import json
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pyarrow as pa
import pytest
from aiokafka import ConsumerRecord

from ragops_analytics import queries
from ragops_analytics.store import AnalyticsStore, DataRejected
from ragops_schemas import Event, QueryRedacted, VersionRegistered
from ragops_schemas.ids import unparsable_event_id
from ragops_shared.settings import PlatformSettings
from ragops_sink.app import Writer
from ragops_sink.settings import SinkSettings
from tests.helpers import KEEP_ROWS, example_bytes

pytestmark = pytest.mark.clickhouse


def record(event_type: type[Event], offset: int, topic: str | None = None, **changes: Any) -> ConsumerRecord:
    """Event ``event_type``'s golden example at ``offset`` on its topic (or ``topic``), with
    fields changed."""
    event = json.loads(example_bytes(event_type)) | changes
    value = json.dumps(event).encode()
    return ConsumerRecord(topic or event_type.TOPIC, 0, offset, 0, 0, b"k", value, None, 1, len(value), [])


def fresh(event_type: type[Event], offset: int, topic: str | None = None, **changes: Any) -> ConsumerRecord:
    """:func:`record` with a new event id."""
    return record(event_type, offset, topic, event_id=str(uuid.uuid4()), **changes)


@pytest.fixture
def writer(tmp_path: Path) -> Iterator[Writer]:
    opened = Writer(
        SinkSettings(retention_days=KEEP_ROWS, platform=PlatformSettings(data_dir=tmp_path), retry_initial_s=0.01)
    )
    opened.open()
    yield opened
    opened.close()


def rows(store: AnalyticsStore, sql: str) -> list[tuple[Any, ...]]:
    return store.query(sql).rows


async def test_a_broken_record_with_a_valid_events_id_replaces_nothing(writer: Writer) -> None:
    valid = record(QueryRedacted, 0)
    await writer.write([valid])
    # The same id and occurred_at on a payload its schema refuses (top_k is not a number),
    # delivered later with another question.
    await writer.write([record(QueryRedacted, 1, question="Who owns Normandy?", top_k="many")])

    store = writer.store
    assert rows(store, "SELECT event_type, offset, parse_error = '' FROM events FINAL ORDER BY offset") == [
        ("query.redacted", 0, True),
        ("unparsable", 1, False),
    ]
    assert rows(store, "SELECT question, top_k FROM queries FINAL") == [
        ("In what country is Normandy located? Reply to <EMAIL_ADDRESS>.", 5)
    ]
    [(event_id, reason)] = rows(store, "SELECT event_id, parse_error FROM events FINAL WHERE event_type = 'unparsable'")
    assert event_id == unparsable_event_id(QueryRedacted.TOPIC, 0, 1)
    assert "top_k" in reason


async def test_a_valid_event_on_another_topic_is_unparsable(writer: Writer) -> None:
    moved = fresh(QueryRedacted, 3, topic=VersionRegistered.TOPIC)
    await writer.write([record(QueryRedacted, 0), moved])
    assert rows(writer.store, "SELECT event_type, topic FROM events FINAL ORDER BY event_type") == [
        ("query.redacted", QueryRedacted.TOPIC),
        ("unparsable", VersionRegistered.TOPIC),
    ]
    assert queries.row_count(writer.store, "queries") == 1


@pytest.mark.parametrize(
    ("misfit", "reason"),
    [
        ({"schema_version": 70_000}, "schema_version"),  # UInt16
        ({"occurred_at": "9999-12-31T23:59:59.999Z"}, "occurred_at"),  # DateTime64(3): 1900-2299
    ],
)
async def test_a_value_outside_its_column_is_unparsable_and_the_batch_goes_in(
    writer: Writer, misfit: dict[str, Any], reason: str
) -> None:
    batch = [fresh(QueryRedacted, 0), fresh(QueryRedacted, 1, **misfit), fresh(QueryRedacted, 2)]
    await writer.write(batch)  # returns: the batch is stored and its offsets can be committed
    assert rows(writer.store, "SELECT offset, event_type FROM events FINAL ORDER BY offset") == [
        (0, "query.redacted"),
        (1, "unparsable"),
        (2, "query.redacted"),
    ]
    [(error,)] = rows(writer.store, "SELECT parse_error FROM events FINAL WHERE event_type = 'unparsable'")
    assert reason in error
    assert queries.row_count(writer.store, "queries") == 2


async def test_a_negative_offset_is_unparsable(writer: Writer) -> None:
    broken = fresh(QueryRedacted, -5)
    await writer.write([fresh(QueryRedacted, 0), broken])
    [(offset, error)] = rows(
        writer.store, "SELECT offset, parse_error FROM events FINAL WHERE event_type = 'unparsable'"
    )
    assert offset == 0 and "offset -5" in error


async def test_one_event_id_with_two_occurred_at_is_one_row(writer: Writer) -> None:
    # A restarted service publishes the same registration again with a new occurred_at.
    first = record(VersionRegistered, 0)
    later = (datetime.fromisoformat(json.loads(first.value)["occurred_at"]) + timedelta(days=40)).isoformat()
    await writer.write([first])
    await writer.write([record(VersionRegistered, 1, occurred_at=later)])
    store = writer.store
    assert rows(store, "SELECT offset FROM events FINAL") == [(1,)]
    assert rows(store, "SELECT occurred_at FROM versions FINAL") == [(datetime.fromisoformat(later).astimezone(UTC),)]


class _Refuses:
    """The real store, except that an insert of ``events`` holding an event whose payload
    contains ``marker`` is refused as ClickHouse refuses a value (CANNOT_PARSE_TEXT); so is
    the ``unparsable`` row that stands for it, its first ``stubborn`` times."""

    def __init__(self, store: AnalyticsStore, marker: str, stubborn: int = 0) -> None:
        self.store = store
        self.marker = marker
        self.stubborn = stubborn
        self.inserts = 0  # of events

    def insert(self, table: str, data: pa.Table) -> None:
        self.inserts += table == queries.EVENTS
        columns = data.to_pydict() if table == queries.EVENTS else {"payload": [], "event_type": []}
        marked = [
            event_type
            for payload, event_type in zip(columns["payload"], columns["event_type"], strict=True)
            if self.marker in payload
        ]
        if marked == ["unparsable"] and self.stubborn:
            self.stubborn -= 1
            marked = ["refused again"]
        if any(event_type != "unparsable" for event_type in marked):
            raise DataRejected("Code: 6. DB::Exception: Cannot parse string 'x' as UInt32. (CANNOT_PARSE_TEXT)", 6)
        self.store.insert(table, data)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.store, name)


@pytest.mark.parametrize("stubborn", [0, 2])
async def test_a_refused_record_is_isolated_and_stored_as_unparsable(tmp_path: Path, stubborn: int) -> None:
    """``stubborn``: the engine refuses the unparsable row too, that many times; so it is not
    the record's fault, and the writer waits it out as an outage (no hot loop, no loss)."""
    refusing: list[_Refuses] = []

    class RefusingWriter(Writer):
        def connect(self) -> AnalyticsStore:
            refusing.append(_Refuses(super().connect(), marker="Who refuses?", stubborn=stubborn))
            return refusing[0]

    settings = SinkSettings(
        retention_days=KEEP_ROWS, platform=PlatformSettings(data_dir=tmp_path), retry_initial_s=0.01
    )
    writer = RefusingWriter(settings)
    writer.open()
    try:
        batch = [fresh(QueryRedacted, offset) for offset in range(64)]
        batch[37] = fresh(QueryRedacted, 37, question="Who refuses?")
        await writer.write(batch)
        store = writer.store
        assert queries.row_count(store, "queries") == 63
        [(offset, error)] = rows(store, "SELECT offset, parse_error FROM events FINAL WHERE event_type = 'unparsable'")
        assert offset == 37 and "CANNOT_PARSE_TEXT" in error
        # Halving: the batch, two halves per level (log2(64) = 6 levels), the unparsable row
        # (and each refusal of it).
        assert refusing[0].inserts == 1 + 2 * 6 + 1 + stubborn
    finally:
        writer.close()

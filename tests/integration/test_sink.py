"""The sink on a real broker and a real ClickHouse engine (chDB): every record of every
topic lands in ClickHouse, an unparsable one too; a replay from the beginning leaves the
row counts unchanged; an outage of ClickHouse loses nothing."""

import asyncio
import time
from pathlib import Path

import pyarrow as pa
import pytest

from ragops_analytics import queries
from ragops_analytics.chdb_store import ChdbStore
from ragops_analytics.store import AnalyticsStore, StoreUnavailable
from ragops_schemas import EVENT_TYPES, Topic
from ragops_schemas.topics import TOPICS
from ragops_shared.settings import PlatformSettings
from ragops_sink.app import Writer, create_app
from ragops_sink.settings import SinkSettings
from tests.helpers import KEEP_ROWS, example_bytes
from tests.integration.services import produce_raw, running

pytestmark = [pytest.mark.kafka, pytest.mark.clickhouse]
TYPED_TABLES = (
    "queries",
    "retrievals",
    "generations",
    "evaluations",
    "feedback",
    "documents",
    "dead_letters",
    "evaluation_runs",
    "dataset_examples",
)


async def _produce_every_example(kafka) -> int:
    """Every golden example of a topic the sink keeps on its topic, plus one record that is not
    JSON; returns the record count."""
    records = 0
    kept = {spec.topic for spec in TOPICS if spec.sink}
    for event_type in (e for e in EVENT_TYPES if e.TOPIC in kept):
        payload = example_bytes(event_type)
        await produce_raw(kafka, event_type.TOPIC, [(b"k", payload)])
        records += 1
    await produce_raw(kafka, Topic.QUERY_REDACTED, [(b"junk", b"\xff not json")])
    return records + 1


def _counts(store: AnalyticsStore) -> dict[str, int]:
    counts = {"events": queries.row_count(store, "events")}
    counts.update({table: queries.row_count(store, table) for table in TYPED_TABLES})
    return counts


async def _sink_until(
    settings: SinkSettings, expected_events: int, writer: Writer | None = None, timeout_s: float = 60
) -> None:
    """Run a sink until ClickHouse holds ``expected_events`` events."""
    async with running(create_app(settings, writer)):
        deadline = time.monotonic() + timeout_s
        probe = ChdbStore(settings.platform.data_dir / "clickhouse")  # a second session on the same path, same process
        try:
            while queries.row_count(probe, "events") < expected_events:
                assert time.monotonic() < deadline, "the sink did not store every record in time"
                await asyncio.sleep(0.2)
        finally:
            probe.close()


async def test_every_record_lands_and_a_replay_changes_nothing(kafka, tmp_path: Path) -> None:
    produced = await _produce_every_example(kafka)
    settings = SinkSettings(
        retention_days=KEEP_ROWS, kafka=kafka, platform=PlatformSettings(data_dir=tmp_path), batch_wait_ms=50
    )
    await _sink_until(settings, produced)

    store = ChdbStore(tmp_path / "clickhouse")
    try:
        first = _counts(store)
        assert first["events"] == produced
        assert all(first[table] >= 1 for table in TYPED_TABLES), first
        [(error, raw)] = store.query(
            "SELECT parse_error, payload FROM events FINAL WHERE event_type = 'unparsable'"
        ).rows
        assert error and "not json" in raw
        assert store.query("SELECT input_tokens, output_tokens FROM generations FINAL").rows == [(312, 3)]
    finally:
        store.close()

    # A new consumer group reads every topic again from the beginning.
    await _sink_until(settings.model_copy(update={"group_id": "ragops-sink-replay"}), produced)
    store = ChdbStore(tmp_path / "clickhouse")
    try:
        assert _counts(store) == first
        assert (
            store.query("SELECT count() FROM events").rows[0][0] >= produced
        )  # raw parts may hold both copies until merged
    finally:
        store.close()


class _Outage:
    """Wraps the real store; its first ``attempts`` inserts of events fail with StoreUnavailable
    (an outage as long as the sink's backoff takes to retry that often)."""

    def __init__(self, store: AnalyticsStore, attempts: int) -> None:
        self.store = store
        self.attempts = attempts
        self.failures = 0

    def insert(self, table: str, data: pa.Table) -> None:
        if table == queries.EVENTS and self.failures < self.attempts:
            self.failures += 1
            raise StoreUnavailable("simulated outage")
        self.store.insert(table, data)

    def __getattr__(self, name: str):
        return getattr(self.store, name)


async def test_clickhouse_outage_loses_nothing(kafka, tmp_path: Path) -> None:
    settings = SinkSettings(
        retention_days=KEEP_ROWS,
        kafka=kafka,
        platform=PlatformSettings(data_dir=tmp_path),
        batch_wait_ms=50,
        retry_initial_s=0.2,
        retry_max_s=0.5,
    )
    outage: list[_Outage] = []

    class FlakyWriter(Writer):
        def connect(self) -> AnalyticsStore:
            outage.append(_Outage(super().connect(), attempts=4))
            return outage[0]

    produced = await _produce_every_example(kafka)
    await _sink_until(settings, produced, writer=FlakyWriter(settings))
    assert outage[0].failures == 4, "the outage was exercised"
    store = ChdbStore(tmp_path / "clickhouse")
    try:
        assert queries.row_count(store, "events") == produced
    finally:
        store.close()


async def test_a_record_with_an_unreadable_header_is_stored_with_its_whole_batch(kafka, tmp_path: Path) -> None:
    """FastStream's batch parser decodes header values before the sink's decoder runs: a
    non-UTF-8 value there used to drop the whole fetched batch and move past it (found by
    ``make chaos``: the sink stored none of the poison round's records)."""
    from aiokafka import AIOKafkaProducer

    from ragops_schemas import DocumentRedacted, Producer

    def document(name: str) -> DocumentRedacted:
        return DocumentRedacted(producer=Producer(name="t", version="0"), document_id=name, content="text")

    batch = [document("before"), document("bad-header"), document("after")]
    producer = AIOKafkaProducer(bootstrap_servers=kafka.bootstrap_servers)
    await producer.start()
    try:
        for event in batch:
            headers = [("traceparent", b"\xff\xfe00")] if event.document_id == "bad-header" else []
            await producer.send_and_wait(event.TOPIC, event.model_dump_json().encode(), key=b"one", headers=headers)
    finally:
        await producer.stop()
    sentinel = document("sentinel")
    settings = SinkSettings(
        retention_days=KEEP_ROWS,
        kafka=kafka,
        platform=PlatformSettings(data_dir=tmp_path),
        batch_wait_ms=50,
        group_id="ragops-sink-headers",
    )
    async with running(create_app(settings)):
        await produce_raw(kafka, sentinel.TOPIC, [(b"one", sentinel.model_dump_json().encode())])
        probe = ChdbStore(tmp_path / "clickhouse")
        try:
            deadline = time.monotonic() + 60
            while not (stored := queries.event_payload(probe, str(sentinel.event_id))):
                assert time.monotonic() < deadline, "the sentinel was never stored"
                await asyncio.sleep(0.2)
            missing = [e.document_id for e in batch if queries.event_payload(probe, str(e.event_id)) is None]
        finally:
            probe.close()
    assert stored and missing == []

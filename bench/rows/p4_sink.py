"""P4 sink: events/s from the broker into ClickHouse (chDB) through the sink service vs the
raw aiokafka consume rate of the same events.

The events: every golden example (``schemas/examples``, one per event type, on its own
topic) with fresh ids, in turn, produced once to the embedded broker. Each repeat reads all
of them again from the beginning with a new consumer group.

Fair baseline: the raw side is the ceiling the sink can approach — an ``AIOKafkaConsumer``
on the same topics with the sink's own fetch settings (``batch_records`` per fetch,
``batch_wait_ms``), doing nothing with the records. Our side is the sink app itself
(``ragops_sink.app.create_app`` in this process, on chDB in a temp dir), timed by wrapping
its ``Writer``. Both rates leave out the group join and the first batch: they are
(events - first batch) / (time from the first batch in hand to the last one done).
"""

import asyncio
import time
from collections.abc import Awaitable, Sequence
from datetime import UTC, datetime
from itertools import cycle, islice

from aiokafka import AIOKafkaConsumer, ConsumerRecord

from bench import data
from bench.harness import Check, RowArgs, alternate, result, row_main, step
from bench.infra import embedded_broker, produce
from bench.stats import percentile, ratio, summary
from ragops_analytics import queries
from ragops_analytics.chdb_store import ChdbStore
from ragops_schemas import EVENT_TYPES, Topic
from ragops_shared.settings import KafkaSettings, PlatformSettings, aiokafka_options
from ragops_sink.app import Writer, create_app
from ragops_sink.rows import events_to_arrow, to_row
from ragops_sink.settings import SinkSettings

FULL = {"events": 100_000}
QUICK = {"events": 45_000}  # more than two batches of the sink's 20,000


class Stopwatch:
    """Rate of a stream of batches. The clock starts when the first batch is done and that
    batch is not counted, so the group join and the first fetch are left out and both sides
    count one fetch and one handling per counted batch."""

    def __init__(self, expected: int) -> None:
        self.expected = expected
        self.count = 0
        self.first_batch = 0
        self.started = 0.0
        self.done = asyncio.Event()
        self.rate = 0.0

    def batch_done(self, size: int) -> None:
        if self.count == 0:
            self.started, self.first_batch = time.perf_counter(), size
        self.count += size
        if self.count >= self.expected and not self.done.is_set():
            if self.count == self.first_batch:
                raise RuntimeError(f"all {self.count} events came in one batch: produce more events than a batch holds")
            self.rate = (self.count - self.first_batch) / (time.perf_counter() - self.started)
            self.done.set()


class TimedWriter(Writer):
    """The sink's writer, timing each batch from the moment the sink hands it over."""

    def __init__(self, settings: SinkSettings, stopwatch: Stopwatch) -> None:
        super().__init__(settings)
        self.stopwatch = stopwatch

    async def write(self, records: Sequence[ConsumerRecord]) -> None:
        await super().write(records)
        self.stopwatch.batch_done(len(records))


async def sink_rate(settings: SinkSettings, events: int) -> float:
    stopwatch = Stopwatch(events)
    app = create_app(settings, TimedWriter(settings, stopwatch))
    await app.start()
    try:
        await asyncio.wait_for(stopwatch.done.wait(), 600)
    finally:
        await app.stop()
    return stopwatch.rate


async def raw_rate(kafka: KafkaSettings, sink: SinkSettings, group: str, events: int) -> float:
    stopwatch = Stopwatch(events)
    consumer = AIOKafkaConsumer(
        *list(Topic),
        **aiokafka_options(kafka),
        group_id=group,
        enable_auto_commit=False,
        auto_offset_reset="earliest",
        fetch_max_wait_ms=sink.batch_wait_ms,
        max_partition_fetch_bytes=kafka.max_message_bytes,
        session_timeout_ms=kafka.session_timeout_ms,
        heartbeat_interval_ms=kafka.heartbeat_interval_ms,
    )
    await consumer.start()
    try:
        while not stopwatch.done.is_set():
            batches = await consumer.getmany(timeout_ms=sink.batch_wait_ms, max_records=sink.batch_records)
            size = sum(len(records) for records in batches.values())
            if size:
                stopwatch.batch_done(size)
        await consumer.commit()
    finally:
        await consumer.stop()
    return stopwatch.rate


def cost_per_event_us(store: ChdbStore, records: Sequence[tuple[str, bytes, bytes]]) -> dict:
    """Where the sink's time goes, for one batch: ``to_row`` (parsing) and the chDB insert, in
    microseconds per event (the events are inserted again; the table de-duplicates them)."""
    consumed = [
        ConsumerRecord(topic, 0, offset, 0, 0, key, value, None, len(key), len(value), [])
        for offset, (topic, key, value) in enumerate(records)
    ]
    started = time.perf_counter()
    rows = [to_row(record, datetime.now(UTC)) for record in consumed]
    parsed = time.perf_counter()
    queries.insert_events(store, events_to_arrow(rows))
    inserted = time.perf_counter()
    return {
        "to_row_us_per_event": round((parsed - started) / len(rows) * 1e6, 1),
        "insert_us_per_event": round((inserted - parsed) / len(rows) * 1e6, 1),
    }


async def measure(args: RowArgs, events: int) -> tuple[dict[str, list[float]], dict]:
    async with embedded_broker(args.workdir) as (_, kafka):
        examples = [data.golden(event_type) for event_type in EVENT_TYPES]
        records = data.encoded([data.fresh(example) for example in islice(cycle(examples), events)])
        step("P4", f"producing {events} events ({len(EVENT_TYPES)} event types, {len(Topic)} topics)")
        produce_s = await produce(kafka, records)
        settings = SinkSettings(kafka=kafka, platform=PlatformSettings(data_dir=args.workdir))

        def sink_side(index: int) -> Awaitable[float]:
            return sink_rate(settings.model_copy(update={"group_id": f"bench-sink-{index}"}), events)

        def raw_side(index: int) -> Awaitable[float]:
            return raw_rate(kafka, settings, f"bench-raw-{index}", events)

        step("P4", f"1 warm-up + {args.repeats} reads of every event per side (each a new consumer group)")
        measured = await alternate({"ours": sink_side, "baseline": raw_side}, args.repeats)
        store = ChdbStore(args.workdir / "clickhouse")
        try:
            stored = queries.row_count(store, queries.EVENTS)
            views = queries.materialized_views(store)
            cost = cost_per_event_us(store, records[: settings.batch_records])
        finally:
            store.close()
        return measured, {
            **cost,
            "produced_events_per_s": round(events / produce_s),
            "mean_event_bytes": round(sum(len(value) for _, _, value in records) / events),
            "distinct_events_in_clickhouse": stored,
            "materialized_views": views,
            "sink_batch_records": settings.batch_records,
            "sink_batch_wait_ms": settings.batch_wait_ms,
        }


def run(args: RowArgs) -> list[dict]:
    sizes = args.pick(FULL, QUICK)
    measured, metrics = asyncio.run(measure(args, sizes["events"]))
    share = ratio(measured["ours"], measured["baseline"])
    ours = summary(measured["ours"], "sink app -> chDB")
    checks = [
        Check(f"sink/raw {share['median']:.2f}x >= 0.5x", share["median"] >= 0.5),
        Check(f"sink {ours['median']:,.0f} events/s >= 30,000", ours["median"] >= 30_000),
        Check(
            f"every event stored ({metrics['distinct_events_in_clickhouse']:,} of {sizes['events']:,})",
            metrics["distinct_events_in_clickhouse"] == sizes["events"],
        ),
    ]
    notes = []
    if ours["median"] < 30_000 or share["median"] < 0.5:
        work_us = metrics["to_row_us_per_event"] + metrics["insert_us_per_event"]
        notes.append(
            f"measured per event: to_row {metrics['to_row_us_per_event']} us (parsing the whole payload for the "
            f"envelope columns), chDB insert {metrics['insert_us_per_event']} us (the engine's insert plus the "
            f"{metrics['materialized_views']} materialized views that fan events out into the typed tables); "
            "that work alone "
            f"caps the sink at ~{1e6 / work_us:,.0f} events/s even with a free consume, "
            f"{1e6 / work_us / percentile(measured['baseline'], 50):.2f}x of raw. "
            "Closer needs a cheaper row than a JSON "
            "parse per event (an envelope-only decoder) and fewer materialized views per insert"
        )
    return [
        result(
            "P4",
            "sink",
            unit="events/s",
            better="higher",
            goal=">= 0.5x raw consume and >= 30k events/s",
            ours=ours,
            baseline=summary(measured["baseline"], "raw aiokafka getmany, no processing"),
            ratio=share,
            checks=checks,
            notes=notes,
            sizes=sizes,
            metrics=metrics,
            highlights=[
                (
                    f"mean event {metrics['mean_event_bytes']} bytes; "
                    f"produced at {metrics['produced_events_per_s']:,} events/s; "
                    f"sink cost per event: to_row {metrics['to_row_us_per_event']} us, "
                    f"chDB insert {metrics['insert_us_per_event']} us"
                )
            ],
        )
    ]


if __name__ == "__main__":
    row_main(run)

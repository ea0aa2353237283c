"""What the chaos harness does on Kafka itself: read every platform topic back from offset 0
(:class:`BusReader`, which also tells the end of each partition from what it fetched: Tansu's
ListOffsets answer is stale on its S3 engine), read committed offsets, and build and inject
the poison records of every kind issue 12 names."""

import asyncio
import contextlib
import json
import re
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Annotated, Any, Union

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, ConsumerRecord, TopicPartition
from aiokafka.errors import KafkaError
from pydantic import Field, TypeAdapter

from chaos.checks import Poison, Seen
from ragops_schemas import EVENT_TYPES, Event, MessageDeadLettered, Producer, QuerySubmitted, Topic
from ragops_shared.settings import KafkaSettings, aiokafka_options

# Every event type, dispatched on event_type: a record is what the platform's own models say it is.
_EVENT_UNION: Any = Annotated[Union[EVENT_TYPES], Field(discriminator="event_type")]  # noqa: UP007
_EVENTS: TypeAdapter[Event] = TypeAdapter(_EVENT_UNION)
_TAG = re.compile(r"\[chaos (\S+)\]")
# What the events table's columns hold (UInt16; DateTime64(3)): outside, a record is unparsable there.
_UINT16 = 2**16 - 1
_EARLIEST, _LATEST = datetime(1900, 1, 1, tzinfo=UTC), datetime(2300, 1, 1, tzinfo=UTC)
PRODUCER = Producer(name="chaos", version="1")


def tagged(question: str, tag: str) -> str:
    """``question`` with the chaos ``tag`` in its text (how a request is found in Kafka)."""
    return f"{question} [chaos {tag}]"


def summarise(record: ConsumerRecord) -> Seen:
    """What the checks need of one record (see :class:`~chaos.checks.Seen`)."""
    try:
        event = _EVENTS.validate_json(record.value or b"")
    except (ValueError, TypeError):
        return Seen(record.topic, record.partition, record.offset)
    at = event.occurred_at if event.occurred_at.tzinfo else event.occurred_at.replace(tzinfo=UTC)
    storable = record.topic == event.TOPIC and 0 <= event.schema_version <= _UINT16 and _EARLIEST <= at < _LATEST
    fields = vars(event)
    match = _TAG.search(fields.get("question") or "") if isinstance(event, QuerySubmitted) else None
    letter = (
        (event.original_topic, event.partition, event.offset, event.reason)
        if isinstance(event, MessageDeadLettered)
        else None
    )
    return Seen(
        record.topic,
        record.partition,
        record.offset,
        event_id=str(event.event_id) if storable else None,
        event_type=event.event_type,
        request_id=str(fields.get("request_id") or ""),
        tag=match.group(1) if match else "",
        letter=letter,
    )


class BusReader:
    """Reads every platform topic from offset 0 for as long as :meth:`run` runs, keeping a
    :class:`~chaos.checks.Seen` per record (``records``), the end of each partition read so
    far (``ends``: last offset + 1) and when a fetch last came back empty."""

    def __init__(self, kafka: KafkaSettings) -> None:
        self.kafka = kafka
        self.records: list[Seen] = []
        self.ends: dict[tuple[str, int], int] = {}
        self.empty_fetch_at = 0.0
        self._emptied = asyncio.Event()

    async def run(self) -> None:
        consumer = AIOKafkaConsumer(
            **aiokafka_options(self.kafka),
            group_id=None,
            enable_auto_commit=False,
            auto_offset_reset="earliest",
            max_partition_fetch_bytes=self.kafka.max_message_bytes,
            fetch_max_bytes=4 * self.kafka.max_message_bytes,
        )
        await consumer.start()
        try:
            await consumer.topics()
            partitions = [TopicPartition(t, p) for t in Topic for p in consumer.partitions_for_topic(t) or ()]
            consumer.assign(partitions)
            await consumer.seek_to_beginning(*partitions)
            while True:
                started = time.monotonic()
                batches = await consumer.getmany(timeout_ms=500, max_records=5000)
                if not batches:
                    self.empty_fetch_at = started
                    self._emptied.set()
                for records in batches.values():
                    for record in records:
                        self._add(record)
        finally:
            await consumer.stop()

    def _add(self, record: ConsumerRecord) -> None:
        place = (record.topic, record.partition)
        if record.offset < self.ends.get(place, 0):
            return  # read again after a reconnection
        self.ends[place] = record.offset + 1
        self.records.append(summarise(record))

    async def settled(self, after: float, timeout_s: float = 60.0) -> None:
        """Wait until a fetch that began after ``after`` (monotonic s) found nothing new: every
        record written before ``after`` has been read."""
        deadline = time.monotonic() + timeout_s
        while self.empty_fetch_at <= after and (left := deadline - time.monotonic()) > 0:
            self._emptied.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._emptied.wait(), left)


async def first_new_record(
    kafka: KafkaSettings, topic: str, positions: dict[int, int], timeout_s: float
) -> ConsumerRecord | None:
    """The first record written to ``topic`` past ``positions`` (partition -> offset), read
    with 10 ms fetch waits so that it is seen within milliseconds of its publication; ``None``
    when none comes within ``timeout_s``."""
    consumer = AIOKafkaConsumer(
        **aiokafka_options(kafka),
        group_id=None,
        enable_auto_commit=False,
        fetch_max_wait_ms=10,
        max_partition_fetch_bytes=kafka.max_message_bytes,
    )
    await consumer.start()
    try:
        await consumer.topics()
        partitions = [TopicPartition(topic, p) for p in consumer.partitions_for_topic(topic) or ()]
        consumer.assign(partitions)
        for partition in partitions:
            consumer.seek(partition, positions.get(partition.partition, 0))
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            for records in (await consumer.getmany(timeout_ms=50)).values():
                return records[0]
        return None
    finally:
        await consumer.stop()


async def committed_offsets(
    kafka: KafkaSettings, groups: tuple[str, ...], partitions: list[tuple[str, int]]
) -> dict[str, dict[tuple[str, int], int]]:
    """Group -> (topic, partition) -> committed offset, for those of ``partitions`` the group
    has committed on (groups not answered are left out). Asked through a consumer of each
    group that joins nothing: aiokafka's admin client cannot decode Tansu's OffsetFetch answer."""
    found: dict[str, dict[tuple[str, int], int]] = {}
    for group in groups:
        consumer = AIOKafkaConsumer(**aiokafka_options(kafka), group_id=group, enable_auto_commit=False)
        try:
            await consumer.start()
            offsets = {place: await consumer.committed(TopicPartition(*place)) for place in partitions}
            found[group] = {place: offset for place, offset in offsets.items() if offset is not None}
        except KafkaError:
            pass
        finally:
            await consumer.stop()
    return found


@dataclass(frozen=True)
class Record:
    """A record to inject as it is: ``value`` ``None`` is a tombstone."""

    kind: str
    topic: str
    key: bytes
    value: bytes | None
    headers: tuple[tuple[str, bytes], ...] = ()
    request_id: str = ""


def _question(request_id: str, text: str, **fields: Any) -> QuerySubmitted:
    return QuerySubmitted(producer=PRODUCER, request_id=request_id, question=text, **fields)


def poison_round(name: str, question: str, oversized_bytes: int) -> tuple[list[Record], str]:
    """One poison record of each kind on the question topic, named ``name`` (ids and keys
    derive from it), with the valid question it collides with; returns them in the order to
    inject and the tag of that valid question (a request of the load like any other):

    - ``oversized``: ``oversized_bytes`` of a malformed question (its dead letter cannot
      carry it: a reference dead letter);
    - ``bad_header``: a valid question with a non-UTF-8 ``traceparent`` header;
    - ``schema_version``: a question whose ``schema_version`` (70 000) is outside what the
      readers support and the sink's UInt16 column;
    - ``colliding``: a malformed question with the event id and ``occurred_at`` of a valid
      one sent just before it;
    - ``tombstone``: a key with no value.
    """
    topic = Topic.QUERY_SUBMITTED.value
    valid_tag = f"{name}-valid"
    valid = _question(f"chaos-{name}-valid", tagged(question, valid_tag))
    twin = valid.model_dump(mode="json") | {"question": 42}
    header = _question(f"chaos-{name}-header", question)
    version = _question(f"chaos-{name}-version", question)
    filler = b"x" * oversized_bytes
    records = [
        Record(
            "oversized",
            topic,
            f"chaos-{name}-oversized".encode(),
            b'{"event_type":"query.submitted","question":"' + filler + b'"}',
        ),
        Record(
            "bad_header",
            topic,
            header.key,
            header.model_dump_json().encode(),
            (("traceparent", b"\xff\xfe00"),),
            header.request_id,
        ),
        Record(
            "schema_version",
            topic,
            version.key,
            json.dumps(version.model_dump(mode="json") | {"schema_version": 70_000}).encode(),
            (),
            version.request_id,
        ),
        Record("valid", topic, valid.key, valid.model_dump_json().encode(), (), valid.request_id),
        Record("colliding", topic, valid.key, json.dumps(twin).encode()),
        Record("tombstone", topic, f"chaos-{name}-tombstone".encode(), None),
    ]
    return records, valid_tag


async def inject(kafka: KafkaSettings, records: list[Record]) -> list[Poison]:
    """Produce ``records`` in order (one producer, acks from the broker); returns where each
    poison record landed (the valid ones are not poison)."""
    producer = AIOKafkaProducer(**aiokafka_options(kafka), max_request_size=kafka.max_message_bytes, acks="all")
    await producer.start()
    placed = []
    try:
        for record in records:
            meta = await producer.send_and_wait(
                record.topic, record.value, key=record.key, headers=list(record.headers)
            )
            if record.kind != "valid":
                placed.append(Poison(record.kind, record.topic, meta.partition, meta.offset, record.request_id))
    finally:
        await producer.stop()
    return placed

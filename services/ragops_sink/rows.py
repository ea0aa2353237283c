"""Kafka records to ``events`` rows: the envelope fields become columns, the JSON payload is
kept whole, and a record that is not a valid event is kept too (``event_type='unparsable'``
with the error, under its own key), never dropped. Rows travel to ClickHouse as one Arrow
table per batch."""

import uuid
from collections.abc import Sequence
from dataclasses import dataclass, fields
from datetime import UTC, datetime
from typing import Annotated, Any, Union

import pyarrow as pa
from aiokafka import ConsumerRecord
from pydantic import Field, TypeAdapter

from ragops_schemas import EVENT_TYPES, Event, MessageDeadLettered
from ragops_schemas.ids import unparsable_event_id
from ragops_schemas.topics import TOPICS


@dataclass(frozen=True)
class EventRow:
    """One row of the raw ``events`` table: one Kafka record, valid event or not.

    Datetimes should be timezone-aware; naive ones are taken as UTC. Text fields that do
    not apply are ``""``. A record that is not a valid event has ``event_type="unparsable"``,
    its raw text in ``payload`` and the reason in ``parse_error``; give it a deterministic
    ``event_id`` (e.g. a UUIDv5 of topic/partition/offset) so its replays collapse too.
    """

    event_id: uuid.UUID
    event_type: str
    schema_version: int
    topic: str
    partition: int
    offset: int
    message_key: str
    occurred_at: datetime
    received_at: datetime
    producer: str
    producer_version: str
    tenant: str
    trace_id: str
    request_id: str
    document_id: str
    payload: str
    parse_error: str


_ARROW_TYPES: dict[str, pa.DataType] = {
    # UUIDs travel as text: ClickHouse parses them on insert on every path (Arrow input
    # format, Python() table function) and pyarrow has no portable UUID column type.
    "event_id": pa.string(),
    "schema_version": pa.uint16(),
    "partition": pa.uint32(),
    "offset": pa.uint64(),
    "occurred_at": pa.timestamp("ms", tz="UTC"),
    "received_at": pa.timestamp("ms", tz="UTC"),
}
EVENT_SCHEMA = pa.schema([(field.name, _ARROW_TYPES.get(field.name, pa.string())) for field in fields(EventRow)])
"""The Arrow columns of a batch of ``events`` rows."""


def events_to_arrow(rows: Sequence[EventRow]) -> pa.Table:
    """``rows`` as an Arrow table with the columns of ``events`` (``EVENT_SCHEMA``).

    Raises:
        TypeError / pyarrow.ArrowInvalid: a field of the wrong type (a programming error).
    """
    # One list per column straight from the attributes: the Python-side cost of a batch
    # (about 2 us per row) is of the same order as the engine's, so it is kept minimal.
    columns = {name: [getattr(row, name) for row in rows] for name in EVENT_SCHEMA.names}
    columns["event_id"] = [str(value) for value in columns["event_id"]]
    return pa.table(columns, schema=EVENT_SCHEMA)


def _text(value: Any) -> str:
    return value if isinstance(value, str) else ""


# One validator for every event type, dispatched on event_type in pydantic's core: each record
# is parsed once, by the same models (and the same rules) as the services that consume it.
# A union built from a tuple is a runtime type form, which mypy cannot read: hence Any.
_EVENT_UNION: Any = Annotated[Union[EVENT_TYPES], Field(discriminator="event_type")]  # noqa: UP007
_EVENTS: TypeAdapter[Event] = TypeAdapter(_EVENT_UNION)
# What each column can hold: a value outside it is refused here, not by an overflow in the
# Arrow conversion of a whole batch (which would fail that batch for ever).
_UINT16, _UINT32, _UINT64 = 2**16 - 1, 2**32 - 1, 2**64 - 1
_EARLIEST = datetime(1900, 1, 1, tzinfo=UTC)  # DateTime64(3)'s range
_LATEST = datetime(2299, 12, 31, 23, 59, 59, 999000, tzinfo=UTC)


UNKEPT_TOPICS = frozenset(spec.topic.value for spec in TOPICS if not spec.sink)
"""Topics whose records the sink does not keep (``TopicSpec.sink`` False: the intake topics,
whose raw text only the privacy service reads)."""
WITHHELD = "withheld: the sink does not keep this topic's records; the dead-letter topic holds the letter"
"""The reason stored for a dead letter of one of :data:`UNKEPT_TOPICS`."""


def stored_payload(event: Event, raw: bytes) -> str:
    """The JSON the sink stores for ``event`` (its record's value ``raw``): as produced, but a
    dead letter of a topic the sink does not keep loses its copy of the record's value and its
    reason (which can quote the value): the sink must not keep through a dead letter what it
    does not keep from the topic itself. The dead-letter topic keeps the whole letter."""
    if isinstance(event, MessageDeadLettered) and event.original_topic in UNKEPT_TOPICS:
        return event.model_copy(update={"original_value_b64": "", "reason": WITHHELD}).model_dump_json(by_alias=True)
    return raw.decode()


def event_of(topic: str, raw: bytes) -> Event:
    """The event a record of ``topic`` holds, parsed by its type's model.

    Raises:
        ValueError: not a valid event (pydantic's ValidationError is one; so is
            UnicodeDecodeError, not UTF-8), or an event of another topic than ``topic``.
    """
    event = _EVENTS.validate_json(raw)
    if topic != event.TOPIC:
        raise ValueError(f"a {event.event_type} event belongs on {event.TOPIC}, not on {topic}")
    return event


def _unfit(partition: int, offset: int) -> str:
    """Why a record's partition or offset cannot be stored ('' when both fit)."""
    if not 0 <= partition <= _UINT32:
        return f"partition {partition} is outside UInt32"
    if not 0 <= offset <= _UINT64:
        return f"offset {offset} is outside UInt64"
    return ""


def _valid_row(record: ConsumerRecord, key: str, raw: bytes, received_at: datetime) -> EventRow:
    """The row of a record that holds a valid event of its topic.

    Raises:
        ValueError: not a valid event (pydantic's ValidationError is one; so is
            UnicodeDecodeError, not UTF-8), on another topic than its type's, or a value that
            does not fit its column.
    """
    event = event_of(record.topic, raw)
    # Naive datetimes (the schema lets them through) are UTC, never the host's zone.
    occurred_at = event.occurred_at.replace(tzinfo=event.occurred_at.tzinfo or UTC).astimezone(UTC)
    if not _EARLIEST <= occurred_at <= _LATEST:
        raise ValueError(f"occurred_at {occurred_at.isoformat()} is outside DateTime64(3) (1900-2299)")
    if not 0 <= event.schema_version <= _UINT16:
        raise ValueError(f"schema_version {event.schema_version} is outside UInt16")
    if reason := _unfit(record.partition, record.offset):
        raise ValueError(reason)
    return EventRow(
        event_id=event.event_id,
        event_type=event.event_type,
        schema_version=event.schema_version,
        topic=record.topic,
        partition=record.partition,
        offset=record.offset,
        message_key=key,
        occurred_at=occurred_at,
        received_at=received_at,
        producer=event.producer.name,
        producer_version=event.producer.version,
        tenant=event.tenant,
        trace_id=event.trace_id,
        # Fields of some event types only; read from the instance dict, since pydantic's
        # attribute lookup of a missing field costs more than the rest of the row.
        request_id=_text(vars(event).get("request_id")),
        document_id=_text(vars(event).get("document_id")),
        payload=stored_payload(event, raw),
        parse_error="",
    )


def _unparsable(
    topic: str, partition: int, offset: int, key: str, payload: str, at: datetime, received_at: datetime, reason: str
) -> EventRow:
    """The row of a record that is not a storable event, keyed on its place in Kafka. A
    partition or offset that does not fit its column is stored as 0 (``reason`` says so);
    ``at`` outside DateTime64(3) becomes ``received_at``."""
    return EventRow(
        event_id=unparsable_event_id(topic, partition, offset),
        event_type="unparsable",
        schema_version=0,
        topic=topic,
        partition=partition if 0 <= partition <= _UINT32 else 0,
        offset=offset if 0 <= offset <= _UINT64 else 0,
        message_key=key,
        occurred_at=at if _EARLIEST <= at <= _LATEST else received_at,
        received_at=received_at,
        producer="",
        producer_version="",
        tenant="",
        trace_id="",
        request_id="",
        document_id="",
        payload=payload,
        parse_error=reason,
    )


def to_row(record: ConsumerRecord, received_at: datetime) -> EventRow:
    """One ``events`` row for one Kafka record (any topic, any content).

    A valid event of the record's topic (its type's schema, envelope included) becomes its
    row, keyed on its ``event_id``. Anything else (not JSON, not an event, an unknown type,
    a payload its schema refuses, a value outside its column) becomes an ``unparsable`` row
    keyed on (topic, partition, offset), so it can never replace a valid event's row."""
    key = record.key.decode(errors="replace") if record.key is not None else ""
    raw = record.value or b""
    try:
        return _valid_row(record, key, raw, received_at)
    # TypeError too: a schema validator that trips over an odd value must not stop the sink.
    except (ValueError, TypeError) as error:
        # The Kafka timestamp in ms (-1 when the producer set none).
        at = datetime.fromtimestamp(record.timestamp / 1000, UTC) if record.timestamp >= 0 else received_at
        reason = f"{type(error).__name__}: {error}"
        return _unparsable(
            record.topic, record.partition, record.offset, key, raw.decode(errors="replace"), at, received_at, reason
        )


def rejected(row: EventRow, reason: str) -> EventRow:
    """The ``unparsable`` row that stands for ``row`` when ClickHouse refused to store it
    (``reason``: the engine's error)."""
    return _unparsable(
        row.topic, row.partition, row.offset, row.message_key, row.payload, row.occurred_at, row.received_at, reason
    )

"""Kafka records to ``events`` rows: the envelope fields become columns, the JSON payload is
kept whole, and a record that is not a JSON event is kept too (``event_type='unparsable'``
with the error), never dropped. Rows travel to ClickHouse as one Arrow table per batch."""

import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, fields
from datetime import UTC, datetime
from typing import Any

import orjson
import pyarrow as pa
from aiokafka import ConsumerRecord

from ragops_schemas.envelope import as_utc
from ragops_schemas.ids import unparsable_event_id


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


def to_row(record: ConsumerRecord, received_at: datetime) -> EventRow:
    """One ``events`` row for one Kafka record (any topic, any content)."""
    key = record.key.decode(errors="replace") if record.key is not None else ""
    raw = record.value or b""
    try:
        # orjson: the sink parses every record of every topic, and json.loads was a third of
        # its time per event (make bench, row P4).
        payload: Mapping[str, Any] = orjson.loads(raw)
        if not isinstance(payload, dict):
            raise ValueError(f"a JSON {type(payload).__name__}, not an event object")
        producer = payload.get("producer")
        if not isinstance(producer, dict):
            producer = {}
        return EventRow(
            event_id=uuid.UUID(str(payload["event_id"])),
            event_type=str(payload["event_type"]),
            schema_version=int(payload.get("schema_version", 1)),
            topic=record.topic,
            partition=record.partition,
            offset=record.offset,
            message_key=key,
            # A time without a zone is UTC (as in the envelope), never the host's local time.
            occurred_at=as_utc(datetime.fromisoformat(str(payload["occurred_at"]).replace("Z", "+00:00"))),
            received_at=received_at,
            producer=_text(producer.get("name")),
            producer_version=_text(producer.get("version")),
            tenant=_text(payload.get("tenant")) or "default",
            trace_id=_text(payload.get("trace_id")),
            request_id=_text(payload.get("request_id")),
            document_id=_text(payload.get("document_id")),
            payload=raw.decode(),
            parse_error="",
        )
    except (ValueError, KeyError, TypeError, UnicodeDecodeError) as error:
        return EventRow(
            event_id=unparsable_event_id(record.topic, record.partition, record.offset),
            event_type="unparsable",
            schema_version=0,
            topic=record.topic,
            partition=record.partition,
            offset=record.offset,
            message_key=key,
            occurred_at=datetime.fromtimestamp(record.timestamp / 1000, UTC),
            received_at=received_at,
            producer="",
            producer_version="",
            tenant="",
            trace_id="",
            request_id="",
            document_id="",
            payload=raw.decode(errors="replace"),
            parse_error=f"{type(error).__name__}: {error}",
        )

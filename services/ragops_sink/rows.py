"""Kafka records to ``events`` rows: the envelope fields become columns, the JSON payload is
kept whole, and a record that is not a JSON event is kept too (``event_type='unparsable'``
with the error), never dropped."""

import uuid
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

import orjson
from aiokafka import ConsumerRecord

from ragops_schemas.ids import unparsable_event_id
from ragops_shared.clickhouse import EventRow



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
        producer = payload.get("producer") if isinstance(payload.get("producer"), dict) else {}
        return EventRow(
            event_id=uuid.UUID(str(payload["event_id"])),
            event_type=str(payload["event_type"]),
            schema_version=int(payload.get("schema_version", 1)),
            topic=record.topic, partition=record.partition, offset=record.offset, message_key=key,
            occurred_at=datetime.fromisoformat(str(payload["occurred_at"]).replace("Z", "+00:00")).astimezone(UTC),
            received_at=received_at,
            producer=_text(producer.get("name")), producer_version=_text(producer.get("version")),
            tenant=_text(payload.get("tenant")) or "default", trace_id=_text(payload.get("trace_id")),
            request_id=_text(payload.get("request_id")), document_id=_text(payload.get("document_id")),
            payload=raw.decode(), parse_error="",
        )
    except (ValueError, KeyError, TypeError, UnicodeDecodeError) as error:
        return EventRow(
            event_id=unparsable_event_id(record.topic, record.partition, record.offset),
            event_type="unparsable", schema_version=0,
            topic=record.topic, partition=record.partition, offset=record.offset, message_key=key,
            occurred_at=datetime.fromtimestamp(record.timestamp / 1000, UTC), received_at=received_at,
            producer="", producer_version="", tenant="", trace_id="", request_id="", document_id="",
            payload=raw.decode(errors="replace"), parse_error=f"{type(error).__name__}: {error}",
        )

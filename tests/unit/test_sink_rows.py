"""Kafka records to ``events`` rows: times without a zone are UTC, never the host's zone."""

from datetime import UTC, datetime

import orjson
import pytest
from aiokafka import ConsumerRecord

from ragops_schemas import QuerySubmitted, Topic
from ragops_sink.rows import events_to_arrow, to_row
from tests.helpers import PRODUCER


def _record(value: bytes) -> ConsumerRecord:
    return ConsumerRecord(
        topic=Topic.QUERY_SUBMITTED.value,
        partition=0,
        offset=7,
        timestamp=1_767_231_000_000,
        timestamp_type=0,
        key=b"r",
        value=value,
        checksum=None,
        serialized_key_size=1,
        serialized_value_size=len(value),
        headers=(),
    )


@pytest.mark.usefixtures("host_zone_berlin")
def test_a_naive_occurred_at_is_stored_as_utc() -> None:
    payload = orjson.loads(QuerySubmitted(producer=PRODUCER, request_id="r", question="q").model_dump_json())
    payload["occurred_at"] = "2026-01-01T01:30:00"  # no zone: a producer that is not ours
    row = to_row(_record(orjson.dumps(payload)), datetime.now(UTC))
    assert row.event_type == "query.submitted"
    assert row.occurred_at == datetime(2026, 1, 1, 1, 30, tzinfo=UTC)
    stored = events_to_arrow([row]).column("occurred_at").to_pylist()
    assert stored == [datetime(2026, 1, 1, 1, 30, tzinfo=UTC)]

"""EventSubscriber on a real broker: in a batch with one event whose processing fails, the
failing event is found by bisection and dead-lettered with its original bytes and every other event's output is
published exactly once."""

import base64
from collections.abc import Sequence

import pytest
from faststream import FastStream

from ragops_schemas import DocumentRejected, DocumentSubmitted, Event, MessageDeadLettered, Topic
from ragops_shared.broker import EventPublisher, EventSubscriber, make_broker
from tests.helpers import PRODUCER
from tests.integration.services import produce_raw, running, wait_for, watching

pytestmark = pytest.mark.kafka


def _app(kafka, calls: list[int]) -> FastStream:
    broker = make_broker(kafka, "test-service")
    publisher = EventPublisher(broker, PRODUCER, [DocumentRejected])
    subscriber = EventSubscriber(
        broker, publisher, DocumentSubmitted, kafka=kafka, group_id="test-group", max_records=50
    )

    async def process(events: Sequence[DocumentSubmitted]) -> list[Event]:
        calls.append(len(events))
        if any(event.content == "poison" for event in events):
            raise RuntimeError("cannot handle poison")
        return [
            event.caused(DocumentRejected, PRODUCER, document_id=event.document_id, stage="ingestion", reason="test")
            for event in events
        ]

    @subscriber
    async def handle(events: list[DocumentSubmitted]) -> None:
        await subscriber.run(events, process)

    return FastStream(broker)


async def test_a_failing_event_is_isolated_and_dead_lettered(kafka) -> None:
    documents = [
        DocumentSubmitted(producer=PRODUCER, document_id=f"d{i}", content="poison" if i == 3 else f"text {i}")
        for i in range(8)
    ]
    calls: list[int] = []
    sentinel = DocumentSubmitted(producer=PRODUCER, document_id="sentinel", content="after the batch")
    async with watching(kafka, [DocumentRejected, MessageDeadLettered]) as seen:
        # One key, so all eight land on one partition and arrive in one batch.
        await produce_raw(
            kafka, Topic.DOCUMENT_SUBMITTED, [(b"same-key", d.model_dump_json().encode()) for d in documents]
        )
        async with running(_app(kafka, calls)):
            await wait_for(seen, lambda events: len(events) >= 8)
            # Behind the batch on its partition: once its output is out, anything the batch
            # published twice is out too.
            await produce_raw(kafka, Topic.DOCUMENT_SUBMITTED, [(b"same-key", sentinel.model_dump_json().encode())])
            await wait_for(seen, lambda events: any(getattr(e, "document_id", None) == "sentinel" for e in events))

    outputs = sorted(e.document_id for e in seen if isinstance(e, DocumentRejected) and e.document_id != "sentinel")
    assert outputs == sorted(f"d{i}" for i in range(8) if i != 3), "each good event published exactly once"
    [letter] = [e for e in seen if isinstance(e, MessageDeadLettered)]
    assert letter.error_type == "processing" and "cannot handle poison" in letter.reason
    assert DocumentSubmitted.model_validate_json(base64.b64decode(letter.original_value_b64)).document_id == "d3"
    # Bisection: [d0-d3] fails, [d0 d1] passes, [d2 d3] fails, d2 passes, d3 fails alone, [d4-d7] passes.
    assert calls[:7] == [8, 4, 2, 2, 1, 1, 4], "the batch failed once, then halves down to the poison"
    assert calls[7:] == [1], "then the sentinel alone"
    assert letter.attempts == 4, "the whole batch, its half, its quarter, then alone"

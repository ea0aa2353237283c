"""A caller waiting for its request's outcome gets that outcome, not one of an earlier request
with the same key: Tansu may hand a watcher started at the topic's end the last records
before it (a re-ingested document's outcome of the previous ingest, measured)."""

import asyncio

import pytest
from aiokafka import AIOKafkaProducer

from ragops_schemas import DocumentIndexed, MessageDeadLettered
from ragops_shared.watch import EventWatcher
from tests.helpers import example

pytestmark = pytest.mark.kafka


async def test_an_outcome_of_another_trace_does_not_answer(kafka) -> None:
    # Outcomes of earlier ingests of the same document, written in one batch.
    earlier = [example(DocumentIndexed).model_copy(update={"chunk_count": n}) for n in range(5)]
    producer = AIOKafkaProducer(bootstrap_servers=kafka.bootstrap_servers, linger_ms=50)
    await producer.start()
    try:
        sent = [await producer.send(e.TOPIC, e.model_dump_json().encode(), key=e.key) for e in earlier]
        await asyncio.gather(*sent)
    finally:
        await producer.stop()

    watcher = EventWatcher(kafka, [DocumentIndexed, MessageDeadLettered], client_id="test-outcomes")
    await watcher.start()
    try:
        ours = example(DocumentIndexed).model_copy(update={"trace_id": "ab" * 16, "chunk_count": 99})
        waiting = watcher.expect(ours.document_id, (DocumentIndexed,), trace_id=ours.trace_id)
        producer = AIOKafkaProducer(bootstrap_servers=kafka.bootstrap_servers)
        await producer.start()
        try:
            await producer.send_and_wait(ours.TOPIC, ours.model_dump_json().encode(), key=ours.key)
        finally:
            await producer.stop()
        outcome = await asyncio.wait_for(waiting, 30)
    finally:
        await watcher.stop()
    assert isinstance(outcome, DocumentIndexed) and (outcome.trace_id, outcome.chunk_count) == (ours.trace_id, 99)

"""A caller waiting for its request's outcome gets that outcome, not one of an earlier request
with the same key: Tansu may hand a watcher started at the topic's end the last records
before it (a re-ingested document's outcome of the previous ingest, measured)."""

import asyncio

import pytest
from aiokafka import AIOKafkaProducer

from ragops_schemas import DocumentIndexed, MessageDeadLettered
from ragops_shared.watch import EventWatcher
from tests.helpers import example
from tests.integration.services import produce_raw

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
        await produce_raw(kafka, ours.TOPIC, [(ours.key, ours.model_dump_json().encode())])
        outcome = await asyncio.wait_for(waiting, 30)
    finally:
        await watcher.stop()
    assert isinstance(outcome, DocumentIndexed) and (outcome.trace_id, outcome.chunk_count) == (ours.trace_id, 99)


async def test_one_caller_giving_up_leaves_the_others_of_the_same_key_waiting(kafka) -> None:
    """Two callers wait for the same key (a request and a client's retry of it); the first gives
    up (a timeout) and forgets its wait; the second still gets the outcome."""
    outcome = example(DocumentIndexed).model_copy(update={"trace_id": "cd" * 16})
    watcher = EventWatcher(kafka, [DocumentIndexed], client_id="test-forget")
    await watcher.start()
    try:
        first = watcher.expect(outcome.document_id, (DocumentIndexed,), trace_id=outcome.trace_id)
        retry = watcher.expect(outcome.document_id, (DocumentIndexed,), trace_id=outcome.trace_id)
        watcher.forget(outcome.document_id, first)
        await produce_raw(kafka, outcome.TOPIC, [(outcome.key, outcome.model_dump_json().encode())])
        got = await asyncio.wait_for(retry, 30)
    finally:
        await watcher.stop()
    assert got.event_id == outcome.event_id and not first.done()

"""EventSubscriber's batch wait on a real broker: a short fetch is topped up with records
that arrive within ``batch_wait_ms``, and a batch that fails is redelivered whole, the
topped-up records included (nothing lost, nothing committed past them)."""

import asyncio
from itertools import count

import pytest
from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.partitioner import murmur2
from faststream import FastStream

from ragops_schemas import DocumentSubmitted, Topic
from ragops_shared.broker import EventPublisher, EventSubscriber, make_broker
from tests.helpers import PRODUCER
from tests.integration.services import produce_raw, running

pytestmark = pytest.mark.kafka


def _key_on(partition: int, partitions: int) -> bytes:
    """A record key that the default partitioner (murmur2) puts on ``partition``."""
    for n in count():
        key = f"key-{n}".encode()
        if (murmur2(key) & 0x7FFFFFFF) % partitions == partition:
            return key
    raise AssertionError("unreachable")


def _documents(prefix: str, n: int) -> list[DocumentSubmitted]:
    return [DocumentSubmitted(producer=PRODUCER, document_id=f"{prefix}{i}", content=f"text {i}") for i in range(n)]


def _spied_subscriber(kafka, batch_wait_ms: int, fail_first: bool = False):
    """A FastStream app whose EventSubscriber records each handler call's document ids, sets
    an event when it starts topping up and records its consumer's assignment before and
    after each top-up (a spy on the real method); its handler fails the first call when
    ``fail_first``. Returns (app, calls, topping_up, assignments)."""
    broker = make_broker(kafka, "test-service")
    subscriber = EventSubscriber(
        broker,
        EventPublisher(broker, PRODUCER, []),
        DocumentSubmitted,
        kafka=kafka,
        group_id="test-batch-wait",
        max_records=10,
        batch_wait_ms=batch_wait_ms,
    )
    calls: list[list[str]] = []
    topping_up = asyncio.Event()
    assignments: list[tuple[set[TopicPartition], set[TopicPartition]]] = []
    top_up = subscriber._top_up

    async def spied_top_up(message):
        before = set(message.consumer.assignment())
        topping_up.set()
        await top_up(message)
        assignments.append((before, set(message.consumer.assignment())))

    subscriber._top_up = spied_top_up  # type: ignore[method-assign]

    @subscriber
    async def handle(events: list[DocumentSubmitted]) -> None:
        calls.append([event.document_id for event in events])
        if fail_first and len(calls) == 1:
            raise ConnectionError("an infrastructure failure: the batch is nacked")

    return FastStream(broker), calls, topping_up, assignments


async def _run(kafka, fail_first: bool) -> list[list[str]]:
    """Three documents, then three more on another partition once the subscriber is topping
    up its first short fetch; returns the document ids of each handler call, up to a
    sentinel on each partition produced once every record was handled."""
    app, calls, topping_up, _ = _spied_subscriber(kafka, batch_wait_ms=3000, fail_first=fail_first)
    first_key, second_key = _key_on(0, kafka.partitions), _key_on(1, kafka.partitions)
    await produce_raw(
        kafka, Topic.DOCUMENT_SUBMITTED, [(first_key, d.model_dump_json().encode()) for d in _documents("a", 3)]
    )
    async with running(app):
        await asyncio.wait_for(topping_up.wait(), 60)
        await produce_raw(
            kafka, Topic.DOCUMENT_SUBMITTED, [(second_key, d.model_dump_json().encode()) for d in _documents("b", 3)]
        )
        deadline = asyncio.get_running_loop().time() + 60
        while sum(map(len, calls)) < (12 if fail_first else 6):
            assert asyncio.get_running_loop().time() < deadline, calls
            await asyncio.sleep(0.1)
        # Behind every record on its partition: once both are handled, a record handled
        # twice more would have been handled too.
        sentinels = _documents("sentinel-", 2)
        await produce_raw(
            kafka,
            Topic.DOCUMENT_SUBMITTED,
            [(key, d.model_dump_json().encode()) for key, d in zip((first_key, second_key), sentinels, strict=True)],
        )
        while not {"sentinel-0", "sentinel-1"} <= {id_ for call in calls for id_ in call}:
            assert asyncio.get_running_loop().time() < deadline, calls
            await asyncio.sleep(0.1)
    handled = [[id_ for id_ in call if not id_.startswith("sentinel-")] for call in calls]
    return [call for call in handled if call]


async def test_a_short_fetch_is_topped_up_with_records_that_arrive_within_the_batch_wait(kafka) -> None:
    calls = await _run(kafka, fail_first=False)
    assert calls == [["a0", "a1", "a2", "b0", "b1", "b2"]]


async def test_a_failed_batch_is_redelivered_with_its_topped_up_records(kafka) -> None:
    calls = await _run(kafka, fail_first=True)
    expected = ["a0", "a1", "a2", "b0", "b1", "b2"]
    assert calls[0] == expected
    assert sorted(id_ for call in calls[1:] for id_ in call) == expected, (
        "every record of the failed batch came back, once"
    )


async def test_a_rebalance_during_the_wait_does_not_put_a_record_twice_into_the_batch(kafka) -> None:
    # A member joining resets the positions to the committed offsets, so the wait fetches
    # the batch's own records again; they must not be handled twice in one batch.
    app, calls, topping_up, assignments = _spied_subscriber(kafka, batch_wait_ms=8000)
    key = _key_on(0, kafka.partitions)
    await produce_raw(
        kafka, Topic.DOCUMENT_SUBMITTED, [(key, d.model_dump_json().encode()) for d in _documents("a", 3)]
    )
    async with running(app):
        await asyncio.wait_for(topping_up.wait(), 60)
        # Its member id sorts after the subscriber's, so aiokafka's round-robin assignment
        # leaves the subscriber partition 0, where the records are, and resets its position.
        joining = AIOKafkaConsumer(
            Topic.DOCUMENT_SUBMITTED.value,
            bootstrap_servers=kafka.bootstrap_servers,
            group_id="test-batch-wait",
            client_id="zzzz-joining",
            enable_auto_commit=False,
        )
        await joining.start()
        try:
            deadline = asyncio.get_running_loop().time() + 60
            while not calls:
                assert asyncio.get_running_loop().time() < deadline
                await asyncio.sleep(0.1)
        finally:
            await joining.stop()
    before, after = assignments[0]
    assert after != before and TopicPartition(Topic.DOCUMENT_SUBMITTED.value, 0) in after, (
        f"the member joined during the wait and took partitions: {before} -> {after}"
    )
    assert calls[0] == ["a0", "a1", "a2"]

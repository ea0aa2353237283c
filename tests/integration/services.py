"""Running a service's FastStream app in the test's event loop against the test broker."""

import asyncio
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from typing import TypeVar

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from faststream import FastStream

from ragops_schemas import Event
from ragops_shared.settings import KafkaSettings
from ragops_shared.watch import EventWatcher

E = TypeVar("E", bound=Event)


@asynccontextmanager
async def running(app: FastStream) -> AsyncIterator[FastStream]:
    """Start hooks + broker; stop on exit. Consumers start at the earliest offset of a new
    group, so records produced before the group is assigned are still consumed."""
    await app.start()
    try:
        yield app
    finally:
        await app.stop()


@asynccontextmanager
async def watching(kafka: KafkaSettings, event_types: Sequence[type[Event]]) -> AsyncIterator[list[Event]]:
    """Collect every event of ``event_types`` published after entering."""
    seen: list[Event] = []
    watcher = EventWatcher(kafka, event_types, client_id="test-watcher")
    watcher.listen(seen.append)
    await watcher.start()
    try:
        yield seen
    finally:
        await watcher.stop()


async def produce_raw(kafka: KafkaSettings, topic: str, records: Sequence[tuple[bytes | None, bytes]]) -> None:
    """Produce raw (key, value) records, bypassing every schema, as a buggy producer would."""
    producer = AIOKafkaProducer(bootstrap_servers=kafka.bootstrap_servers)
    await producer.start()
    try:
        for key, value in records:
            await producer.send_and_wait(topic, value, key=key)
    finally:
        await producer.stop()


async def read_records(
    kafka: KafkaSettings, event_type: type[E], count: int, timeout_s: float = 30.0
) -> list[tuple[E, dict[str, bytes]]]:
    """The first ``count`` records of ``event_type``'s topic, from its beginning: each as
    (the event, its Kafka headers). Fails the test if fewer arrive within ``timeout_s``."""
    consumer = AIOKafkaConsumer(
        event_type.TOPIC.value,
        bootstrap_servers=kafka.bootstrap_servers,
        group_id=None,
        auto_offset_reset="earliest",
        enable_auto_commit=False,
    )
    await consumer.start()
    records: list[tuple[E, dict[str, bytes]]] = []
    try:
        async with asyncio.timeout(timeout_s):
            while len(records) < count:
                record = await consumer.getone()
                records.append((event_type.model_validate_json(record.value), dict(record.headers)))
    except TimeoutError:
        raise AssertionError(f"{len(records)} of {count} {event_type.__name__} records within {timeout_s} s") from None
    finally:
        await consumer.stop()
    return records


async def wait_for(seen: list[Event], predicate, timeout_s: float = 60.0) -> list[Event]:
    """Wait until ``predicate(seen)`` is true; returns ``seen``. Fails the test on timeout."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout_s
    while not predicate(seen):
        if loop.time() > deadline:
            raise AssertionError(f"condition not met within {timeout_s} s; saw {[type(e).__name__ for e in seen]}")
        await asyncio.sleep(0.05)
    return seen

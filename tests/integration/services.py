"""Running a service's FastStream app in the test's event loop against the test broker."""

from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager

from aiokafka import AIOKafkaProducer
from faststream import FastStream

from ragops_schemas import Event
from ragops_shared.settings import KafkaSettings
from ragops_shared.watch import EventWatcher


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


async def wait_for(seen: list[Event], predicate, timeout_s: float = 60.0) -> list[Event]:  # noqa: ANN001
    """Wait until ``predicate(seen)`` is true; returns ``seen``. Fails the test on timeout."""
    import asyncio

    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout_s
    while not predicate(seen):
        if loop.time() > deadline:
            raise AssertionError(f"condition not met within {timeout_s} s; saw {[type(e).__name__ for e in seen]}")
        await asyncio.sleep(0.05)
    return seen

"""Where a reader without a group (``EventWatcher``: the gateway's replies, feedback's answers,
the registry views) starts and goes on, on both embedded storage engines:

- started at the end, it reads the next reply and none of the records before it, although
  Tansu's *latest* offset is short after a batch of several records (by the batch, in memory;
  by every record since the first batch, on the S3 engine: measured);
- after ``kill -9`` of the broker and a restart on the same port it reads what is published
  next, also when the broker lost its log (memory) and the new log is shorter than the
  watcher's position (Tansu answers such a fetch with no records and no error)."""

import asyncio
import os
import signal
import uuid

import pytest
from aiokafka import AIOKafkaProducer, TopicPartition

from ragops_schemas import AnswerGenerated, Event, utc_now
from ragops_schemas.topics import TOPICS
from ragops_shared.embedded import EmbeddedKafka, create_topics
from ragops_shared.settings import KafkaSettings, aiokafka_options
from ragops_shared.watch import EventWatcher, end_offsets
from tests.helpers import example

pytestmark = pytest.mark.kafka
STORAGES = pytest.mark.parametrize("tansu", ["memory", "durable"], indirect=True)


def _answer(request_id: str) -> AnswerGenerated:
    return example(AnswerGenerated).model_copy(
        update={"event_id": uuid.uuid4(), "request_id": request_id, "occurred_at": utc_now()}
    )


async def _publish_batches(kafka: KafkaSettings, events: list[AnswerGenerated], partition: int = 0) -> list[int]:
    """Publish ``events`` to one partition in produce requests of several records each (as a
    busy producer does); returns their offsets."""
    producer = AIOKafkaProducer(**aiokafka_options(kafka), acks="all", linger_ms=50)
    await producer.start()
    try:
        sent = [
            await producer.send(e.TOPIC.value, e.model_dump_json().encode(), key=e.key, partition=partition)
            for e in events
        ]
        return [metadata.offset for metadata in await asyncio.gather(*sent)]
    finally:
        await producer.stop()


async def _reply(watcher: EventWatcher, kafka: KafkaSettings, answer: AnswerGenerated) -> Event:
    waiting = watcher.expect(answer.request_id, (AnswerGenerated,))
    await _publish_batches(kafka, [answer])
    return await asyncio.wait_for(waiting, 30)


@STORAGES
async def test_end_offsets_are_where_the_next_record_goes(kafka: KafkaSettings) -> None:
    offsets = []
    for size in (3, 5, 1, 4):
        offsets += await _publish_batches(kafka, [_answer(f"req-{n}") for n in range(size)])
    assert offsets == list(range(13))
    topic = AnswerGenerated.TOPIC.value
    ends = await end_offsets(kafka, [TopicPartition(topic, 0), TopicPartition(topic, 1)])
    assert ends == {TopicPartition(topic, 0): 13, TopicPartition(topic, 1): 0}


@STORAGES
async def test_a_watcher_started_at_the_end_reads_the_next_reply_and_nothing_before(kafka: KafkaSettings) -> None:
    for batch in range(3):
        await _publish_batches(kafka, [_answer(f"old-{batch}-{n}") for n in range(5)])
    seen: list[Event] = []
    watcher = EventWatcher(kafka, [AnswerGenerated], client_id="test-positions")
    watcher.listen(seen.append)
    await watcher.start()
    try:
        reply = await _reply(watcher, kafka, _answer("new"))
        assert await watcher.caught_up(30)
    finally:
        await watcher.stop()
    assert isinstance(reply, AnswerGenerated) and reply.request_id == "new"
    assert [e.request_id for e in seen if isinstance(e, AnswerGenerated)] == ["new"], "no older record read again"


@pytest.mark.parametrize("durable", [False, True], ids=["memory", "durable"])
async def test_a_watcher_reads_on_after_the_broker_is_killed_and_restarted(tmp_path, durable: bool) -> None:
    broker = EmbeddedKafka(log_path=tmp_path / "tansu.log", data_dir=tmp_path / "broker" if durable else None)
    broker.start()
    try:
        kafka = KafkaSettings(bootstrap_servers=broker.bootstrap_servers)
        await create_topics(kafka, TOPICS)
        seen: list[Event] = []
        watcher = EventWatcher(kafka, [AnswerGenerated], client_id="test-restart")
        watcher.listen(seen.append)
        await watcher.start()
        try:
            await _publish_batches(kafka, [_answer(f"before-{n}") for n in range(10)])
            assert (await _reply(watcher, kafka, _answer("before"))).request_id == "before"

            os.kill(broker.pids["tansu"], signal.SIGKILL)
            broker.stop()
            broker.start()  # the same port; in memory, its log is gone: the topics are created again
            assert (await create_topics(kafka, TOPICS) == []) is durable

            assert (await _reply(watcher, kafka, _answer("after"))).request_id == "after"
            assert await watcher.caught_up(30)
        finally:
            await watcher.stop()
    finally:
        broker.stop()
    read = [e.request_id for e in seen if isinstance(e, AnswerGenerated)]
    assert read == [*(f"before-{n}" for n in range(10)), "before", "after"], "each record read once"

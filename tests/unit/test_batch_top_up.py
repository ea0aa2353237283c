"""EventSubscriber's top-up when the consumer's fetch fails part-way (a broker error is
outside our control, so the consumer here is a stand-in): what was already taken stays in
the batch, so the nack that follows rewinds its partition too."""

from types import SimpleNamespace

import pytest
from aiokafka import ConsumerRecord, TopicPartition
from aiokafka.errors import KafkaError

from ragops_schemas import DocumentSubmitted, Producer, Topic
from ragops_shared.broker import EventPublisher, EventSubscriber, make_broker
from ragops_shared.settings import KafkaSettings

TOPIC = Topic.DOCUMENT_SUBMITTED.value


def _record(partition: int, offset: int) -> ConsumerRecord:
    return ConsumerRecord(TOPIC, partition, offset, 0, 0, b"k", b"{}", None, 1, 2, [])


class FailingSecondFetch:
    def __init__(self) -> None:
        self.fetches = 0

    async def getmany(self, timeout_ms: int, max_records: int) -> dict:
        self.fetches += 1
        if self.fetches == 1:
            return {
                TopicPartition(TOPIC, 1): [_record(1, 5)],
                TopicPartition(TOPIC, 0): [_record(0, 10), _record(0, 11)],
            }
        raise KafkaError("the broker went away")


async def test_records_taken_before_a_failed_fetch_stay_in_the_batch() -> None:
    kafka = KafkaSettings()
    broker = make_broker(kafka, "test")
    subscriber = EventSubscriber(
        broker,
        EventPublisher(broker, Producer(name="t", version="0"), []),
        DocumentSubmitted,
        kafka=kafka,
        group_id="g",
        max_records=10,
        batch_wait_ms=5000,
    )
    message = SimpleNamespace(raw_message=(_record(0, 9), _record(0, 10)), consumer=FailingSecondFetch())
    with pytest.raises(KafkaError):
        await subscriber._top_up(message)  # type: ignore[arg-type]
    # Partition 0's offset 10 was already in the batch: taken once; offset 11 and partition 1 joined it.
    assert [(r.partition, r.offset) for r in message.raw_message] == [(0, 9), (0, 10), (1, 5), (0, 11)]

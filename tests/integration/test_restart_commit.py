"""A graceful stop commits what was processed (issue 12, "redelivery of the last batch when
the embedding service restarts"): a batch in flight when the service is told to stop is
finished and committed (within FastStream's ``graceful_timeout``, 15 s), so the restarted
service starts after it. A batch longer than that is cancelled uncommitted and comes again,
which the derived event ids make harmless."""

import asyncio
from collections.abc import Sequence

import pytest
from faststream import FastStream

from ragops_schemas import DocumentRejected, DocumentSubmitted, Event, Topic
from ragops_shared.broker import EventPublisher, EventSubscriber, make_broker
from tests.helpers import PRODUCER
from tests.integration.services import produce_raw, running, wait_for

pytestmark = pytest.mark.kafka
GROUP = "test-restart"


def _app(kafka, started: list[str], finished: list[str], hold_s: float) -> FastStream:
    broker = make_broker(kafka, "test-restart")
    publisher = EventPublisher(broker, PRODUCER, [DocumentRejected])
    subscriber = EventSubscriber(broker, publisher, DocumentSubmitted, kafka=kafka, group_id=GROUP, max_records=8)

    async def process(events: Sequence[DocumentSubmitted]) -> list[Event]:
        started.extend(event.document_id for event in events)
        await asyncio.sleep(hold_s)
        finished.extend(event.document_id for event in events)
        return []

    @subscriber
    async def handle(events: list[DocumentSubmitted]) -> None:
        await subscriber.run(events, process)

    return FastStream(broker)


def _records(*names: str) -> list[tuple[bytes, bytes]]:
    return [
        (b"k", DocumentSubmitted(producer=PRODUCER, document_id=name, content="x").model_dump_json().encode())
        for name in names
    ]


async def test_a_batch_in_flight_at_a_graceful_stop_is_finished_committed_and_not_redelivered(kafka) -> None:
    started: list[str] = []
    finished: list[str] = []
    await produce_raw(kafka, Topic.DOCUMENT_SUBMITTED, _records("a", "b", "c"))
    app = _app(kafka, started, finished, hold_s=1.0)
    await app.start()
    await wait_for(started, lambda seen: bool(seen))
    await app.stop()  # while the batch is being processed
    assert finished == started and started

    again: list[str] = []
    async with running(_app(kafka, again, [], hold_s=0)):
        await produce_raw(kafka, Topic.DOCUMENT_SUBMITTED, _records("late"))
        await wait_for(again, lambda seen: "late" in seen)
    assert not set(again) & set(finished), "nothing processed before the stop comes again"

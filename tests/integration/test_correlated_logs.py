"""Logs that correlate with events, on a real broker and through the services' own logging
configuration (``configure_logging``, whose ``merge_contextvars`` adds the bound ids): every
line logged while EventSubscriber handles one event, or an EventWatcher listener hears one,
carries that event's trace, event and request ids, and no line after it carries them."""

import asyncio
import json
from collections.abc import Sequence

import pytest
import structlog
from faststream import FastStream

from ragops_schemas import Event, Producer, QuerySubmitted, Topic
from ragops_shared.broker import EventPublisher, EventSubscriber, make_broker
from ragops_shared.watch import EventWatcher
from tests.integration.services import produce_raw, running

pytestmark = pytest.mark.kafka
PRODUCER = Producer(name="test", version="0")
IDS = ("trace_id", "event_id", "request_id")
log = structlog.get_logger("test")


def ids_of(line: dict) -> tuple:
    return tuple(line.get(name) for name in IDS)


def _app(kafka, handled: list[str]) -> FastStream:
    broker = make_broker(kafka, "test-service")
    subscriber = EventSubscriber(
        broker, EventPublisher(broker, PRODUCER, []), QuerySubmitted, kafka=kafka, group_id="test-logs", max_records=10
    )

    async def process(events: Sequence[QuerySubmitted]) -> list[Event]:
        log.info("processing", questions=[event.question for event in events])
        if any(event.question == "poison" for event in events):
            raise RuntimeError("cannot handle poison")
        return []

    @subscriber
    async def handle(events: list[QuerySubmitted]) -> None:
        await subscriber.run(events, process)
        log.info("batch_handled", size=len(events))
        handled.extend(event.request_id for event in events)

    return FastStream(broker)


async def test_lines_logged_for_an_event_carry_its_ids_and_only_its_lines_do(kafka, json_lines) -> None:
    poison = QuerySubmitted(producer=PRODUCER, request_id="r-poison", question="poison")
    good = QuerySubmitted(producer=PRODUCER, request_id="r-good", question="fine")
    handled: list[str] = []
    # One key: both land on one partition, in this order, and arrive in one batch that fails,
    # so each event is then handled alone (the poison one logs a failure and is dead-lettered).
    await produce_raw(
        kafka, Topic.QUERY_SUBMITTED, [(b"same-key", e.model_dump_json().encode()) for e in (poison, good)]
    )
    async with running(_app(kafka, handled)):
        deadline = asyncio.get_running_loop().time() + 60
        while len(handled) < 2:
            assert asyncio.get_running_loop().time() < deadline, handled
            await asyncio.sleep(0.1)

    lines = [json.loads(line) for line in json_lines.getvalue().splitlines()]
    mine = [
        line
        for line in lines
        if line["event"]
        in {
            "processing",
            "processing_failed",
            "dead_lettering_record",
            "batch_failed_bisecting",
            "batch_handled",
        }
    ]

    expected = {event.question: (event.trace_id, str(event.event_id), event.request_id) for event in (poison, good)}
    for question, ids in expected.items():
        alone = [line for line in mine if line.get("questions") == [question]]
        assert len(alone) == 1 and ids_of(alone[0]) == ids, alone
    failure = [line for line in mine if line["event"] in {"processing_failed", "dead_lettering_record"}]
    assert [line["event"] for line in failure] == ["processing_failed", "dead_lettering_record"]
    assert all(ids_of(line) == expected["poison"] for line in failure), failure
    # The batch as a whole, and what the handler logs after run() returned, belong to no one event.
    unbound = [
        line
        for line in mine
        if line["event"] in {"batch_failed_bisecting", "batch_handled"} or line.get("questions") == ["poison", "fine"]
    ]
    assert len(unbound) == 3 and all(ids_of(line) == (None, None, None) for line in unbound), unbound
    # The good event, handled right after the poison one, carries none of its ids.
    good_lines = [line for line in lines if line.get("request_id") == "r-good"]
    assert good_lines and all(ids_of(line) == expected["fine"] for line in good_lines), good_lines


async def test_lines_a_watcher_listener_logs_carry_the_ids_of_the_event_it_hears(kafka, json_lines) -> None:
    events = [QuerySubmitted(producer=PRODUCER, request_id=f"r{i}", question=f"question {i}") for i in range(2)]
    heard: list[Event] = []
    watcher = EventWatcher(kafka, [QuerySubmitted], client_id="test-watcher")
    watcher.listen(lambda event: log.info("heard", question=event.question))
    watcher.listen(heard.append)
    await watcher.start()
    try:
        await produce_raw(kafka, Topic.QUERY_SUBMITTED, [(b"same-key", e.model_dump_json().encode()) for e in events])
        deadline = asyncio.get_running_loop().time() + 60
        while len(heard) < 2:
            assert asyncio.get_running_loop().time() < deadline, heard
            await asyncio.sleep(0.1)
        log.info("after")
    finally:
        await watcher.stop()

    lines = [json.loads(line) for line in json_lines.getvalue().splitlines()]
    assert [ids_of(line) for line in lines if line["event"] == "heard"] == [
        (event.trace_id, str(event.event_id), event.request_id) for event in events
    ]
    assert [ids_of(line) for line in lines if line["event"] == "after"] == [(None, None, None)]

"""Poison records on a real broker: every record ends somewhere (processed, dead-lettered, or
its dead letter parked) and the consumer never spins on one. Fetches are counted from
``ragops_batch_records`` (one observation per fetched batch the decoder saw)."""

import asyncio
import base64
from collections.abc import Sequence
from pathlib import Path

import httpx
import pytest
from aiokafka import AIOKafkaProducer
from faststream import FastStream
from prometheus_client import REGISTRY

from ragops_schemas import DocumentRejected, DocumentSubmitted, Event, MessageDeadLettered, Producer, Topic
from ragops_shared.broker import EventPublisher, EventSubscriber, make_broker
from ragops_shared.dead_letters import REFERENCE_PREFIX_BYTES
from ragops_shared.retry import Backoff
from ragops_shared.service import service_app
from ragops_shared.settings import KafkaSettings, PlatformSettings
from tests.integration.services import produce_raw, running, wait_for, watching

pytestmark = pytest.mark.kafka

TOPIC = Topic.DOCUMENT_SUBMITTED.value
FAST = Backoff(attempts=4, initial_s=0.01, max_s=0.05)
KEY = b"same-key"  # one partition: the records arrive in order, in one batch when produced together


class Service:
    """A test service on DocumentSubmitted: ``process`` answers each event with a
    DocumentRejected unless ``fail`` raises for the batch; counts its calls and fetches."""

    def __init__(self, kafka: KafkaSettings, name: str, fail=None, **options) -> None:
        self.producer = Producer(name=name, version="0")
        self.broker = make_broker(kafka, name)
        self.subscriber = EventSubscriber(
            self.broker,
            EventPublisher(self.broker, self.producer, [DocumentRejected]),
            DocumentSubmitted,
            kafka=kafka,
            group_id=f"{name}-group",
            max_records=50,
            retry=FAST,
            dead_letter_retry=FAST,
            **options,
        )
        self.calls: list[list[str]] = []
        self.fail = fail

        async def process(events: Sequence[DocumentSubmitted]) -> list[Event]:
            self.calls.append([event.document_id for event in events])
            if self.fail:
                self.fail(events)
            return [
                e.caused(DocumentRejected, self.producer, document_id=e.document_id, stage="ingestion", reason="ok")
                for e in events
            ]

        @self.subscriber
        async def handle(events: list[DocumentSubmitted]) -> None:
            await self.subscriber.run(events, process)

    def app(self) -> FastStream:
        return FastStream(self.broker)

    def fetches(self) -> float:
        labels = {"service": self.producer.name, "topic": TOPIC}
        return REGISTRY.get_sample_value("ragops_batch_records_count", labels) or 0.0


def _document(document_id: str, content: str = "text") -> bytes:
    return (
        DocumentSubmitted(producer=Producer(name="t", version="0"), document_id=document_id, content=content)
        .model_dump_json()
        .encode()
    )


def _outputs(seen: list[Event]) -> list[str]:
    return sorted(e.document_id for e in seen if isinstance(e, DocumentRejected))


def _letters(seen: list[Event]) -> list[MessageDeadLettered]:
    return [e for e in seen if isinstance(e, MessageDeadLettered)]


async def test_a_dead_letter_too_large_to_publish_becomes_a_reference(kafka) -> None:
    # 250 kB of garbage: its base64 copy (333 kB) would not fit under the 300 kB limit.
    small = kafka.model_copy(update={"max_message_bytes": 300_000})
    service = Service(small, "test-oversized")
    garbage = b"\x00not json" * 25_000
    async with watching(kafka, [DocumentRejected, MessageDeadLettered]) as seen:
        await produce_raw(kafka, TOPIC, [(KEY, garbage), (KEY, _document("after"))])
        async with running(service.app()):
            await wait_for(seen, lambda events: _outputs(events) == ["after"] and _letters(events))
    [letter] = _letters(seen)
    assert (letter.error_type, letter.truncated, letter.original_size) == ("schema_validation", True, len(garbage))
    assert base64.b64decode(letter.original_value_b64) == garbage[:REFERENCE_PREFIX_BYTES]
    assert (letter.original_topic, letter.offset) == (TOPIC, 0)
    assert service.fetches() <= 2, "the record was fetched once, not refetched in a loop"


async def test_a_dead_letter_that_cannot_be_published_is_parked_and_the_consumer_moves_on(kafka) -> None:
    # Its reason alone (4 kB, cut) exceeds the producer's 2 kB limit: no form of it can be published.
    small = kafka.model_copy(update={"max_message_bytes": 2_000})

    def fail(events: Sequence[DocumentSubmitted]) -> None:
        if any(event.content == "poison" for event in events):
            raise RuntimeError("cannot handle " + "poison " * 2_000)

    service = Service(small, "test-parking", fail=fail)
    parked = {"service": "test-parking", "topic": TOPIC}
    before = REGISTRY.get_sample_value("ragops_dead_letters_parked_total", parked) or 0.0
    async with watching(kafka, [DocumentRejected, MessageDeadLettered]) as seen:
        await produce_raw(kafka, TOPIC, [(KEY, _document("p", "poison")), (KEY, _document("after"))])
        async with running(service.app()):
            await wait_for(seen, lambda events: "after" in _outputs(events))
            # A record behind both: once it is out, nothing before it is still being retried.
            await produce_raw(kafka, TOPIC, [(KEY, _document("sentinel"))])
            await wait_for(seen, lambda events: "sentinel" in _outputs(events))
    assert REGISTRY.get_sample_value("ragops_dead_letters_parked_total", parked) == before + 1
    assert not _letters(seen)
    assert _outputs(seen) == ["after", "sentinel"]
    assert service.fetches() <= 3, "no refetch loop: the batch, then at most one fetch per later record"
    assert service.calls.count(["p"]) == 1, "the poison was tried alone once, then given up"


async def test_a_record_with_an_unreadable_header_is_dead_lettered_alone(kafka) -> None:
    service = Service(kafka, "test-headers")
    producer = AIOKafkaProducer(bootstrap_servers=kafka.bootstrap_servers)
    await producer.start()
    try:
        for document_id, headers in [("v1", []), ("bad", [("traceparent", b"\xff\xfe00")]), ("v2", [])]:
            await producer.send_and_wait(TOPIC, _document(document_id), key=KEY, headers=headers)
    finally:
        await producer.stop()
    async with watching(kafka, [DocumentRejected, MessageDeadLettered]) as seen, running(service.app()):
        await wait_for(seen, lambda events: len(_outputs(events)) == 2 and _letters(events))
    assert _outputs(seen) == ["v1", "v2"]
    [letter] = _letters(seen)
    assert (letter.error_type, letter.offset) == ("invalid_header", 1)
    assert letter.reason.startswith("invalid header 'traceparent'")
    assert letter.original_headers == {"traceparent": "<4 bytes, not UTF-8>"}
    assert DocumentSubmitted.model_validate_json(base64.b64decode(letter.original_value_b64)).document_id == "bad"


async def test_a_transient_failure_is_retried_in_place_not_dead_lettered(kafka) -> None:
    failures = iter([ConnectionError("connection reset by peer"), TimeoutError("read timed out")])

    def fail(events: Sequence[DocumentSubmitted]) -> None:
        if (error := next(failures, None)) is not None:
            raise error

    service = Service(kafka, "test-transient", fail=fail)
    async with watching(kafka, [DocumentRejected, MessageDeadLettered]) as seen:
        await produce_raw(kafka, TOPIC, [(KEY, _document(f"d{i}")) for i in range(5)])
        async with running(service.app()):
            await wait_for(seen, lambda events: len(_outputs(events)) >= 5)
            await produce_raw(kafka, TOPIC, [(KEY, _document("sentinel"))])
            await wait_for(seen, lambda events: "sentinel" in _outputs(events))
    assert _outputs(seen) == sorted([f"d{i}" for i in range(5)] + ["sentinel"])
    assert not _letters(seen)
    batch = [f"d{i}" for i in range(5)]
    assert service.calls == [batch, batch, batch, ["sentinel"]], "the same batch, in place, until it passed"


async def test_a_persistent_transient_failure_is_isolated_and_dead_lettered_with_its_attempts(kafka) -> None:
    def fail(events: Sequence[DocumentSubmitted]) -> None:
        if any(event.document_id == "d2" for event in events):
            raise TimeoutError("the model server timed out on d2")

    service = Service(kafka, "test-timeouts", fail=fail)
    async with watching(kafka, [DocumentRejected, MessageDeadLettered]) as seen:
        await produce_raw(kafka, TOPIC, [(KEY, _document(f"d{i}")) for i in range(5)])
        async with running(service.app()):
            await wait_for(seen, lambda events: len(_outputs(events)) >= 4 and _letters(events))
    assert _outputs(seen) == ["d0", "d1", "d3", "d4"]
    [letter] = _letters(seen)
    # Four tries of the batch in place, then [d2 d3 d4], then d2 alone.
    assert (letter.error_type, letter.attempts) == ("transient", 6)
    assert "TimeoutError" in letter.reason


async def test_a_stuck_consumer_fails_liveness_until_it_moves_again(kafka, tmp_path: Path) -> None:
    release = asyncio.Event()
    quick = kafka.model_copy(update={"stuck_after_s": 1.0})
    broker = make_broker(quick, "test-stuck")
    hung = EventSubscriber(
        broker,
        EventPublisher(broker, Producer(name="test-stuck", version="0"), []),
        DocumentSubmitted,
        kafka=quick,
        group_id="test-stuck-hung",
        max_poll_interval_ms=1000,
    )

    @hung
    async def hang(events: list[DocumentSubmitted]) -> None:
        await release.wait()

    platform = PlatformSettings(data_dir=tmp_path)
    app = service_app("test-stuck", "A service whose handler hangs.", broker, platform=platform)
    await produce_raw(kafka, TOPIC, [(KEY, _document("x"))])
    async with (
        httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://service") as http,
        running(app),
    ):
        deadline = asyncio.get_running_loop().time() + 60
        while (health := await http.get("/health")).status_code == 200:
            assert asyncio.get_running_loop().time() < deadline, "never reported stuck"
            await asyncio.sleep(0.1)
        body = health.json()
        assert health.status_code == 503 and body["status"] == "stuck"
        [report] = [c for c in body["consumers"] if c["group"] == "test-stuck-hung"]
        assert report["stuck"] and report["batch_attempts"] == 1 and report["oldest_unprocessed_age_s"] > 1.0
        ready = await http.get("/ready")
        assert (ready.status_code, ready.json()["status"]) == (503, "stuck")
        labels = {"group": "test-stuck-hung", "topic": TOPIC}
        assert REGISTRY.get_sample_value("ragops_consumer_oldest_unprocessed_age_seconds", labels) > 1.0
        release.set()
        while (health := await http.get("/health")).status_code != 200:
            assert asyncio.get_running_loop().time() < deadline, "still stuck after the handler returned"
            await asyncio.sleep(0.1)
        assert REGISTRY.get_sample_value("ragops_consumer_batch_attempts", labels) == 0

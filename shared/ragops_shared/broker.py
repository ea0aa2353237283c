"""Kafka plumbing every service uses: the broker factory, typed batch subscribers that send
bad records to the dead-letter topic, and keyed, traced publishing.

Delivery semantics: offsets are committed only after a batch was handled (``AckPolicy``
``NACK_ON_ERROR``: an infrastructure failure rewinds and redelivers the batch). A record
that fails schema validation, or whose processing raises, becomes a
``MessageDeadLettered`` event with the original bytes and the reason; the rest of the batch
goes on. Effects are idempotent downstream (deterministic ids), so redelivery is safe: a
redelivered batch republishes the same event ids (derived from their causes), and a
subscriber skips an event whose id it handled recently (a duplicate delivery).
"""

import asyncio
import base64
import logging
import ssl
import uuid
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Sequence
from typing import Any, Generic, TypeVar, cast

import structlog
from aiokafka import AIOKafkaConsumer, ConsumerRecord
from faststream import AckPolicy
from faststream.kafka import KafkaBroker, KafkaMessage
from faststream.kafka.prometheus import KafkaPrometheusMiddleware
from faststream.kafka.publisher.usecase import DefaultPublisher
from faststream.security import BaseSecurity, SASLPlaintext, SASLScram256, SASLScram512
from prometheus_client import REGISTRY
from pydantic import ValidationError

from ragops_schemas import Event, MessageDeadLettered, Producer
from ragops_schemas.events import DeadLetterErrorType
from ragops_schemas.ids import dead_letter_event_id
from ragops_shared.logs import event_context
from ragops_shared.ops import BATCH_RECORDS, DEAD_LETTERS, DUPLICATES
from ragops_shared.settings import KafkaSettings

E = TypeVar("E", bound=Event)
log = structlog.get_logger(__name__)


class EventRejected(Exception):
    """Raised by a service's processing function for a valid event that a business rule
    refuses (an unknown request id, a timestamp in the future): dead-lettered at once with
    ``error_type="rejected"`` and this message as the reason, never retried."""


def _security(kafka: KafkaSettings) -> BaseSecurity | None:
    if kafka.security_protocol == "PLAINTEXT":
        return None
    context = ssl.create_default_context(cafile=kafka.ssl_cafile) if kafka.security_protocol.endswith("SSL") else None
    if kafka.security_protocol == "SSL":
        return BaseSecurity(ssl_context=context)
    mechanism = {"PLAIN": SASLPlaintext, "SCRAM-SHA-256": SASLScram256, "SCRAM-SHA-512": SASLScram512}
    password = kafka.sasl_password.get_secret_value() if kafka.sasl_password else ""
    return mechanism[kafka.sasl_mechanism or "PLAIN"](kafka.sasl_username or "", password, ssl_context=context)


def make_broker(kafka: KafkaSettings, client_id: str) -> KafkaBroker:
    """A FastStream ``KafkaBroker`` configured from settings (bootstrap, TLS/SASL, sizes).

    Producers wait for all in-sync replicas (``acks="all"``); idempotence follows the settings.
    """
    return KafkaBroker(
        kafka.bootstrap_servers,
        client_id=client_id,
        security=_security(kafka),
        acks="all",
        enable_idempotence=kafka.enable_idempotence,
        max_request_size=kafka.max_message_bytes,
        logger=structlog.get_logger("faststream"),
        # "Received"/"Processed" for every message is noise at thousands of messages/s.
        log_level=logging.DEBUG,
        middlewares=[KafkaPrometheusMiddleware(registry=REGISTRY, app_name=client_id)],
    )


class EventPublisher:
    """Publishes events to their topic, keyed by document or request id, with the
    W3C ``traceparent`` header. One per service; registered publishers appear in AsyncAPI.
    Every service may dead-letter, so ``MessageDeadLettered`` is always declared."""

    def __init__(self, broker: KafkaBroker, producer: Producer, events: Sequence[type[Event]]) -> None:
        self.producer = producer
        declared: list[type[Event]] = [*events, MessageDeadLettered]
        self._publishers: dict[str, DefaultPublisher] = {
            cls.TOPIC: broker.publisher(cls.TOPIC, schema=cls, title=f"{cls.TOPIC}:publish") for cls in declared
        }

    async def publish(self, event: Event) -> None:
        """Publish one event. Raises ``KeyError`` if the service did not declare its type."""
        await self._publishers[event.TOPIC].publish(
            event, key=event.key, headers={"traceparent": event.traceparent, "event_type": event.event_type}
        )

    async def publish_all(self, events: Sequence[Event]) -> None:
        await asyncio.gather(*(self.publish(event) for event in events))


class EventSubscriber(Generic[E]):
    """A batch subscriber for one event type with dead-lettering.

    The decoder validates each record of a fetched batch; invalid ones are published to the
    dead-letter topic (``error_type="schema_validation"``) and dropped from the batch, so the
    handler receives ``list[E]`` of valid events only (possibly empty).
    :meth:`run` applies a function to the batch, falling back to one event at a time when
    the batch fails, and dead-letters each event that still fails (``error_type="processing"``).
    Lines logged while one event is handled carry its ids (:func:`~ragops_shared.logs.event_context`).

    De-duplication: an event whose ``event_id`` this subscriber handled (outputs published)
    among its last ``remember_ids`` events, or that came earlier in the same batch, is skipped
    (logged and counted in ``ragops_duplicate_records_total``; its offset is committed with
    the batch): a duplicate delivery is not processed twice. Across a restart the memory is
    gone; the outputs then get the same ids again (derived from the cause) and consumers and
    the sink collapse them.

    ``batch_wait_ms`` > 0: a fetch that brought fewer than ``max_records`` records is topped
    up from the same consumer for up to that long before the handler runs, so requests that
    reached the broker a fetch apart still share one batch (a generation batch takes
    seconds; a request one fetch late would otherwise wait for all of it). The records taken
    belong to the batch: its commit covers them and a nack rewinds to them.
    """

    def __init__(
        self,
        broker: KafkaBroker,
        publisher: EventPublisher,
        event_type: type[E],
        *,
        kafka: KafkaSettings,
        group_id: str | None,
        max_records: int = 32,
        batch_wait_ms: int = 0,
        max_poll_interval_ms: int = 5 * 60 * 1000,
        remember_ids: int = 10_000,
    ) -> None:
        self.event_type = event_type
        self.group_id = group_id
        self.max_records = max_records
        self.batch_wait_ms = batch_wait_ms
        self.remember_ids = remember_ids
        self._publisher = publisher
        # Records of the batch being handled, by event id: FastStream handles one batch at a
        # time per subscriber, so this never mixes batches.
        self._records: dict[uuid.UUID, ConsumerRecord] = {}
        # Ids of the events handled last, oldest first (about 100 bytes each).
        self._handled: OrderedDict[uuid.UUID, None] = OrderedDict()
        self.subscriber = broker.subscriber(
            event_type.TOPIC,
            batch=True,
            max_records=max_records,
            batch_timeout_ms=kafka.fetch_max_wait_ms,
            fetch_max_wait_ms=kafka.fetch_max_wait_ms,
            max_partition_fetch_bytes=kafka.max_message_bytes,
            group_id=group_id,
            # A new group starts at the beginning: records produced before the service first
            # joined are processed, not skipped.
            auto_offset_reset="earliest",
            session_timeout_ms=kafka.session_timeout_ms,
            heartbeat_interval_ms=kafka.heartbeat_interval_ms,
            # A handler that runs longer than this is taken for dead: its partitions move to
            # another member and its batch is redelivered (long training runs raise it).
            max_poll_interval_ms=max_poll_interval_ms,
            ack_policy=AckPolicy.NACK_ON_ERROR if group_id else AckPolicy.ACK_FIRST,
            decoder=self._decode,
            title=f"{event_type.TOPIC}:{group_id or 'no-group'}",
        )

    def __call__(self, handler: Callable[..., Awaitable[Any]]) -> Any:
        return self.subscriber(handler)

    async def _top_up(self, message: KafkaMessage) -> None:
        """Append to ``message.raw_message`` what the subscriber's own consumer (idle while
        its batch is decoded) fetches within ``batch_wait_ms``, up to ``max_records``.

        FastStream acks with the consumer's positions and nacks by rewinding each partition
        in ``raw_message`` to its earliest record, so both cover the records added; they are
        added fetch by fetch, so a fetch that raises leaves the earlier ones covered. A
        record at or below an offset the batch already holds is dropped: a rebalance during
        the wait resets positions to the committed offsets and fetches them again."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.batch_wait_ms / 1000
        newest: dict[tuple[str, int], int] = {}
        for record in message.raw_message:
            newest[record.topic, record.partition] = max(
                record.offset, newest.get((record.topic, record.partition), -1)
            )
        # A batch subscriber's consumer is the AIOKafkaConsumer (FastStream's protocol names
        # only commit and seek).
        consumer = cast(AIOKafkaConsumer, message.consumer)
        while len(message.raw_message) < self.max_records and (left_ms := int((deadline - loop.time()) * 1000)) > 0:
            fetched = await consumer.getmany(
                timeout_ms=left_ms, max_records=self.max_records - len(message.raw_message)
            )
            fresh = []
            for records in fetched.values():
                for record in records:
                    if record.offset > newest.get((record.topic, record.partition), -1):
                        newest[record.topic, record.partition] = record.offset
                        fresh.append(record)
            message.raw_message = (*message.raw_message, *fresh)

    async def _decode(self, message: KafkaMessage) -> list[E]:
        self._records.clear()
        if self.batch_wait_ms and len(message.raw_message) < self.max_records:
            await self._top_up(message)
        BATCH_RECORDS.labels(self._publisher.producer.name, self.event_type.TOPIC.value).observe(
            len(message.raw_message)
        )
        valid: list[E] = []
        for record in message.raw_message:
            try:
                event = self.event_type.model_validate_json(record.value or b"")
            except ValidationError as error:
                await self._dead_letter(record, "schema_validation", _validation_reason(error))
                continue
            if event.event_id in self._records or event.event_id in self._handled:
                DUPLICATES.labels(self._publisher.producer.name, record.topic).inc()
                log.info(
                    "duplicate_event_skipped",
                    event_id=str(event.event_id),
                    topic=record.topic,
                    partition=record.partition,
                    offset=record.offset,
                )
                continue
            self._records[event.event_id] = record
            valid.append(event)
        return valid

    def _remember(self, events: Sequence[E]) -> None:
        """Mark ``events`` handled: their outputs are out."""
        for event in events:
            self._handled[event.event_id] = None
        while len(self._handled) > self.remember_ids:
            self._handled.popitem(last=False)

    async def run(self, events: Sequence[E], process: Callable[[Sequence[E]], Awaitable[Sequence[Event]]]) -> None:
        """Run ``process`` (events in, output events out) and publish its outputs.

        Outputs are published only after ``process`` returned, so a retry of a single event
        after a failed batch never publishes a partial batch twice.
        """
        if len(events) > 1:
            try:
                await self._publisher.publish_all(await process(events))
                self._remember(events)
                return
            except Exception:  # noqa: BLE001 - isolate the failing event(s) one by one below
                log.warning("batch_failed_retrying_one_by_one", size=len(events))
        for event in events:
            # One event at a time, so every line logged for it (by ``process`` too, in its
            # threads) carries its ids; a batch of one takes this path at once.
            with event_context(event):
                try:
                    await self._publisher.publish_all(await process([event]))
                    self._remember([event])
                except EventRejected as error:
                    await self._dead_letter(self._records[event.event_id], "rejected", str(error))
                except Exception as error:
                    log.exception("processing_failed")
                    reason = f"{type(error).__name__}: {error}"
                    await self._dead_letter(self._records[event.event_id], "processing", reason)

    async def _dead_letter(self, record: ConsumerRecord, error_type: DeadLetterErrorType, reason: str) -> None:
        DEAD_LETTERS.labels(self._publisher.producer.name, record.topic, error_type).inc()
        log.warning(
            "dead_lettering_record",
            topic=record.topic,
            partition=record.partition,
            offset=record.offset,
            error_type=error_type,
            reason=reason,
        )
        await self._publisher.publish(
            MessageDeadLettered(
                # Refused again on redelivery: the same letter, not a second one.
                event_id=dead_letter_event_id(record.topic, record.partition, record.offset, self.group_id),
                producer=self._publisher.producer,
                original_topic=record.topic,
                partition=record.partition,
                offset=record.offset,
                original_key=record.key.decode(errors="replace") if record.key is not None else None,
                original_value_b64=base64.b64encode(record.value or b"").decode(),
                consumer_group=self.group_id,
                error_type=error_type,
                reason=reason,
            )
        )


def _validation_reason(error: ValidationError) -> str:
    """A short, human-readable reason: the first errors with their field paths."""
    parts = [
        f"{'.'.join(str(p) for p in item['loc']) or '<root>'}: {item['msg']}"
        for item in error.errors(include_url=False)[:5]
    ]
    more = f" (+{error.error_count() - 5} more)" if error.error_count() > 5 else ""
    return f"schema validation failed for {error.title}: " + "; ".join(parts) + more

"""Kafka plumbing every service uses: the broker factory, typed batch subscribers that send
bad records to the dead-letter topic, and keyed, traced publishing.

Delivery semantics: offsets are committed only after a batch was handled (``AckPolicy``
``NACK_ON_ERROR``: an infrastructure failure rewinds and redelivers the batch). Every
record ends somewhere: processed, or a ``MessageDeadLettered`` event with the original bytes
(a reference when they would not fit) and the reason, while the rest of the batch goes on;
a dead letter that cannot be published after bounded retries is parked in the error log
(``ragops_dead_letters_parked_total``), never retried in a loop. Effects are idempotent
downstream (deterministic ids), so redelivery is safe: a redelivered batch republishes the
same event ids (derived from their causes), and a subscriber skips an event whose id it
handled recently (a duplicate delivery).
"""

import asyncio
import dataclasses
import functools
import logging
import ssl
import uuid
from collections import Counter, OrderedDict
from collections.abc import Awaitable, Callable, Sequence
from typing import Any, Generic, TypeVar, cast

import structlog
from aiokafka import AIOKafkaConsumer, ConsumerRecord
from aiokafka.errors import MessageSizeTooLargeError, RecordTooLargeError
from faststream import AckPolicy
from faststream.kafka import KafkaBroker, KafkaMessage
from faststream.kafka.prometheus import KafkaPrometheusMiddleware
from faststream.kafka.publisher.usecase import DefaultPublisher
from faststream.security import BaseSecurity, SASLPlaintext, SASLScram256, SASLScram512
from prometheus_client import REGISTRY
from pydantic import ValidationError

from ragops_schemas import Event, MessageDeadLettered, Producer, SignedEvent
from ragops_schemas.events import DeadLetterErrorType
from ragops_schemas.ids import dead_letter_event_id
from ragops_shared.dead_letters import dead_letter_for, header_problem, reference_letter
from ragops_shared.logs import error_summary, event_context, validation_summary
from ragops_shared.ops import (
    BATCH_RECORDS,
    DEAD_LETTERS,
    DEAD_LETTERS_PARKED,
    DUPLICATES,
    ConsumerProgress,
    track_consumer,
)
from ragops_shared.retry import Backoff, bisect, is_transient
from ragops_shared.settings import KafkaSettings
from ragops_shared.signing import ControlEventRefused, Signer, Verifier
from ragops_shared.tracing import instrument, published, stage_clock

E = TypeVar("E", bound=Event)
log = structlog.get_logger(__name__)

TRANSIENT_RETRY = Backoff(attempts=4, initial_s=0.5, max_s=10.0)
"""A batch failing with a transient error is tried this often in place (about 3.5 s of waits)."""
DEAD_LETTER_RETRY = Backoff(attempts=5, initial_s=0.5, max_s=10.0)
"""A dead letter whose publish fails is tried this often (about 7.5 s of waits), then parked."""


class EventRejected(Exception):
    """Raised by a service's processing function for a valid event that a business rule
    refuses (an unknown request id, a timestamp in the future): dead-lettered at once with
    ``error_type="rejected"`` and this message as the reason, never retried."""


def require_verified(verifier: Verifier, event: Event) -> None:
    """Return if ``event`` may be applied (:meth:`Verifier.check`); raise :class:`EventRejected`
    with the refusal (``"<code>: <detail>"``) as its reason otherwise, for a consumer whose
    effect must not follow a forged or unsigned control event (an erasure)."""
    try:
        verifier.check(event)
    except ControlEventRefused as refused:
        raise EventRejected(str(refused)) from None


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
    W3C ``traceparent`` header; each event is instrumented first (its stage's ``compute``:
    :func:`~ragops_shared.tracing.instrument`) and traced once out
    (:func:`~ragops_shared.tracing.published`). One per service; registered publishers appear in AsyncAPI.
    Every service may dead-letter, so ``MessageDeadLettered`` is always declared. With a
    ``signer``, every control event (:class:`~ragops_schemas.SignedEvent`) is signed as it is
    published; without one it leaves unsigned and its readers refuse it. ``dead_letters=False``:
    only ``events`` (a publisher beside the service's own, e.g. its guard's audit entries)."""

    def __init__(
        self,
        broker: KafkaBroker,
        producer: Producer,
        events: Sequence[type[Event]],
        signer: Signer | None = None,
        *,
        dead_letters: bool = True,
    ) -> None:
        self.producer = producer
        self.signer = signer
        declared: list[type[Event]] = [*events, *([MessageDeadLettered] if dead_letters else [])]
        self._publishers: dict[str, DefaultPublisher] = {
            cls.TOPIC: broker.publisher(cls.TOPIC, schema=cls, title=f"{cls.TOPIC}:publish") for cls in declared
        }

    async def publish(self, event: Event) -> None:
        """Publish one event. Raises ``KeyError`` if the service did not declare its type."""
        event = instrument(event, self.producer.name)
        if self.signer is not None and isinstance(event, SignedEvent):
            event = self.signer.sign(event)
        await self._publishers[event.TOPIC].publish(
            event, key=event.key, headers={"traceparent": event.traceparent, "event_type": event.event_type}
        )
        published(event, self.producer.name)

    async def publish_all(self, events: Sequence[Event]) -> None:
        await asyncio.gather(*(self.publish(event) for event in events))


class EventSubscriber(Generic[E]):
    """A batch subscriber for one event type with dead-lettering.

    The decoder checks each record of a fetched batch: one with a header value that is not
    UTF-8 (``error_type="invalid_header"``) or that fails validation
    (``"schema_validation"``) is published to the dead-letter topic and dropped from the
    batch, so the handler receives ``list[E]`` of valid events only (possibly empty). Headers
    are never decoded before that: FastStream's parser would raise on such a header and the
    whole batch would be skipped, unacknowledged and unprocessed.
    :meth:`run` applies a function to the batch: a transient failure is retried in place
    (``retry``), then a failing batch is bisected down to the events that fail, which are
    dead-lettered (``"transient"``, ``"processing"`` or ``"rejected"``) while the rest goes on.
    Lines logged while one event is handled carry its ids (:func:`~ragops_shared.logs.event_context`).
    Its progress (oldest unprocessed record, attempts of the current batch) feeds ``/health``,
    ``/ready`` and the ``ragops_consumer_*`` gauges (:mod:`ragops_shared.ops`).

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

    ``on_refused(event, reason)``: the events a valid event still owes its producer when it
    is dead-lettered by :meth:`run` (e.g. a ``DocumentRejected`` for a refused part of a
    document, so the version ends somewhere); published after its dead letter, with ids
    derived from the event (a redelivered refusal publishes the same ids).

    ``keep_values=False``: its dead letters are references that copy none of the record's
    bytes (records of personal data not yet redacted: the dead-letter topic is kept and sunk);
    the record is read back from its topic, partition and offset while its topic keeps it.
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
        retry: Backoff = TRANSIENT_RETRY,
        dead_letter_retry: Backoff = DEAD_LETTER_RETRY,
        on_refused: Callable[[E, str], Sequence[Event]] | None = None,
        keep_values: bool = True,
    ) -> None:
        self.event_type = event_type
        self.keep_values = keep_values
        self.on_refused = on_refused
        self.group_id = group_id
        self.max_records = max_records
        self.batch_wait_ms = batch_wait_ms
        self.remember_ids = remember_ids
        self.retry = retry
        self.dead_letter_retry = dead_letter_retry
        self._max_message_bytes = kafka.max_message_bytes
        self._publisher = publisher
        # A handler may legitimately run up to max_poll_interval_ms (training): not stuck before.
        self.progress = ConsumerProgress(
            group_id or "no-group", event_type.TOPIC.value, max(kafka.stuck_after_s, max_poll_interval_ms / 1000)
        )
        track_consumer(broker, self.progress)
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
            parser=parse_readable,
            decoder=self._decode,
            title=f"{event_type.TOPIC}:{group_id or 'no-group'}",
        )

    def __call__(self, handler: Callable[..., Awaitable[Any]]) -> Any:
        """Register ``handler``; its batch counts as handled (not pending) once it returned."""

        @functools.wraps(handler)  # FastStream reads the handler's signature through the wrapper
        async def handled(*args: Any, **kwargs: Any) -> Any:
            result = await handler(*args, **kwargs)
            self.progress.finished()
            return result

        return self.subscriber(handled)

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
        self.progress.started((record.topic, record.partition, record.offset) for record in message.raw_message)
        BATCH_RECORDS.labels(self._publisher.producer.name, self.event_type.TOPIC.value).observe(
            len(message.raw_message)
        )
        valid: list[E] = []
        for record in message.raw_message:
            if (problem := header_problem(record)) is not None:
                await self._dead_letter(record, "invalid_header", problem)
                continue
            try:
                event = self.event_type.model_validate_json(record.value or b"")
            except ValidationError as error:
                await self._dead_letter(record, "schema_validation", validation_reason(error))
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

    def handled(self, event: E) -> bool:
        """True once ``event``'s outputs are published (among the last ``remember_ids``
        events handled): after :meth:`run`, False means it was dead-lettered."""
        return event.event_id in self._handled

    def _remember(self, events: Sequence[E]) -> None:
        """Mark ``events`` handled: their outputs are out."""
        for event in events:
            self._handled[event.event_id] = None
        while len(self._handled) > self.remember_ids:
            self._handled.popitem(last=False)

    async def run(self, events: Sequence[E], process: Callable[[Sequence[E]], Awaitable[Sequence[Event]]]) -> None:
        """Run ``process`` (events in, output events out) and publish its outputs.

        A transient failure (:func:`~ragops_shared.retry.is_transient`) of the whole batch is
        retried in place after the delays of ``retry`` (the partition's order holds: nothing
        after the batch runs first). A batch that still fails is bisected: halves that
        succeed publish their outputs, single events that fail are dead-lettered with their
        attempts. Every path ends; a batch of n events with k failing ones costs at most
        ``retry.attempts + 2·k·log2(n)`` calls of ``process``.

        Outputs are published only after ``process`` returned for a slice, so a retried slice
        never publishes a partial result twice.
        """
        if not events:
            return
        # Outputs published from here on (retries and bisection included) are charged to this batch.
        with stage_clock(len(events)):
            await self._run(events, process)

    async def _run(self, events: Sequence[E], process: Callable[[Sequence[E]], Awaitable[Sequence[Event]]]) -> None:
        tried: Counter[uuid.UUID] = Counter()

        async def attempt(batch: Sequence[E]) -> None:
            tried.update(event.event_id for event in batch)
            if len(batch) > 1:
                await self._publisher.publish_all(await process(batch))
            else:
                # One event alone: every line logged for it (by ``process`` too, in its
                # threads) carries its ids.
                with event_context(batch[0]):
                    await self._publisher.publish_all(await process(batch))
            # Only once its outputs are out is an event handled (a redelivery may skip it).
            self._remember(batch)

        async def give_up(event: E, error: Exception) -> None:
            with event_context(event):
                if isinstance(error, EventRejected):
                    reason = str(error)
                    await self._dead_letter(self._records[event.event_id], "rejected", reason)
                else:
                    log.error("processing_failed", exc_info=error, attempts=tried[event.event_id])
                    reason = f"{type(error).__name__}: {error}"
                    await self._dead_letter(
                        self._records[event.event_id],
                        "transient" if is_transient(error) else "processing",
                        reason,
                        attempts=tried[event.event_id],
                    )
                await self._publish_refusal(event, reason)

        for delay in [*self.retry.delays(), None]:
            try:
                await attempt(events)
                return
            except Exception as error:  # noqa: BLE001 - retried if transient, else isolated below
                failure = error
            if delay is None or not is_transient(failure):
                break
            log.warning(
                "batch_failed_transiently_retrying", size=len(events), retry_in_s=delay, error=error_summary(failure)
            )
            self.progress.retried()
            await asyncio.sleep(delay)
        if len(events) > 1:
            log.warning("batch_failed_bisecting", size=len(events), error=error_summary(failure))
        await bisect(events, failure, attempt, give_up)

    async def _publish_refusal(self, event: E, reason: str) -> None:
        """Publish ``on_refused``'s events for a dead-lettered ``event``, retried like a dead
        letter; one that still fails is logged as an error (its dead letter is out: the
        refusal is recorded, only its consequence is missing) and the batch goes on."""
        if self.on_refused is None:
            return
        outcomes = self.on_refused(event, reason)
        for delay in [*self.dead_letter_retry.delays(), None]:
            try:
                await self._publisher.publish_all(outcomes)
                return
            except Exception as error:  # noqa: BLE001 - whatever the cause: retried, then logged
                failure = error
            if delay is None:
                break
            await asyncio.sleep(delay)
        log.error("refusal_outcome_not_published", outcomes=[o.event_type for o in outcomes], error=repr(failure))

    async def _dead_letter(
        self, record: ConsumerRecord, error_type: DeadLetterErrorType, reason: str, attempts: int = 1
    ) -> None:
        await dead_letter(
            self._publisher,
            record,
            error_type,
            reason,
            consumer_group=self.group_id,
            max_bytes=self._max_message_bytes,
            retry=self.dead_letter_retry,
            attempts=attempts,
            keep_value=self.keep_values,
        )


async def dead_letter(
    publisher: EventPublisher,
    record: ConsumerRecord,
    error_type: DeadLetterErrorType,
    reason: str,
    *,
    consumer_group: str | None,
    max_bytes: int,
    retry: Backoff = DEAD_LETTER_RETRY,
    attempts: int = 1,
    keep_value: bool = True,
) -> None:
    """Publish the record's dead letter (a reference if the copy would not fit in
    ``max_bytes``, or with ``keep_value=False``: see :func:`dead_letter_for`), its id derived
    from the record's position and ``consumer_group``, retrying a failed publish after the
    delays of ``retry``; when every try failed, park it: an error log line with the reference
    and ``ragops_dead_letters_parked_total``. Returns in bounded time either way, so the batch
    goes on."""
    service = publisher.producer.name
    DEAD_LETTERS.labels(service, record.topic, error_type).inc()
    # Refused again on redelivery: the same letter, not a second one.
    letter_id = dead_letter_event_id(record.topic, record.partition, record.offset, consumer_group)
    # The reason can quote the record's values (an exception's message): it stays in the letter.
    log.warning(
        "dead_lettering_record",
        topic=record.topic,
        partition=record.partition,
        offset=record.offset,
        error_type=error_type,
        dead_letter_id=str(letter_id),
        attempts=attempts,
    )
    letter = dead_letter_for(
        record,
        event_id=letter_id,
        producer=publisher.producer,
        consumer_group=consumer_group,
        error_type=error_type,
        reason=reason,
        attempts=attempts,
        max_bytes=max_bytes,
        keep_value=keep_value,
    )
    for delay in [*retry.delays(), None]:
        try:
            await publisher.publish(letter)
            return
        except Exception as error:  # noqa: BLE001 - whatever the cause: retried, then parked
            failure = error
        if isinstance(failure, MessageSizeTooLargeError | RecordTooLargeError) and not letter.truncated:
            # The broker's limit is below the producer's (a topic's max.message.bytes).
            letter = reference_letter(letter, record.value or b"")
        if delay is None:
            break
        log.warning("dead_letter_publish_failed_retrying", offset=record.offset, retry_in_s=delay, error=repr(failure))
        await asyncio.sleep(delay)
    DEAD_LETTERS_PARKED.labels(service, record.topic).inc()
    parked = letter if letter.truncated else reference_letter(letter, record.value or b"")
    # The reference without its copy of the value or its reason (they can hold personal data): topic,
    # partition and offset say where the record is, for as long as its topic keeps it.
    log.error(
        "dead_letter_parked",
        dead_letter=parked.model_dump(mode="json", exclude={"original_value_b64", "reason"}),
        error=repr(failure),
    )


async def parse_readable(
    records: tuple[ConsumerRecord, ...], parse: Callable[[tuple[ConsumerRecord, ...]], Awaitable[KafkaMessage]]
) -> KafkaMessage:
    """FastStream's batch parser (``parse``) decodes every header value as UTF-8 before any
    handler, decoder or acknowledgement exists: one unreadable value raises there and the
    whole batch is skipped. It parses copies whose unreadable (or null) values are emptied;
    the message keeps the original records, which the decoder checks one by one."""
    readable = tuple(
        record
        if header_problem(record) is None and all(value is not None for _, value in record.headers)
        # Only the emptied headers change; the decoder never sees this copy.
        else dataclasses.replace(record, headers=[(name, _readable(value)) for name, value in record.headers])
        for record in records
    )
    message = await parse(readable)
    message.raw_message = records
    return message


def _readable(value: bytes | None) -> bytes:
    if value is None:
        return b""
    try:
        value.decode()
    except UnicodeDecodeError:
        return b""
    return value


def validation_reason(error: ValidationError) -> str:
    """A short, human-readable reason that quotes no input value: the first errors with their
    field paths (:func:`~ragops_shared.logs.validation_summary`)."""
    return "schema validation failed for " + validation_summary(error)

"""Watching topics from their current end without a consumer group: how request/reply
callers (the gateway, the CLI, the demo) wait for the event that answers them.

Every instance reads every partition, so any number of gateway replicas each see every
answer; no offsets are committed (a reply that arrives while no one waits is not needed).

Two things a reader without a group cannot take from the broker on trust (both measured on
Tansu 0.6): its *latest* offset (ListOffsets, ``seek_to_end``, ``end_offsets``) is the base
offset of the last batch + 1 in memory and can stay many batches behind on the S3 engine, so
:func:`end_offsets` takes the high watermark of a fetch instead; and after a broker lost its
log a fetch past the new end answers an empty batch, not ``OFFSET_OUT_OF_RANGE``, so the
watcher compares its position with the high watermark itself."""

import asyncio
from collections import defaultdict
from collections.abc import Callable, Sequence

import structlog
from aiokafka import AIOKafkaConsumer, ConsumerRecord, TopicPartition
from pydantic import ValidationError

from ragops_schemas import Event, MessageDeadLettered
from ragops_shared.logs import error_summary, event_context
from ragops_shared.settings import KafkaSettings, aiokafka_options

log = structlog.get_logger(__name__)


async def end_offsets(
    kafka: KafkaSettings, partitions: Sequence[TopicPartition], timeout_s: float = 30.0
) -> dict[TopicPartition, int]:
    """The offset the next record of each partition will get (its high watermark), as the
    partition's leader reports it in a fetch response, not in ListOffsets (see the module's
    docstring). Costs one short-lived connection and at most one record batch per partition:
    the fetch starts at the broker's (possibly short) latest offset and asks for one byte,
    which a broker answers with the first whole batch there.

    Raises:
        KafkaError: the cluster did not answer (aiokafka's errors).
        TimeoutError: a partition's leader did not answer a fetch within ``timeout_s``.
    """
    probe = AIOKafkaConsumer(
        **aiokafka_options(kafka),
        client_id="ragops-end-offsets",
        group_id=None,
        enable_auto_commit=False,
        # An empty partition holds the fetch this long before answering its high watermark.
        fetch_max_wait_ms=10,
        max_partition_fetch_bytes=1,
        fetch_max_bytes=1,
    )
    await probe.start()
    try:
        probe.assign(list(partitions))
        async with asyncio.timeout(timeout_s):
            await probe.seek_to_end(*partitions)  # a lower bound: fetch from there
            while missing := [partition for partition in partitions if probe.highwater(partition) is None]:
                await probe.getmany(*missing, timeout_ms=100)
        return {partition: probe.highwater(partition) for partition in partitions}
    finally:
        await probe.stop()


# (event types, trace id or None, the future) of one caller waiting for a key.
_Waiting = tuple[tuple[type[Event], ...], str | None, "asyncio.Future[Event]"]


def _answers(waiting: _Waiting, event: Event) -> bool:
    event_types, trace_id, _ = waiting
    if not isinstance(event, event_types):
        return False
    return trace_id is None or event.trace_id == trace_id or isinstance(event, MessageDeadLettered)


class WatcherStopped(ConnectionError):
    """The watcher stopped while a caller still waited for a reply."""


class EventWatcher:
    """Reads the topics of ``event_types`` from the position they have when :meth:`start`
    returns, and hands each event to the futures waiting for its key and to listeners.

    Register with :meth:`expect` *before* publishing the request, then await the future.
    Records that do not validate are logged and skipped: this is a reader, not a consumer
    that owns the topic (the owning services dead-letter them).

    It survives a broker restart: its client reconnects, and a partition whose log is now
    shorter than its position (a broker that kept its log in memory, a recreated topic) is
    read again from its beginning, so what is published after the restart is not skipped.
    """

    def __init__(
        self,
        kafka: KafkaSettings,
        event_types: Sequence[type[Event]],
        client_id: str = "ragops-watcher",
        *,
        from_beginning: bool = False,
        fetch_max_wait_ms: int | None = None,
        admit: Callable[[ConsumerRecord, Event | ValidationError], bool] | None = None,
    ) -> None:
        """``admit``: called with each record read and its event (or why it is not one)
        before anyone sees it; False drops it (``admit`` accounts for it). Without it, records
        that do not validate are logged and skipped."""
        self.kafka = kafka
        # How long the broker may hold an empty fetch (default: the platform's); longer for
        # topics that change rarely, so their readers do not keep the broker busy.
        self.fetch_max_wait_ms = kafka.fetch_max_wait_ms if fetch_max_wait_ms is None else fetch_max_wait_ms
        # From the beginning: rebuild a view of a topic (a table of the latest event per key).
        self.from_beginning = from_beginning
        self.client_id = client_id
        self._admit = admit
        self._types = {cls.TOPIC.value: cls for cls in event_types}
        self._waiting: dict[bytes, list[_Waiting]] = defaultdict(list)
        self._listeners: list[Callable[[Event], None]] = []
        self._consumer: AIOKafkaConsumer | None = None
        self._task: asyncio.Task[None] | None = None
        self._idle_since = float("-inf")  # start of the last fetch that found nothing new

    async def start(self) -> None:
        """Assign every partition of the topics and fix the start position at their end
        (or their beginning, with ``from_beginning``).

        Raises ``LookupError`` if a topic does not exist on the cluster."""
        consumer = AIOKafkaConsumer(
            **aiokafka_options(self.kafka),
            client_id=self.client_id,
            group_id=None,
            enable_auto_commit=False,
            fetch_max_wait_ms=self.fetch_max_wait_ms,
            max_partition_fetch_bytes=self.kafka.max_message_bytes,
            # A broker that answers OFFSET_OUT_OF_RANGE (Kafka, after its log was lost or
            # truncated): read the new log from its start rather than skip to its end.
            auto_offset_reset="earliest",
        )
        await consumer.start()
        try:
            await consumer.topics()  # loads cluster metadata
            partitions = []
            for topic in self._types:
                numbers = consumer.partitions_for_topic(topic)
                if not numbers:
                    raise LookupError(f"topic {topic} does not exist on {self.kafka.bootstrap_servers}")
                partitions += [TopicPartition(topic, number) for number in numbers]
            consumer.assign(partitions)
            if self.from_beginning:
                await consumer.seek_to_beginning(*partitions)
                for partition in partitions:  # resolve now, so a record published later is never missed
                    await consumer.position(partition)
            else:
                # Fixed before returning, so a reply published later is never missed.
                for partition, end in (await end_offsets(self.kafka, partitions)).items():
                    consumer.seek(partition, end)
        except BaseException:
            await consumer.stop()
            raise
        self._consumer = consumer
        self._task = asyncio.create_task(self._read(), name=f"{self.client_id}-read")

    async def stop(self) -> None:
        """Stop reading; whoever still waits gets :class:`WatcherStopped` at once."""
        for waiting in self._waiting.values():
            for _, _, future in waiting:
                if not future.done():
                    future.set_exception(WatcherStopped("stopped before the reply arrived (shutting down)"))
        self._waiting.clear()
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
        if self._consumer is not None:
            await self._consumer.stop()
        self._task = self._consumer = None

    def expect(
        self, key: str, event_types: tuple[type[Event], ...], trace_id: str | None = None
    ) -> "asyncio.Future[Event]":
        """A future resolved with the first event keyed ``key`` (UTF-8) of one of ``event_types``.

        With ``trace_id``, only an event of that trace resolves it, or a dead letter (which
        starts a trace of its own): an outcome of an earlier request with the same key is not
        taken for this one's (one redelivered, or read again after a broker lost its log)."""
        future: asyncio.Future[Event] = asyncio.get_running_loop().create_future()
        self._waiting[key.encode()].append((event_types, trace_id, future))
        return future

    async def caught_up(self, timeout_s: float) -> bool:
        """Wait until every record produced before this call has been read: a fetch that
        started after the call came back empty. (Not end offsets: Tansu reports the base
        offset of the last batch + 1 as the end, which is short when a batch holds several
        records.) Returns False if that takes longer than ``timeout_s``."""
        called = asyncio.get_running_loop().time()
        deadline = called + timeout_s
        while self._idle_since < called:
            if asyncio.get_running_loop().time() > deadline:
                return False
            await asyncio.sleep(0.01)
        return True

    @property
    def read_to_end(self) -> bool:
        """True once a fetch came back empty: every record that existed when :meth:`start`
        returned has been read (with ``from_beginning``, the topics' whole history)."""
        return self._idle_since > float("-inf")

    def forget(self, key: str, future: "asyncio.Future[Event]") -> None:
        """Stop waiting with ``future`` (from :meth:`expect` for ``key``, after a timeout), so
        the table does not grow. Others waiting for the same key go on waiting: a client's retry
        of the same request (same key) may still be waiting when the first attempt gives up."""
        waiting = self._waiting.get(key.encode(), [])
        waiting[:] = [entry for entry in waiting if entry[2] is not future]
        if not waiting:
            self._waiting.pop(key.encode(), None)

    def listen(self, callback: Callable[[Event], None]) -> None:
        """Call ``callback`` with every event read (on the event loop; keep it quick)."""
        self._listeners.append(callback)

    async def _read(self) -> None:
        assert self._consumer is not None
        loop = asyncio.get_running_loop()
        # An empty answer proves "caught up" only if a whole fetch that started after the
        # caller asked came back empty: on Tansu the fetch in flight may have started before
        # the record was produced, and the next one takes up to the fetch wait again; one
        # more wait is margin for round trips and a busy event loop.
        timeout_ms = max(200, 3 * self.fetch_max_wait_ms + 100)
        while True:
            fetch_started = loop.time()
            batches = await self._consumer.getmany(timeout_ms=timeout_ms)
            await self._reread_lost_logs()
            if not batches:
                self._idle_since = fetch_started
            for records in batches.values():
                for record in records:
                    self._dispatch(record)

    async def _reread_lost_logs(self) -> None:
        """Seek to the beginning of every partition whose high watermark is below the position:
        its log was lost (Tansu answers such a fetch with no records and no error)."""
        assert self._consumer is not None
        for partition in self._consumer.assignment():
            highwater = self._consumer.highwater(partition)
            if highwater is None:
                continue
            position = await self._consumer.position(partition)
            if highwater < position:
                log.warning(
                    "log_lost_reading_from_beginning",
                    topic=partition.topic,
                    partition=partition.partition,
                    position=position,
                    highwater=highwater,
                )
                await self._consumer.seek_to_beginning(partition)

    def _dispatch(self, record: ConsumerRecord) -> None:
        key = record.key
        try:
            event = self._types[record.topic].model_validate_json(record.value or b"")
        except ValidationError as error:
            if self._admit is None:
                log.warning("invalid_record_skipped", topic=record.topic, error=error_summary(error))
            else:
                self._admit(record, error)
            return
        if self._admit is not None and not self._admit(record, event):
            return
        # Lines logged by a listener, or by the tasks and threads it starts, carry the event's ids.
        with event_context(event):
            for listener in self._listeners:
                listener(event)
        waiting = self._waiting.get(key or b"", [])
        for entry in [entry for entry in waiting if _answers(entry, event)]:
            waiting.remove(entry)
            if not entry[2].done():
                entry[2].set_result(event)
        if not waiting:
            self._waiting.pop(key or b"", None)

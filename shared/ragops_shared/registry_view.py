"""Live views of control events for a service: :class:`ControlView` reads control topics
from their start (no consumer group: every replica needs every event) and folds each event
that passed the service's :class:`~ragops_shared.signing.Verifier` into its state;
:class:`RegistryView` is the one over the version registry
(:class:`ragops_schemas.registry.Registry`), :class:`ExperimentView` the one over the experiments."""

import asyncio
from collections.abc import Callable, Sequence

import structlog
from aiokafka import ConsumerRecord
from prometheus_client import Counter
from pydantic import ValidationError

from ragops_schemas import Event
from ragops_schemas.events import DeadLetterErrorType
from ragops_schemas.experiments import EXPERIMENT_EVENT_TYPES, ExperimentBook
from ragops_schemas.lifecycle import REGISTRY_EVENT_TYPES
from ragops_schemas.registry import Registry
from ragops_shared.broker import EventPublisher, dead_letter, validation_reason
from ragops_shared.settings import KafkaSettings
from ragops_shared.signing import ControlEventRefused, Verifier
from ragops_shared.watch import EventWatcher

log = structlog.get_logger(__name__)

REGISTRY_READERS = "ragops-registry-readers"
"""The ``consumer_group`` of a refused registry record's dead letter: every replica of every
service refuses it alike and publishes the same letter (one id), which the sink keeps once."""

CONTROL_EVENTS_REFUSED = Counter(
    "ragops_control_events_refused_total",
    "Control records (registry, changes) a reader refused to apply, by code (schema_validation, unsigned, unknown_key, "
    "bad_signature, signer_not_allowed, future_dated, location_refused; registry: conflicting_registration, "
    "prompt_hash_mismatch).",
    ["reader", "topic", "code"],
)


class ControlView:
    """Folds the control events of ``event_types`` with ``fold`` (True: the event changed the
    state), which is current once :meth:`start` returned (it waits until the topics were read
    to their end). ``on_change`` runs on the event loop for every event that changed it.
    Later events arrive within ``KafkaSettings.registry_fetch_max_wait_ms`` (500 ms) on the
    embedded broker, which answers a fetch only when its wait expires.

    A record that is not a valid event of its topic, that ``verifier`` refuses, or that
    ``refusal`` (the state's own rule: ``(code, reason)`` or None) refuses, is never folded: it
    is logged, counted (``ragops_control_events_refused_total``) and, with ``dead_letters``
    (the service's publisher), dead-lettered with the reason (``error_type``
    ``schema_validation``, ``unverified`` or, for ``refusal``'s, ``rejected``; ``consumer_group``
    ``readers``) from :meth:`send_dead_letters` on; the view goes on."""

    def __init__(
        self,
        kafka: KafkaSettings,
        client_id: str,
        event_types: Sequence[type[Event]],
        fold: Callable[[Event], bool],
        *,
        verifier: Verifier,
        readers: str,
        dead_letters: EventPublisher | None = None,
        on_change: Callable[[Event], None] | None = None,
        refusal: Callable[[Event], tuple[str, str] | None] = lambda _: None,
    ) -> None:
        self._fold = fold
        self._refusal = refusal
        self._readers = readers
        self.on_change = on_change
        self.verifier = verifier
        self._dead_letters = dead_letters
        self._max_message_bytes = kafka.max_message_bytes
        self._client_id = client_id
        # Refused records whose dead letters wait for send_dead_letters, and those being sent.
        self._refused: list[tuple[ConsumerRecord, DeadLetterErrorType, str]] = []
        self._sending = False
        self._letters: set[asyncio.Task[None]] = set()
        self._watcher = EventWatcher(
            kafka,
            event_types,
            client_id=client_id,
            from_beginning=True,
            fetch_max_wait_ms=kafka.registry_fetch_max_wait_ms,
            admit=self._admit,
        )
        self._watcher.listen(self._apply)

    def _admit(self, record: ConsumerRecord, event: Event | ValidationError) -> bool:
        if isinstance(event, ValidationError):
            self._refuse(record, "schema_validation", validation_reason(event), "schema_validation")
            return False
        try:
            self.verifier.check(event)
        except ControlEventRefused as refusal:
            self._refuse(record, refusal.code, str(refusal), "unverified")
            return False
        # Asked here, right before the fold, so it sees the state this record is folded into.
        if (refused := self._refusal(event)) is not None:
            code, reason = refused
            self._refuse(record, code, f"{code}: {reason}", "rejected")
            return False
        return True

    def _refuse(self, record: ConsumerRecord, code: str, reason: str, error_type: DeadLetterErrorType) -> None:
        CONTROL_EVENTS_REFUSED.labels(self._client_id, record.topic, code).inc()
        log.warning(
            "control_event_refused", topic=record.topic, partition=record.partition, offset=record.offset, reason=reason
        )
        if self._dead_letters is not None:
            self._refused.append((record, error_type, reason))
            if self._sending:
                self._send()

    async def send_dead_letters(self) -> None:
        """Publish the dead letters of the records refused so far, and of later ones as they
        are refused. Call it once the service's broker runs (FastStream's ``after_startup``):
        :meth:`start` reads the history before, when its publishers cannot publish yet."""
        self._sending = True
        self._send()

    def _send(self) -> None:
        publisher = self._dead_letters
        if publisher is None:  # a view without a publisher logs and counts only
            return
        for record, error_type, reason in self._refused:
            letter = dead_letter(
                publisher,
                record,
                error_type,
                reason,
                consumer_group=self._readers,
                max_bytes=self._max_message_bytes,
            )
            task = asyncio.get_running_loop().create_task(letter, name=f"{self._client_id}-dead-letter")
            self._letters.add(task)
            task.add_done_callback(self._letters.discard)
        self._refused.clear()

    def _apply(self, event: Event) -> None:
        if self._fold(event) and self.on_change is not None:
            self.on_change(event)

    async def start(self, timeout_s: float = 30.0) -> None:
        """Start reading. Raises ``TimeoutError`` if the history is not read in ``timeout_s``
        and ``LookupError`` if a topic does not exist."""
        await self._watcher.start()
        if not await self._watcher.caught_up(timeout_s):
            await self._watcher.stop()
            raise TimeoutError(f"{self._client_id}: the history was not read within {timeout_s:.0f} s")

    async def caught_up(self, timeout_s: float) -> bool:
        """True once every event published before this call has been folded in."""
        return await self._watcher.caught_up(timeout_s)

    async def stop(self) -> None:
        """Stop reading; dead letters still being published are finished (bounded retries)."""
        await self._watcher.stop()
        await asyncio.gather(*self._letters)


class RegistryView(ControlView):
    """The version registry (``registry``), as a :class:`ControlView` of the registry topics
    whose refused records are dead-lettered as :data:`REGISTRY_READERS`: those the verifier
    refuses, and registrations the registry refuses (:meth:`Registry.refusal`: a version
    registered again with another body or uri, ``conflicting_registration``; a prompt whose
    hash is not its text's, ``prompt_hash_mismatch``)."""

    def __init__(
        self,
        kafka: KafkaSettings,
        client_id: str,
        *,
        verifier: Verifier,
        dead_letters: EventPublisher | None = None,
        on_change: Callable[[Event], None] | None = None,
    ) -> None:
        self.registry = Registry()
        super().__init__(
            kafka,
            client_id,
            REGISTRY_EVENT_TYPES,
            self.registry.apply,
            verifier=verifier,
            readers=REGISTRY_READERS,
            dead_letters=dead_letters,
            on_change=on_change,
            refusal=self.registry.refusal,
        )


EXPERIMENT_READERS = "ragops-experiment-readers"
"""The ``consumer_group`` of a refused experiment record's dead letter (one per record, as
:data:`REGISTRY_READERS`)."""


class ExperimentView(ControlView):
    """The experiments (``book``: :class:`ragops_schemas.experiments.ExperimentBook`), as a
    :class:`ControlView` of the experiment topics: only events whose signature and owner
    check out (the gateway starts and stops, the monitor concludes) are folded in."""

    def __init__(
        self,
        kafka: KafkaSettings,
        client_id: str,
        *,
        verifier: Verifier,
        dead_letters: EventPublisher | None = None,
        on_change: Callable[[Event], None] | None = None,
    ) -> None:
        self.book = ExperimentBook()
        super().__init__(
            kafka,
            client_id,
            EXPERIMENT_EVENT_TYPES,
            self.book.apply,
            verifier=verifier,
            readers=EXPERIMENT_READERS,
            dead_letters=dead_letters,
            on_change=on_change,
        )

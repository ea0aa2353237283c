"""What every trainer action works with: the request's context (settings, publisher,
registry, ClickHouse), the topics it reads back, and the wait for documents to be indexed."""

import asyncio
from collections.abc import Sequence
from dataclasses import dataclass, field

from ragops_analytics.store import Reader
from ragops_models.defaults import shipped_model_dirs
from ragops_schemas import (
    DocumentIndexed,
    DocumentRejected,
    Event,
    Producer,
    RetrainingRequested,
    TrainingStarted,
    VersionPromoted,
)
from ragops_schemas.changes import ChangeActor, ChangeRequested, PromoteChange
from ragops_schemas.ids import change_id, derived_event_id
from ragops_schemas.registry import Registry, VersionState
from ragops_shared.broker import EventPublisher
from ragops_shared.settings import KafkaSettings
from ragops_shared.signing import Verifier, verifier_for
from ragops_shared.watch import EventWatcher
from ragops_trainer.settings import TrainerSettings
from ragops_trainer.spec import SPEC

SERVICE = SPEC.name


def promotion_request(promotion: VersionPromoted, producer: Producer, platform_tenant: str) -> ChangeRequested:
    """The four-eyes request of ``promotion`` (``RAGOPS_TRAINER_PROMOTION=approval``): the same
    effect, asked for by the trainer in ``platform_tenant`` (the only one whose people decide
    changes: a promotion moves every tenant); its ids derive from the promotion's (itself
    derived from the retraining request), so a redelivered request asks for the same change. It
    does not expire: a person decides it."""
    event_id = derived_event_id(ChangeRequested.__name__, promotion.event_id)
    return ChangeRequested(
        event_id=event_id,
        producer=producer,
        trace_id=promotion.trace_id,
        tenant=platform_tenant,
        change_id=change_id(event_id),
        change=PromoteChange(
            version=promotion.ref,
            alias=promotion.alias,
            uri=promotion.uri,
            previous_version=promotion.previous_version,
            request_event_id=promotion.request_event_id,
            metrics=promotion.metrics,
        ),
        requested_by=ChangeActor(subject=f"service:{producer.name}", name=producer.name, kind="service"),
        reason=promotion.reason,
    )


class ActionRejected(Exception):
    """The request cannot be acted on (unknown version, too little data...): its reason."""


async def read_topics(
    kafka: KafkaSettings, types: Sequence[type[Event]], client_id: str, timeout_s: float = 120.0
) -> list[Event]:
    """Every retained event of ``types``' topics. Raises ``TimeoutError`` if they are not
    read within ``timeout_s``."""
    events: list[Event] = []
    watcher = EventWatcher(kafka, types, client_id=client_id, from_beginning=True)
    watcher.listen(events.append)
    await watcher.start()
    try:
        if not await watcher.caught_up(timeout_s):
            raise TimeoutError(f"retained {', '.join(t.__name__ for t in types)} not read within {timeout_s:.0f} s")
    finally:
        await watcher.stop()
    return events


@dataclass
class TrainerContext:
    """The trainer's connections, shared by the actions (one request at a time).

    ``analytics`` is None when no ClickHouse is configured (``RAGOPS_ANALYTICS_*``);
    ``verifier`` checks the signed events the actions read back (erasures: the replays skip
    the erased subjects' documents)."""

    settings: TrainerSettings
    publisher: EventPublisher
    registry: Registry
    analytics: Reader | None
    producer: Producer = field(init=False)
    verifier: Verifier = field(init=False)

    def __post_init__(self) -> None:
        self.producer = self.publisher.producer
        self.verifier = verifier_for(self.settings.platform, shipped_model_dirs())

    async def publish(self, event: Event) -> None:
        """Publish ``event``; under ``promotion=approval`` a production promotion is requested
        instead (:func:`promotion_request`) and moves nothing until a person approves it."""
        if isinstance(event, VersionPromoted) and event.alias == "production" and self.settings.promotion == "approval":
            await self.publisher.publish(promotion_request(event, self.producer, self.settings.platform.tenant))
            return
        await self.publisher.publish(event)
        self.registry.apply(event)  # our own registry events count at once, not when read back

    async def started(self, request: RetrainingRequested, **inputs: object) -> None:
        await self.publish(
            request.caused(
                TrainingStarted,
                self.producer,
                request_event_id=str(request.event_id),
                action=request.action,
                inputs={key: str(value) for key, value in inputs.items()},
            )
        )

    async def read(self, types: Sequence[type[Event]], purpose: str) -> list[Event]:
        """Every retained event of ``types`` (client id ``ragops-trainer-<purpose>``)."""
        return await read_topics(self.settings.kafka, types, f"ragops-{SERVICE}-{purpose}")

    def live_model(self) -> VersionState:
        """The production embedding model, else the one the embedding service registered
        first. Raises :class:`ActionRejected` when the registry knows none."""
        name = self.settings.embedding_model_name
        state = self.registry.alias("embedding_model", name)
        if state is None:
            state = next(
                (
                    s
                    for s in self.registry.versions("embedding_model", name)
                    if s.registered and s.registered.parent_version is None
                ),
                None,
            )
        if state is None or not state.uri:
            raise ActionRejected(f"no registered version of embedding model {name!r}")
        return state


class Arrivals:
    """Waits for one outcome event per (tenant, document id) (``DocumentIndexed`` of a build,
    or of live traffic, or ``DocumentRejected``), watching from before the requests are published."""

    def __init__(self, kafka: KafkaSettings, build_id: str | None) -> None:
        self.build_id = build_id
        self.done: dict[tuple[str, str], Event] = {}
        self._changed = asyncio.Event()
        self._watcher = EventWatcher(kafka, [DocumentIndexed, DocumentRejected], client_id=f"ragops-{SERVICE}-arrivals")
        self._watcher.listen(self._seen)

    def _seen(self, event: Event) -> None:
        if isinstance(event, DocumentIndexed):
            build = event.index_build.build_id if event.index_build else None
            if build != self.build_id:
                return
        elif not isinstance(event, DocumentRejected):
            return
        self.done[event.tenant, event.document_id] = event
        self._changed.set()

    async def __aenter__(self) -> "Arrivals":
        await self._watcher.start()
        return self

    async def __aexit__(self, *_: object) -> None:
        await self._watcher.stop()

    async def wait(self, document_ids: set[tuple[str, str]], timeout_s: float) -> None:
        """Raises ``TimeoutError`` naming how many documents did not arrive in time."""
        async with asyncio.timeout(timeout_s):
            while not document_ids <= self.done.keys():
                self._changed.clear()
                await self._changed.wait()

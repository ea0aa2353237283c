"""Erasure of a data subject, the privacy service's part: it forgets the subject's sealing key
(crypto-shredding: the subject's values in the topics kept forever read as erased) and it
coordinates, collecting the stores' reports and publishing the proof.

Flow (``ragops_schemas.erasure``): ``ErasureRequested`` -> each store (the sink's ClickHouse
tables, the indexer's collections, the key store here) deletes, verifies by counting and
publishes ``SubjectErasureApplied`` -> once every store of :attr:`ErasureSettings.stores` has
reported on one request, :func:`conclude` publishes ``SubjectErased`` with the counts per
store, summed over every attempt of the erasure, and ``complete`` only if each store's report
on that request verified that nothing is left.

- A request sent again (same erasure id, new event) is applied again by every store, and
  concludes again: the store that failed finishes the job and the new ``SubjectErased`` says so.
- An unknown subject: every store deletes nothing and finds nothing left: complete, zero counts.
- A malformed request (not a valid ``ErasureRequested``) is dead-lettered by the subscriber
  with the validation error; an unsigned or forged one is dead-lettered as rejected with the
  signature check's reason. Neither is applied.
- The key store unavailable: the keys report says so (``complete=False`` and the reason), the
  erasure concludes as not complete, and sending the request again finishes it.
- A store that never reports: no ``SubjectErased``; :meth:`ErasureLedger.missing` names it.

Handlers are thin; :func:`forget_subject`, :func:`summarize` and :func:`conclude` are plain
functions. :func:`register` subscribes them on the privacy service's broker.
"""

import asyncio
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass

from faststream.kafka import KafkaBroker
from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

from ragops_privacy.spec import COORDINATOR_GROUP, KEYS_GROUP
from ragops_schemas import Event, Producer
from ragops_schemas.erasure import ErasureRequested, StoreErasure, SubjectErased, SubjectErasureApplied
from ragops_schemas.ids import subject_key_id
from ragops_shared.broker import EventPublisher, EventSubscriber, require_verified
from ragops_shared.settings import KafkaSettings
from ragops_shared.shredding import KeyStoreUnavailable, Shredder
from ragops_shared.signing import Verifier
from ragops_shared.watch import EventWatcher

KEYS_STORE = "keys"
"""This service's store: the subject key store."""
KEYS_TABLE = "subject_keys"
STORES = ("clickhouse", "vectors", KEYS_STORE)
"""The stores an erasure waits for by default: the sink, the indexer, the key store."""
INPUTS: tuple[type[Event], ...] = (ErasureRequested, SubjectErasureApplied)
OUTPUTS: tuple[type[Event], ...] = (SubjectErasureApplied, SubjectErased)


class ErasureSettings(BaseSettings):
    """Env prefix ``RAGOPS_PRIVACY_ERASURE_``."""

    model_config = SettingsConfigDict(env_prefix="RAGOPS_PRIVACY_ERASURE_", extra="ignore")

    stores: tuple[str, ...] = Field(
        default=STORES,
        min_length=1,
        description="Stores whose reports an erasure waits for before it concludes (JSON list).",
    )
    replay_wait_s: float = Field(
        default=60.0, gt=0, description="How long a report waits for the earlier reports to be read (s)."
    )
    batch_records: int = Field(default=32, gt=0)


def forget_subject(request: ErasureRequested, shredder: Shredder, producer: Producer) -> SubjectErasureApplied:
    """Delete the subject's key and check it is gone: the keys store's report (blocking file
    or KMS calls: run it in a thread). An unavailable store gives a report that is not complete,
    with the reason, never an exception: the erasure concludes, as not complete."""
    try:
        deleted = shredder.forget(request.tenant, request.subject)
        left = shredder.store.get(subject_key_id(request.tenant, request.subject)) is not None
    except KeyStoreUnavailable as error:
        return request.applied(producer, KEYS_STORE, deleted={}, remaining={}, complete=False, reason=str(error))
    return request.applied(
        producer,
        KEYS_STORE,
        deleted={KEYS_TABLE: int(deleted)},
        remaining={KEYS_TABLE: int(left)},
        complete=not left,
        reason="the key is still there after deleting it" if left else "",
    )


def summarize(reports: Sequence[SubjectErasureApplied], request_event_id: str) -> dict[str, StoreErasure]:
    """Per store, over every report of one erasure: the deleted counts summed (each attempt
    deleted what the earlier ones left); what is left, whether it is complete and why not, as
    its report on the request ``request_event_id`` says (the attempt that concludes: its
    check is the newest), else as its latest report (by ``occurred_at``, then event id)."""
    by_store: dict[str, list[SubjectErasureApplied]] = defaultdict(list)
    for report in reports:
        by_store[report.store].append(report)
    summary = {}
    for store, its in sorted(by_store.items()):
        deleted: dict[str, int] = defaultdict(int)
        for report in its:
            for where, count in report.deleted.items():
                deleted[where] += count
        last = max(
            its,
            key=lambda report: (report.request_event_id == request_event_id, report.occurred_at, str(report.event_id)),
        )
        summary[store] = StoreErasure(
            deleted=dict(deleted), remaining=dict(last.remaining), complete=last.complete, reason=last.reason
        )
    return summary


@dataclass
class ErasureLedger:
    """Every store report read, by erasure id and event id (a report read twice counts once)."""

    stores: tuple[str, ...]

    def __post_init__(self) -> None:
        self._reports: dict[str, dict[str, SubjectErasureApplied]] = defaultdict(dict)

    def add(self, event: Event) -> None:
        if isinstance(event, SubjectErasureApplied):
            self._reports[event.erasure_id][str(event.event_id)] = event

    def reports(self, erasure_id: str) -> list[SubjectErasureApplied]:
        return list(self._reports.get(erasure_id, {}).values())

    def missing(self, erasure_id: str, request_event_id: str) -> list[str]:
        """The stores that have not reported on the request ``request_event_id`` yet."""
        reported = {r.store for r in self.reports(erasure_id) if r.request_event_id == request_event_id}
        return [store for store in self.stores if store not in reported]


def conclude(
    ledger: ErasureLedger, reports: Sequence[SubjectErasureApplied], producer: Producer
) -> list[SubjectErased]:
    """Add ``reports`` to the ledger and return a ``SubjectErased`` for each request they
    belong to on which every store has now reported (none while a store is missing). Its
    event id derives from the last report (by event id) of the request, so concluding the same
    reports again (a redelivery, a restart) yields the same id."""
    for report in reports:
        ledger.add(report)
    concluded = []
    for erasure_id, request_event_id in dict.fromkeys((r.erasure_id, r.request_event_id) for r in reports):
        if ledger.missing(erasure_id, request_event_id):
            continue
        everything = ledger.reports(erasure_id)
        this_request = [r for r in everything if r.request_event_id == request_event_id]
        last = max(this_request, key=lambda report: str(report.event_id))
        stores = summarize(everything, request_event_id)
        concluded.append(
            last.caused(
                SubjectErased,
                producer,
                scope=request_event_id,
                erasure_id=erasure_id,
                stores=stores,
                complete=all(stores[store].complete for store in ledger.stores),
            )
        )
    return concluded


@dataclass
class ErasureCoordinator:
    """What :func:`register` set up; start and stop it with the service."""

    ledger: ErasureLedger
    watcher: EventWatcher

    async def start(self) -> None:
        await self.watcher.start()

    async def stop(self) -> None:
        await self.watcher.stop()


def register(
    broker: KafkaBroker,
    publisher: EventPublisher,
    settings: ErasureSettings,
    *,
    kafka: KafkaSettings,
    verifier: Verifier,
    shredder: Shredder,
) -> ErasureCoordinator:
    """Subscribe the erasure handlers on ``broker``: the keys store (group :data:`KEYS_GROUP`,
    reads ``ErasureRequested``) and the coordinator (group :data:`COORDINATOR_GROUP`, reads
    ``SubjectErasureApplied``, with a watcher that reads every report from the topic's start).
    ``publisher`` must declare :data:`OUTPUTS`. Call :meth:`ErasureCoordinator.start` on the
    app's startup and :meth:`ErasureCoordinator.stop` after its shutdown."""
    producer = publisher.producer
    ledger = ErasureLedger(settings.stores)
    watcher = EventWatcher(kafka, [SubjectErasureApplied], client_id="ragops-privacy-erasures", from_beginning=True)
    watcher.listen(ledger.add)
    requests = EventSubscriber(
        broker, publisher, ErasureRequested, kafka=kafka, group_id=KEYS_GROUP, max_records=settings.batch_records
    )
    reports = EventSubscriber(
        broker,
        publisher,
        SubjectErasureApplied,
        kafka=kafka,
        group_id=COORDINATOR_GROUP,
        max_records=settings.batch_records,
    )

    async def forget(events: Sequence[ErasureRequested]) -> list[Event]:
        outputs: list[Event] = []
        for request in events:
            require_verified(verifier, request)
            outputs.append(await asyncio.to_thread(forget_subject, request, shredder, producer))
        return outputs

    async def collect(events: Sequence[SubjectErasureApplied]) -> list[Event]:
        # The reports published before these were read first: an attempt whose other stores
        # reported before a restart concludes too.
        if not await watcher.caught_up(settings.replay_wait_s):
            raise TimeoutError(
                f"the erasure reports were not read from the topic's start in {settings.replay_wait_s} s"
            )
        return list(conclude(ledger, events, producer))

    @requests
    async def on_erasure_requested(events: list[ErasureRequested]) -> None:
        await requests.run(events, forget)

    @reports
    async def on_erasure_applied(events: list[SubjectErasureApplied]) -> None:
        await reports.run(events, collect)

    return ErasureCoordinator(ledger, watcher)

"""The sink: consumes every platform topic (the dead-letter topic included) and writes every
record to ClickHouse's ``events`` table in batches; materialized views fan them out into the
typed tables analysts query (see the README's Analytics section). A second subscriber, in its
own consumer group, appends the audited events to the hash-chained ``audit_log``
(:mod:`ragops_sink.audit`); a third erases a data subject's rows for each ``ErasureRequested``
and reports (:mod:`ragops_sink.erasure`).

- Batches are bounded by size (``batch_records``) and time (``batch_wait_ms``).
- Offsets are committed only after the batch is written. While ClickHouse is unavailable the
  sink retries with exponential backoff and consumes nothing more; nothing is lost.
- Idempotent: ``events`` and the typed tables are ReplacingMergeTree keyed on the event id, so
  replaying topics from the beginning leaves the same rows.
- A record that is not a valid event of its topic (its type's schema, envelope included), or
  whose values ClickHouse refuses, is stored as ``unparsable`` with the error, keyed on its
  (topic, partition, offset): it never replaces a valid event's row nor stops the sink.

Embedded mode (chDB, which one process owns) also serves read-only SQL at ``POST /sql`` on
the service's HTTP port, so ``ragops sql`` can query while the platform runs; only callers with
the ``analyst``, ``auditor`` or ``platform`` role, and ``audit_log`` for auditors and platform
services only."""

import asyncio
import json
import re
import threading
from collections.abc import Awaitable, Callable, Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

import pyarrow as pa
import structlog
from aiokafka import ConsumerRecord
from faststream import AckPolicy
from faststream.asgi import AsgiFastStream, AsgiResponse, Request, post
from faststream.kafka.annotations import KafkaMessage

from ragops_analytics import queries
from ragops_analytics.guard import ReadOnlyViolation
from ragops_analytics.store import AnalyticsStore, DataRejected, StoreUnavailable, open_store, public_error
from ragops_schemas import Event, utc_now
from ragops_schemas.erasure import ErasureRequested, SubjectErasureApplied
from ragops_schemas.ids import new_trace_id
from ragops_schemas.topics import TOPICS
from ragops_shared.access import principal_of
from ragops_shared.broker import EventPublisher, EventSubscriber, make_broker, parse_readable, require_verified
from ragops_shared.identity import Principal, Role
from ragops_shared.logs import without_literals
from ragops_shared.service import producer_for, run_service, service_app
from ragops_shared.signing import Verifier, verifier_for
from ragops_sink.audit import AUDITED_TOPICS, audit_entries, signed_price_lists, store_audited
from ragops_sink.erasure import erase_subject
from ragops_sink.rows import EventRow, events_to_arrow, rejected, to_row
from ragops_sink.schema import migrate, pending_migrations, set_prices, set_retention
from ragops_sink.settings import SinkSettings
from ragops_sink.spec import AUDIT_GROUP, ERASURE_GROUP, EVENTS_GROUP, SPEC

SERVICE = SPEC.name
log = structlog.get_logger(__name__)


class Writer:
    """Writes batches of records; ``open()`` opens the store and applies migrations (or,
    with ``migrations="require"``, waits until a migration Job has applied them)."""

    def __init__(self, settings: SinkSettings) -> None:
        self.settings = settings
        self._store: AnalyticsStore | None = None
        self._closing = threading.Event()

    @property
    def store(self) -> AnalyticsStore:
        if self._store is None:
            raise RuntimeError("Writer.open() must run first")
        return self._store

    def connect(self) -> AnalyticsStore:
        return open_store(url=self.settings.clickhouse_url, path=self.settings.platform.data_dir / "clickhouse")

    def open(self) -> None:
        """Open the store and bring its schema up to date; blocks (in the warm-up thread)
        while migrations are required and pending.

        Raises:
            StoreUnavailable: ClickHouse did not answer.
            RuntimeError: :meth:`close` was called while waiting for migrations.
        """
        store = self.connect()
        applied = migrate(store) if self.settings.migrations == "apply" else []
        while pending := pending_migrations(store):
            log.warning(
                "clickhouse_migrations_pending", pending=[m.name for m in pending],
                retry_in_s=self.settings.migrations_poll_s,
            )  # fmt: skip
            if self._closing.wait(self.settings.migrations_poll_s):
                store.close()
                raise RuntimeError("the sink stopped while waiting for the migration Job")
        retention_changed = set_retention(store, self.settings.retention_days)
        set_prices(store, self.settings.prices_usd_per_million)
        log.info("clickhouse_ready", migrations_applied=applied, retention_changed=retention_changed)
        self._store = store

    def close(self) -> None:
        self._closing.set()
        if self._store is not None:
            self._store.close()
            self._store = None

    async def write(self, records: Sequence[ConsumerRecord]) -> None:
        """Store the records: each valid event as its row, anything else as an ``unparsable`` row.

        Never returns without having written: the caller commits offsets only afterwards.
        While ClickHouse is unavailable it waits with exponential backoff; a batch that
        ClickHouse refuses for its data (:class:`DataRejected`) is halved until the refused
        records are found, and each of those is stored as ``unparsable`` with the engine's
        error, so one record can neither stop the sink nor take valid ones with it. A
        shutdown cancels the wait, and the uncommitted batch is read again at next start.
        """
        received_at = datetime.now(UTC)
        # Parsing thousands of records is CPU work: off the event loop, like the insert.
        rows = await asyncio.to_thread(lambda: [to_row(record, received_at) for record in records])
        pending = [rows]
        while pending:
            part = pending.pop()
            try:
                await self._insert(part)
            except (DataRejected, pa.ArrowException) as error:
                if len(part) > 1:
                    middle = len(part) // 2
                    pending += [part[middle:], part[:middle]]  # the first half is inserted first
                    continue
                [row] = part
                log.warning(
                    "clickhouse_rejected_record", topic=row.topic, partition=row.partition, offset=row.offset,
                    error=without_literals(str(error)),
                )  # fmt: skip
                # A refusal of this row too would not be about the record: wait it out.
                await self._insert([rejected(row, f"{type(error).__name__}: {error}")], refusal_is_outage=True)

    async def _insert(self, rows: Sequence[EventRow], *, refusal_is_outage: bool = False) -> None:
        """Insert ``rows`` as one batch, waiting out outages (and refusals too, when
        ``refusal_is_outage``) with exponential backoff.

        Raises:
            DataRejected, pyarrow.ArrowException: the rows cannot be stored as they are.
        """
        await self.until_stored(
            lambda: queries.insert_events(self.store, events_to_arrow(rows)), len(rows), refusal_is_outage
        )

    async def until_stored(self, write: Callable[[], object], rows: int, refusal_is_outage: bool) -> None:
        """Run ``write`` in a worker thread until it returns, waiting out outages (and
        refusals too, when ``refusal_is_outage``) with exponential backoff; ``rows`` is for the log.

        Raises:
            DataRejected: ClickHouse refused the data (unless ``refusal_is_outage``).
        """
        delay = self.settings.retry_initial_s
        while True:
            try:
                await asyncio.to_thread(write)
                return
            except StoreUnavailable as error:
                unavailable: Exception = error
            except DataRejected as error:
                if not refusal_is_outage:
                    raise
                unavailable = error
            log.warning("clickhouse_unavailable_retrying", rows=rows, retry_in_s=delay, error=str(unavailable))
            await asyncio.sleep(delay)
            delay = min(delay * 2, self.settings.retry_max_s)

    async def audit(self, records: Sequence[ConsumerRecord], verifier: Verifier) -> None:
        """Append the audit entries of ``records`` to the audit log (see :mod:`ragops_sink.audit`),
        the signatures of signed events checked with ``verifier``.

        Never returns without having appended them: a refusal is waited out like an outage,
        since an audit entry left out would leave a hole no one could see (entries are bounded
        by their schema, so ClickHouse has no reason to refuse one). A redelivered batch
        appends only what is not there yet."""
        entries = await asyncio.to_thread(audit_entries, records, verifier)
        price_lists = await asyncio.to_thread(signed_price_lists, records, verifier)
        if entries:  # every signed price list has an entry
            await self.until_stored(
                lambda: store_audited(self.store, entries, price_lists, utc_now()), len(entries), True
            )


async def _undecoded(message: KafkaMessage) -> tuple[ConsumerRecord, ...]:
    return message.raw_message


def create_app(settings: SinkSettings | None = None, writer: Writer | None = None) -> AsgiFastStream:
    settings = settings or SinkSettings()
    broker = make_broker(settings.kafka, f"ragops-{SERVICE}")
    writer = writer or Writer(settings)
    # The trust list every registry reader checks: the audit log says which events it verifies.
    verifier = verifier_for(settings.platform)

    def batches(
        *topics: str, group: str, title: str, description: str
    ) -> Callable[[Callable[[KafkaMessage], Awaitable[None]]], object]:
        """A subscriber to raw record batches of ``topics`` in consumer group ``group``."""
        return broker.subscriber(
            *topics,
            batch=True,
            group_id=group,
            max_records=settings.batch_records,
            # Latency does not matter here, broker CPU does: long fetch waits keep the embedded
            # broker from answering 45 partitions every 25 ms.
            batch_timeout_ms=settings.batch_wait_ms,
            fetch_max_wait_ms=settings.batch_wait_ms,
            max_partition_fetch_bytes=settings.kafka.max_message_bytes,
            auto_offset_reset="earliest",
            session_timeout_ms=settings.kafka.session_timeout_ms,
            heartbeat_interval_ms=settings.kafka.heartbeat_interval_ms,
            ack_policy=AckPolicy.NACK_ON_ERROR,
            title=title,
            description=description,
            # A header value that is not UTF-8 must not drop the fetched batch (headers are not stored).
            parser=parse_readable,
            # FastStream's own batch decoder builds a message object (with a uuid4) and decodes
            # the JSON of every record: half the sink's time per event (make bench, P4), for
            # bodies these handlers never read.
            decoder=_undecoded,
        )

    @batches(
        *(spec.topic for spec in TOPICS if spec.sink),
        group=settings.group_id,
        title=f"all-topics:{EVENTS_GROUP}",
        description="Every record of every platform topic, stored raw.",
    )
    async def on_records(message: KafkaMessage) -> None:
        # The raw records, undecoded: the sink stores bytes as they are, valid or not.
        await writer.write(message.raw_message)

    # Its own group: the audit log keeps its own pace (and positions) beside the raw events.
    @batches(
        *AUDITED_TOPICS,
        group=settings.audit_group_id,
        title=AUDIT_GROUP,
        description="Refusals, admin actions, answers, registry events and retraining requests: the audit log.",
    )
    async def on_audited(message: KafkaMessage) -> None:
        await writer.audit(message.raw_message, verifier)

    publisher = EventPublisher(broker, producer_for(SERVICE), [SubjectErasureApplied])
    erasures = EventSubscriber(
        broker, publisher, ErasureRequested, kafka=settings.kafka, group_id=ERASURE_GROUP, max_records=8
    )

    async def erase(requests: Sequence[ErasureRequested]) -> list[Event]:
        reports: list[Event] = []
        for request in requests:
            require_verified(verifier, request)
            reports.append(await asyncio.to_thread(erase_subject, writer.store, request, publisher.producer))
        return reports

    @erasures
    async def on_erasure_requested(requests: list[ErasureRequested]) -> None:
        await erasures.run(requests, erase)

    # The route's description in the AsyncAPI document (one line there).
    @post(
        description=(
            'Read-only SQL: ``{"sql": "SELECT ...", "parameters": {...}}`` (optional values of its '
            '``{name:Type}`` placeholders) -> ``{"columns": [...], "rows": [[...]]}``; 400 on refusal. '
            "A tenant's caller reads its tenant's rows only; a platform caller every row, or those "
            'of ``"tenant"``; ``audit_log`` is for auditors and platform callers. 422: the engine refused it '
            '(``{"error": <its error name and first line>, "trace_id": ...}``, the full error in the log).'
        )
    )
    async def sql(scope: Any, request: Request) -> AsgiResponse:
        # Who asks (the service's guard admitted them) decides whose rows the statement reads.
        principal = principal_of(scope)
        log.debug("analyst_sql", subject=principal.subject, tenant=principal.tenant)
        try:
            body = await request.json()
            statement, parameters = body["sql"], body.get("parameters") or {}
            if not isinstance(parameters, dict):
                raise TypeError("parameters must be an object of placeholder values")
            result = await asyncio.to_thread(
                writer.store.query,
                statement,
                parameters,
                tenant=_reader_tenant(principal, body),
                audit=_reads_audit_log(principal),
            )
        except (ReadOnlyViolation, KeyError, TypeError, ValueError) as error:
            return AsgiResponse(
                json.dumps({"error": str(error)}).encode(), 400, headers={"content-type": "application/json"}
            )
        except Exception as error:  # noqa: BLE001 - ClickHouse's own error, e.g. unknown table, goes back to the analyst
            # Its full text can hold the statement as rewritten, paths and addresses: the
            # caller gets its gist, the log the rest, found by the trace id, with the
            # statement's literals (a user id, a question) masked.
            trace_id = _trace_id(request.headers.get("traceparent"))
            log.warning(
                "analyst_sql_failed", trace_id=trace_id, subject=principal.subject, error=without_literals(str(error))
            )
            refused = {"error": public_error(str(error)), "trace_id": trace_id}
            return AsgiResponse(json.dumps(refused).encode(), 422, headers={"content-type": "application/json"})
        body = json.dumps({"columns": result.columns, "rows": result.rows}, default=str)
        return AsgiResponse(body.encode(), 200, headers={"content-type": "application/json"})

    return service_app(
        SERVICE,
        __doc__ or "",
        broker,
        platform=settings.platform,
        warm_up=[writer.open],
        close=[writer.close],
        routes=[("/sql", sql, (Role.ANALYST, Role.AUDITOR, Role.PLATFORM))],
    )


def _reader_tenant(principal: Principal, body: Mapping[str, Any]) -> str | None:
    """Whose rows a ``/sql`` caller sees: a tenant's caller its own tenant's, whatever it asks; a
    platform service (:attr:`Role.PLATFORM`) every row, or the tenant it names in ``"tenant"``
    (acting for a tenant's caller)."""
    if Role.PLATFORM not in principal.roles:
        return principal.tenant
    asked = body.get("tenant")
    if asked is not None and not isinstance(asked, str):
        raise TypeError("tenant must be a string")
    return asked


def _reads_audit_log(principal: Principal) -> bool:
    """Whether a ``/sql`` caller may read ``audit_log``: auditors (of their tenant's rows) and
    platform services; an analyst may not."""
    return principal.allowed(frozenset({Role.AUDITOR, Role.PLATFORM}))


_TRACEPARENT = re.compile(r"[0-9a-f]{2}-([0-9a-f]{32})-[0-9a-f]{16}-[0-9a-f]{2}")


def _trace_id(traceparent: str | None) -> str:
    """The trace id of the W3C ``traceparent`` a caller sent (the gateway sends its request's),
    else a new one."""
    match = _TRACEPARENT.fullmatch(traceparent or "")
    return match.group(1) if match else new_trace_id()


def main() -> None:
    run_service(SERVICE, SinkSettings, create_app)

"""What the live index holds, as the indexer announced it: the latest ``DocumentIndexed`` of
each document unless a ``DocumentRemoved`` (a deletion carried out) came after it, read from
the start of both topics (no consumer group: every replica needs every event), like
:mod:`ragops_shared.registry_view` for the registry.

Ingestion asks it whether a submitted version is already indexed (then the submission is a
no-op); the embedding service asks it which chunks of a changed document already have a
point for the production model (then only the others are embedded). The indexer stays the
authority for reused chunks: it checks that their points still exist before it relies on
them. An unchanged acknowledgement trusts the topic: an index whose files were removed behind
the platform's back is rebuilt by a re-index, not by submitting the documents again."""

from datetime import datetime

import structlog

from ragops_schemas import DocumentIndexed, DocumentRemoved, Event
from ragops_shared.settings import KafkaSettings
from ragops_shared.watch import EventWatcher

log = structlog.get_logger(__name__)


class IndexedDocuments:
    """``get(tenant, document_id)`` is the latest live ``DocumentIndexed`` of a tenant's
    document (``None`` when none was read; a document id is unique per tenant, so another
    tenant's document of the same id is another document); events of index builds (``index_build`` set) are not the live
    index and are ignored. Current up to what was published before :meth:`start` returned;
    later events arrive within ``KafkaSettings.fetch_max_wait_ms``. A document removed (deleted)
    after its latest indexing is not indexed: its re-submission is indexed again.

    The two topics share no offsets: an indexing and a removal of one document are ordered by
    ``occurred_at`` (both stamped by the indexer, one after the other), whichever is read first.

    Memory: one event per document (its chunk ids included, ~40 bytes per chunk), and one time
    per removed document."""

    def __init__(self, kafka: KafkaSettings, client_id: str) -> None:
        self._latest: dict[tuple[str, str], DocumentIndexed] = {}
        self._removed: dict[tuple[str, str], datetime] = {}
        self._watcher = EventWatcher(
            kafka, [DocumentIndexed, DocumentRemoved], client_id=client_id, from_beginning=True
        )
        self._watcher.listen(self.apply)

    def apply(self, event: Event) -> None:
        """Fold one event in (the watcher calls this; tests may too)."""
        if isinstance(event, DocumentIndexed) and event.index_build is None:
            key = (event.tenant, event.document_id)
            removed = self._removed.get(key)
            # One topic, one key: read in offset order, so the last read is the latest.
            if removed is None or removed < event.occurred_at:
                self._latest[key] = event
        elif isinstance(event, DocumentRemoved):
            key = (event.tenant, event.document_id)
            self._removed[key] = max(event.occurred_at, self._removed.get(key, event.occurred_at))
            indexed = self._latest.get(key)
            if indexed is not None and indexed.occurred_at <= event.occurred_at:
                del self._latest[key]

    def get(self, tenant: str, document_id: str) -> DocumentIndexed | None:
        return self._latest.get((tenant, document_id))

    async def start(self, timeout_s: float = 60.0) -> None:
        """Start reading and wait up to ``timeout_s`` for the topic's history to be read;
        a longer history goes on being read in the background (meanwhile a re-submission is
        processed in full: slower, never wrong). Raises ``LookupError`` if the topic does not
        exist."""
        await self._watcher.start()
        if not await self._watcher.caught_up(timeout_s):
            log.warning("indexed_documents_still_reading", waited_s=timeout_s, documents=len(self._latest))

    async def stop(self) -> None:
        await self._watcher.stop()

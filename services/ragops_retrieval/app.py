"""The indexer/retrieval service: owns the vector collections.

Indexer (group ``ragops-indexer``): ``ChunksEmbedded`` -> upsert the chunk vectors, relabel
the reused chunks (already indexed for an earlier version); once every part of a document
version is in, delete the chunks of its older versions -> ``DocumentIndexed`` (with the
version's chunk ids). A part it dead-letters ends its version with ``DocumentRejected``.
Withdrawals (group ``ragops-indexer-withdrawals``): ``DocumentRejected`` of a version whose
part was dead-lettered -> its points written by the other parts are deleted, so an
incomplete version is never served for good.
Deletions (group ``ragops-indexer-deletions``): ``DocumentDeleted`` -> the tenant's document
removed from every collection of the corpus (live indexes, builds in progress, earlier
builds) -> ``DocumentRemoved`` with the points removed per collection.
Erasures (group ``ragops-indexer-erasure``): ``ErasureRequested`` -> the points of the
subject's documents are deleted from every collection -> ``SubjectErasureApplied``
(:mod:`ragops_retrieval.erasure`).
Retrieval (group ``ragops-retrieval``): ``QueryEmbedded`` -> hybrid search (dense + BM25,
fused by Reciprocal Rank Fusion) -> ``ContextRetrieved``.

One collection per (corpus, embedding model version): a query is searched in the
collection of the model that embedded it, so vectors of two models never mix. Tenants share
the collections: every point carries its event's ``tenant``, a query finds only its own
tenant's chunks, and a document id is unique per tenant (indexing, superseding and
withdrawing one tenant's document never touch another's of the same id). A re-index
builds a new collection beside the live one (replayed events carry ``index_build``); the
registry's ``production`` alias of the index then switches searches to it in one step. Qdrant Edge
runs in-process by default (one process owns its files); ``RAGOPS_RETRIEVAL_QDRANT_URL``
switches to a Qdrant server."""

import asyncio
import threading
from collections.abc import Sequence

import structlog
from faststream.asgi import AsgiFastStream

from ragops_models.defaults import shipped_model_dirs
from ragops_retrieval.erasure import erase_subject
from ragops_retrieval.settings import RetrievalSettings
from ragops_retrieval.spec import (
    DELETIONS_GROUP,
    ERASURE_GROUP,
    INDEXER_GROUP,
    QUERIES_GROUP,
    SPEC,
    WITHDRAWALS_GROUP,
)
from ragops_retrieval.store import SUBJECT_FIELD, ChunkPoint, VectorStore
from ragops_schemas import (
    Chunk,
    ChunksEmbedded,
    ContextRetrieved,
    DocumentDeleted,
    DocumentIndexed,
    DocumentRejected,
    DocumentRemoved,
    EmbeddingModelInfo,
    ErasureRequested,
    Event,
    IndexBuild,
    Producer,
    QueryEmbedded,
    RetrievalInfo,
    RetrievedChunk,
    SubjectErasureApplied,
)
from ragops_schemas.ids import index_name, indexed_version_event_id
from ragops_schemas.registry import Registry
from ragops_shared.broker import EventPublisher, EventRejected, EventSubscriber, make_broker, require_verified
from ragops_shared.parts import refused_version
from ragops_shared.registry_view import RegistryView
from ragops_shared.service import producer_for, run_service, service_app
from ragops_shared.signing import verifier_for
from ragops_shared.text import contextual_text

SERVICE = SPEC.name
log = structlog.get_logger(__name__)


def collection_name(corpus: str, embedding: EmbeddingModelInfo) -> str:
    """``<corpus>__<model>__<version>``, e.g. ``default__all-MiniLM-L6-v2__2e8a342051c5``."""
    return index_name(corpus, embedding.name, embedding.version)


class Index:
    """The platform's view of the vector store: collections named per embedding model
    version, created on first use. ``__init__`` stores configuration, :meth:`open` opens the
    store (its files belong to the process that opens them). Methods block: call them from
    a worker thread."""

    def __init__(self, settings: RetrievalSettings, producer: Producer, registry: Registry | None = None) -> None:
        self.settings = settings
        self.producer = producer
        self.registry = registry or Registry()
        self._store: VectorStore | None = None
        self._ready: set[str] = set()
        # Submissions whose version was rejected after it was chunked, as (tenant, document
        # id, version, trace id): a part of one that arrives later writes nothing. The trace is
        # the submission's, so submitting the same content again indexes it.
        self._withdrawn: set[tuple[str, str, str, str]] = set()
        # Indexing and withdrawing run in two subscribers' threads: one at a time, so a part
        # is either written before its version is withdrawn (and withdrawn) or dropped.
        self._writing = threading.Lock()

    def open(self) -> None:
        if self._store is None:
            self._store = self.settings.open_store()

    def close(self) -> None:
        if self._store is not None:
            self._store.close()
            self._store = None

    @property
    def store(self) -> VectorStore:
        if self._store is None:
            raise RuntimeError("Index.open() must run before the index is used")
        return self._store

    def _ensure(self, name: str, dimension: int) -> str:
        if name not in self._ready:
            self.store.ensure_collection(name, dimension)
            self._ready.add(name)
        return name

    def _collection(self, embedding: EmbeddingModelInfo) -> str:
        """The live collection of an embedding model version: the one the registry's
        ``production`` alias of the index names, else the version's first collection."""
        alias = collection_name(self.settings.corpus, embedding)
        promoted = self.registry.alias("index", alias)
        return self._ensure(promoted.uri if promoted and promoted.uri else alias, embedding.dimension)

    def _targets(self, embedding: EmbeddingModelInfo, build: IndexBuild | None = None) -> list[str]:
        """Where a document goes: a replayed one (``build``) into its build's collection only;
        a live one into the live collection and into every build of the same model still in
        progress, so a build that started before the document arrived does not miss it."""
        if build is not None:
            return [self._ensure(build.collection, embedding.dimension)]
        live = self._collection(embedding)
        building = [
            state.uri
            for state in self.registry.versions("index", collection_name(self.settings.corpus, embedding))
            if state.uri and state.uri != live and not (state.promoted or state.rejected or state.retired)
        ]
        return [live, *(self._ensure(uri, embedding.dimension) for uri in building)]

    def index(self, events: Sequence[ChunksEmbedded]) -> list[DocumentIndexed]:
        """Upsert each event's chunks and relabel its reused chunks (points of an earlier
        version with the same text: they take this version's payload, vectors untouched);
        once a document version is complete in a collection, delete its superseded chunks
        there; one ``DocumentIndexed`` per version completed in the event's first collection.

        A version split into parts is complete when the collection holds a point of this
        version for each of its distinct chunks (``ChunksEmbedded.version_chunks``): the count
        lives in the store, so it survives restarts, and parts may arrive in any order or
        twice; the version's chunk ids are then read from the store too. Upsert before
        delete, and delete only once complete: a reader sees the old or the new version,
        never neither. Deterministic point ids make a redelivered event overwrite, not
        duplicate; a redelivered part of a complete version publishes the same
        ``DocumentIndexed`` id again (nothing left to delete), so it is recorded once.

        Raises :class:`EventRejected`, with nothing written, when a reused chunk has no point
        in the live collection (a newer version superseded it after the embedding service
        looked): the document must be submitted again. A build in progress may lack one (it
        has not replayed the document yet): its replay brings the whole document later.
        """
        with self._writing:
            return [indexed for event in events if (indexed := self._index_one(event)) is not None]

    def withdraw(self, events: Sequence[DocumentRejected]) -> list[DocumentIndexed]:
        """End the versions that ``events`` reject after they were chunked (a part
        dead-lettered): in every collection a live part goes to (the live one, builds in
        progress), delete the points their other parts wrote (:meth:`VectorStore.withdraw`:
        chunks reused from the previous version stay, so readers find that version's text),
        unless the collection holds all ``chunk_total`` chunks of the version (indexed whole
        by an earlier submission: it stays); and drop any part of the same submission that
        arrives later. Rejections of other stages (nothing indexed) are ignored. Returns
        ``[]``: the rejection is the version's outcome."""
        with self._writing:
            for event in events:
                if event.document_version is None or event.embedding is None or event.stage == "ingestion":
                    continue
                self._withdrawn.add((event.tenant, event.document_id, event.document_version, event.trace_id))
                for collection in self._targets(event.embedding):
                    held = self.store.count(
                        collection, event.document_id, document_version=event.document_version, tenant=event.tenant
                    )
                    if event.chunk_total is not None and held >= event.chunk_total:
                        continue
                    deleted = self.store.withdraw(
                        collection, event.document_id, event.document_version, tenant=event.tenant
                    )
                    log.warning(
                        "document_version_withdrawn",
                        tenant=event.tenant,
                        document_id=event.document_id,
                        document_version=event.document_version,
                        collection=collection,
                        deleted_points=deleted,
                        stage=event.stage,  # not the reason, which can quote the document
                    )
        return []

    def remove(self, events: Sequence[DocumentDeleted]) -> list[DocumentRemoved]:
        """Delete each event's document (its tenant's only) from every collection of the
        corpus: the live collection of every embedding model version, builds in progress
        and earlier builds (one of them may be promoted again). One ``DocumentRemoved`` per
        deletion with the points removed per collection; its id derives from the deletion's,
        so a redelivered deletion (nothing left to remove) is recorded once.

        A part of a version submitted before the deletion that reaches the indexer after it
        is indexed (Kafka orders a document's events per topic, not across topics)."""
        with self._writing:
            collections = [name for name in self.store.collections() if name.startswith(f"{self.settings.corpus}__")]
            removed = []
            for event in events:
                points = {
                    collection: self.store.delete_document(collection, event.document_id, tenant=event.tenant)
                    for collection in collections
                }
                log.info(
                    "document_removed",
                    tenant=event.tenant,
                    document_id=event.document_id,
                    removed_points=sum(points.values()),
                    collections=len(points),
                )
                removed.append(
                    event.caused(
                        DocumentRemoved,
                        self.producer,
                        document_id=event.document_id,
                        deletion_event_id=str(event.event_id),
                        removed_points=points,
                    )
                )
            return removed

    def _index_one(self, event: ChunksEmbedded) -> DocumentIndexed | None:
        if (event.tenant, event.document_id, event.document_version, event.trace_id) in self._withdrawn:
            log.warning(
                "part_of_rejected_version_dropped",
                document_id=event.document_id,
                document_version=event.document_version,
                part=event.part,
            )
            return None

        def point(chunk: Chunk, vector: Sequence[float]) -> ChunkPoint:
            return ChunkPoint(
                chunk_id=chunk.chunk_id,
                document_id=event.document_id,
                document_version=event.document_version,
                text=chunk.text,
                vector=vector,
                payload={
                    "title": event.title,
                    "source": event.source,
                    "metadata": event.metadata,
                    "chunk_index": chunk.index,
                    **({"section": chunk.section} if chunk.section else {}),
                    # Whom the document is about: an erasure of that subject deletes its points.
                    **({SUBJECT_FIELD: event.subject_id} if event.subject_id else {}),
                },
                tenant=event.tenant,
                # BM25 reads the chunk under the header the embedding service embedded it with.
                indexed_text=contextual_text(chunk.text, title=event.title, section=chunk.section),
            )

        points = [point(chunk, chunk.vector) for chunk in event.chunks]
        reused = [point(chunk, ()) for chunk in event.reused_chunks]
        collections = self._targets(event.embedding, event.index_build)
        complete = []
        superseded = 0
        for number, collection in enumerate(collections):
            # First, and all or nothing: a live collection that lost a reused point is left untouched.
            missing = self.store.relabel(collection, reused, event.embedding.version) if reused else []
            if missing and number == 0:
                raise EventRejected(
                    f"{len(missing)} chunks reused from an earlier version of {event.document_id!r} are no longer "
                    f"in {collection} (superseded meanwhile); submit the document again to embed them"
                )
            self.store.upsert(collection, points, event.embedding.version)
            if self._complete(collection, event):
                complete.append(collection)
                superseded += self.store.delete_superseded(
                    collection, event.document_id, event.document_version, tenant=event.tenant
                )
        if collections[0] not in complete:
            return None
        if event.chunk_total is None:  # the whole version in this event
            ordered = sorted([*event.chunks, *event.reused_chunks], key=lambda chunk: chunk.index)
            chunk_ids = list(dict.fromkeys(chunk.chunk_id for chunk in ordered))
            reused_count = len({chunk.chunk_id for chunk in event.reused_chunks})
        else:  # earlier parts wrote the rest: the store holds them all, and knows which it embedded
            chunk_ids = self.store.chunk_ids(
                collections[0], event.document_id, event.document_version, tenant=event.tenant
            )
            embedded = self.store.count(
                collections[0],
                event.document_id,
                document_version=event.document_version,
                embedded_for=event.document_version,
                tenant=event.tenant,
            )
            reused_count = len(chunk_ids) - embedded
        # One id per (document, version, collection), whichever part completed it: a
        # redelivered part completes it again under the same id (recorded once).
        version_id = indexed_version_event_id(
            event.document_id, event.document_version, collections[0], tenant=event.tenant
        )
        return event.caused(
            DocumentIndexed,
            self.producer,
            document_id=event.document_id,
            document_version=event.document_version,
            collection=collections[0],
            chunk_count=event.version_chunks,
            superseded_chunks=superseded,
            embedding=event.embedding,
            index_build=event.index_build,
            chunk_ids=chunk_ids,
            reused_chunks=reused_count,
        ).model_copy(update={"event_id": version_id})

    def _complete(self, collection: str, event: ChunksEmbedded) -> bool:
        """Whether ``collection`` holds every chunk of the event's document version."""
        if event.chunk_total is None:  # the whole version in this one event, just written
            return True
        held = self.store.count(
            collection, event.document_id, document_version=event.document_version, tenant=event.tenant
        )
        return held >= event.chunk_total

    def _arm_collection(self, event: QueryEmbedded) -> str | None:
        """The collection of the index version a query's experiment arm names (the canary of an
        index), or None when the query is not in an index experiment or the arm cannot serve
        it: a version unknown, retired since, without a collection, or built by another
        embedding model version than the one that embedded the query (the vectors would not
        compare); such a query is served by the live index, outside the experiment."""
        arm = event.assignment
        if arm is None or arm.target != "index":
            return None
        state = self.registry.get("index", arm.target_name, arm.version)
        built_by = state.metadata.get("embedding_version", event.embedding.version) if state else None
        if state is None or state.retired or not state.uri or built_by != event.embedding.version:
            log.warning("experiment_arm_index_unavailable", experiment_id=arm.experiment_id, version=arm.version)
            return None
        return self._ensure(state.uri, event.embedding.dimension)

    def retrieve(self, events: Sequence[QueryEmbedded]) -> list[ContextRetrieved]:
        """Search each query's collection with its vector, text, filters and ``top_k``, among
        the chunks of the query's tenant only: the live one of the query's embedding model,
        or the index version its experiment arm names (:meth:`_arm_collection`). The arm is
        carried to ``ContextRetrieved`` (dropped when the arm's index could not serve it)."""
        results = []
        for event in events:
            arm_collection = self._arm_collection(event)
            collection = arm_collection or self._collection(event.embedding)
            assignment = event.assignment if arm_collection or not _is_index(event) else None
            hits = self.store.search(
                collection,
                vector=event.vector,
                text=event.question,
                top_k=event.top_k,
                filters=event.filters or None,
                mode=self.settings.mode,
                score_threshold=self.settings.score_threshold,
                tenant=event.tenant,
                fusion=self.settings.fusion,
                per_document=self.settings.per_document,
            )
            # The dense neighbours whatever the mode: their cosines are the abstention check's signals.
            nearest = (
                hits
                if self.settings.mode == "dense"
                else self.store.search(
                    collection,
                    vector=event.vector,
                    text=event.question,
                    top_k=event.top_k,
                    filters=event.filters or None,
                    mode="dense",
                    tenant=event.tenant,
                )
            )
            results.append(
                event.caused(
                    ContextRetrieved,
                    self.producer,
                    request_id=event.request_id,
                    question=event.question,
                    filters=event.filters,
                    prompt_name=event.prompt_name,
                    prompt_version=event.prompt_version,
                    evaluation=event.evaluation,
                    assignment=assignment,
                    retrieval=RetrievalInfo(
                        collection=collection,
                        mode=self.settings.mode,
                        top_k=event.top_k,
                        embedding=event.embedding,
                        top_similarity=nearest[0].score if nearest else None,
                        similarities=[hit.score for hit in nearest],
                    ),
                    contexts=[
                        RetrievedChunk(
                            chunk_id=hit.chunk_id,
                            document_id=hit.document_id,
                            document_version=hit.document_version,
                            text=hit.text,
                            score=hit.score,
                            title=hit.payload.get("title"),
                            source=hit.payload.get("source"),
                            section=hit.payload.get("section"),
                        )
                        for hit in hits
                    ],
                )
            )
        return results


def _is_index(event: QueryEmbedded) -> bool:
    return event.assignment is not None and event.assignment.target == "index"


def create_app(settings: RetrievalSettings | None = None) -> AsgiFastStream:
    settings = settings or RetrievalSettings()
    broker = make_broker(settings.kafka, f"ragops-{SERVICE}")
    producer = producer_for(SERVICE)
    publisher = EventPublisher(
        broker,
        producer,
        [DocumentIndexed, ContextRetrieved, DocumentRejected, DocumentRemoved, SubjectErasureApplied],
    )
    embedded = EventSubscriber(
        broker,
        publisher,
        ChunksEmbedded,
        kafka=settings.kafka,
        group_id=INDEXER_GROUP,
        max_records=settings.index_batch_records,
        on_refused=lambda event, reason: refused_version(event, producer, reason),
    )
    rejected = EventSubscriber(
        broker,
        publisher,
        DocumentRejected,
        kafka=settings.kafka,
        group_id=WITHDRAWALS_GROUP,
        max_records=settings.index_batch_records,
    )
    deleted = EventSubscriber(
        broker,
        publisher,
        DocumentDeleted,
        kafka=settings.kafka,
        group_id=DELETIONS_GROUP,
        max_records=settings.index_batch_records,
    )
    queries = EventSubscriber(
        broker,
        publisher,
        QueryEmbedded,
        kafka=settings.kafka,
        group_id=QUERIES_GROUP,
        max_records=settings.query_batch_records,
    )
    erasures = EventSubscriber(
        broker, publisher, ErasureRequested, kafka=settings.kafka, group_id=ERASURE_GROUP, max_records=8
    )
    verifier = verifier_for(settings.platform, shipped_model_dirs())
    registry = RegistryView(
        settings.kafka, client_id=f"ragops-{SERVICE}-registry", verifier=verifier, dead_letters=publisher
    )
    index = Index(settings, producer, registry.registry)

    @embedded
    async def on_chunks_embedded(events: list[ChunksEmbedded]) -> None:
        await embedded.run(events, lambda batch: asyncio.to_thread(index.index, batch))

    @rejected
    async def on_document_rejected(events: list[DocumentRejected]) -> None:
        await rejected.run(events, lambda batch: asyncio.to_thread(index.withdraw, batch))

    @deleted
    async def on_document_deleted(events: list[DocumentDeleted]) -> None:
        await deleted.run(events, lambda batch: asyncio.to_thread(index.remove, batch))

    @queries
    async def on_query_embedded(events: list[QueryEmbedded]) -> None:
        await queries.run(events, lambda batch: asyncio.to_thread(index.retrieve, batch))

    async def erase(requests: Sequence[ErasureRequested]) -> list[Event]:
        reports: list[Event] = []
        for request in requests:
            require_verified(verifier, request)
            reports.append(await asyncio.to_thread(erase_subject, index.store, request, producer))
        return reports

    @erasures
    async def on_erasure_requested(requests: list[ErasureRequested]) -> None:
        await erasures.run(requests, erase)

    app = service_app(
        SERVICE, __doc__ or "", broker, platform=settings.platform, warm_up=[index.open], close=[index.close]
    )
    app.on_startup(registry.start)
    app.after_startup(registry.send_dead_letters)  # once the broker can publish them
    app.after_shutdown(registry.stop)
    return app


def main() -> None:
    run_service(SERVICE, RetrievalSettings, create_app)

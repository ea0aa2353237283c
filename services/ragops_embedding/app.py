"""The embedding service: one model, two callers. Consumes ``DocumentChunked`` and
``QueryRedacted``; publishes ``ChunksEmbedded`` and ``QueryEmbedded``.

Vectors travel as base64 of little-endian float32 (``EmbeddedChunk.vector``), and a
document part whose vectors would pass ``RAGOPS_EMBEDDING_PART_BYTES`` of JSON is published
as several ``ChunksEmbedded``, so no record comes near the broker's message size limit.

Each subscriber fetches a batch of records and embeds all their texts in one call, so
concurrent requests share forward passes (micro-batching across messages). Inference runs
in a worker thread, never on the event loop.

Chunks of a changed document whose text an indexed version already had are not embedded
again: the service reads what the live index holds from the ``DocumentIndexed`` topic
(:mod:`ragops_shared.indexed_view`) and sends them as ``reused_chunks``, counted in
``ragops_chunks_reused_total``.

A ``DocumentChunked`` it dead-letters ends its document version with a ``DocumentRejected``
(stage ``embedding``): the indexer withdraws the points of the version's other parts.

A chunk is embedded under its contextual header, its document's title
(:func:`embedded_text`): the same text the retrieval service indexes for BM25.

A text longer than the model reads (``RAGOPS_EMBEDDING_MAX_LENGTH`` tokens) is embedded from
its beginning only: each chunk and query carries its ``input_tokens`` and a ``truncated``
flag, and ``ragops_embedding_truncated_texts_total`` counts them. A question is embedded as
:func:`ragops_shared.text.normalise` makes it, the normalisation its documents had.

Which model version embeds is the version registry's decision: the ``production`` alias of
the model for queries and live documents, the build's version for the replayed chunks of a
re-index. The packaged (or configured) model is registered at start.
"""

import asyncio
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from itertools import groupby
from pathlib import Path
from typing import Literal

import structlog
from faststream.asgi import AsgiFastStream
from prometheus_client import Counter

from ragops_embedding.experiments import assign, experiment_key, unassigned
from ragops_embedding.settings import PART_BYTES, EmbeddingSettings
from ragops_embedding.spec import DOCUMENTS_GROUP, QUERIES_GROUP, SPEC
from ragops_models.defaults import shipped_model_dirs
from ragops_models.device import compute_spec
from ragops_models.embedder import Embedder
from ragops_schemas import (
    Chunk,
    ChunksEmbedded,
    DocumentChunked,
    DocumentIndexed,
    DocumentRejected,
    EmbeddedChunk,
    EmbeddingModelInfo,
    Event,
    Producer,
    QueryEmbedded,
    QueryRedacted,
    VersionPromoted,
    VersionRegistered,
    utc_now,
)
from ragops_schemas.experiments import ExperimentAssignment
from ragops_schemas.ids import model_registration_id, part_scope
from ragops_schemas.registry import Registry
from ragops_shared.broker import EventPublisher, EventRejected, EventSubscriber, make_broker
from ragops_shared.indexed_view import IndexedDocuments
from ragops_shared.ops import CHUNKS_REUSED, MODEL_LATENCY
from ragops_shared.parts import refused_version, split_by_bytes
from ragops_shared.registry_view import ExperimentView, RegistryView
from ragops_shared.service import producer_for, run_service, service_app
from ragops_shared.signing import signer_for, verifier_for
from ragops_shared.text import contextual_text, normalise

SERVICE = SPEC.name
PROMOTED_MODEL_LOAD_FAILURES = Counter(
    "ragops_promoted_model_load_failures_total",
    "Promotions of an embedding model whose files did not load: the version in use kept serving.",
)
TRUNCATED_TEXTS = Counter(
    "ragops_embedding_truncated_texts_total",
    "Texts (document chunks or queries) with more tokens than the embedding model reads: embedded from "
    "their beginning only.",
    ["kind"],
)
log = structlog.get_logger(__name__)


@dataclass(frozen=True)
class _Embedded:
    """A text's vector (a list: JSON-ready) and its input tokens (special tokens included)."""

    vector: list[float]
    input_tokens: int
    truncated: bool


def _embed(embedder: Embedder, texts: list[str], kind: Literal["chunk", "query"]) -> list[_Embedded]:
    """Each text embedded, the model call's latency recorded and its truncated texts counted."""
    with MODEL_LATENCY.labels(SERVICE, embedder.name).time():
        vectors: list[list[float]] = embedder.embed(texts).tolist()
    tokens = embedder.input_tokens(texts)
    embedded = [
        _Embedded(vector, count, count > embedder.max_length) for vector, count in zip(vectors, tokens, strict=True)
    ]
    TRUNCATED_TEXTS.labels(kind).inc(sum(item.truncated for item in embedded))
    return embedded


def embed_documents(
    embedder: Embedder,
    producer: Producer,
    events: Sequence[DocumentChunked],
    indexed: Callable[[str, str], DocumentIndexed | None] = lambda _tenant, _document: None,
    part_bytes: int = PART_BYTES,
) -> list[ChunksEmbedded]:
    """Embed the distinct new chunk texts of all events in one call; one ``ChunksEmbedded`` per
    document part, with its ``part``/``parts``, or several with the same numbers when its
    vectors would pass ``part_bytes`` of JSON (ids derived from the part and their place in it).

    ``indexed(tenant, document_id)`` is the tenant's document's latest live ``DocumentIndexed``: the chunks of
    a live event that it lists, indexed by this embedder's version, already have their point
    (chunk ids are content hashes), so they travel as ``reused_chunks``, without a vector.
    Replayed chunks of an index build are always embedded: the build's collection is new.

    Raises:
        PartTooLarge: a chunk with its vector passes ``part_bytes`` alone.
    """
    have = [_indexed_chunk_ids(embedder, event, indexed) for event in events]
    # A text repeated (boilerplate, a repeated section) is embedded once: same text, same vector.
    fresh = [
        embedded_text(event, chunk)
        for event, ids in zip(events, have, strict=True)
        for chunk in event.chunks
        if chunk.chunk_id not in ids
    ]
    texts = list(dict.fromkeys(fresh))
    embedded = dict(zip(texts, _embed(embedder, texts, "chunk") if texts else [], strict=True))
    outputs: list[ChunksEmbedded] = []
    for event, ids in zip(events, have, strict=True):
        items = [
            chunk
            if chunk.chunk_id in ids
            else EmbeddedChunk(
                **chunk.model_dump(),
                vector=(done := embedded[embedded_text(event, chunk)]).vector,
                input_tokens=done.input_tokens,
                truncated=done.truncated,
            )
            for chunk in event.chunks
        ]
        # Distinct ids: a chunk text repeated in the part is one point, reused once.
        CHUNKS_REUSED.labels(SERVICE).inc(len({item.chunk_id for item in items if not isinstance(item, EmbeddedChunk)}))
        outputs += _embedded_parts(embedder.info, producer, event, items, part_bytes)
    return outputs


def embedded_text(event: DocumentChunked, chunk: Chunk) -> str:
    """What the model embeds for ``chunk``: its text under its document's contextual header
    (:func:`ragops_shared.text.contextual_text`, the text BM25 indexes too); the chunk's own
    text is what users and prompts see."""
    return contextual_text(chunk.text, title=event.title, section=chunk.section)


def _indexed_chunk_ids(
    embedder: Embedder, event: DocumentChunked, indexed: Callable[[str, str], DocumentIndexed | None]
) -> set[str]:
    """Ids of the event's chunks whose point for ``embedder``'s version the live index holds."""
    previous = None if event.index_build is not None else indexed(event.tenant, event.document_id)
    info = embedder.info
    if previous is None or info is None or previous.embedding.version != info.version:
        return set()
    return set(previous.chunk_ids)


def _embedded_parts(
    info: EmbeddingModelInfo | None,
    producer: Producer,
    event: DocumentChunked,
    items: list[Chunk],
    part_bytes: int,
) -> list[ChunksEmbedded]:
    """``items``: the part's chunks in order, an ``EmbeddedChunk`` for each embedded now and a
    plain ``Chunk`` for each reused."""
    distinct = len({chunk.chunk_id for chunk in items})

    def embedded(part_items: list[Chunk], split: int, splits: int) -> ChunksEmbedded:
        chunks = [item for item in part_items if isinstance(item, EmbeddedChunk)]
        return event.caused(
            ChunksEmbedded,
            producer,
            scope=part_scope(split, splits),
            document_id=event.document_id,
            document_version=event.document_version,
            title=event.title,
            source=event.source,
            metadata=event.metadata,
            subject_id=event.subject_id,
            embedding=info,
            index_build=event.index_build,
            chunks=chunks,
            reused_chunks=[item for item in part_items if not isinstance(item, EmbeddedChunk)],
            truncated_chunks=sum(bool(chunk.truncated) for chunk in chunks),
            part=event.part,
            parts=event.parts,
            # Split further here: the indexer needs the version's total (that of this part
            # alone when the document came whole).
            chunk_total=event.chunk_total or (distinct if splits > 1 else None),
        )

    return split_by_bytes(embedded, items, part_bytes)


class Embedders:
    """The production embedder plus any other registered version a re-index asks for.

    The registry's ``production`` alias of the model decides which version embeds queries
    and live documents; replayed chunks of an index build are embedded with the build's
    version (loaded from the directory its registration names, then kept). Loading runs in
    a worker thread; the swap itself is one assignment, so a batch sees one version."""

    def __init__(self, settings: "EmbeddingSettings", registry: Registry) -> None:
        self.settings = settings
        self.registry = registry
        self.default = settings.embedder()
        self.production = self.default
        self._loaded: dict[str, Embedder] = {}
        self._lock = threading.RLock()  # one loader at a time: a version is loaded once

    def warm_up(self) -> None:
        with self._lock:
            info = self.default.warm_up()
            self._loaded[info.version] = self.default
        self.follow_registry()

    def version(self, version: str, uri: str | None = None) -> Embedder:
        """The embedder of ``version``, loaded from ``uri`` or from where the registry says.

        Raises ``EventRejected`` for a version with no known files, or files of another version.
        """
        with self._lock:
            if version not in self._loaded:
                state = self.registry.get("embedding_model", self.default.name, version)
                uri = uri or (state.uri if state else None)
                if uri is None or not Path(uri).is_dir():
                    raise EventRejected(
                        f"unknown embedding model version {version!r} of {self.default.name} (files: {uri})"
                    )
                try:
                    embedder = self.settings.embedder(Path(uri))
                    loaded = embedder.warm_up().version
                except Exception as error:
                    raise EventRejected(
                        f"{uri} does not load as embedding model version {version}: {error!r}"
                    ) from error
                if loaded != version:
                    raise EventRejected(f"{uri} holds embedding model version {loaded}, not {version}")
                self._loaded[version] = embedder
            return self._loaded[version]

    def follow_registry(self) -> None:
        """Point ``production`` at the registry's production version (blocking: may load it).
        Before :meth:`warm_up` this does nothing: warm-up follows the registry itself."""
        if self.default.info is None:
            return
        state = self.registry.alias("embedding_model", self.default.name)
        try:
            self.production = self.default if state is None else self.version(state.ref.version)
        except EventRejected as error:
            # Keep serving with the version in use: its index exists, the promoted one's files do not.
            PROMOTED_MODEL_LOAD_FAILURES.inc()
            log.error("production_embedding_model_load_failed", error=str(error))

    def on_registry_change(self, event: Event) -> None:
        """Registry listener (event loop): a promotion of this model reloads in a thread."""
        if isinstance(event, VersionPromoted) and event.kind == "embedding_model" and event.name == self.default.name:
            asyncio.get_running_loop().create_task(asyncio.to_thread(self.follow_registry))

    def documents(
        self,
        producer: Producer,
        events: Sequence[DocumentChunked],
        indexed: Callable[[str, str], DocumentIndexed | None] = lambda _tenant, _document: None,
    ) -> list[ChunksEmbedded]:
        """Live documents with the production model, their already indexed chunks reused
        (see :func:`embed_documents`); an index build's with the build's model."""
        outputs: list[ChunksEmbedded] = []
        for build, group in groupby(events, key=lambda event: event.index_build):
            embedder = self.version(build.embedding_version, build.embedding_uri) if build else self.production
            outputs += embed_documents(embedder, producer, list(group), indexed, self.settings.part_bytes)
        return outputs

    def queries(
        self, producer: Producer, events: Sequence[QueryRedacted], assignments: Sequence[ExperimentAssignment | None]
    ) -> list[QueryEmbedded]:
        """The questions embedded with the production model, except those assigned to an arm of
        an index experiment whose index version was built by another version of the model
        (metadata ``embedding_version`` of its registration): embedded by that version, so the
        vector matches the arm's collection. An arm whose model does not load serves production
        (counted as ``variant_unavailable``), one call per model."""
        chosen = [self._query_embedder(arm) for arm in assignments]
        arms = [arm if embedder is not None else None for arm, embedder in zip(assignments, chosen, strict=True)]
        models = [embedder or self.production for embedder in chosen]
        embedded: dict[int, QueryEmbedded] = {}
        for model in {id(model): model for model in models}.values():
            places = [place for place, one in enumerate(models) if one is model]
            batch = embed_queries(model, producer, [events[p] for p in places], [arms[p] for p in places])
            embedded.update(zip(places, batch, strict=True))
        return [embedded[place] for place in range(len(events))]

    def _query_embedder(self, arm: ExperimentAssignment | None) -> Embedder | None:
        """The model that embeds a question of ``arm``; None: the arm's does not load."""
        if arm is None or arm.target != "index":
            return self.production
        state = self.registry.get("index", arm.target_name, arm.version)
        version = state.metadata.get("embedding_version") if state else None
        production = self.production.info
        if version is None or (production is not None and version == production.version):
            return self.production
        try:
            return self.version(version)
        except EventRejected as error:
            log.error("experiment_arm_model_load_failed", experiment_id=arm.experiment_id, error=str(error))
            unassigned(arm.experiment_id, "variant_unavailable")
            return None

    def registration(self, producer: Producer) -> VersionRegistered:
        """The default model's registration, published at every start: the same event id
        every time and, once the registry holds it, the first registration's ``occurred_at``,
        so a restart republishes the same fact (the sink keeps one row) instead of a new one."""
        info = self.default.info
        assert info is not None  # warm_up ran
        event_id = model_registration_id(info.name, info.version)
        state = self.registry.get("embedding_model", info.name, info.version)
        first = state.registered if state and state.registered and state.registered.event_id == event_id else None
        return VersionRegistered(
            event_id=event_id,
            occurred_at=first.occurred_at if first else utc_now(),
            producer=producer,
            kind="embedding_model",
            name=info.name,
            version=info.version,
            uri=str(self.default.model_path),
            metadata={"dimension": str(info.dimension)},
        )


def embed_queries(
    embedder: Embedder,
    producer: Producer,
    events: Sequence[QueryRedacted],
    assignments: Sequence[ExperimentAssignment | None] | None = None,
) -> list[QueryEmbedded]:
    """Embed the questions of a batch of queries in one call, each normalised as documents are
    (:func:`ragops_shared.text.normalise`); the events carry the questions as asked, and each
    its experiment arm from ``assignments`` (one per event; None: none)."""
    embedded = _embed(embedder, [normalise(event.question) for event in events], "query")
    arms = assignments or [None] * len(events)
    return [
        event.caused(
            QueryEmbedded,
            producer,
            request_id=event.request_id,
            question=event.question,
            top_k=event.top_k,
            filters=event.filters,
            prompt_name=event.prompt_name,
            prompt_version=event.prompt_version,
            evaluation=event.evaluation,
            embedding=embedder.info,
            vector=item.vector,
            input_tokens=item.input_tokens,
            truncated=item.truncated,
            assignment=arm,
        )
        for event, item, arm in zip(events, embedded, arms, strict=True)
    ]


def create_app(settings: EmbeddingSettings | None = None) -> AsgiFastStream:
    settings = settings or EmbeddingSettings()
    broker = make_broker(settings.kafka, f"ragops-{SERVICE}")
    producer = producer_for(SERVICE)
    publisher = EventPublisher(
        broker,
        producer,
        [ChunksEmbedded, QueryEmbedded, VersionRegistered, DocumentRejected],
        signer=signer_for(settings.platform, SERVICE),
    )
    verifier = verifier_for(settings.platform, shipped_model_dirs())
    registry = RegistryView(
        settings.kafka, client_id=f"ragops-{SERVICE}-registry", verifier=verifier, dead_letters=publisher
    )
    # Only experiments the gateway started (and the gateway or the monitor ended) count.
    experiments = ExperimentView(
        settings.kafka, client_id=f"ragops-{SERVICE}-experiments", verifier=verifier, dead_letters=publisher
    )
    key = experiment_key(settings)
    embedders = Embedders(settings, registry.registry)
    registry.on_change = embedders.on_registry_change
    indexed = IndexedDocuments(settings.kafka, client_id=f"ragops-{SERVICE}-indexed")
    documents = EventSubscriber(
        broker,
        publisher,
        DocumentChunked,
        kafka=settings.kafka,
        group_id=DOCUMENTS_GROUP,
        max_records=settings.document_batch_records,
        # A refused part ends its version: rejected, and what its other parts wrote withdrawn.
        on_refused=lambda event, reason: refused_version(event, producer, reason, embedders.production.info),
    )
    queries = EventSubscriber(
        broker,
        publisher,
        QueryRedacted,
        kafka=settings.kafka,
        group_id=QUERIES_GROUP,
        max_records=settings.query_batch_records,
        batch_wait_ms=settings.query_batch_wait_ms,
    )

    @documents
    async def on_document_chunked(events: list[DocumentChunked]) -> None:
        await documents.run(events, lambda batch: asyncio.to_thread(embedders.documents, producer, batch, indexed.get))

    @queries
    async def on_query_redacted(events: list[QueryRedacted]) -> None:
        async def embedded(batch: Sequence[QueryRedacted]) -> list[QueryEmbedded]:
            # Assigned on the event loop, where the book is folded; embedded in a worker thread.
            arms = [assign(experiments.book, key, event) for event in batch]
            return await asyncio.to_thread(embedders.queries, producer, batch, arms)

        await queries.run(events, embedded)

    app = service_app(
        SERVICE,
        __doc__ or "",
        broker,
        platform=settings.platform,
        compute=compute_spec(embedders.default.device, settings.platform.torch_threads),
    )

    @app.on_startup
    async def load_models() -> None:
        # The registry first: the production version it names is the one warm-up loads.
        await registry.start()
        await experiments.start()
        await indexed.start()
        await asyncio.to_thread(embedders.warm_up)

    @app.after_startup
    async def register_default_model() -> None:
        await publisher.publish(embedders.registration(producer))

    app.after_startup(registry.send_dead_letters)  # once the broker can publish them
    app.after_startup(experiments.send_dead_letters)
    app.after_shutdown(registry.stop)
    app.after_shutdown(experiments.stop)
    app.after_shutdown(indexed.stop)
    return app


def main() -> None:
    run_service(SERVICE, EmbeddingSettings, create_app)

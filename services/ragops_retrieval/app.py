"""The indexer/retrieval service: owns the vector collections.

Indexer (group ``ragops-indexer``): ``ChunksEmbedded`` -> upsert the chunk vectors, delete
the chunks of older versions of the document -> ``DocumentIndexed``.
Retrieval (group ``ragops-retrieval``): ``QueryEmbedded`` -> hybrid search (dense + BM25,
fused by Reciprocal Rank Fusion) -> ``ContextRetrieved``.

One collection per (corpus, embedding model version): a query is searched in the
collection of the model that embedded it, so vectors of two models never mix. Qdrant Edge
runs in-process by default (one process owns its files); ``RAGOPS_RETRIEVAL_QDRANT_URL``
switches to a Qdrant server."""

import asyncio
import re
from collections.abc import Sequence
from functools import partial
from typing import Literal

from faststream.asgi import AsgiFastStream
from pydantic import Field, SecretStr, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from ragops_retrieval.store import ChunkPoint, VectorStore, open_store
from ragops_schemas import (
    ChunksEmbedded,
    ContextRetrieved,
    DocumentIndexed,
    EmbeddingModelInfo,
    Producer,
    QueryEmbedded,
    RetrievalInfo,
    RetrievedChunk,
)
from ragops_shared.broker import EventPublisher, EventSubscriber, make_broker
from ragops_shared.service import producer_for, run_service, service_app
from ragops_shared.settings import KafkaSettings, PlatformSettings

SERVICE = "retrieval"


class RetrievalSettings(BaseSettings):
    """Env prefix ``RAGOPS_RETRIEVAL_``."""

    model_config = SettingsConfigDict(env_prefix="RAGOPS_RETRIEVAL_", extra="ignore")

    qdrant_url: str | None = Field(default=None, description="Qdrant server URL; None = embedded Qdrant Edge.")
    qdrant_api_key: SecretStr | None = None
    corpus: str = Field(default="default", pattern=r"^[a-zA-Z0-9_-]+$", description="Corpus name, part of collection names.")
    mode: Literal["hybrid", "dense", "sparse"] = "hybrid"
    score_threshold: float | None = Field(default=None, description="Minimum dense cosine similarity of a hit.")
    index_batch_records: int = Field(default=16, gt=0)
    query_batch_records: int = Field(default=32, gt=0)
    platform: PlatformSettings = Field(default_factory=PlatformSettings)
    kafka: KafkaSettings = Field(default_factory=KafkaSettings)

    @model_validator(mode="after")
    def _server_in_production(self) -> "RetrievalSettings":
        # Qdrant Edge lives inside one process: replicas could not share it.
        if self.platform.environment == "production" and not self.qdrant_url:
            raise ValueError("RAGOPS_RETRIEVAL_QDRANT_URL is required when RAGOPS_ENVIRONMENT=production")
        return self

    def open_store(self) -> VectorStore:
        api_key = self.qdrant_api_key.get_secret_value() if self.qdrant_api_key else None
        return open_store(url=self.qdrant_url, api_key=api_key, path=self.platform.data_dir / "qdrant")


def collection_name(corpus: str, embedding: EmbeddingModelInfo) -> str:
    """``<corpus>__<model>__<version>``, e.g. ``default__all-MiniLM-L6-v2__2e8a342051c5``."""
    model = re.sub(r"[^a-zA-Z0-9_-]+", "-", embedding.name.rsplit("/", 1)[-1])
    return f"{corpus}__{model}__{embedding.version}"


class Index:
    """The platform's view of the vector store: collections named per embedding model
    version, created on first use. ``__init__`` stores configuration, :meth:`open` opens the
    store (its files belong to the process that opens them). Methods block: call them from
    a worker thread."""

    def __init__(self, settings: RetrievalSettings, producer: Producer) -> None:
        self.settings = settings
        self.producer = producer
        self._store: VectorStore | None = None
        self._ready: set[str] = set()

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

    def _collection(self, embedding: EmbeddingModelInfo) -> str:
        name = collection_name(self.settings.corpus, embedding)
        if name not in self._ready:
            self.store.ensure_collection(name, embedding.dimension)
            self._ready.add(name)
        return name

    def index(self, events: Sequence[ChunksEmbedded]) -> list[DocumentIndexed]:
        """Upsert each document version's chunks, then delete its superseded chunks.

        Upsert before delete: a reader sees the old or the new version, never neither.
        Deterministic point ids make a redelivered event overwrite, not duplicate.
        """
        indexed = []
        for event in events:
            collection = self._collection(event.embedding)
            points = [
                ChunkPoint(
                    chunk_id=chunk.chunk_id, document_id=event.document_id, document_version=event.document_version,
                    text=chunk.text, vector=chunk.vector,
                    payload={"title": event.title, "source": event.source, "metadata": event.metadata, "chunk_index": chunk.index},
                )
                for chunk in event.chunks
            ]
            self.store.upsert(collection, points, event.embedding.version)
            superseded = self.store.delete_superseded(collection, event.document_id, event.document_version)
            indexed.append(event.caused(
                DocumentIndexed, self.producer,
                document_id=event.document_id, document_version=event.document_version, collection=collection,
                chunk_count=len(points), superseded_chunks=superseded, embedding=event.embedding,
            ))
        return indexed

    def retrieve(self, events: Sequence[QueryEmbedded]) -> list[ContextRetrieved]:
        """Search each query's collection with its vector, text, filters and ``top_k``."""
        results = []
        for event in events:
            collection = self._collection(event.embedding)
            hits = self.store.search(
                collection, vector=event.vector, text=event.question, top_k=event.top_k,
                filters=event.filters or None, mode=self.settings.mode, score_threshold=self.settings.score_threshold,
            )
            results.append(event.caused(
                ContextRetrieved, self.producer,
                request_id=event.request_id, question=event.question, filters=event.filters,
                prompt_name=event.prompt_name, prompt_version=event.prompt_version, evaluation=event.evaluation,
                retrieval=RetrievalInfo(collection=collection, mode=self.settings.mode, top_k=event.top_k, embedding=event.embedding),
                contexts=[
                    RetrievedChunk(
                        chunk_id=hit.chunk_id, document_id=hit.document_id, document_version=hit.document_version,
                        text=hit.text, score=hit.score, title=hit.payload.get("title"), source=hit.payload.get("source"),
                    )
                    for hit in hits
                ],
            ))
        return results


def create_app(settings: RetrievalSettings | None = None) -> AsgiFastStream:
    settings = settings or RetrievalSettings()
    broker = make_broker(settings.kafka, f"ragops-{SERVICE}")
    producer = producer_for(SERVICE)
    publisher = EventPublisher(broker, producer, [DocumentIndexed, ContextRetrieved])
    embedded = EventSubscriber(
        broker, publisher, ChunksEmbedded, kafka=settings.kafka,
        group_id="ragops-indexer", max_records=settings.index_batch_records,
    )
    queries = EventSubscriber(
        broker, publisher, QueryEmbedded, kafka=settings.kafka,
        group_id="ragops-retrieval", max_records=settings.query_batch_records,
    )
    index = Index(settings, producer)

    @embedded
    async def on_chunks_embedded(events: list[ChunksEmbedded]) -> None:
        await embedded.run(events, partial(asyncio.to_thread, index.index))

    @queries
    async def on_query_embedded(events: list[QueryEmbedded]) -> None:
        await queries.run(events, partial(asyncio.to_thread, index.retrieve))

    return service_app(SERVICE, __doc__ or "", broker, warm_up=[index.open], close=[index.close])


def main() -> None:
    run_service(SERVICE, RetrievalSettings, create_app)

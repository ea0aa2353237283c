"""The embedding service: one model, two callers. Consumes ``DocumentChunked`` and
``QuerySubmitted``; publishes ``ChunksEmbedded`` and ``QueryEmbedded``.

Each subscriber fetches a batch of records and embeds all their texts in one call, so
concurrent requests share forward passes (micro-batching across messages). Inference runs
in a worker thread, never on the event loop.
"""

import asyncio
from collections.abc import Sequence
from functools import partial
from pathlib import Path
from typing import Literal

from faststream.asgi import AsgiFastStream
from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

from ragops_embedding.embedder import Embedder
from ragops_schemas import ChunksEmbedded, DocumentChunked, EmbeddedChunk, Producer, QueryEmbedded, QuerySubmitted
from ragops_shared.broker import EventPublisher, EventSubscriber, make_broker
from ragops_shared.ops import MODEL_LATENCY
from ragops_shared.models import DEFAULT_EMBEDDING_MODEL_NAME, default_embedding_model_dir
from ragops_shared.service import producer_for, run_service, service_app
from ragops_shared.settings import KafkaSettings, PlatformSettings

SERVICE = "embedding"


class EmbeddingSettings(BaseSettings):
    """Env prefix ``RAGOPS_EMBEDDING_``."""

    model_config = SettingsConfigDict(env_prefix="RAGOPS_EMBEDDING_", extra="ignore")

    model: Path | None = Field(default=None, description="HF model directory; None = packaged all-MiniLM-L6-v2.")
    model_name: str | None = Field(default=None, description="Name recorded on events; None = derived.")
    max_length: int = Field(default=256, gt=0, description="Tokens per text (longer texts are truncated).")
    batch_size: int = Field(default=32, gt=0, description="Texts per forward pass.")
    dtype: Literal["auto", "float32", "bfloat16"] = "auto"
    document_batch_records: int = Field(default=8, gt=0, description="DocumentChunked records per fetch.")
    query_batch_records: int = Field(default=32, gt=0, description="QuerySubmitted records per fetch.")
    platform: PlatformSettings = Field(default_factory=PlatformSettings)
    kafka: KafkaSettings = Field(default_factory=KafkaSettings)

    def embedder(self) -> Embedder:
        model = self.model or default_embedding_model_dir()
        name = self.model_name or (DEFAULT_EMBEDDING_MODEL_NAME if self.model is None else None)
        return Embedder(
            model, name=name, max_length=self.max_length, batch_size=self.batch_size,
            dtype=self.dtype, torch_threads=self.platform.torch_threads,
        )


def _embed(embedder: Embedder, texts: list[str]) -> list[list[float]]:
    """Vectors as lists (JSON-ready), with the model call's latency recorded."""
    with MODEL_LATENCY.labels(SERVICE, embedder.name).time():
        return embedder.embed(texts).tolist()


def embed_documents(embedder: Embedder, producer: Producer, events: Sequence[DocumentChunked]) -> list[ChunksEmbedded]:
    """Embed every chunk of every event in one call; one ``ChunksEmbedded`` per document."""
    texts = [chunk.text for event in events for chunk in event.chunks]
    vectors = iter(_embed(embedder, texts))
    return [
        event.caused(
            ChunksEmbedded, producer,
            document_id=event.document_id, document_version=event.document_version, title=event.title,
            source=event.source, metadata=event.metadata, embedding=embedder.info,
            chunks=[EmbeddedChunk(**chunk.model_dump(), vector=next(vectors)) for chunk in event.chunks],
        )
        for event in events
    ]


def embed_queries(embedder: Embedder, producer: Producer, events: Sequence[QuerySubmitted]) -> list[QueryEmbedded]:
    """Embed the questions of a batch of queries in one call."""
    vectors = _embed(embedder, [event.question for event in events])
    return [
        event.caused(
            QueryEmbedded, producer,
            request_id=event.request_id, question=event.question, top_k=event.top_k, filters=event.filters,
            prompt_name=event.prompt_name, prompt_version=event.prompt_version, evaluation=event.evaluation,
            embedding=embedder.info, vector=vector,
        )
        for event, vector in zip(events, vectors, strict=True)
    ]


def create_app(settings: EmbeddingSettings | None = None) -> AsgiFastStream:
    settings = settings or EmbeddingSettings()
    broker = make_broker(settings.kafka, f"ragops-{SERVICE}")
    producer = producer_for(SERVICE)
    publisher = EventPublisher(broker, producer, [ChunksEmbedded, QueryEmbedded])
    embedder = settings.embedder()
    documents = EventSubscriber(
        broker, publisher, DocumentChunked, kafka=settings.kafka,
        group_id="ragops-embedding-documents", max_records=settings.document_batch_records,
    )
    queries = EventSubscriber(
        broker, publisher, QuerySubmitted, kafka=settings.kafka,
        group_id="ragops-embedding-queries", max_records=settings.query_batch_records,
    )

    @documents
    async def on_document_chunked(events: list[DocumentChunked]) -> None:
        await documents.run(events, partial(asyncio.to_thread, embed_documents, embedder, producer))

    @queries
    async def on_query_submitted(events: list[QuerySubmitted]) -> None:
        await queries.run(events, partial(asyncio.to_thread, embed_queries, embedder, producer))

    return service_app(SERVICE, __doc__ or "", broker, warm_up=[embedder.warm_up])


def main() -> None:
    run_service(SERVICE, EmbeddingSettings, create_app)

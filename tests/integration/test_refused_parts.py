"""Every document version ends somewhere (issue 12, items 6 and 8): when one part of a
version in parts is dead-lettered, the version is rejected (``DocumentRejected`` with its
version and chunk total, on the submission's trace, so the producer's watcher and the
trainer learn it) and the indexer withdraws what the other parts wrote; a part of the same
submission that comes later writes nothing, and the same content submitted again is indexed.
Also: the reused-chunk count of a version in parts is the whole version's, counted once."""

from collections.abc import Sequence

import pytest
from faststream import FastStream

from ragops_embedding.app import embed_documents
from ragops_ingestion.app import ingest
from ragops_retrieval.app import Index
from ragops_schemas import (
    ChunkerInfo,
    DocumentChunked,
    DocumentIndexed,
    DocumentRedacted,
    DocumentRejected,
    EmbeddingModelInfo,
    Event,
    MessageDeadLettered,
    Topic,
)
from ragops_shared.broker import EventPublisher, EventSubscriber, make_broker
from ragops_shared.parts import refused_version
from tests.helpers import PRODUCER
from tests.integration.services import produce_raw, running, wait_for, watching

INFO = ChunkerInfo(tokenizer="minilm", chunk_size=200, overlap=32)
PART_BYTES = 16 * 1024
MODEL = EmbeddingModelInfo(name="test-model", version="v1", dimension=4)


def _content(corpus_rows: list[dict], passages: int = 40) -> str:
    return "\n\n".join(row["text"] for row in corpus_rows[:passages])


def _chunked(chunker, content: str, previous: DocumentIndexed | None = None) -> list[DocumentChunked]:
    submitted = DocumentRedacted(producer=PRODUCER, document_id="doc", content=content)
    parts = ingest(chunker, INFO, PRODUCER, submitted, previous, part_bytes=PART_BYTES)
    assert len(parts) >= 3 and all(isinstance(part, DocumentChunked) for part in parts)
    return parts  # type: ignore[return-value]


@pytest.mark.model
@pytest.mark.qdrant
def test_a_version_with_a_dead_lettered_part_is_withdrawn_and_its_late_parts_dropped(
    chunker, embedder, index: Index, corpus_rows: list[dict]
) -> None:
    content = _content(corpus_rows)
    [old] = index.index(embed_documents(embedder, PRODUCER, _chunked(chunker, content)))
    collection = old.collection

    # A sentence changed in the middle: most chunks are reused, a few embedded again.
    edited = content.replace(". ", ". An edited sentence no version had before. ", 1)
    chunked = _chunked(chunker, edited, old)
    embedded = embed_documents(embedder, PRODUCER, chunked, lambda *_: old)
    version = chunked[0].document_version
    # Part 2 is dead-lettered by the embedding service; the others reach the indexer.
    late = embedded[2:]
    assert index.index([embedded[0]]) == []
    written = index.store.count(collection, "doc", document_version=version, embedded_for=version)
    assert written > 0, "the first part wrote new points: served until the version ends"

    [rejection] = refused_version(chunked[1], PRODUCER, "ValueError: bad record", embedder.info)
    assert rejection.stage == "embedding" and rejection.document_version == version
    assert rejection.chunk_total == chunked[0].chunk_total and rejection.trace_id == chunked[0].trace_id
    assert "part 2 of" in rejection.reason and "bad record" in rejection.reason
    assert refused_version(chunked[1], PRODUCER, "again", embedder.info)[0].event_id == rejection.event_id

    assert index.withdraw([rejection]) == []
    assert index.store.count(collection, "doc", document_version=version, embedded_for=version) == 0
    # What readers find is the old version's text: its own points and those the new one reused.
    assert index.store.count(collection, "doc") == old.chunk_count
    # Parts after the refused one (and a redelivered earlier one) write nothing and complete nothing.
    assert index.index([*late, embedded[0]]) == []
    assert index.store.count(collection, "doc") == old.chunk_count

    # The same content submitted again (a new submission: a new trace) is indexed in full.
    again = embed_documents(embedder, PRODUCER, _chunked(chunker, edited, old), lambda *_: old)
    assert again[0].trace_id != rejection.trace_id
    [indexed] = index.index(again)
    assert indexed.document_version == version and index.store.count(collection, "doc") == indexed.chunk_count


@pytest.mark.model
@pytest.mark.qdrant
def test_a_rejection_keeps_a_version_already_indexed_whole(chunker, embedder, index: Index, corpus_rows) -> None:
    chunked = _chunked(chunker, _content(corpus_rows))
    [indexed] = index.index(embed_documents(embedder, PRODUCER, chunked))
    # The same version submitted again (its unchanged acknowledgement missed), one part refused.
    [rejection] = refused_version(chunked[1], PRODUCER, "model failure", embedder.info)
    index.withdraw([rejection])
    assert index.store.count(indexed.collection, "doc", document_version=indexed.document_version) == (
        indexed.chunk_count
    )


@pytest.mark.model
@pytest.mark.qdrant
def test_reused_chunks_of_a_version_in_parts_are_summed_over_its_parts_once(
    chunker, embedder, index: Index, corpus_rows: list[dict]
) -> None:
    content = _content(corpus_rows)
    [old] = index.index(embed_documents(embedder, PRODUCER, _chunked(chunker, content)))
    edited = content.replace(". ", ". An edited sentence no version had before. ", 1)
    chunked = _chunked(chunker, edited, old)
    embedded = embed_documents(embedder, PRODUCER, chunked, lambda *_: old)
    # Redelivered parts must not count twice.
    [second] = index.index([*embedded, embedded[0]])[:1]
    new_ids = {chunk.chunk_id for part in chunked for chunk in part.chunks}
    fresh = {chunk.chunk_id for part in embedded for chunk in part.chunks}
    assert fresh and len(chunked) > 2
    assert second.reused_chunks == len(new_ids & set(old.chunk_ids)) == len(new_ids - fresh)
    assert second.chunk_count == second.reused_chunks + len(fresh)

    # An unchanged re-submission reuses every distinct chunk, once (not once per repetition).
    repeated = _chunked(chunker, f"{edited}\n\n{edited}")
    ids = [chunk.chunk_id for part in repeated for chunk in part.chunks]
    assert len(ids) > len(set(ids)), "the text repeats: some chunks share an id"
    # Complete once every distinct chunk is in (the repeating parts complete it again: one id).
    whole, *again = index.index(embed_documents(embedder, PRODUCER, repeated))
    assert all(event.event_id == whole.event_id for event in again)
    [unchanged] = ingest(
        chunker,
        INFO,
        PRODUCER,
        DocumentRedacted(producer=PRODUCER, document_id="doc", content=f"{edited}\n\n{edited}"),
        whole,
        part_bytes=PART_BYTES,
    )
    assert isinstance(unchanged, DocumentIndexed) and unchanged.unchanged
    assert unchanged.reused_chunks == whole.chunk_count


@pytest.mark.kafka
async def test_a_dead_lettered_part_publishes_its_versions_rejection_on_the_submissions_trace(kafka) -> None:
    chunk = {"index": 0, "token_count": 1, "char_start": 0, "char_end": 4}
    parts = [
        DocumentChunked(
            producer=PRODUCER,
            document_id="doc",
            document_version="v1",
            content_type="text/plain",
            chunker=INFO,
            chunks=[{**chunk, "chunk_id": f"c{number}", "text": "poison" if number == 2 else "text"}],
            part=number,
            parts=3,
            chunk_total=3,
            trace_id="ab" * 16,
        )
        for number in (1, 2, 3)
    ]
    broker = make_broker(kafka, "test-embedding")
    publisher = EventPublisher(broker, PRODUCER, [DocumentRejected])
    subscriber = EventSubscriber(
        broker,
        publisher,
        DocumentChunked,
        kafka=kafka,
        group_id="test-refused-parts",
        on_refused=lambda event, reason: refused_version(event, PRODUCER, reason, MODEL),
    )

    async def process(events: Sequence[DocumentChunked]) -> list[Event]:
        if any(chunk.text == "poison" for event in events for chunk in event.chunks):
            raise ValueError("cannot embed this part")
        return []

    @subscriber
    async def handle(events: list[DocumentChunked]) -> None:
        await subscriber.run(events, process)

    async with watching(kafka, [DocumentRejected, MessageDeadLettered]) as seen:
        await produce_raw(kafka, Topic.DOCUMENT_CHUNKED, [(b"doc", part.model_dump_json().encode()) for part in parts])
        async with running(FastStream(broker)):
            await wait_for(seen, lambda events: {type(e) for e in events} == {DocumentRejected, MessageDeadLettered})

    [letter] = [e for e in seen if isinstance(e, MessageDeadLettered)]
    [rejected] = [e for e in seen if isinstance(e, DocumentRejected)]
    assert letter.offset is not None and "cannot embed this part" in letter.reason
    assert rejected.document_id == "doc" and rejected.stage == "embedding" and rejected.document_version == "v1"
    assert rejected.chunk_total == 3 and rejected.embedding == MODEL and rejected.trace_id == parts[1].trace_id
    assert "part 2 of 3 was dead-lettered: ValueError: cannot embed this part" in rejected.reason

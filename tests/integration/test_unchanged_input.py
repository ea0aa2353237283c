"""Unchanged input is a no-op, on the services' plain functions with the real tokenizer,
embedding model and Qdrant Edge: a re-submitted version is acknowledged without embedding,
a one-sentence change embeds only the chunks whose text changed."""

import pytest

from ragops_embedding.app import embed_documents
from ragops_ingestion.app import ingest
from ragops_ingestion.chunking import TokenChunker
from ragops_models.defaults import default_embedding_model_dir
from ragops_schemas import ChunkerInfo, DocumentChunked, DocumentIndexed, DocumentRedacted
from ragops_shared.broker import EventRejected
from ragops_shared.ops import CHUNKS_REUSED, DOCUMENTS_UNCHANGED
from tests.helpers import PRODUCER

pytestmark = [pytest.mark.model, pytest.mark.qdrant]
INFO = ChunkerInfo(tokenizer="minilm", chunk_size=200, overlap=32)


@pytest.fixture
def article(corpus_rows: list[dict]) -> str:
    """Several passages of one article: a document of several chunks."""
    return "\n\n".join(row["text"] for row in corpus_rows if row["title"] == "Normans")


def _submitted(content: str) -> DocumentRedacted:
    return DocumentRedacted(producer=PRODUCER, document_id="normans", content=content)


def _metric(counter, service: str) -> float:
    return counter.labels(service)._value.get()


def _index(chunker, embedder, index, content: str, indexed: DocumentIndexed | None = None) -> DocumentIndexed:
    [chunked] = ingest(chunker, INFO, PRODUCER, _submitted(content), indexed)
    assert isinstance(chunked, DocumentChunked), chunked
    [done] = index.index(embed_documents(embedder, PRODUCER, [chunked], lambda *_: indexed))
    return done


def test_a_resubmitted_version_is_acknowledged_without_embedding(chunker, embedder, index, article) -> None:
    first = _index(chunker, embedder, index, article)
    assert first.chunk_count > 3 and len(first.chunk_ids) == first.chunk_count and not first.unchanged
    unchanged_before = _metric(DOCUMENTS_UNCHANGED, "ingestion")

    again = _submitted(article)
    [[ack], [redelivered]] = [ingest(chunker, INFO, PRODUCER, again, first) for _ in range(2)]
    assert isinstance(ack, DocumentIndexed) and ack.unchanged
    assert (ack.document_version, ack.collection, ack.chunk_count, ack.chunk_ids) == (
        first.document_version,
        first.collection,
        first.chunk_count,
        first.chunk_ids,
    )
    assert ack.superseded_chunks == 0 and ack.reused_chunks == first.chunk_count
    assert ack.event_id == redelivered.event_id != first.event_id, "one acknowledgement per submission"
    assert ack.trace_id == again.trace_id
    assert _metric(DOCUMENTS_UNCHANGED, "ingestion") == unchanged_before + 2

    # Another chunker makes other chunks of the same text: that is a change to index.
    other = TokenChunker(default_embedding_model_dir(), 120, 16)
    other.warm_up()
    [rechunked] = ingest(other, INFO, PRODUCER, again, first)
    assert isinstance(rechunked, DocumentChunked)


def test_a_one_sentence_change_embeds_only_the_changed_chunks(chunker, embedder, index, article) -> None:
    first = _index(chunker, embedder, index, article)
    # One word of the third chunk, swapped for a word of the same token length: later
    # windows keep their place, so only the chunk(s) holding the word change.
    [changed_chunk] = [c for c in chunker.chunk(article) if c.index == 2]
    word = changed_chunk.text.split()[len(changed_chunk.text.split()) // 2]
    position = article.index(changed_chunk.text) + changed_chunk.text.index(f" {word} ")
    edited = f"{article[:position]} kingdom {article[position + len(word) + 2 :]}"
    assert edited != article
    reused_before = _metric(CHUNKS_REUSED, "embedding")

    [chunked] = ingest(chunker, INFO, PRODUCER, _submitted(edited), first)
    assert isinstance(chunked, DocumentChunked) and chunked.document_version != first.document_version
    [embedded] = embed_documents(embedder, PRODUCER, [chunked], lambda *_: first)
    assert 1 <= len(embedded.chunks) <= 2 and len(embedded.chunks) + len(embedded.reused_chunks) == first.chunk_count
    assert not {c.chunk_id for c in embedded.chunks} & set(first.chunk_ids)
    assert _metric(CHUNKS_REUSED, "embedding") == reused_before + len(embedded.reused_chunks)

    [second] = index.index([embedded])
    assert second.reused_chunks == len(embedded.reused_chunks) and second.chunk_count == first.chunk_count
    assert second.superseded_chunks == len(embedded.chunks), "only the changed chunks' old points go"
    assert second.chunk_ids == [c.chunk_id for c in chunked.chunks]
    assert index.store.count(second.collection, "normans") == second.chunk_count
    # A reused chunk is found under the new version, with its old vector.
    reused = embedded.reused_chunks[0]
    vector = embedder.embed([reused.text])[0].tolist()
    hits = index.store.search(second.collection, vector=vector, text="", top_k=1, mode="dense")
    assert (hits[0].chunk_id, hits[0].document_version) == (reused.chunk_id, second.document_version)
    assert hits[0].score == pytest.approx(1.0, abs=1e-3)


def test_a_reused_chunk_gone_from_the_index_is_refused_with_nothing_written(chunker, embedder, index, article) -> None:
    first = _index(chunker, embedder, index, article)
    # A newer version superseded every chunk after the embedding service looked.
    _index(chunker, embedder, index, "Something else entirely.", first)
    [stale] = ingest(chunker, INFO, PRODUCER, _submitted(article.replace("Normans", "Normanz", 1)), None)
    assert isinstance(stale, DocumentChunked)
    [embedded] = embed_documents(embedder, PRODUCER, [stale], lambda *_: first)
    assert embedded.reused_chunks
    with pytest.raises(EventRejected, match="submit the document again"):
        index.index([embedded])
    assert index.store.count(first.collection, "normans") == 1, "the newer version is untouched"

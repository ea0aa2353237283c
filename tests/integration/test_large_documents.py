"""No event larger than the broker takes (issue 12, item 8b): a 3 MB document goes through
ingestion, embedding and the indexer (their plain functions, the real model, a real Qdrant
Edge store) in numbered parts, each under its service's byte budget, and is indexed once.

The document repeats real passages, so its chunks are real text while the embedding (which
embeds a repeated text once) stays quick on a CPU; every chunk still travels in the events."""

from pathlib import Path

import pytest

from ragops_embedding.app import embed_documents
from ragops_embedding.settings import EmbeddingSettings
from ragops_ingestion.app import ingest
from ragops_ingestion.chunking import TokenChunker
from ragops_ingestion.settings import IngestionSettings
from ragops_models.defaults import default_embedding_model_dir
from ragops_retrieval.app import Index
from ragops_retrieval.settings import RetrievalSettings
from ragops_schemas import ChunkerInfo, DocumentChunked, DocumentIndexed, DocumentRedacted, DocumentRejected
from ragops_shared.parts import serialised_size
from ragops_shared.settings import PlatformSettings
from tests.helpers import PRODUCER

pytestmark = [pytest.mark.model, pytest.mark.qdrant]

INFO = ChunkerInfo(tokenizer="minilm", chunk_size=200, overlap=32)
MB = 1_000_000


def _document(corpus_rows: list[dict], size: int) -> str:
    block = "\n\n".join(row["text"] for row in corpus_rows[:12])
    return "\n\n".join([block] * (size // len(block.encode()) + 1))


def _submitted(content: str, document_id: str = "big") -> DocumentRedacted:
    return DocumentRedacted(producer=PRODUCER, document_id=document_id, content=content, metadata={"team": "ops"})


def test_a_3_mb_document_travels_in_parts_under_the_budget_and_is_indexed_once(
    embedder, chunker, corpus_rows: list[dict], tmp_path: Path
) -> None:
    settings = RetrievalSettings(platform=PlatformSettings(data_dir=tmp_path))
    index = Index(settings, PRODUCER)
    index.open()
    [old] = index.index(embed_documents(embedder, PRODUCER, ingest(chunker, INFO, PRODUCER, _submitted("Old text."))))

    chunked = ingest(chunker, INFO, PRODUCER, _submitted(_document(corpus_rows, 3 * MB)))
    assert all(isinstance(event, DocumentChunked) for event in chunked)
    parts = len(chunked)
    assert parts > 1 and max(map(serialised_size, chunked)) <= IngestionSettings().part_bytes
    assert [e.part for e in chunked] == list(range(1, parts + 1)) and {e.parts for e in chunked} == {parts}
    chunks = [chunk for event in chunked for chunk in event.chunks]
    assert [chunk.index for chunk in chunks] == list(range(len(chunks)))
    distinct = len({chunk.chunk_id for chunk in chunks})
    assert {e.chunk_total for e in chunked} == {distinct}

    # The embedding service fetches a few parts per batch.
    embedded = [out for i in range(0, parts, 2) for out in embed_documents(embedder, PRODUCER, chunked[i : i + 2])]
    assert max(map(serialised_size, embedded)) <= EmbeddingSettings().part_bytes
    assert [chunk.chunk_id for event in embedded for chunk in event.chunks] == [c.chunk_id for c in chunks]
    assert len({event.event_id for event in embedded}) == len(embedded)

    # Parts one by one, with a restart of the indexer half-way: the count lives in the store.
    outputs = []
    for number, event in enumerate(embedded):
        if number == len(embedded) // 2:
            index.close()
            index = Index(settings, PRODUCER)
            index.open()
        outputs.append(index.index([event]))
        if number < len(embedded) - 1:  # incomplete: the old version is still what readers find
            assert index.store.count(old.collection, "big", document_version=old.document_version) == old.chunk_count
    assert [len(found) for found in outputs] == [0] * (len(embedded) - 1) + [1]
    [indexed] = outputs[-1]
    assert indexed.chunk_count == distinct == index.store.count(indexed.collection, "big")
    assert indexed.superseded_chunks == old.chunk_count

    # A redelivered part: no new points, nothing deleted, the same DocumentIndexed id.
    [again] = index.index([embedded[0]])
    assert again.event_id == indexed.event_id and again.superseded_chunks == 0
    assert index.store.count(indexed.collection, "big") == distinct
    index.close()


def test_a_redelivered_part_of_an_incomplete_version_completes_nothing(
    embedder, chunker, corpus_rows: list[dict], tmp_path: Path
) -> None:
    index = Index(RetrievalSettings(platform=PlatformSettings(data_dir=tmp_path)), PRODUCER)
    index.open()
    chunked = ingest(chunker, INFO, PRODUCER, _submitted(_document(corpus_rows, 3 * MB // 2)), part_bytes=256 * 1024)
    embedded = embed_documents(embedder, PRODUCER, chunked)
    assert len(embedded) >= 3
    assert index.index([embedded[1], embedded[1], embedded[0]]) == []
    assert len(index.index(embedded[2:])) == 1
    index.close()


def test_a_document_in_parts_is_a_no_op_unchanged_and_reuses_its_indexed_chunks_changed(
    embedder, chunker, corpus_rows: list[dict], tmp_path: Path
) -> None:
    index = Index(RetrievalSettings(platform=PlatformSettings(data_dir=tmp_path)), PRODUCER)
    index.open()
    content = _document(corpus_rows, MB)
    limits = {"part_bytes": 256 * 1024}
    chunked = ingest(chunker, INFO, PRODUCER, _submitted(content), **limits)
    assert len(chunked) > 1
    [first] = index.index(embed_documents(embedder, PRODUCER, chunked))
    # Completed by its last part, the version still lists every chunk id (read from the store).
    distinct = {chunk.chunk_id for event in chunked for chunk in event.chunks}
    assert len(first.chunk_ids) == len(distinct) == first.chunk_count and set(first.chunk_ids) == distinct

    [ack] = ingest(chunker, INFO, PRODUCER, _submitted(content), first, **limits)
    assert isinstance(ack, DocumentIndexed) and ack.unchanged and ack.event_id != first.event_id

    # A sentence added at the end: each part embeds only the chunks the index does not hold.
    edited = f"{content}\n\nA closing sentence that no earlier version of the document had."
    rechunked = ingest(chunker, INFO, PRODUCER, _submitted(edited), first, **limits)
    assert len(rechunked) > 1 and all(isinstance(event, DocumentChunked) for event in rechunked)
    embedded = embed_documents(embedder, PRODUCER, rechunked, lambda *_: first)
    fresh = {chunk.chunk_id for event in embedded for chunk in event.chunks}
    assert fresh and not fresh & distinct and all(event.reused_chunks for event in embedded[:-1])
    [second] = index.index(embedded)
    new_distinct = {chunk.chunk_id for event in rechunked for chunk in event.chunks}
    assert set(second.chunk_ids) == new_distinct and len(second.chunk_ids) == second.chunk_count
    assert index.store.count(second.collection, "big") == len(new_distinct)
    [again] = ingest(chunker, INFO, PRODUCER, _submitted(edited), second, **limits)
    assert isinstance(again, DocumentIndexed) and again.unchanged
    index.close()


def test_a_document_above_the_limit_is_rejected_with_the_reason(chunker) -> None:
    [rejected] = ingest(chunker, INFO, PRODUCER, _submitted("x" * 2048), max_document_bytes=1024)
    assert isinstance(rejected, DocumentRejected) and rejected.stage == "ingestion"
    assert "2048 bytes is above the limit of 1024 bytes" in rejected.reason


def test_a_chunk_that_fits_no_part_is_rejected_with_the_reason() -> None:
    # One "word" (one [UNK] token) of 200,000 characters, which a chunker bounded to 300,000
    # characters keeps whole: a 200 kB chunk.
    unbounded = TokenChunker(default_embedding_model_dir(), 200, 32, max_chars=300_000)
    unbounded.warm_up()
    [rejected] = ingest(unbounded, INFO, PRODUCER, _submitted("y" * 200_000), part_bytes=64 * 1024)
    assert isinstance(rejected, DocumentRejected) and "does not fit an event of 65536 bytes" in rejected.reason

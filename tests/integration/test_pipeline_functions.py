"""The services' plain functions chained without Kafka, on real models and a real Qdrant Edge
store: what each handler delegates to."""

from pathlib import Path

import numpy as np
import pytest

from ragops_embedding.app import embed_documents, embed_queries
from ragops_evaluation.app import evaluate
from ragops_ingestion.app import ingest
from ragops_ingestion.chunking import TokenChunker
from ragops_ingestion.settings import IngestionSettings
from ragops_retrieval.app import Index, collection_name
from ragops_retrieval.settings import RetrievalSettings
from ragops_schemas import AnswerGenerated, ChunkerInfo, DocumentChunked, DocumentRedacted, QueryRedacted
from ragops_schemas.ids import derived_event_id, indexed_version_event_id
from ragops_shared.settings import PlatformSettings
from ragops_shared.text import contextual_text
from tests.helpers import PRODUCER, example

pytestmark = [pytest.mark.model, pytest.mark.qdrant]


def _chunked(
    chunker: TokenChunker, document_id: str, content: str, content_type: str = "text/plain"
) -> DocumentChunked:
    submitted = DocumentRedacted(
        producer=PRODUCER, document_id=document_id, content=content, content_type=content_type, metadata={"team": "ops"}
    )
    settings = IngestionSettings()
    [event] = ingest(
        chunker,
        ChunkerInfo(tokenizer="minilm", chunk_size=settings.chunk_size, overlap=settings.overlap),
        PRODUCER,
        submitted,
    )
    assert isinstance(event, DocumentChunked), event
    return event


def test_embeddings_are_unit_vectors_with_model_info(embedder, chunker) -> None:
    [embedded] = embed_documents(embedder, PRODUCER, [_chunked(chunker, "d", "Oxygen is a chemical element.")])
    vector = np.array(embedded.chunks[0].vector)
    assert vector.shape == (384,) and abs(np.linalg.norm(vector) - 1) < 1e-3
    assert embedded.embedding.name == "sentence-transformers/all-MiniLM-L6-v2" and embedded.embedding.dimension == 384


def test_a_changed_document_supersedes_its_old_chunks(embedder, chunker, index) -> None:
    old = embed_documents(embedder, PRODUCER, [_chunked(chunker, "policy", "Refunds are accepted within 14 days.")])
    new = embed_documents(
        embedder, PRODUCER, [_chunked(chunker, "policy", "Refunds are accepted within 30 days of delivery.")]
    )
    [first] = index.index(old)
    [again] = index.index(old)  # redelivery: same point ids, nothing added
    assert index.store.count(first.collection, "policy") == first.chunk_count
    [second] = index.index(new)
    assert second.superseded_chunks == first.chunk_count and again.superseded_chunks == 0
    [query] = embed_queries(
        embedder,
        PRODUCER,
        [QueryRedacted(producer=PRODUCER, request_id="r", question="How long do I have for a refund?")],
    )
    [retrieved] = index.retrieve([query])
    assert [c.document_version for c in retrieved.contexts] == [second.document_version]
    assert "30 days" in retrieved.contexts[0].text


class ReadAfterEveryWrite:
    """A vector store that runs ``read()`` after each of its writes returned: what a reader
    searching at that moment finds."""

    def __init__(self, store, read) -> None:
        self._store, self._read = store, read

    def upsert(self, *args, **kwargs):
        written = self._store.upsert(*args, **kwargs)
        self._read()
        return written

    def delete_superseded(self, *args, **kwargs):
        deleted = self._store.delete_superseded(*args, **kwargs)
        self._read()
        return deleted

    def __getattr__(self, name: str):
        return getattr(self._store, name)


def test_a_reader_finds_the_old_or_the_new_version_between_any_two_writes(
    embedder,
    chunker,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    [query] = embed_queries(
        embedder,
        PRODUCER,
        [QueryRedacted(producer=PRODUCER, request_id="r", question="How long do I have for a refund?")],
    )
    seen: list[set[str]] = []
    open_store = RetrievalSettings.open_store
    monkeypatch.setattr(
        RetrievalSettings,
        "open_store",
        lambda settings: ReadAfterEveryWrite(
            open_store(settings),
            lambda: seen.append({c.document_version for c in index.retrieve([query])[0].contexts}),
        ),
    )
    index = Index(RetrievalSettings(platform=PlatformSettings(data_dir=tmp_path)), PRODUCER)
    index.open()
    try:
        [old] = index.index(
            embed_documents(embedder, PRODUCER, [_chunked(chunker, "policy", "Refunds are accepted within 14 days.")])
        )
        seen.clear()
        [new] = index.index(
            embed_documents(
                embedder, PRODUCER, [_chunked(chunker, "policy", "Refunds are accepted within 30 days of delivery.")]
            )
        )
    finally:
        index.close()
    assert len(seen) >= 2, "the re-index wrote its points and deleted the superseded ones"
    assert all(found and found <= {old.document_version, new.document_version} for found in seen), seen
    assert seen[-1] == {new.document_version}


def test_hybrid_retrieval_with_filters_on_real_passages(embedder, chunker, index, corpus_rows: list[dict]) -> None:
    picked = [row for row in corpus_rows if row["title"] in {"Oxygen", "Normans"}][:40]
    documents = [
        DocumentRedacted(
            producer=PRODUCER,
            document_id=row["id"],
            content=row["text"],
            title=row["title"],
            metadata={"title": row["title"]},
        )
        for row in picked
    ]
    info = ChunkerInfo(tokenizer="minilm", chunk_size=200, overlap=32)
    chunked = [event for d in documents for event in ingest(chunker, info, PRODUCER, d)]
    index.index(embed_documents(embedder, PRODUCER, chunked))
    question = QueryRedacted(
        producer=PRODUCER, request_id="r", question="Who gave their name to Normandy?", filters={"title": "Normans"}
    )
    [retrieved] = index.retrieve(embed_queries(embedder, PRODUCER, [question]))
    assert retrieved.contexts and all(c.title == "Normans" for c in retrieved.contexts)
    assert retrieved.retrieval.mode == "hybrid" and retrieved.retrieval.collection == collection_name(
        "default", retrieved.retrieval.embedding
    )
    assert len(retrieved.contexts) <= question.top_k


def test_a_redelivered_batch_gets_the_same_event_ids(embedder, chunker, index) -> None:
    """Each service's function run twice on the same batch (a redelivery after its outputs
    were published and before its offsets were committed): the outputs have the same ids,
    one per cause and output type, so consumers and the sink keep one copy."""
    info = ChunkerInfo(tokenizer="minilm", chunk_size=200, overlap=32)
    documents = [
        DocumentRedacted(producer=PRODUCER, document_id=f"d{i}", content=f"Refund policy {i}: within {i} days.")
        for i in range(3)
    ]
    questions = [QueryRedacted(producer=PRODUCER, request_id=f"r{i}", question=f"Refunds {i}?") for i in range(3)]

    def twice(process, batch):
        first, again = process(batch), process(batch)
        assert [e.event_id for e in first] == [e.event_id for e in again], process
        assert len({e.event_id for e in first}) == len(batch), "one id per cause"
        return first

    # Small documents: each is one DocumentChunked (one part).
    chunked = twice(lambda batch: [e for d in batch for e in ingest(chunker, info, PRODUCER, d)], documents)
    embedded = twice(lambda batch: embed_documents(embedder, PRODUCER, batch), chunked)
    indexed = twice(index.index, embedded)
    queries = twice(lambda batch: embed_queries(embedder, PRODUCER, batch), questions)
    retrieved = twice(index.retrieve, queries)
    model = example(AnswerGenerated)  # the generator's part: its own test (test_answerer)
    answers = [
        context.caused(
            AnswerGenerated,
            PRODUCER,
            request_id=context.request_id,
            question=context.question,
            answer="Within the days the policy says.",
            contexts=context.contexts,
            generation=model.generation,
            lineage=model.lineage,
        )
        for context in retrieved
    ]
    evaluated = twice(lambda batch: evaluate(embedder, PRODUCER, 1.0, batch), answers)
    # The rule: a UUID5 of the output type and the cause's id.
    for outputs, causes in [
        (chunked, documents),
        (embedded, chunked),
        (queries, questions),
        (retrieved, queries),
        (evaluated, answers),
    ]:
        assert [e.event_id for e in outputs] == [
            derived_event_id(type(e).__name__, cause.event_id) for e, cause in zip(outputs, causes, strict=True)
        ]
    # A version may be completed by whichever of its parts arrives last: its id is the version's.
    assert [e.event_id for e in indexed] == [
        indexed_version_event_id(e.document_id, e.document_version, e.collection, tenant=e.tenant) for e in indexed
    ]


def test_retrieval_reports_the_dense_similarities_of_the_nearest_chunks(
    embedder, chunker, index, corpus_rows: list[dict]
) -> None:
    picked = [row for row in corpus_rows if row["title"] == "Normans"][:8]
    documents = [
        DocumentRedacted(producer=PRODUCER, document_id=row["id"], content=row["text"], title=row["title"])
        for row in picked
    ]
    info = ChunkerInfo(tokenizer="minilm", chunk_size=200, overlap=32)
    chunked = [event for d in documents for event in ingest(chunker, info, PRODUCER, d)]
    index.index(embed_documents(embedder, PRODUCER, chunked))
    question = QueryRedacted(producer=PRODUCER, request_id="r", question="Who gave their name to Normandy?", top_k=4)
    [query] = embed_queries(embedder, PRODUCER, [question])
    [retrieved] = index.retrieve([query])
    similarities = retrieved.retrieval.similarities
    # The abstention check reads them: the query's cosines to its 4 nearest chunks, best first.
    assert len(similarities) == 4 and similarities == sorted(similarities, reverse=True)
    assert similarities[0] == retrieved.retrieval.top_similarity
    chunks = [chunk for event in chunked for chunk in event.chunks]
    # Chunks are embedded under their contextual header (the title): the same text here.
    vectors = embedder.embed([contextual_text(chunk.text, title="Normans") for chunk in chunks])
    cosines = sorted((vectors @ np.asarray(query.vector)).tolist(), reverse=True)[:4]
    assert similarities == pytest.approx(cosines, abs=1e-3)


def test_chunks_are_embedded_and_bm25_indexed_under_their_title_and_shown_without_it(embedder, chunker, index) -> None:
    text = "It was founded in 1890 by spice traders."
    document = DocumentRedacted(producer=PRODUCER, document_id="z", content=text, title="Zanzibar archipelago")
    info = ChunkerInfo(tokenizer="minilm", chunk_size=200, overlap=32)
    [embedded] = embed_documents(embedder, PRODUCER, ingest(chunker, info, PRODUCER, document))
    [chunk] = embedded.chunks
    headed, bare = embedder.embed([f"Zanzibar archipelago\n\n{text}", text])
    assert np.allclose(chunk.vector, headed, atol=1e-5) and not np.allclose(chunk.vector, bare, atol=1e-3)
    [indexed] = index.index([embedded])
    # The title's word is only in the header: BM25 finds the chunk by it, and shows its own text.
    [hit] = index.store.search(indexed.collection, vector=headed, text="zanzibar", top_k=3, mode="sparse")
    assert (hit.chunk_id, hit.text) == (chunk.chunk_id, text)


def test_a_per_document_cap_leaves_room_for_other_documents(
    embedder, chunker, tmp_path: Path, corpus_rows: list[dict]
) -> None:
    normans = [row for row in corpus_rows if row["title"] == "Normans"]
    # One long document (several chunks about the Normans) among single-passage ones.
    documents = [
        DocumentRedacted(
            producer=PRODUCER, document_id="long", content="\n\n".join(r["text"] for r in normans[:4]), title="Normans"
        ),
        *(
            DocumentRedacted(producer=PRODUCER, document_id=row["id"], content=row["text"], title=row["title"])
            for row in normans[4:8]
        ),
    ]
    info = ChunkerInfo(tokenizer="minilm", chunk_size=200, overlap=32)
    embedded = embed_documents(embedder, PRODUCER, [e for d in documents for e in ingest(chunker, info, PRODUCER, d)])
    question = QueryRedacted(producer=PRODUCER, request_id="r", question="Who gave their name to Normandy?", top_k=3)
    [query] = embed_queries(embedder, PRODUCER, [question])
    retrieved = {}
    for cap in (None, 1):
        index = Index(
            RetrievalSettings(platform=PlatformSettings(data_dir=tmp_path / str(cap)), per_document=cap), PRODUCER
        )
        index.open()
        try:
            index.index(embedded)
            [retrieved[cap]] = index.retrieve([query])
        finally:
            index.close()
    uncapped = [c.document_id for c in retrieved[None].contexts]
    capped = [c.document_id for c in retrieved[1].contexts]
    assert uncapped.count("long") > 1  # the long document takes several of the three places
    assert len(capped) == len(set(capped)) == 3 and capped[0] == uncapped[0]
    # The abstention check's dense neighbours are not capped.
    assert retrieved[1].retrieval.similarities == retrieved[None].retrieval.similarities

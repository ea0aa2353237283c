"""Tenant isolation in the data plane, on the services' plain functions with the real
tokenizer, embedding model and Qdrant Edge: two tenants submit documents under the same id,
each is indexed as its own document, each tenant's questions retrieve its own chunks only, and
nothing one tenant does to its document (a new version, a withdrawal) touches the other's."""

import pytest

from ragops_embedding.app import embed_documents, embed_queries
from ragops_ingestion.app import ingest
from ragops_ingestion.chunking import TokenChunker
from ragops_models.embedder import Embedder
from ragops_retrieval.app import Index
from ragops_schemas import (
    ChunkerInfo,
    DocumentChunked,
    DocumentIndexed,
    DocumentRedacted,
    DocumentRejected,
    QueryRedacted,
)
from ragops_shared.indexed_view import IndexedDocuments
from ragops_shared.settings import KafkaSettings
from tests.helpers import PRODUCER

pytestmark = [pytest.mark.model, pytest.mark.qdrant]
INFO = ChunkerInfo(tokenizer="minilm", chunk_size=200, overlap=32)
ACME = "The acme handbook: parcels leave the warehouse in Lyon every Tuesday morning."
GLOBEX = "The globex handbook: invoices are approved by the finance team in Oslo."


class Pipeline:
    """Ingestion, embedding and indexing of one submission at a time, with the ingestion
    service's view of what is indexed (fed as the topic would feed it)."""

    def __init__(self, chunker: TokenChunker, embedder: Embedder, index: Index) -> None:
        self.chunker, self.embedder, self.index = chunker, embedder, index
        self.indexed = IndexedDocuments(KafkaSettings(), client_id="test")

    def submit(self, tenant: str, content: str, document_id: str = "handbook") -> DocumentIndexed:
        submitted = DocumentRedacted(producer=PRODUCER, tenant=tenant, document_id=document_id, content=content)
        [output] = ingest(self.chunker, INFO, PRODUCER, submitted, self.indexed.get(tenant, document_id))
        if isinstance(output, DocumentChunked):
            [output] = self.index.index(embed_documents(self.embedder, PRODUCER, [output], self.indexed.get))
        assert isinstance(output, DocumentIndexed), output
        assert output.tenant == tenant
        self.indexed.apply(output)
        return output

    def ask(self, tenant: str, question: str, mode: str = "hybrid") -> list[str]:
        """The texts of the chunks retrieved for ``tenant``'s question."""
        self.index.settings.mode = mode  # type: ignore[assignment]
        query = QueryRedacted(producer=PRODUCER, tenant=tenant, request_id=f"{tenant}-1", question=question)
        [retrieved] = self.index.retrieve(embed_queries(self.embedder, PRODUCER, [query]))
        assert retrieved.tenant == tenant
        return [context.text for context in retrieved.contexts]


@pytest.fixture
def pipeline(chunker: TokenChunker, embedder: Embedder, index: Index) -> Pipeline:
    return Pipeline(chunker, embedder, index)


@pytest.mark.parametrize("mode", ["hybrid", "dense", "sparse"])
def test_same_document_id_in_two_tenants_is_two_documents(pipeline: Pipeline, mode: str) -> None:
    acme = pipeline.submit("acme", ACME)
    globex = pipeline.submit("globex", GLOBEX)
    assert not set(acme.chunk_ids) & set(globex.chunk_ids)
    assert acme.event_id != globex.event_id
    assert globex.superseded_chunks == 0, "globex's handbook superseded acme's"

    for tenant, own, other in [("acme", ACME, GLOBEX), ("globex", GLOBEX, ACME)]:
        for question in ["When do parcels leave the warehouse?", "Who approves invoices?"]:
            texts = pipeline.ask(tenant, question, mode)
            # BM25 alone finds nothing for a question without a word of the tenant's text.
            assert set(texts) == {own} or (mode == "sparse" and texts == []), (tenant, question, texts)
            assert other not in texts
    assert pipeline.ask("initech", "Who approves invoices?", mode) == []


def test_the_same_content_under_the_same_id_is_indexed_for_each_tenant(pipeline: Pipeline) -> None:
    """Another tenant's indexed version is not this tenant's: no "unchanged" acknowledgement,
    no reused chunks, a point of its own."""
    acme = pipeline.submit("acme", ACME)
    globex = pipeline.submit("globex", ACME)
    assert not globex.unchanged and globex.reused_chunks == 0
    assert acme.document_version == globex.document_version and acme.event_id != globex.event_id
    assert pipeline.ask("globex", "When do parcels leave the warehouse?") == [ACME]
    # Each tenant's own re-submission is the no-op it always was.
    assert pipeline.submit("globex", ACME).unchanged


def test_a_new_version_and_a_withdrawal_stay_within_their_tenant(pipeline: Pipeline) -> None:
    acme = pipeline.submit("acme", ACME)
    replaced = pipeline.submit("globex", GLOBEX)
    changed = pipeline.submit("globex", GLOBEX + " Late invoices go to the auditors.")
    assert changed.superseded_chunks == len(replaced.chunk_ids)
    assert pipeline.ask("acme", "When do parcels leave the warehouse?") == [ACME]

    # Globex's version of acme's content is rejected after it was chunked: its points go,
    # acme's (same document id, same version) stay.
    globex = pipeline.submit("globex", ACME)
    rejected = DocumentRejected(
        producer=PRODUCER,
        tenant="globex",
        document_id="handbook",
        stage="indexing",
        reason="a part was dead-lettered",
        document_version=globex.document_version,
        embedding=globex.embedding,
        chunk_total=len(globex.chunk_ids) + 1,
    )
    pipeline.index.withdraw([rejected])
    store, collection = pipeline.index.store, acme.collection
    assert store.count(collection, "handbook", document_version=acme.document_version, tenant="acme") == len(
        acme.chunk_ids
    )
    assert store.count(collection, "handbook", document_version=acme.document_version, tenant="globex") == 0
    assert pipeline.ask("acme", "When do parcels leave the warehouse?") == [ACME]

"""A Markdown document through ingestion, embedding, a real Qdrant Edge index and retrieval to
the generation service's answer: each chunk keeps the heading it falls under, and the answer
cites the chunk that holds its words with that section."""

import pytest

from ragops_embedding.app import embed_documents, embed_queries
from ragops_generation.app import Answerer
from ragops_generation.settings import GenerationSettings
from ragops_ingestion.app import ingest
from ragops_ingestion.chunking import TokenChunker
from ragops_schemas import ChunkerInfo, DocumentRedacted, QueryRedacted
from tests.helpers import PRODUCER
from tests.unit.test_citations import Fixed

pytestmark = [pytest.mark.model, pytest.mark.qdrant]

GUIDE = """# Installing the tool

Install the tool with pip install ragops-tool on Python 3.11 or later.

## Refunds

Refunds are accepted within 30 days of delivery, with the receipt.
"""


def test_an_answer_cites_its_chunk_with_the_section_from_ingestion(embedder, chunker, index) -> None:
    info = ChunkerInfo(tokenizer="minilm", chunk_size=24, overlap=4)  # one chunk per section
    document = DocumentRedacted(
        producer=PRODUCER, document_id="guide", content=GUIDE, content_type="text/markdown", source="guide.md"
    )
    small = TokenChunker(chunker.tokenizer, info.chunk_size, info.overlap)
    small.warm_up()
    chunked = ingest(small, info, PRODUCER, document)
    index.index(embed_documents(embedder, PRODUCER, chunked))
    question = QueryRedacted(producer=PRODUCER, request_id="r", question="How long do I have for a refund?")
    [retrieved] = index.retrieve(embed_queries(embedder, PRODUCER, [question]))
    assert {c.section for c in retrieved.contexts} == {"Installing the tool", "Refunds"}

    [answer] = Answerer(GenerationSettings(), Fixed("within 30 days of delivery"), PRODUCER).answer([retrieved])

    [citation] = answer.citations
    assert (citation.section, citation.source, citation.document_id) == ("Refunds", "guide.md", "guide")
    assert citation.snippet == "Refunds are accepted within 30 days of delivery, with the receipt."
    assert answer.answer == f"within 30 days of delivery [{citation.marker}]"
    assert retrieved.contexts[citation.marker - 1].chunk_id == citation.chunk_id

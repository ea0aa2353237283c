"""BM25 sparse vectors for chunks and queries.

Both store adapters embed text here, with Qdrant Edge's built-in ``Bm25`` model: it is
the same tokenizer and term hashing as the Qdrant server's ``Qdrant/bm25`` inference, so
a collection written by one adapter is searchable by the other and no model has to be
downloaded. The vectors carry term frequencies only; the collection's sparse vector is
declared with the IDF modifier, so the engine (Edge, server or qdrant-client's local
mode) weighs each term by its inverse document frequency over the whole collection at
query time.

Both sides read text through :func:`ragops_shared.text.normalise`, the normalisation that
ingestion gives documents: a query with a zero-width space or a soft hyphen in a word, or a
chunk indexed before ingestion normalised, still meets the word.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cache

from qdrant_edge import Bm25, Bm25Config

from ragops_shared.text import normalise


@dataclass(frozen=True)
class SparseTerms:
    """A sparse vector as two parallel tuples, free of any client library's types.

    ``indices`` are term hashes (non-negative 32-bit integers, unique, in no particular
    order); ``values`` the weight of each term. Both are empty for a text with no
    indexable token (empty, or stop words only).
    """

    indices: tuple[int, ...]
    values: tuple[float, ...]


@cache
def _model() -> Bm25:
    # One instance per process: construction parses the stemmer and stop-word tables,
    # and embedding only reads the model, so sharing it between threads is safe.
    # Defaults: k=1.2, b=0.75, avg_len=256 tokens, English stop words and stemmer.
    return Bm25(Bm25Config())


def embed_document(text: str) -> SparseTerms:
    """BM25 term-frequency weights of a chunk's text, to store with the chunk."""
    vector = _model().embed_document(normalise(text))
    return SparseTerms(tuple(vector.indices), tuple(vector.values))


def embed_query(text: str) -> SparseTerms:
    """Weights of a query's text: 1.0 for each distinct token, IDF is applied by the engine."""
    vector = _model().embed_query(normalise(text))
    return SparseTerms(tuple(vector.indices), tuple(vector.values))

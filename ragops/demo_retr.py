"""``make demo``'s retrieval figures: hit@1, hit@5 and MRR of dense, BM25 (sparse) and hybrid
search side by side, on the index the platform built during the demo.

The retrieval service's Qdrant Edge store belongs to its process while the platform runs, so
the figures are computed after the platform stopped, by opening its store in this process
(as the planted-data scan does). The questions are the held-out half of the question file
(:func:`ragops_schemas.ids.tuning_half` false: the half the retrieval settings were not tuned
on, ``python -m bench.retrieval_study``) whose gold passage was ingested; each is embedded by
the platform's embedding model as the embedding service does (normalised text) and searched
in each mode with the retrieval service's settings (fusion weights and k included): the dense
and the BM25 lists are read from the store, hybrid is the store's own fusion of them
(:func:`ragops_retrieval.store.fuse_ranked`), as ``python -m bench.retrieval_study`` does.
"""

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from rich.table import Table

from ragops_embedding.settings import EmbeddingSettings
from ragops_retrieval.app import collection_name
from ragops_retrieval.settings import RetrievalSettings
from ragops_retrieval.store import SearchHit, SearchMode, fuse_ranked
from ragops_schemas.ids import tuning_half
from ragops_shared.datasets import Question, load_corpus, load_questions
from ragops_shared.settings import PlatformSettings
from ragops_shared.text import normalise

MODES = ("dense", "sparse", "hybrid")
_RETRIEVERS: tuple[SearchMode, SearchMode] = ("dense", "sparse")
Ranked = list[tuple[Mapping[str, Any], float]]
MRR_DEPTH = 20
"""Ranks MRR looks at: a question whose passage is not in the first 20 chunks counts 0."""


def held_out_questions(questions_file: Path, corpus: Path, limit: int | None = None) -> list[Question]:
    """The held-out questions of ``questions_file`` whose gold passage is in ``corpus`` (a seeded
    sample of ``limit`` of them when given)."""
    ingested = {document.id for document in load_corpus(corpus)}
    return [
        question
        for question in load_questions(questions_file, limit, seed=0)
        if not tuning_half(question.id) and question.context_ids and question.context_ids[0] in ingested
    ]


def ranks(ranked_documents: Sequence[Sequence[str]], gold: Sequence[str]) -> dict[str, float]:
    """``hit@1``, ``hit@5`` and ``mrr`` of ranked document-id lists against each question's gold id."""
    first = [
        next((rank for rank, document in enumerate(documents, 1) if document == want), None)
        for documents, want in zip(ranked_documents, gold, strict=True)
    ]
    n = max(len(first), 1)
    return {
        "hit@1": round(sum(r == 1 for r in first) / n, 4),
        "hit@5": round(sum(r is not None and r <= 5 for r in first) / n, 4),
        "mrr": round(sum(1 / r for r in first if r is not None) / n, 4),
    }


def retrieval_figures(data_dir: Path, questions_file: Path, corpus: Path, env: dict[str, str]) -> dict[str, Any]:
    """Dense, sparse and hybrid hit@1/hit@5/MRR on the stopped platform's index in ``data_dir``.

    ``env`` is the environment the platform ran with (its retrieval and embedding settings).
    Returns ``{"questions", "split", "collection", "fusion", "modes": {mode: {"hit@1", "hit@5", "mrr"}}}``.

    Raises:
        UnknownCollectionError: the platform indexed nothing with the default embedding model.
    """
    platform = PlatformSettings(data_dir=data_dir, torch_threads=1)
    retrieval = RetrievalSettings(platform=platform, **_prefixed(env, "RAGOPS_RETRIEVAL_"))
    embedder = EmbeddingSettings(platform=platform).embedder()
    info = embedder.warm_up()
    questions = held_out_questions(questions_file, corpus)
    vectors = embedder.embed([normalise(question.question) for question in questions])
    gold = [question.context_ids[0] for question in questions]
    collection = collection_name(retrieval.corpus, info)
    store = retrieval.open_store()
    try:
        # Each retriever's first MRR_DEPTH chunks, the candidate lists of a hybrid search of
        # top_k=5; hybrid is the store's own fusion of them (its first 5 are that search's hits).
        lists = [
            tuple(
                _ranked(store.search(collection, vector=vector, text=question.question, top_k=MRR_DEPTH, mode=mode))
                for mode in _RETRIEVERS
            )
            for question, vector in zip(questions, vectors, strict=True)
        ]
    finally:
        store.close()
    ranked: dict[str, list[Ranked]] = {
        "dense": [dense for dense, _ in lists],
        "sparse": [sparse for _, sparse in lists],
        "hybrid": [fuse_ranked(dense, sparse, retrieval.fusion, MRR_DEPTH) for dense, sparse in lists],
    }
    modes = {
        mode: ranks([[payload["document_id"] for payload, _ in chunks] for chunks in ranked[mode]], gold)
        for mode in MODES
    }
    return {
        "questions": len(questions),
        "split": "held-out half: first byte of sha256(question id) odd",
        "collection": collection,
        "fusion": {
            "k": retrieval.rrf_k,
            "dense_weight": retrieval.dense_weight,
            "sparse_weight": retrieval.sparse_weight,
        },
        "modes": modes,
    }


def _ranked(hits: list[SearchHit]) -> Ranked:
    """Hits as the ``(payload, score)`` pairs :func:`~ragops_retrieval.store.fuse_ranked` ranks."""
    return [({"chunk_id": hit.chunk_id, "document_id": hit.document_id}, hit.score) for hit in hits]


def _prefixed(env: dict[str, str], prefix: str) -> dict[str, Any]:
    """Settings fields named in ``env`` under ``prefix`` (pydantic-settings reads the process's
    own environment; the platform may have run with more)."""
    fields = {key.removeprefix(prefix).lower(): value for key, value in env.items() if key.startswith(prefix)}
    return {key: value for key, value in fields.items() if key in RetrievalSettings.model_fields}


def retr_rows(figures: dict[str, Any] | None, table: Table) -> None:
    """The demo table's rows: each mode's hit@1 / hit@5 / MRR."""
    if figures is None:
        return
    for mode, scores in figures["modes"].items():
        table.add_row(
            f"retrieval {mode} hit@1 / hit@5 / MRR ({figures['questions']} held-out questions)",
            f"{scores['hit@1']:.3f} / {scores['hit@5']:.3f} / {scores['mrr']:.3f}",
        )

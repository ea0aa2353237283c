"""Retrieval study: hit@1, hit@5 and MRR of dense, BM25 (sparse) and hybrid search on the
development questions, per chunking variant and fusion setting, tuned on one half of the
questions and reported on the other.

``python -m bench.retrieval_study [--data ../shared/data] [--out retrieval-study.json]``

Each chunking variant (chunk size, overlap, contextual header on or off) is built once, in
process, with the platform's own parts: ingestion's :class:`~ragops_ingestion.chunking.TokenChunker`,
the embedding model (:class:`~ragops_models.embedder.Embedder`, all-MiniLM-L6-v2, one torch
thread) and the retrieval service's Qdrant Edge store in a temporary directory. Chunk vectors
are cached on disk (``--cache``, keyed by the SHA-256 of the model version and the embedded
texts), so a rerun embeds nothing. For every question the dense and the BM25 candidate lists
(depth 50) are read once from the store; hybrid is :func:`~ragops_retrieval.store.fuse_ranked`
of their first ``fusion.depth`` for each fusion setting, the function the store itself runs
(checked against the store's own hybrid search on the defaults).

Split rule (:func:`ragops_schemas.ids.tuning_half`): a question is in the tuning half when
the first byte of the SHA-256 of its id is even, held out otherwise. Settings are chosen on
the tuning half by hybrid hit@5 (then MRR); the held-out half is only reported.

A hit is a chunk of the question's gold passage (``context_ids``) among the first k chunks;
MRR is the mean of 1 / rank of the first such chunk within the first 20 (0 when absent);
answer@5 is the share of questions with one of their gold answers (case-insensitive) in the
text of the first 5 chunks: what a generator given 5 chunks can read. Each setting is also
scored with at most one chunk per document (:func:`~ragops_retrieval.store.collapse_by_document`,
the retrieval service's ``per_document`` setting): a hit counts documents, so the cap can only
raise hit@k, while answer@5 says whether the prompt gains or loses by it.

Probe (``--sentences``, header variants only; not what the platform runs): a third, dense list
of documents ranked by the cosine of the question to their best single sentence (each sentence
embedded under its title header), the MaxP aggregation of Dai and Callan ("Deeper Text
Understanding for IR with Contextual Neural Language Modeling", SIGIR 2019), fused with the
dense and BM25 lists at the document level by weighted RRF; ``k`` and the sentence list's weight
are tuned on the tuning half as above.
"""

from __future__ import annotations

import argparse
import hashlib
import itertools
import json
import re
import tempfile
from collections import defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ragops_ingestion.chunking import TokenChunker
from ragops_models.defaults import default_embedding_model_dir
from ragops_models.embedder import Embedder
from ragops_retrieval.edge_store import EdgeStore
from ragops_retrieval.store import (
    DEFAULT_FUSION,
    ChunkPoint,
    RankFusion,
    SearchHit,
    SearchMode,
    collapse_by_document,
    fuse_ranked,
)
from ragops_schemas.ids import chunk_id, tuning_half
from ragops_shared.datasets import CorpusDocument, Question, load_corpus, load_questions
from ragops_shared.text import contextual_text, normalise

DEPTH = 50
"""Candidates read per retriever: the deepest fusion depth tried."""
MRR_DEPTH = 20
"""Ranks MRR looks at (a question whose passage is not in the first 20 chunks counts 0)."""
_RETRIEVERS: tuple[SearchMode, SearchMode] = ("dense", "sparse")
MODES = ("dense", "sparse", "hybrid")
COLLECTION = "study"

Ranked = list[tuple[Mapping[str, Any], float]]


@dataclass(frozen=True)
class Variant:
    """How the corpus is chunked and indexed: window tokens, overlap, contextual header."""

    chunk_size: int = 200
    overlap: int = 32
    header: bool = False

    @property
    def name(self) -> str:
        return f"{self.chunk_size}/{self.overlap}{' +header' if self.header else ''}"


@dataclass(frozen=True)
class Scores:
    """Retrieval figures of one mode over a set of questions."""

    questions: int
    hit_at_1: float
    hit_at_5: float
    mrr: float
    answer_at_5: float


def score(ranked: Sequence[Ranked], questions: Sequence[Question]) -> Scores:
    """hit@1, hit@5, MRR and answer@5 of ranked chunk lists (``(payload, score)``, one list per
    question; payloads with ``document_id`` and ``text``) against each question's gold passage
    and answers."""
    first = [
        next((rank for rank, (chunk, _) in enumerate(chunks, 1) if chunk["document_id"] == q.context_ids[0]), None)
        for chunks, q in zip(ranked, questions, strict=True)
    ]
    answered = [
        any(answer.lower() in chunk["text"].lower() for chunk, _ in chunks[:5] for answer in q.answers)
        for chunks, q in zip(ranked, questions, strict=True)
    ]
    n = len(first)
    return Scores(
        questions=n,
        hit_at_1=round(sum(r is not None and r <= 1 for r in first) / n, 4),
        hit_at_5=round(sum(r is not None and r <= 5 for r in first) / n, 4),
        mrr=round(sum(1 / r for r in first if r is not None) / n, 4),
        answer_at_5=round(sum(answered) / n, 4),
    )


class Embeddings:
    """The embedding model with an on-disk cache of each batch of texts' vectors."""

    def __init__(self, cache: Path) -> None:
        self.embedder = Embedder(default_embedding_model_dir(), torch_threads=1)
        self.info = self.embedder.warm_up()
        self.cache = cache
        cache.mkdir(parents=True, exist_ok=True)

    def embed(self, texts: list[str]) -> np.ndarray:
        key = hashlib.sha256("\0".join([self.info.version, *texts]).encode()).hexdigest()[:24]
        path = self.cache / f"{key}.npy"
        if path.is_file():
            cached: np.ndarray = np.load(path)
            return cached
        vectors = self.embedder.embed(texts)
        np.save(path, vectors)
        return vectors


def build_index(
    store: EdgeStore, variant: Variant, corpus: Sequence[CorpusDocument], embeddings: Embeddings, model_dir: Path
) -> int:
    """Chunk, embed and index ``corpus`` into ``store``'s :data:`COLLECTION`; return the chunk count."""
    chunker = TokenChunker(model_dir, chunk_size=variant.chunk_size, overlap=variant.overlap)
    chunker.warm_up()
    rows = [(doc, piece.text) for doc in corpus for piece in chunker.chunk(normalise(doc.text))]
    indexed = [contextual_text(text, title=doc.title) if variant.header else text for doc, text in rows]
    vectors = embeddings.embed(indexed)
    store.ensure_collection(COLLECTION, embeddings.info.dimension)
    points = [
        ChunkPoint(
            chunk_id=chunk_id(doc.id, text, tenant="default"),
            document_id=doc.id,
            document_version="v1",
            text=text,
            vector=vector,
            payload={"title": doc.title or ""},
            indexed_text=None if indexed_text == text else indexed_text,
        )
        for (doc, text), indexed_text, vector in zip(rows, indexed, vectors, strict=True)
    ]
    store.upsert(COLLECTION, points, embeddings.info.version)
    return len(points)


def _pairs(hits: list[SearchHit]) -> Ranked:
    return [
        (
            {
                "chunk_id": hit.chunk_id,
                "document_id": hit.document_id,
                "document_version": hit.document_version,
                "text": hit.text,
            },
            hit.score,
        )
        for hit in hits
    ]


def candidates(store: EdgeStore, questions: Sequence[Question], vectors: np.ndarray) -> list[tuple[Ranked, Ranked]]:
    """The dense and the BM25 candidate lists (:data:`DEPTH` each) of every question."""
    out = []
    for question, vector in zip(questions, vectors, strict=True):
        text = normalise(question.question)
        dense, sparse = (
            _pairs(store.search(COLLECTION, vector=vector, text=text, top_k=DEPTH, mode=mode)) for mode in _RETRIEVERS
        )
        out.append((dense, sparse))
    return out


def evaluate(
    lists: Sequence[tuple[Ranked, Ranked]],
    questions: Sequence[Question],
    fusion: RankFusion,
    per_document: int | None = None,
) -> dict[str, Scores]:
    """Scores of each mode over ``questions`` (their candidate ``lists``), hits capped at
    ``per_document`` chunks of a document as the store caps them."""

    def top(ranked: Ranked) -> Ranked:
        return collapse_by_document(ranked, per_document, MRR_DEPTH)

    depth = fusion.depth
    return {
        "dense": score([top(d) for d, _ in lists], questions),
        "sparse": score([top(s) for _, s in lists], questions),
        "hybrid": score([top(fuse_ranked(d[:depth], s[:depth], fusion, DEPTH)) for d, s in lists], questions),
    }


SENTENCE_END = re.compile(r"(?<=[.!?])\s+")
"""Where the probe splits a passage into sentences: after a full stop, question or exclamation mark."""


def sentence_ranked(
    corpus: Sequence[CorpusDocument], query_vectors: np.ndarray, embeddings: Embeddings
) -> list[list[str]]:
    """Per question (rows of ``query_vectors``), the first :data:`DEPTH` document ids by the
    cosine of the question to the document's best sentence (MaxP). Sentences under 20
    characters are skipped; each is embedded under its title header."""
    sentences = [
        (doc.id, contextual_text(sentence, title=doc.title))
        for doc in corpus
        for sentence in SENTENCE_END.split(normalise(doc.text))
        if len(sentence) > 20
    ]
    owners = [doc for doc, _ in sentences]
    vectors = np.vstack(
        [embeddings.embed([text for _, text in sentences[i : i + 2000]]) for i in range(0, len(sentences), 2000)]
    )
    ranked = []
    for cosines in query_vectors @ vectors.T:
        best: dict[str, None] = {}
        for index in np.argsort(-cosines, kind="stable"):
            best.setdefault(owners[index], None)
            if len(best) == DEPTH:
                break
        ranked.append(list(best))
    return ranked


def documents(ranked: Ranked) -> list[str]:
    """The document ids of a chunk list in order of their first chunk."""
    return list(dict.fromkeys(payload["document_id"] for payload, _ in ranked))


def fuse_documents(weighted: Sequence[tuple[float, Sequence[str]]], k: float) -> list[str]:
    """Weighted RRF (:class:`~ragops_retrieval.store.RankFusion`'s formula) of document-id lists,
    best first, ties by id."""
    fused: dict[str, float] = defaultdict(float)
    for weight, ranked in weighted:
        for rank, doc in enumerate(ranked, start=1):
            fused[doc] += weight / (k + rank)
    return [doc for doc, _ in sorted(fused.items(), key=lambda pair: (-pair[1], pair[0]))]


def document_scores(ranked: Sequence[Sequence[str]], questions: Sequence[Question]) -> dict[str, float]:
    """hit@1, hit@5 and MRR (first 20) of document-id lists against each question's gold passage."""
    first = [
        next((rank for rank, doc in enumerate(docs[:MRR_DEPTH], 1) if doc == q.context_ids[0]), None)
        for docs, q in zip(ranked, questions, strict=True)
    ]
    n = len(first)
    return {
        "hit_at_1": round(sum(r == 1 for r in first) / n, 4),
        "hit_at_5": round(sum(r is not None and r <= 5 for r in first) / n, 4),
        "mrr": round(sum(1 / r for r in first if r is not None) / n, 4),
    }


SENTENCE_GRID = list(itertools.product((1.0, 2.0, 5.0), (0.0, 0.5, 1.0, 1.5)))
"""The probe's (k, sentence-list weight) settings; weight 0 is the dense and BM25 lists alone."""


def sentence_probe(
    lists: Mapping[str, Sequence[tuple[Ranked, Ranked]]],
    sentences: Mapping[str, Sequence[Sequence[str]]],
    halves: Mapping[str, Sequence[Question]],
) -> dict[str, Any]:
    """Document-level fusion of dense (1.0), BM25 (:data:`DEFAULT_FUSION`'s weight) and the
    sentence list: every grid setting's scores on both halves, and the one the tuning half picks."""

    def fused(half: str, k: float, weight: float) -> list[list[str]]:
        return [
            fuse_documents(
                [
                    (DEFAULT_FUSION.dense_weight, documents(d)),
                    (DEFAULT_FUSION.sparse_weight, documents(s)),
                    (weight, by),
                ],
                k,
            )
            for (d, s), by in zip(lists[half], sentences[half], strict=True)
        ]

    grid = {
        f"k={k:g} sentences={weight:g}": {
            half: document_scores(fused(half, k, weight), halves[half]) for half in halves
        }
        for k, weight in SENTENCE_GRID
    }
    sentences_alone = {half: document_scores(sentences[half], halves[half]) for half in halves}
    chosen = max(grid, key=lambda name: (grid[name]["tuning"]["hit_at_5"], grid[name]["tuning"]["mrr"]))
    return {"sentences_alone": sentences_alone, "grid": grid, "chosen": chosen}


ENGINE_RRF = RankFusion(k=1.0, dense_weight=1.0, sparse_weight=1.0, depth=20)
"""What the engine's ``Fusion.RRF`` computed before fusion moved into the store: ``1 / (2 + r)``
for a 0-based rank ``r``, equal weights, that is ``1 / (1 + r)`` for a 1-based one, over
prefetches of ``max(4 * top_k, 20)``: 20 for ``top_k=5``."""

FUSION_GRID = [
    RankFusion(k=k, dense_weight=1.0, sparse_weight=w, depth=depth)
    for depth, k, w in itertools.product((20, 50), (1, 2, 5, 10, 20, 60), (0.5, 0.7, 0.85, 1.0, 1.2, 1.5, 2.0))
]


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", type=Path, default=Path("../shared/data"))
    parser.add_argument("--out", type=Path, default=Path("retrieval-study.json"))
    parser.add_argument("--cache", type=Path, default=Path(tempfile.gettempdir()) / "ragops-retrieval-study")
    parser.add_argument("--sentences", action="store_true", help="also run the sentence-level (MaxP) probe")
    parser.add_argument(
        "--variants", default="200/32,200/32+header", help="comma-separated SIZE/OVERLAP[+header] chunkings"
    )
    args = parser.parse_args(argv)
    corpus = load_corpus(args.data / "corpus.jsonl")
    questions = load_questions(args.data / "questions.jsonl")
    halves = {
        "tuning": [q for q in questions if tuning_half(q.id)],
        "held_out": [q for q in questions if not tuning_half(q.id)],
    }
    embeddings = Embeddings(args.cache)
    model_dir = default_embedding_model_dir()
    query_vectors = {half: embeddings.embed([normalise(q.question) for q in qs]) for half, qs in halves.items()}
    results: dict[str, Any] = {"split": "tuning_half(id): first byte of sha256(id) even", "variants": {}}
    for spec in args.variants.split(","):
        size, overlap = spec.removesuffix("+header").split("/")
        variant = Variant(int(size), int(overlap), spec.endswith("+header"))
        with tempfile.TemporaryDirectory() as folder:
            store = EdgeStore(Path(folder))
            try:
                chunks = build_index(store, variant, corpus, embeddings, model_dir)
                lists = {half: candidates(store, qs, query_vectors[half]) for half, qs in halves.items()}
                # The store's own hybrid search, capped or not, gives what the study fuses (first questions).
                depth = DEFAULT_FUSION.depth
                for question, vector, (d, s) in itertools.islice(
                    zip(halves["tuning"], query_vectors["tuning"], lists["tuning"], strict=True), 50
                ):
                    fused = fuse_ranked(d[:depth], s[:depth], DEFAULT_FUSION, DEPTH)
                    for cap in (None, 1):
                        text = normalise(question.question)
                        hits = store.search(COLLECTION, vector=vector, text=text, top_k=5, per_document=cap)
                        assert [h.chunk_id for h in hits] == [
                            p["chunk_id"] for p, _ in collapse_by_document(fused, cap, 5)
                        ], question.id
            finally:
                store.close()
        tuned = max(
            FUSION_GRID,
            key=lambda f: (
                (e := evaluate(lists["tuning"], halves["tuning"], f)["hybrid"]).hit_at_5,
                e.mrr,
            ),
        )
        report = {
            "chunks": chunks,
            "engine_rrf": {
                half: {m: asdict(s) for m, s in evaluate(lists[half], halves[half], ENGINE_RRF).items()}
                for half in halves
            },
            "default_fusion": asdict(DEFAULT_FUSION),
            "tuned_fusion": asdict(tuned),
            "default": {
                half: {m: asdict(s) for m, s in evaluate(lists[half], halves[half], DEFAULT_FUSION).items()}
                for half in halves
            },
            "tuned": {
                half: {m: asdict(s) for m, s in evaluate(lists[half], halves[half], tuned).items()} for half in halves
            },
            "one_per_document": {
                half: {m: asdict(s) for m, s in evaluate(lists[half], halves[half], DEFAULT_FUSION, 1).items()}
                for half in halves
            },
        }
        if args.sentences and variant.header:
            sentences = {half: sentence_ranked(corpus, query_vectors[half], embeddings) for half in halves}
            report["sentence_probe"] = sentence_probe(lists, sentences, halves)
        results["variants"][variant.name] = report
        print(variant.name, json.dumps(report), flush=True)
    args.out.write_text(json.dumps(results, indent=2))
    args.out.with_suffix(".md").write_text(markdown(results))
    return 0


def markdown(results: dict[str, Any]) -> str:
    """The results as a Markdown table: per variant and fusion, hit@1 / hit@5 / MRR / answer@5
    of each mode on each half."""
    lines = [
        f"Split: {results['split']}.",
        "",
        "| chunking | fusion | half | dense hit@1 / hit@5 / MRR / answer@5 | sparse | hybrid |",
        "| --- | --- | --- | --- | --- | --- |",
    ]
    settings = (
        ("engine_rrf", "engine RRF (before)"),
        ("default", "defaults"),
        ("tuned", "tuned"),
        ("one_per_document", "defaults, 1 chunk per document"),
    )
    for name, report in results["variants"].items():
        for setting, label in settings:
            fusion = report["tuned_fusion"] if setting == "tuned" else report.get("default_fusion")
            shown = label if setting in ("engine_rrf", "one_per_document") else f"{label} {fusion}"
            for half in ("tuning", "held_out"):
                cells = [
                    "{hit_at_1:.3f} / {hit_at_5:.3f} / {mrr:.3f} / {answer_at_5:.3f}".format(
                        **report[setting][half][mode]
                    )
                    for mode in MODES
                ]
                count = report[setting][half]["hybrid"]["questions"]
                lines.append(f"| {name} | {shown} | {half} ({count}) | " + " | ".join(cells) + " |")
    for name, report in results["variants"].items():
        if "sentence_probe" in report:
            probe = report["sentence_probe"]
            lines += [
                "",
                f"Probe, {name}: documents fused by weighted RRF of dense, BM25 and best-sentence (MaxP) lists "
                f"(hit@1 / hit@5 / MRR, one entry per document; chosen on the tuning half: {probe['chosen']}).",
                "",
                "| setting | tuning | held_out |",
                "| --- | --- | --- |",
            ]
            rows = {"sentences alone": probe["sentences_alone"], **probe["grid"]}
            for setting, halves in rows.items():
                cells = [
                    "{hit_at_1:.3f} / {hit_at_5:.3f} / {mrr:.3f}".format(**halves[h]) for h in ("tuning", "held_out")
                ]
                lines.append(f"| {setting} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    raise SystemExit(main())

"""``make demo``'s retrieval figures on a stopped platform's store: dense, sparse and hybrid
side by side on held-out questions."""

import json
from pathlib import Path

import pytest

from ragops.demo_retr import retrieval_figures
from ragops_embedding.app import embed_documents
from ragops_ingestion.app import ingest
from ragops_retrieval.app import Index
from ragops_retrieval.settings import RetrievalSettings
from ragops_schemas import ChunkerInfo, DocumentRedacted
from ragops_schemas.ids import tuning_half
from ragops_shared.settings import PlatformSettings
from tests.helpers import PRODUCER, read_jsonl

pytestmark = [pytest.mark.model, pytest.mark.qdrant]


def test_figures_of_each_mode_on_the_held_out_questions(
    embedder, chunker, tmp_path: Path, data_dir: Path, corpus_rows: list[dict]
) -> None:
    rows = [row for row in corpus_rows if row["title"] == "Oxygen"][:12]
    passages = {row["id"] for row in rows}
    questions = [q for q in read_jsonl(data_dir / "questions.jsonl") if q["context_ids"][0] in passages]
    (tmp_path / "corpus.jsonl").write_text("".join(json.dumps(row) + "\n" for row in rows))
    (tmp_path / "questions.jsonl").write_text("".join(json.dumps(q) + "\n" for q in questions))
    info = ChunkerInfo(tokenizer="minilm", chunk_size=200, overlap=32)
    chunked = [
        event
        for row in rows
        for event in ingest(
            chunker,
            info,
            PRODUCER,
            DocumentRedacted(producer=PRODUCER, document_id=row["id"], content=row["text"], title=row["title"]),
        )
    ]
    index = Index(RetrievalSettings(platform=PlatformSettings(data_dir=tmp_path / "platform")), PRODUCER)
    index.open()
    index.index(embed_documents(embedder, PRODUCER, chunked))
    index.close()  # the platform stopped: its store is free to open

    figures = retrieval_figures(
        tmp_path / "platform", tmp_path / "questions.jsonl", tmp_path / "corpus.jsonl", {"RAGOPS_RETRIEVAL_RRF_K": "7"}
    )

    assert figures["questions"] == sum(not tuning_half(q["id"]) for q in questions) > 0
    assert figures["fusion"]["k"] == 7
    assert set(figures["modes"]) == {"dense", "sparse", "hybrid"}
    for scores in figures["modes"].values():
        assert 0 <= scores["hit@1"] <= scores["hit@5"] <= 1 and scores["hit@1"] <= scores["mrr"] <= 1
    # Twelve passages of one article: the retrievers find most questions' passage.
    assert figures["modes"]["hybrid"]["hit@5"] >= 0.5

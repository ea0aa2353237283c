"""Weighted Reciprocal Rank Fusion (:func:`ragops_retrieval.store.fuse_ranked`), the contextual
header (:func:`ragops_shared.text.contextual_text`) and the tuning split rule."""

import pytest

from ragops_retrieval.settings import RetrievalSettings
from ragops_retrieval.store import RankFusion, collapse_by_document, fuse_ranked
from ragops_schemas.ids import tuning_half
from ragops_shared.text import contextual_text

EQUAL = RankFusion(k=60, dense_weight=1, sparse_weight=1)


def ranked(*chunks: str) -> list[tuple[dict[str, str], float]]:
    """A list best first, with falling scores."""
    return [({"chunk_id": chunk}, 1.0 - i / 10) for i, chunk in enumerate(chunks)]


def fused_ids(dense: list, sparse: list, fusion: RankFusion, limit: int = 10) -> list[str]:
    return [payload["chunk_id"] for payload, _ in fuse_ranked(dense, sparse, fusion, limit)]


def test_scores_are_the_weighted_sum_of_reciprocal_ranks() -> None:
    fused = fuse_ranked(ranked("a", "b"), ranked("b", "c"), RankFusion(k=10, dense_weight=2, sparse_weight=1), 3)
    assert [(p["chunk_id"], s) for p, s in fused] == [
        ("b", pytest.approx(2 / 12 + 1 / 11)),
        ("a", pytest.approx(2 / 11)),
        ("c", pytest.approx(1 / 12)),
    ]


def test_weights_move_the_order() -> None:
    dense, sparse = ranked("d1", "d2", "d3"), ranked("s1", "s2", "s3")
    # k=1: s1 2/2, s2 2/3, then d1 1/2 and s3 2/4 tie (chunk id ascending).
    assert fused_ids(dense, sparse, RankFusion(k=1, dense_weight=1, sparse_weight=2))[:4] == ["s1", "s2", "d1", "s3"]
    assert fused_ids(dense, sparse, RankFusion(k=1, dense_weight=3, sparse_weight=1))[:3] == ["d1", "d2", "d3"]
    assert fused_ids(dense, sparse, RankFusion(k=1, dense_weight=1, sparse_weight=0))[:3] == ["d1", "d2", "d3"]


def test_ties_break_by_chunk_id_whatever_the_input_order() -> None:
    # Equal fused scores (same rank in one list each) and equal retriever scores.
    for dense, sparse in ((ranked("z"), ranked("a")), (ranked("a"), ranked("z"))):
        assert fused_ids(dense, sparse, EQUAL) == ["a", "z"]
    same = [({"chunk_id": c}, 0.5) for c in ("q", "m", "b")]
    assert fused_ids(same, list(reversed(same)), EQUAL) == ["b", "m", "q"]


def test_limit() -> None:
    assert fused_ids(ranked("a", "b", "c"), ranked("d"), EQUAL, limit=2) == ["a", "d"]


@pytest.mark.parametrize(("k", "dense", "sparse"), [(0, 1, 1), (-1, 1, 1), (60, -1, 1), (60, 0, 0)])
def test_invalid_fusion_is_refused(k: float, dense: float, sparse: float) -> None:
    with pytest.raises(ValueError, match="rank fusion"):
        RankFusion(k=k, dense_weight=dense, sparse_weight=sparse)
    with pytest.raises(ValueError):  # pydantic's bounds or RankFusion's own check
        RetrievalSettings(rrf_k=k, dense_weight=dense, sparse_weight=sparse)


def test_settings_carry_the_fusion() -> None:
    settings = RetrievalSettings(rrf_k=7, dense_weight=1.5, sparse_weight=0.5)
    assert settings.fusion == RankFusion(k=7, dense_weight=1.5, sparse_weight=0.5)


def test_contextual_text_puts_title_and_section_on_a_header_line() -> None:
    assert contextual_text("Body.", title="Normans", section="Origin") == "Normans > Origin\n\nBody."
    assert contextual_text("Body.", title="Normans") == "Normans\n\nBody."
    assert contextual_text("Body.", title=None) == "Body."
    assert contextual_text("Body.", title="  ", section=None) == "Body."


def test_the_tuning_half_is_a_stable_half() -> None:
    ids = [f"q{i}" for i in range(2000)]
    share = sum(map(tuning_half, ids)) / len(ids)
    assert 0.45 < share < 0.55
    assert tuning_half("56de0ffd4396321400ee258d") == tuning_half("56de0ffd4396321400ee258d")


def versioned(*chunks: tuple[str, str, str]) -> list[tuple[dict[str, str], float]]:
    """``(chunk_id, document_id, document_version)`` triples as a list best first."""
    return [
        ({"chunk_id": c, "document_id": d, "document_version": v}, 1.0 - i / 10) for i, (c, d, v) in enumerate(chunks)
    ]


def test_collapse_by_document_keeps_the_best_chunks_of_each_document_version() -> None:
    hits = versioned(("a1", "a", "v1"), ("a2", "a", "v1"), ("a3", "a", "v2"), ("b1", "b", "v1"), ("a4", "a", "v1"))
    assert [p["chunk_id"] for p, _ in collapse_by_document(hits, 1, 10)] == ["a1", "a3", "b1"]
    assert [p["chunk_id"] for p, _ in collapse_by_document(hits, 2, 3)] == ["a1", "a2", "a3"]
    assert collapse_by_document(hits, None, 4) == hits[:4]
    assert collapse_by_document(hits, 1, 2)[1] == hits[2]  # kept chunks keep their scores
    with pytest.raises(ValueError, match="per_document"):
        collapse_by_document(hits, 0, 2)
    with pytest.raises(ValueError):
        RetrievalSettings(per_document=0)

"""Contract tests of the vector store, run against both adapters.

Every test in :class:`TestVectorStoreContract` runs once on Qdrant Edge and once on
qdrant-client's local mode (the stand-in for a Qdrant server), so the two adapters
cannot drift apart. Vectors are hand-made 8-dimensional unit vectors: chunk ``k`` points
along axis ``k``, which makes the nearest neighbour of each query obvious.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from ragops_retrieval.client_store import QdrantClientStore
from ragops_retrieval.edge_store import EdgeStore
from ragops_retrieval.store import (
    EXTRA_PAYLOAD_FIELDS,
    ChunkPoint,
    RankFusion,
    SearchHit,
    SearchMode,
    UnknownCollectionError,
    VectorStore,
    open_store,
)

pytestmark = [
    pytest.mark.qdrant,
    # qdrant-client's local mode warns that it ignores payload indexes; the server does not.
    pytest.mark.filterwarnings("ignore:Payload indexes have no effect:UserWarning"),
]

DIM = 8
COLLECTION = "chunks"
MODEL = "test-model-v1"
RARE_WORD = "zyxoquartz"


def unit(*weights: float) -> list[float]:
    """A unit vector of ``DIM`` components from the leading ``weights`` (rest zero)."""
    vector = np.zeros(DIM)
    vector[: len(weights)] = weights
    return (vector / np.linalg.norm(vector)).tolist()


def axis(k: int) -> list[float]:
    return unit(*([0.0] * k + [1.0]))


def chunk(
    chunk_id: str,
    document_id: str,
    text: str,
    vector: list[float],
    *,
    version: str = "v1",
    title: str,
    source: str,
    metadata: dict[str, str],
) -> ChunkPoint:
    return ChunkPoint(
        chunk_id=chunk_id,
        document_id=document_id,
        document_version=version,
        # Every text shares the word "ragops" so sparse searches can match all chunks.
        text=f"ragops {text}",
        vector=vector,
        payload={"title": title, "source": source, "metadata": metadata},
    )


DOC_A = {"title": "Animals", "source": "wiki", "metadata": {"lang": "en", "team": "search"}}
DOC_B = {"title": "Vectors", "source": "docs", "metadata": {"lang": "de", "team": "infra"}}
DOC_C = {"title": "Fusion", "source": "blog", "metadata": {"lang": "fr"}}

CHUNKS = [
    chunk("a1", "doc-a", "The quick brown fox jumps over the lazy dog", axis(0), **DOC_A),
    chunk("a2", "doc-a", "Kafka brokers store records in partitions", axis(1), **DOC_A),
    chunk("b1", "doc-b", "Qdrant builds an HNSW graph over vectors", axis(2), **DOC_B),
    # Mostly axis 3, a little axis 0: the second-nearest chunk to axis(0).
    chunk("b2", "doc-b", f"The {RARE_WORD} compound is rare", unit(0.2, 0, 0, 1), **DOC_B),
    chunk("c1", "doc-c", "Reciprocal rank fusion merges ranked lists", axis(4), **DOC_C),
]


@pytest.fixture(params=["edge", "client"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[VectorStore]:
    opened: VectorStore
    if request.param == "edge":
        opened = EdgeStore(tmp_path / "edge", metadata_index_keys=["lang"])
    else:
        opened = QdrantClientStore(path=tmp_path / "local", metadata_index_keys=["lang"])
    yield opened
    opened.close()


@pytest.fixture
def filled(store: VectorStore) -> VectorStore:
    store.ensure_collection(COLLECTION, DIM)
    assert store.upsert(COLLECTION, CHUNKS, MODEL) == len(CHUNKS)
    return store


def ids(hits: list[SearchHit]) -> list[str]:
    return [hit.chunk_id for hit in hits]


class TestVectorStoreContract:
    def test_ensure_collection_is_idempotent(self, store: VectorStore) -> None:
        store.ensure_collection(COLLECTION, DIM)
        store.ensure_collection(COLLECTION, DIM)
        store.upsert(COLLECTION, CHUNKS, MODEL)
        store.ensure_collection(COLLECTION, DIM)
        assert store.count(COLLECTION) == len(CHUNKS)

    def test_ensure_collection_rejects_another_dimension(self, store: VectorStore) -> None:
        store.ensure_collection(COLLECTION, DIM)
        with pytest.raises(ValueError, match="dimension 8, not 16"):
            store.ensure_collection(COLLECTION, 16)

    @pytest.mark.parametrize("name", ["", "../escape", ".hidden", "a/b", "spaced name"])
    def test_invalid_collection_name_is_refused(self, store: VectorStore, name: str) -> None:
        with pytest.raises(ValueError, match="invalid collection name"):
            store.ensure_collection(name, DIM)

    def test_unknown_collection_raises(self, store: VectorStore) -> None:
        with pytest.raises(UnknownCollectionError, match="'missing'"):
            store.count("missing")
        with pytest.raises(UnknownCollectionError):
            store.upsert("missing", CHUNKS, MODEL)
        with pytest.raises(UnknownCollectionError):
            store.search("missing", vector=axis(0), text="fox", top_k=3)
        with pytest.raises(UnknownCollectionError):
            store.delete_document("missing", "doc-a")

    def test_upsert_then_count(self, filled: VectorStore) -> None:
        assert filled.count(COLLECTION) == 5
        assert filled.count(COLLECTION, document_id="doc-a") == 2
        assert filled.count(COLLECTION, document_id="doc-unknown") == 0

    def test_upsert_of_nothing_writes_nothing(self, filled: VectorStore) -> None:
        assert filled.upsert(COLLECTION, [], MODEL) == 0
        assert filled.count(COLLECTION) == 5

    def test_search_sees_points_as_soon_as_upsert_returns(self, store: VectorStore) -> None:
        store.ensure_collection(COLLECTION, DIM)
        store.upsert(COLLECTION, CHUNKS[:1], MODEL)
        assert ids(store.search(COLLECTION, vector=axis(0), text="fox", top_k=5)) == ["a1"]

    def test_redelivered_chunks_overwrite_instead_of_duplicating(self, filled: VectorStore) -> None:
        filled.upsert(COLLECTION, CHUNKS, MODEL)
        edited = ChunkPoint("a1", "doc-a", "v1", "ragops an edited text", axis(0), {"title": "Animals"})
        filled.upsert(COLLECTION, [edited], MODEL)
        assert filled.count(COLLECTION) == 5
        hits = filled.search(COLLECTION, vector=axis(0), text="", top_k=1, mode="dense")
        assert hits[0].text == "ragops an edited text"

    def test_a_payload_holds_only_what_retrieval_reads(self, filled: VectorStore) -> None:
        """A free copy of event data (an author's e-mail, say) never reaches the index: a field
        outside EXTRA_PAYLOAD_FIELDS is refused before anything is written."""
        leaky = ChunkPoint("x1", "doc-x", "v1", "ragops text", axis(0), {"author_email": "jane.doe@example.com"})
        with pytest.raises(ValueError, match="author_email"):
            filled.upsert(COLLECTION, [CHUNKS[0], leaky], MODEL)
        assert filled.count(COLLECTION, document_id="doc-x") == 0
        [hit] = filled.search(COLLECTION, vector=axis(0), text="", top_k=1, mode="dense")
        assert set(hit.payload) <= EXTRA_PAYLOAD_FIELDS | {"model_version"}

    def test_another_model_version_is_another_point(self, filled: VectorStore) -> None:
        filled.upsert(COLLECTION, CHUNKS, "test-model-v2")
        assert filled.count(COLLECTION) == 10

    def test_upsert_with_wrong_dimension_writes_nothing(self, filled: VectorStore) -> None:
        bad = ChunkPoint("x1", "doc-x", "v1", "ragops text", [1.0, 0.0, 0.0], {})
        with pytest.raises(ValueError, match="chunk 'x1': expected a vector of dimension 8"):
            filled.upsert(COLLECTION, [CHUNKS[0], bad], MODEL)
        with pytest.raises(ValueError, match="NaN"):
            filled.upsert(COLLECTION, [ChunkPoint("x2", "doc-x", "v1", "t", [float("nan")] * DIM, {})], MODEL)
        assert filled.count(COLLECTION, document_id="doc-x") == 0

    def test_relabel_moves_existing_points_to_a_new_version_keeping_their_vectors(self, filled: VectorStore) -> None:
        reused = chunk("a2", "doc-a", "Kafka brokers store records in partitions", [], version="v2", **DOC_A)
        assert filled.relabel(COLLECTION, [reused], MODEL) == []
        assert filled.delete_superseded(COLLECTION, "doc-a", keep_version="v2") == 1, "a1 of v1 only"
        [hit] = filled.search(COLLECTION, vector=axis(1), text="", top_k=1, mode="dense")
        assert (hit.chunk_id, hit.document_version, hit.payload["title"]) == ("a2", "v2", "Animals")
        assert hit.score == pytest.approx(1.0), "the stored vector is kept"

    def test_withdraw_deletes_what_a_version_embedded_and_keeps_what_it_reused(self, filled: VectorStore) -> None:
        reused = chunk("a2", "doc-a", "Kafka brokers store records in partitions", [], version="v2", **DOC_A)
        fresh = chunk("a3", "doc-a", "A brand new paragraph", axis(5), version="v2", **DOC_A)
        assert filled.relabel(COLLECTION, [reused], MODEL) == []
        filled.upsert(COLLECTION, [fresh], MODEL)
        assert filled.count(COLLECTION, "doc-a", document_version="v2") == 2
        assert filled.count(COLLECTION, "doc-a", document_version="v2", embedded_for="v2") == 1, "a3 only"
        assert filled.withdraw(COLLECTION, "doc-a", "v2") == 1
        assert sorted(filled.chunk_ids(COLLECTION, "doc-a", "v2")) == ["a2"], "the reused chunk stays"
        [hit] = filled.search(COLLECTION, vector=axis(1), text="", top_k=1, mode="dense")
        assert hit.chunk_id == "a2" and "embedded_for" not in hit.payload

    def test_chunk_ids_lists_a_document_version_in_chunk_index_order(self, filled: VectorStore) -> None:
        # More points than one scroll page, written out of order; chunk_index decides the order.
        points = [
            replace(chunk(f"n{i:04d}", "doc-n", f"text {i}", axis(i % DIM), **DOC_A), payload={"chunk_index": i})
            for i in reversed(range(1500))
        ]
        filled.upsert(COLLECTION, points, MODEL)
        assert filled.chunk_ids(COLLECTION, "doc-n", "v1") == [f"n{i:04d}" for i in range(1500)]
        assert filled.chunk_ids(COLLECTION, "doc-a", "v1") == ["a1", "a2"], "no chunk_index: by chunk id"
        assert filled.chunk_ids(COLLECTION, "doc-a", "v2") == []

    def test_relabel_is_all_or_nothing(self, filled: VectorStore) -> None:
        relabelled = [chunk(chunk_id, "doc-a", "text", [], version="v2", **DOC_A) for chunk_id in ("a1", "gone", "a2")]
        assert filled.relabel(COLLECTION, relabelled, MODEL) == ["gone"]
        assert filled.relabel(COLLECTION, relabelled[:1], "another-model") == ["a1"], "points are per model version"
        assert filled.delete_superseded(COLLECTION, "doc-a", keep_version="v1") == 0, "nothing was relabelled"

    def test_delete_superseded_removes_the_old_version_only(self, filled: VectorStore) -> None:
        new_version = [
            chunk("a1", "doc-a", "The quick fox, revised", axis(0), version="v2", **DOC_A),
            chunk("a3", "doc-a", "A brand new paragraph", axis(5), version="v2", **DOC_A),
        ]
        # Same chunk id, same model: a1 of v2 overwrites a1 of v1, a2 of v1 remains.
        filled.upsert(COLLECTION, new_version, MODEL)
        assert filled.count(COLLECTION, document_id="doc-a") == 3

        assert filled.delete_superseded(COLLECTION, "doc-a", keep_version="v2") == 1
        hits = filled.search(
            COLLECTION,
            vector=axis(0),
            text="",
            top_k=10,
            mode="dense",
            filters={"document_id": "doc-a"},
        )
        assert sorted(ids(hits)) == ["a1", "a3"]
        assert {hit.document_version for hit in hits} == {"v2"}
        assert filled.count(COLLECTION) == 5 - 2 + 2
        assert filled.delete_superseded(COLLECTION, "doc-a", keep_version="v2") == 0

    def test_delete_document(self, filled: VectorStore) -> None:
        assert filled.delete_document(COLLECTION, "doc-a") == 2
        assert filled.count(COLLECTION, document_id="doc-a") == 0
        assert filled.count(COLLECTION) == 3
        assert filled.delete_document(COLLECTION, "doc-a") == 0

    def test_collections_lists_every_collection(self, filled: VectorStore) -> None:
        filled.ensure_collection("another", 4)
        assert filled.collections() == sorted([COLLECTION, "another"])

    def test_dense_search_returns_the_nearest_first(self, filled: VectorStore) -> None:
        hits = filled.search(COLLECTION, vector=axis(0), text="", top_k=5, mode="dense")
        assert ids(hits)[:2] == ["a1", "b2"]
        assert hits[0].score == pytest.approx(1.0, abs=1e-5)
        assert hits[1].score == pytest.approx(float(np.dot(axis(0), CHUNKS[3].vector)), abs=1e-5)
        assert [hit.score for hit in hits] == sorted((hit.score for hit in hits), reverse=True)

    def test_sparse_search_finds_an_exact_rare_keyword(self, filled: VectorStore) -> None:
        # The vector points elsewhere: sparse mode must ignore it.
        hits = filled.search(COLLECTION, vector=axis(0), text=f"what is {RARE_WORD}?", top_k=5, mode="sparse")
        assert ids(hits) == ["b2"]
        assert hits[0].score > 0

    def test_sparse_search_with_only_stop_words_finds_nothing(self, filled: VectorStore) -> None:
        assert filled.search(COLLECTION, vector=axis(0), text="the of", top_k=5, mode="sparse") == []

    def test_hybrid_fuses_both_rankings_with_rrf(self, filled: VectorStore) -> None:
        # Dense ranks a1 first and b2 second; BM25 finds b2 only.
        hits = filled.search(
            COLLECTION, vector=axis(0), text=RARE_WORD, top_k=2, fusion=RankFusion(k=1, sparse_weight=1)
        )
        assert ids(hits) == ["b2", "a1"]
        assert hits[0].score == pytest.approx(1 / (1 + 2) + 1 / (1 + 1), abs=1e-5)
        assert hits[1].score == pytest.approx(1 / (1 + 1), abs=1e-5)

    @pytest.mark.parametrize(
        ("dense_weight", "expected"),
        [
            (1.0, ["b2", "a1"]),  # b2: 1/3 + 1/2 beats a1: 1/2
            (3.0, ["a1", "b2"]),  # a tie, 3/2 each: chunk id ascending
            (4.0, ["a1", "b2"]),  # a1: 4/2 beats b2: 4/3 + 1/2
        ],
    )
    def test_hybrid_weighs_each_retriever_and_breaks_ties_by_chunk_id(
        self, filled: VectorStore, dense_weight: float, expected: list[str]
    ) -> None:
        fusion = RankFusion(k=1, dense_weight=dense_weight, sparse_weight=1.0)
        hits = filled.search(COLLECTION, vector=axis(0), text=RARE_WORD, top_k=2, fusion=fusion)
        assert ids(hits) == expected
        assert hits[0].score == pytest.approx(max(dense_weight / 2, dense_weight / 3 + 1 / 2), abs=1e-5)

    @pytest.mark.parametrize(
        ("mode", "capped"),
        [("dense", ["doc-a", "doc-b"]), ("sparse", ["doc-a"]), ("hybrid", ["doc-a", "doc-b"])],
    )
    def test_a_per_document_cap_gives_other_documents_the_places(
        self, filled: VectorStore, mode: SearchMode, capped: list[str]
    ) -> None:
        # a1 and a2 (doc-a) are the two nearest and the only BM25 matches; b2 comes third.
        search = {"vector": unit(1, 1), "text": "fox kafka", "top_k": 2, "mode": mode}
        assert [hit.document_id for hit in filled.search(COLLECTION, **search)] == ["doc-a", "doc-a"]
        hits = filled.search(COLLECTION, **search, per_document=1)
        assert [hit.document_id for hit in hits] == capped
        assert hits[0].chunk_id == filled.search(COLLECTION, **search)[0].chunk_id  # the best chunk keeps its place
        with pytest.raises(ValueError, match="per_document"):
            filled.search(COLLECTION, **search, per_document=0)

    def test_equal_scores_rank_by_chunk_id_in_every_mode(self, store: VectorStore) -> None:
        # Five copies of one text and one vector: every retriever scores them all alike. (Which
        # of tied chunks an engine returns at its cut is the engine's: all five are asked for.)
        twins = [replace(CHUNKS[0], chunk_id=name) for name in ("t3", "t1", "t5", "t2", "t4")]
        store.ensure_collection(COLLECTION, DIM)
        store.upsert(COLLECTION, twins, MODEL)
        for mode in ("dense", "sparse", "hybrid"):
            hits = store.search(COLLECTION, vector=axis(0), text="quick fox", top_k=5, mode=mode)  # type: ignore[arg-type]
            assert ids(hits) == ["t1", "t2", "t3", "t4", "t5"], mode

    def test_bm25_indexes_the_indexed_text_and_shows_the_text(self, store: VectorStore) -> None:
        headed = replace(CHUNKS[0], indexed_text=f"Mammals\n\n{CHUNKS[0].text}")
        store.ensure_collection(COLLECTION, DIM)
        store.upsert(COLLECTION, [headed, *CHUNKS[1:]], MODEL)
        [hit] = store.search(COLLECTION, vector=axis(0), text="mammals", top_k=5, mode="sparse")
        assert (hit.chunk_id, hit.text) == ("a1", CHUNKS[0].text)

    def test_hybrid_returns_hits_found_by_either_retriever(self, filled: VectorStore) -> None:
        hits = filled.search(COLLECTION, vector=axis(4), text=RARE_WORD, top_k=2)
        assert set(ids(hits)) == {"c1", "b2"}

    @pytest.mark.parametrize("mode", ["dense", "sparse", "hybrid"])
    @pytest.mark.parametrize(
        ("filters", "expected"),
        [
            ({"document_id": "doc-b"}, {"b1", "b2"}),
            ({"document_id": ["doc-a", "doc-c"]}, {"a1", "a2", "c1"}),
            ({"title": "Fusion"}, {"c1"}),
            ({"source": "wiki"}, {"a1", "a2"}),
            ({"lang": "de"}, {"b1", "b2"}),
            ({"lang": ["en", "fr"]}, {"a1", "a2", "c1"}),
            ({"team": "infra", "document_id": "doc-b"}, {"b1", "b2"}),
            ({"team": "infra", "document_id": "doc-a"}, set()),
            ({"lang": "xx"}, set()),
        ],
    )
    def test_filters(
        self,
        filled: VectorStore,
        mode: str,
        filters: dict[str, str | list[str]],
        expected: set[str],
    ) -> None:
        hits = filled.search(COLLECTION, vector=axis(0), text="ragops", top_k=10, mode=mode, filters=filters)  # type: ignore[arg-type]
        assert set(ids(hits)) == expected

    @pytest.mark.parametrize(
        "filters",
        [{"lang": []}, {"lang": [1]}, {"a.b": "x"}, {"lang": None}],
        ids=["empty-list", "not-a-string", "dotted-key", "none"],
    )
    def test_malformed_filters_are_refused(self, filled: VectorStore, filters: dict) -> None:
        with pytest.raises(ValueError, match=r"filter|metadata key"):
            filled.search(COLLECTION, vector=axis(0), text="ragops", top_k=3, filters=filters)

    def test_score_threshold_applies_to_dense_similarity(self, filled: VectorStore) -> None:
        dense = filled.search(COLLECTION, vector=axis(0), text="", top_k=5, mode="dense", score_threshold=0.5)
        assert ids(dense) == ["a1"]
        # Hybrid: the threshold prunes dense candidates; BM25 candidates are kept.
        hybrid = filled.search(COLLECTION, vector=axis(0), text="kafka", top_k=5, score_threshold=0.5)
        assert set(ids(hybrid)) == {"a1", "a2"}
        # Sparse scores are on no fixed scale: the threshold is ignored.
        sparse = filled.search(COLLECTION, vector=axis(0), text=RARE_WORD, top_k=5, mode="sparse", score_threshold=0.99)
        assert ids(sparse) == ["b2"]

    @pytest.mark.parametrize("mode", ["dense", "sparse", "hybrid"])
    def test_top_k_is_respected(self, filled: VectorStore, mode: str) -> None:
        assert len(filled.search(COLLECTION, vector=axis(0), text="ragops", top_k=2, mode=mode)) == 2  # type: ignore[arg-type]
        assert len(filled.search(COLLECTION, vector=axis(0), text="ragops", top_k=50, mode=mode)) == 5  # type: ignore[arg-type]

    def test_hits_carry_text_version_and_payload(self, filled: VectorStore) -> None:
        (hit,) = filled.search(COLLECTION, vector=axis(2), text="", top_k=1, mode="dense")
        assert (hit.chunk_id, hit.document_id, hit.document_version) == ("b1", "doc-b", "v1")
        assert hit.text == "ragops Qdrant builds an HNSW graph over vectors"
        assert hit.payload == {
            "title": "Vectors",
            "source": "docs",
            "metadata": {"lang": "de", "team": "infra"},
            "model_version": MODEL,
        }

    @pytest.mark.parametrize(
        ("arguments", "message"),
        [
            ({"top_k": 0}, "top_k"),
            ({"mode": "fuzzy"}, "unknown search mode"),
            ({"vector": [1.0, 0.0]}, "dimension 8"),
        ],
    )
    def test_invalid_search_arguments_are_refused(self, filled: VectorStore, arguments: dict, message: str) -> None:
        with pytest.raises(ValueError, match=message):
            filled.search(COLLECTION, **{"vector": axis(0), "text": "fox", "top_k": 3, **arguments})


class TestEdgeStore:
    """What only the embedded adapter has: reopening from disk, optimisation, threads."""

    def test_data_survives_close_and_reopen(self, tmp_path: Path) -> None:
        first = EdgeStore(tmp_path)
        first.ensure_collection(COLLECTION, DIM)
        first.upsert(COLLECTION, CHUNKS, MODEL)
        first.close()

        second = EdgeStore(tmp_path)
        try:
            # No ensure_collection: an existing collection opens on first use.
            assert second.count(COLLECTION) == 5
            assert ids(second.search(COLLECTION, vector=axis(0), text=RARE_WORD, top_k=2)) == [
                "b2",
                "a1",
            ]
            with pytest.raises(ValueError, match="dimension 8, not 4"):
                second.ensure_collection(COLLECTION, 4)
        finally:
            second.close()

    def test_a_closed_store_refuses_calls(self, tmp_path: Path) -> None:
        store = EdgeStore(tmp_path)
        store.ensure_collection(COLLECTION, DIM)
        store.close()
        store.close()
        with pytest.raises(RuntimeError, match="closed"):
            store.count(COLLECTION)

    def test_optimize_keeps_results_and_later_upserts_stay_visible(self, tmp_path: Path) -> None:
        store = EdgeStore(tmp_path)
        try:
            store.ensure_collection(COLLECTION, DIM)
            store.upsert(COLLECTION, CHUNKS[:4], MODEL)
            before = ids(store.search(COLLECTION, vector=axis(0), text=RARE_WORD, top_k=4))
            store.optimize(COLLECTION)
            assert ids(store.search(COLLECTION, vector=axis(0), text=RARE_WORD, top_k=4)) == before
            store.upsert(COLLECTION, CHUNKS[4:], MODEL)
            assert ids(store.search(COLLECTION, vector=axis(4), text="", top_k=1, mode="dense")) == ["c1"]
        finally:
            store.close()

    def test_concurrent_calls_from_worker_threads(self, tmp_path: Path) -> None:
        store = EdgeStore(tmp_path)
        try:
            store.ensure_collection(COLLECTION, DIM)
            rng = np.random.default_rng(7)

            def write(worker: int) -> int:
                points = [
                    ChunkPoint(
                        f"w{worker}-{i}",
                        f"doc-{worker}",
                        "v1",
                        f"ragops worker {worker}",
                        unit(*rng.normal(size=DIM)),
                        {},
                    )
                    for i in range(50)
                ]
                written = store.upsert(COLLECTION, points, MODEL)
                store.search(COLLECTION, vector=axis(0), text="ragops", top_k=5)
                return written

            with ThreadPoolExecutor(max_workers=4) as pool:
                assert sum(pool.map(write, range(8))) == 400
            assert store.count(COLLECTION) == 400
            assert store.delete_document(COLLECTION, "doc-3") == 50
        finally:
            store.close()


class TestOpenStore:
    def test_without_url_opens_edge(self, tmp_path: Path) -> None:
        store = open_store(url=None, api_key=None, path=tmp_path)
        try:
            assert isinstance(store, EdgeStore)
        finally:
            store.close()

    def test_with_url_opens_the_server_client(self, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
        # No server here: record what the client would be built with instead.
        built: dict[str, object] = {}

        class FakeClient:
            def __init__(self, **kwargs: object) -> None:
                built.update(kwargs)

        monkeypatch.setattr("ragops_retrieval.client_store.QdrantClient", FakeClient)
        store = open_store(url="https://qdrant.example:6333", api_key="secret", path=tmp_path)
        assert isinstance(store, QdrantClientStore)
        assert (built["url"], built["api_key"], built["path"]) == (
            "https://qdrant.example:6333",
            "secret",
            None,
        )

    def test_client_store_needs_exactly_one_target(self, tmp_path: Path) -> None:
        with pytest.raises(ValueError, match="exactly one"):
            QdrantClientStore()
        with pytest.raises(ValueError, match="exactly one"):
            QdrantClientStore(path=tmp_path, location=":memory:")


def _forget_tenants(store: VectorStore) -> None:
    """Remove the tenant field from every point, as points written before they named one."""
    if isinstance(store, EdgeStore):
        from qdrant_edge import Filter, UpdateOperation

        store._open(COLLECTION).shard.update(UpdateOperation.delete_payload_by_filter(Filter(), ["tenant"]))
    else:
        from qdrant_client import models

        store._client.delete_payload(COLLECTION, ["tenant"], models.Filter(), wait=True)


class TestTenants:
    """Two tenants' documents with the same id in one collection: every read, count and
    delete stays within the tenant it names."""

    @pytest.fixture
    def shared(self, filled: VectorStore) -> VectorStore:
        # Globex's doc-a: same document id, other chunks (chunk ids name the tenant).
        theirs = [replace(point, chunk_id=f"globex-{point.chunk_id}", tenant="globex") for point in CHUNKS[:2]]
        filled.upsert(COLLECTION, theirs, MODEL)
        return filled

    @pytest.mark.parametrize("mode", ["dense", "sparse", "hybrid"])
    def test_a_search_returns_the_searching_tenants_chunks_only(self, shared: VectorStore, mode: str) -> None:
        search = {"vector": axis(0), "text": "ragops fox", "top_k": 10, "mode": mode}
        assert set(ids(shared.search(COLLECTION, **search, tenant="globex"))) == {"globex-a1", "globex-a2"}
        filtered = shared.search(COLLECTION, **search, filters={"document_id": "doc-a"}, tenant="globex")
        assert set(ids(filtered)) == {"globex-a1", "globex-a2"}
        assert not any(hit.startswith("globex-") for hit in ids(shared.search(COLLECTION, **search)))
        assert shared.search(COLLECTION, **search, tenant="initech") == []

    def test_counts_lists_and_deletes_stay_within_the_tenant(self, shared: VectorStore) -> None:
        assert shared.count(COLLECTION, "doc-a", tenant="globex") == 2
        assert shared.chunk_ids(COLLECTION, "doc-a", "v1", tenant="globex") == ["globex-a1", "globex-a2"]
        assert shared.delete_superseded(COLLECTION, "doc-a", "v2", tenant="globex") == 2
        assert shared.count(COLLECTION, "doc-a") == 2, "the default tenant's doc-a went with globex's"
        shared.upsert(COLLECTION, [replace(CHUNKS[0], chunk_id="globex-a1", tenant="globex")], MODEL)
        assert shared.withdraw(COLLECTION, "doc-a", "v1", tenant="globex") == 1
        assert shared.delete_document(COLLECTION, "doc-a", tenant="globex") == 0
        assert shared.count(COLLECTION, "doc-a") == 2

    def test_points_written_before_tenants_belong_to_the_default_tenant(self, filled: VectorStore) -> None:
        _forget_tenants(filled)
        filled.ensure_collection(COLLECTION, DIM)  # as at the next start
        search = {"vector": axis(0), "text": "ragops fox", "top_k": 10}
        assert len(filled.search(COLLECTION, **search)) == len(CHUNKS)
        assert filled.search(COLLECTION, **search, tenant="globex") == []
        assert filled.count(COLLECTION, "doc-a") == 2
        assert filled.count(COLLECTION, "doc-a", tenant="globex") == 0


class TestAdaptersAgree:
    def test_both_adapters_return_identical_hybrid_results(self, tmp_path: Path) -> None:
        # Texts from a small vocabulary: many equal BM25 scores, so ties decide ranks.
        rng = np.random.default_rng(7)
        words = ["kafka", "vector", "fusion", "rank", "broker", "graph", "index", "chunk"]
        points = [
            ChunkPoint(f"c{i:02d}", f"doc-{i % 6}", "v1", " ".join(rng.choice(words, 3)), unit(*rng.normal(size=DIM)))
            for i in range(40)
        ]
        stores: list[VectorStore] = [EdgeStore(tmp_path / "edge"), QdrantClientStore(path=tmp_path / "local")]
        try:
            for store in stores:
                store.ensure_collection(COLLECTION, DIM)
                store.upsert(COLLECTION, points, MODEL)
            for query in range(10):
                vector, text = unit(*rng.normal(size=DIM)), " ".join(rng.choice(words, 2))
                settings = itertools.product(
                    (RankFusion(), RankFusion(k=5, dense_weight=1.0, sparse_weight=0.5)), (None, 2)
                )
                for fusion, per_document in settings:
                    edge, client = (
                        s.search(
                            COLLECTION, vector=vector, text=text, top_k=8, fusion=fusion, per_document=per_document
                        )
                        for s in stores
                    )
                    assert ids(edge) == ids(client), (query, fusion, per_document)
                    assert [h.score for h in edge] == pytest.approx([h.score for h in client], abs=1e-9)
        finally:
            for store in stores:
                store.close()

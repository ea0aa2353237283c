"""The indexer's part of an erasure, on Qdrant Edge and on qdrant-client's local mode: the points
of a subject's documents go from every collection (the live index and an index build), counted
per collection and verified; another subject's points, another tenant's and unnamed documents'
stay; a retry and an unknown subject delete nothing and are complete."""

from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import pytest

from ragops_retrieval.client_store import QdrantClientStore
from ragops_retrieval.edge_store import EdgeStore
from ragops_retrieval.erasure import erase_subject
from ragops_retrieval.store import SUBJECT_FIELD, ChunkPoint, VectorStore
from ragops_schemas import Producer
from ragops_schemas.changes import ChangeActor
from ragops_schemas.erasure import ErasureRequested
from ragops_schemas.ids import erasure_id

pytestmark = [pytest.mark.qdrant, pytest.mark.filterwarnings("ignore:Payload indexes have no effect:UserWarning")]
PRODUCER = Producer(name="retrieval", version="test")
LIVE, BUILD = "default__model__v1", "default__model__v1__b0123456789ab"


@pytest.fixture(params=["edge", "client"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[VectorStore]:
    opened: VectorStore = (
        EdgeStore(tmp_path / "edge") if request.param == "edge" else QdrantClientStore(path=tmp_path / "local")
    )
    yield opened
    opened.close()


def _point(document_id: str, n: int, subject: str | None, tenant: str = "acme") -> ChunkPoint:
    vector = [0.0] * 4
    vector[n % 4] = 1.0
    return ChunkPoint(
        chunk_id=f"{tenant}-{document_id}-{n}",
        document_id=document_id,
        document_version="v1",
        text=f"chunk {n} of {document_id}",
        vector=vector,
        payload={"title": document_id, **({SUBJECT_FIELD: subject} if subject else {})},
        tenant=tenant,
    )


def _request(subject: str, tenant: str = "acme") -> ErasureRequested:
    return ErasureRequested(
        producer=PRODUCER,
        tenant=tenant,
        erasure_id=erasure_id(tenant, subject, "t"),
        subject=subject,
        requested_by=ChangeActor(subject="person:admin", name="admin", kind="person"),
    )


def test_the_subjects_points_go_from_every_collection(store: VectorStore) -> None:
    points = [
        *(_point("about-alice", n, "alice") for n in range(3)),
        *(_point("about-bob", n, "bob") for n in range(2)),
        *(_point("general", n, None) for n in range(2)),
        *(_point("about-alice", n, "alice", tenant="globex") for n in range(2)),
    ]
    for collection in (LIVE, BUILD):
        store.ensure_collection(collection, 4)
        store.upsert(collection, points, "v1")
    store.upsert(BUILD, [replace(_point("alice-2", 0, "alice"), chunk_id="only-in-build")], "v1")

    report = erase_subject(store, _request("alice"), PRODUCER)

    assert report.store == "vectors" and report.complete, report.reason
    assert report.deleted == {LIVE: 3, BUILD: 4}
    assert report.remaining == {LIVE: 0, BUILD: 0}
    for collection in (LIVE, BUILD):
        assert store.count_subject(collection, "alice", tenant="acme") == 0
        assert store.count_subject(collection, "bob", tenant="acme") == 2
        assert store.count_subject(collection, "alice", tenant="globex") == 2
        assert store.count(collection, "general", tenant="acme") == 2


def test_a_retry_and_an_unknown_subject_delete_nothing(store: VectorStore) -> None:
    store.ensure_collection(LIVE, 4)
    store.upsert(LIVE, [_point("about-alice", 0, "alice")], "v1")
    assert erase_subject(store, _request("alice"), PRODUCER).deleted == {LIVE: 1}
    for report in (erase_subject(store, _request("alice"), PRODUCER), erase_subject(store, _request("x"), PRODUCER)):
        assert report.complete and report.deleted == {LIVE: 0} and report.remaining == {LIVE: 0}


def test_a_closed_store_reports_not_complete(tmp_path: Path) -> None:
    store = EdgeStore(tmp_path / "edge")
    store.ensure_collection(LIVE, 4)
    store.close()
    report = erase_subject(store, _request("alice"), PRODUCER)
    assert report.complete is False and report.reason.startswith("vector store:")

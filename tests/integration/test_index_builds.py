"""The indexer while a re-index is under way, on a real Qdrant Edge store: a document that
arrives from live traffic during a build is written to the live collection and to the build
(the replay started before it and will not carry it), a replayed one to the build only, and
once the build is promoted live documents go to it alone; a build abandoned unpromoted
takes none. A deleted document leaves every collection: live, in progress and earlier builds."""

from collections.abc import Iterator
from pathlib import Path

import pytest

from ragops_retrieval.app import Index
from ragops_retrieval.settings import RetrievalSettings
from ragops_schemas import (
    ChunksEmbedded,
    ContextRetrieved,
    DocumentDeleted,
    EmbeddedChunk,
    EmbeddingModelInfo,
    Producer,
    QueryEmbedded,
    VersionPromoted,
    VersionRegistered,
    VersionRejected,
)
from ragops_schemas.events import IndexBuild
from ragops_schemas.experiments import ExperimentAssignment
from ragops_schemas.ids import derived_event_id, index_name
from ragops_schemas.registry import Registry
from ragops_shared.settings import PlatformSettings

pytestmark = pytest.mark.qdrant

P = Producer(name="test", version="0")
MODEL = EmbeddingModelInfo(name="m", version="v1", dimension=4)
LIVE = index_name("default", MODEL.name, MODEL.version)  # the model's first collection
BUILD = IndexBuild(build_id="b1", collection=f"{LIVE}__b1", embedding_version=MODEL.version)


def embedded(document_id: str, build: IndexBuild | None = None) -> ChunksEmbedded:
    return ChunksEmbedded(
        producer=P,
        document_id=document_id,
        document_version="1",
        embedding=MODEL,
        index_build=build,
        chunks=[
            EmbeddedChunk(
                chunk_id=f"{document_id}-0",
                index=0,
                text=f"text of {document_id}",
                token_count=3,
                char_start=0,
                char_end=10,
                vector=[1.0, 0.0, 0.0, 0.0],
            )
        ],
    )


@pytest.fixture
def registry() -> Registry:
    return Registry()


@pytest.fixture
def index(tmp_path: Path, registry: Registry) -> Iterator[Index]:
    index = Index(RetrievalSettings(platform=PlatformSettings(data_dir=tmp_path)), P, registry)
    index.open()
    yield index
    index.close()


def holds(index: Index, document_id: str) -> list[str]:
    """The collections that hold ``document_id``."""
    collections = (LIVE, BUILD.collection)
    for collection in collections:  # a build's collection appears with its first document
        index.store.ensure_collection(collection, MODEL.dimension)
    return [c for c in collections if index.store.count(c, document_id)]


def test_a_live_document_during_a_build_goes_to_both_and_after_the_promotion_to_the_build_only(
    index: Index,
    registry: Registry,
) -> None:
    index.index([embedded("before")])
    assert holds(index, "before") == [LIVE]

    # The trainer registers the build before it replays anything.
    registry.apply(
        VersionRegistered(
            producer=P,
            kind="index",
            name=LIVE,
            version=BUILD.build_id,
            uri=BUILD.collection,
            parent_version=MODEL.version,
        )
    )
    [during] = index.index([embedded("during")])
    assert holds(index, "during") == [LIVE, BUILD.collection]
    assert during.collection == LIVE, "reported where queries find it now"
    index.index([embedded("before", BUILD)])  # the replay
    assert holds(index, "before") == [LIVE, BUILD.collection]

    registry.apply(
        VersionPromoted(
            producer=P, kind="index", name=LIVE, version=BUILD.build_id, uri=BUILD.collection, reason="built"
        )
    )
    [after] = index.index([embedded("after")])
    assert holds(index, "after") == [BUILD.collection] and after.collection == BUILD.collection


def test_a_build_that_ended_without_promotion_takes_no_more_documents(index: Index, registry: Registry) -> None:
    registry.apply(
        VersionRegistered(
            producer=P,
            kind="index",
            name=LIVE,
            version=BUILD.build_id,
            uri=BUILD.collection,
            parent_version=MODEL.version,
        )
    )
    registry.apply(VersionRejected(producer=P, kind="index", name=LIVE, version=BUILD.build_id, reason="abandoned"))
    index.index([embedded("later")])
    assert holds(index, "later") == [LIVE]


def test_a_deleted_document_leaves_every_build_and_only_its_tenants_points(index: Index, registry: Registry) -> None:
    retired = IndexBuild(build_id="b0", collection=f"{LIVE}__b0", embedding_version=MODEL.version)
    index.index([embedded("gone", retired)])  # an earlier build: it may be promoted again
    index.index([embedded("gone")])
    registry.apply(
        VersionRegistered(
            producer=P, kind="index", name=LIVE, version=BUILD.build_id, uri=BUILD.collection, parent_version="v1"
        )
    )
    index.index([embedded("gone", BUILD)])  # replayed into the build in progress
    index.index([embedded("kept")])
    mine = embedded("gone")  # chunk ids are per tenant (ragops_schemas.ids.chunk_id): globex's is its own
    other = mine.model_copy(
        update={"tenant": "globex", "chunks": [mine.chunks[0].model_copy(update={"chunk_id": "globex-gone-0"})]}
    )
    index.index([other])
    assert holds(index, "gone") == [LIVE, BUILD.collection]

    deletion = DocumentDeleted(producer=P, document_id="gone")
    [removed] = index.remove([deletion])
    assert removed.removed_points == {LIVE: 1, retired.collection: 1, BUILD.collection: 1}
    assert removed.event_id == derived_event_id("DocumentRemoved", deletion.event_id), "derived from the deletion"
    assert holds(index, "gone") == [] and index.store.count(retired.collection, "gone") == 0
    assert holds(index, "kept") == [LIVE, BUILD.collection], "other documents stay"
    assert index.store.count(LIVE, "gone", tenant="globex") == 1, "another tenant's document of the same id"

    # A redelivered deletion removes nothing more and is the same fact (recorded once).
    [again] = index.remove([deletion])
    assert again.event_id == removed.event_id and again.total_removed == 0


def test_a_question_in_the_canary_arm_of_an_index_is_searched_in_that_index_version(
    index: Index, registry: Registry
) -> None:
    """The canary of an index: an index experiment's arm names a build; its questions search
    that collection (and carry the arm), the others the live one; an arm whose version is
    unknown serves the live index, outside the experiment."""
    registry.apply(
        VersionRegistered(
            producer=P,
            kind="index",
            name=LIVE,
            version=BUILD.build_id,
            uri=BUILD.collection,
            metadata={"embedding_version": MODEL.version},
        )
    )
    index.index([embedded("live")])  # a live document goes to the build too
    index.index([embedded("built", BUILD)])  # a replayed one to the build only

    def asked(version: str | None) -> ContextRetrieved:
        arm = None
        if version is not None:
            arm = ExperimentAssignment(
                experiment_id="exp-" + "0" * 20, target="index", target_name=LIVE, variant="canary", version=version
            )
        query = QueryEmbedded(
            producer=P, request_id="r", question="text", top_k=3, embedding=MODEL, vector=[1.0, 0, 0, 0], assignment=arm
        )
        [retrieved] = index.retrieve([query])
        return retrieved

    canary, live, unknown = asked(BUILD.build_id), asked(None), asked("b-unknown")
    assert canary.retrieval.collection == BUILD.collection and {c.document_id for c in canary.contexts} == {
        "built",
        "live",
    }
    assert canary.assignment is not None and canary.assignment.version == BUILD.build_id
    assert live.retrieval.collection == LIVE and [c.document_id for c in live.contexts] == ["live"]
    assert unknown.retrieval.collection == LIVE and unknown.assignment is None

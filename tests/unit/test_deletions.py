"""Which documents replays skip (:func:`ragops_shared.deletions.deleted_documents`), and how the
views of what is indexed forget a removed document: plain functions over events, whatever
classes the facts are."""

from datetime import UTC, datetime, timedelta

from ragops_schemas import (
    Chunk,
    ChunkerInfo,
    DocumentChunked,
    DocumentDeleted,
    DocumentEvent,
    DocumentIndexed,
    DocumentRedacted,
    DocumentRemoved,
    EmbeddingModelInfo,
    ErasureRequested,
)
from ragops_schemas.changes import ChangeActor
from ragops_schemas.events import IndexBuild
from ragops_schemas.ids import erasure_id
from ragops_shared.datasets import CorpusDocument
from ragops_shared.deletions import deleted_documents, replay_skips
from ragops_shared.indexed_view import IndexedDocuments
from ragops_shared.settings import KafkaSettings
from ragops_trainer.actions.refresh_corpus import to_submit
from ragops_trainer.pairs import latest_documents, latest_parts
from tests.helpers import GATEWAY_SIGNER, PRODUCER, VERIFIER

T0 = datetime(2026, 12, 1, 9, 0, tzinfo=UTC)
MODEL = EmbeddingModelInfo(name="m", version="v1", dimension=4)


def at(minutes: int) -> datetime:
    return T0 + timedelta(minutes=minutes)


def submitted(document_id: str, minutes: int, tenant: str = "acme") -> DocumentRedacted:
    return DocumentRedacted(
        producer=PRODUCER, tenant=tenant, document_id=document_id, content="text", occurred_at=at(minutes)
    )


def deleted(document_id: str, minutes: int, tenant: str = "acme") -> DocumentDeleted:
    return DocumentDeleted(producer=PRODUCER, tenant=tenant, document_id=document_id, occurred_at=at(minutes))


def chunked(
    document_id: str, minutes: int, build: IndexBuild | None = None, *, subject: str | None = None, tenant: str = "acme"
) -> DocumentChunked:
    return DocumentChunked(
        producer=PRODUCER,
        tenant=tenant,
        document_id=document_id,
        subject_id=subject,
        document_version="v",
        content_type="text/plain",
        chunker=ChunkerInfo(tokenizer="t", chunk_size=10, overlap=0),
        chunks=[Chunk(chunk_id=f"{document_id}-0", index=0, text="text", token_count=1, char_start=0, char_end=4)],
        index_build=build,
        occurred_at=at(minutes),
    )


def test_a_document_is_deleted_while_a_deletion_is_its_latest_fact() -> None:
    facts: list[DocumentEvent] = [
        submitted("a", 0),
        deleted("a", 1),  # deleted
        submitted("b", 0),
        deleted("b", 1),
        submitted("b", 2),  # deleted, then submitted again: live
        deleted("c", 5),
        submitted("c", 3),  # read after the deletion, but older: still deleted
        submitted("d", 0),  # never deleted
        submitted("a", 0, tenant="globex"),  # another tenant's "a"
    ]
    assert deleted_documents(facts) == {("acme", "a"), ("acme", "c")}


def test_any_document_event_class_is_a_fact_and_replays_of_builds_are_not() -> None:
    build = IndexBuild(build_id="b1", collection="x__b1", embedding_version="v1")
    assert deleted_documents([chunked("a", 0), deleted("a", 1)]) == {("acme", "a")}
    assert deleted_documents([deleted("a", 1), chunked("a", 2)]) == set()
    # A re-index replays an old version after the deletion: not a new fact.
    assert deleted_documents([chunked("a", 0), deleted("a", 1), chunked("a", 2, build)]) == {("acme", "a")}


def test_same_time_the_later_read_wins() -> None:
    assert deleted_documents([submitted("a", 0), deleted("a", 0)]) == {("acme", "a")}
    assert deleted_documents([deleted("a", 0), submitted("a", 0)]) == set()


def test_the_re_index_replays_no_deleted_document() -> None:
    events = [chunked("a", 0), chunked("b", 0), deleted("a", 1), chunked("c", 0), deleted("c", 1), chunked("c", 2)]
    assert sorted(latest_parts(events, VERIFIER)) == [("acme", "b"), ("acme", "c")]


def erasure(subject: str, minutes: int, tenant: str = "acme", *, signed: bool = True) -> ErasureRequested:
    request = ErasureRequested(
        producer=PRODUCER,
        tenant=tenant,
        erasure_id=erasure_id(tenant, subject, f"k{minutes}"),
        subject=subject,
        requested_by=ChangeActor(subject="person:admin", name="admin", kind="person"),
        occurred_at=at(minutes),
    )
    return GATEWAY_SIGNER.sign(request) if signed else request


def test_an_erased_subjects_documents_are_skipped_until_submitted_again() -> None:
    facts = [
        chunked("a", 0, subject="s1"),  # erased
        chunked("b", 0, subject="s2"),  # another subject
        chunked("c", 0),  # about no one
        chunked("d", 0, subject="s1", tenant="globex"),  # another tenant's subject of the same id
        chunked("e", 0, subject="s1"),
        chunked("e", 3, subject="s1"),  # submitted again for the subject after the erasure: a new fact
        chunked("f", 0, subject="s1"),
        deleted("f", 1),  # deleted anyway
        erasure("s1", 2),
        chunked("g", 2, subject="s1"),  # the same time as the erasure: erased
    ]
    assert replay_skips(facts, VERIFIER) == {("acme", "a"), ("acme", "f"), ("acme", "g")}
    # A replay of an index build repeats an old fact: it makes no document live again.
    build = IndexBuild(build_id="b1", collection="x__b1", embedding_version="v1")
    assert ("acme", "a") in replay_skips([*facts, chunked("a", 4, build, subject="s1")], VERIFIER)


def test_only_a_signed_erasure_counts() -> None:
    facts = [chunked("a", 0, subject="s1"), erasure("s1", 2, signed=False)]
    assert replay_skips(facts, VERIFIER) == set()
    forged = erasure("s1", 2).model_copy(update={"subject": "s2"})  # signature of another request
    assert replay_skips([chunked("a", 0, subject="s2"), forged], VERIFIER) == set()
    assert replay_skips([*facts, erasure("s1", 2)], VERIFIER) == {("acme", "a")}


def test_the_re_index_and_the_fine_tune_replay_no_erased_subjects_document() -> None:
    events = [
        chunked("a", 0, subject="s1"),
        chunked("b", 0, subject="s2"),
        chunked("a", 0, subject="s1", tenant="globex"),
        erasure("s1", 1),
    ]
    assert sorted(latest_parts(events, VERIFIER)) == [("acme", "b"), ("globex", "a")]
    assert sorted(latest_documents(events[:2] + events[3:], VERIFIER)) == ["b"]


def test_the_corpus_refresh_does_not_bring_a_deleted_document_back() -> None:
    sources = [CorpusDocument(id=name, text="text") for name in ("kept", "gone", "back", "changed")]
    history = [
        submitted("kept", 0),
        submitted("gone", 0),
        deleted("gone", 1),
        submitted("back", 0),
        deleted("back", 1),
        submitted("back", 2),  # submitted again after its deletion
        submitted("changed", 0).model_copy(update={"content": "older text"}),
        deleted("kept", 1, tenant="globex"),  # another tenant's deletion
    ]
    new, corpus = to_submit(sources, history, "acme")
    assert [doc.id for doc in new] == ["changed"]
    assert set(corpus) == {"kept", "back", "changed"}, "the corpus version leaves the deleted document out"


def indexed(document_id: str, minutes: int, tenant: str = "acme") -> DocumentIndexed:
    return DocumentIndexed(
        producer=PRODUCER,
        tenant=tenant,
        document_id=document_id,
        document_version="v",
        collection="c",
        chunk_count=1,
        superseded_chunks=0,
        embedding=MODEL,
        occurred_at=at(minutes),
    )


def removed(document_id: str, minutes: int, tenant: str = "acme") -> DocumentRemoved:
    return DocumentRemoved(
        producer=PRODUCER,
        tenant=tenant,
        document_id=document_id,
        deletion_event_id="d",
        removed_points={"c": 1},
        occurred_at=at(minutes),
    )


def test_the_indexed_view_forgets_a_removed_document_until_it_is_indexed_again() -> None:
    view = IndexedDocuments(KafkaSettings(), client_id="test")
    for event in (indexed("a", 0), indexed("a", 0, tenant="globex"), removed("a", 1)):
        view.apply(event)
    assert view.get("acme", "a") is None, "a re-submission is indexed again, not acknowledged unchanged"
    assert view.get("globex", "a") is not None
    view.apply(indexed("a", 2))
    assert view.get("acme", "a") is not None


def test_the_indexed_view_orders_the_two_topics_by_time_whichever_is_read_first() -> None:
    view = IndexedDocuments(KafkaSettings(), client_id="test")
    view.apply(removed("a", 1))  # the removal topic read first
    view.apply(indexed("a", 0))  # the indexing it removed
    assert view.get("acme", "a") is None

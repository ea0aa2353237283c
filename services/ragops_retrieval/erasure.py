"""The indexer's part of an erasure: delete the points of a data subject's documents from every
collection (the live indexes and every index build, kept or not yet promoted), count what is
left, and report (``SubjectErasureApplied``, store ``vectors``).

A document is the subject's when its submission named the subject (``subject_id``): the point
payload carries it (:data:`~ragops_retrieval.store.SUBJECT_FIELD`). A point written after the
count (a version of the document indexed meanwhile) is found by the next erasure of the subject.
"""

from ragops_retrieval.store import VectorStore
from ragops_schemas import Producer
from ragops_schemas.erasure import ErasureRequested, SubjectErasureApplied

STORE = "vectors"


def erase_subject(store: VectorStore, request: ErasureRequested, producer: Producer) -> SubjectErasureApplied:
    """Delete the subject's points in every collection and count them again (blocking: run it in
    a thread): deleted and remaining points per collection; ``complete`` when none is left. An
    engine that fails gives a report that is not complete, with the reason, never an exception."""
    deleted: dict[str, int] = {}
    remaining: dict[str, int] = {}
    try:
        for collection in store.collections():
            deleted[collection] = store.delete_subject(collection, request.subject, tenant=request.tenant)
            remaining[collection] = store.count_subject(collection, request.subject, tenant=request.tenant)
    except Exception as error:  # noqa: BLE001 - whatever the engine raised, the report says it is not done
        reason = f"vector store: {type(error).__name__}: {error}"
        return request.applied(producer, STORE, deleted=deleted, remaining=remaining, complete=False, reason=reason)
    left = sum(remaining.values())
    return request.applied(
        producer,
        STORE,
        deleted=deleted,
        remaining=remaining,
        complete=left == 0,
        reason="" if left == 0 else f"{left} points of the subject were found after deleting (indexed meanwhile)",
    )

"""Which documents are deleted: those whose latest fact is a :class:`DocumentDeleted`.

Replays (the trainer's corpus refresh, re-index and fine-tune) ask this before they bring a
document back: a deleted document stays out of every rebuilt index and training set until a
newer fact (a submission after the deletion) makes it live again. The facts may be of any
document event class (submissions, chunked versions, redacted submissions...): only their
``tenant``, ``document_id`` and ``occurred_at`` are read, so the same function serves whatever
history a replay reads."""

from collections.abc import Iterable
from datetime import datetime

from ragops_schemas import DocumentDeleted, DocumentEvent

DocumentKey = tuple[str, str]
"""(tenant, document id): a document id is unique per tenant."""


def deleted_documents(facts: Iterable[DocumentEvent]) -> set[DocumentKey]:
    """The (tenant, document id) of every document whose latest fact in ``facts`` is a
    deletion.

    Latest = greatest ``occurred_at`` (UTC, ms): the events of two topics (a deletion and a
    submission) share no offsets, only time. Of two facts of one time the later one read wins:
    within one topic's partition that is offset order. Replayed events of an index build
    (``index_build`` set) repeat an older fact and are ignored."""
    latest: dict[DocumentKey, tuple[datetime, bool]] = {}
    for fact in facts:
        if getattr(fact, "index_build", None) is not None:
            continue
        key = (fact.tenant, fact.document_id)
        known = latest.get(key)
        if known is None or known[0] <= fact.occurred_at:
            latest[key] = (fact.occurred_at, isinstance(fact, DocumentDeleted))
    return {key for key, (_, deleted) in latest.items() if deleted}

"""Which documents are deleted: those whose latest fact is a :class:`DocumentDeleted`.

Replays (the trainer's corpus refresh, re-index and fine-tune) ask this before they bring a
document back: a deleted document stays out of every rebuilt index and training set until a
newer fact (a submission after the deletion) makes it live again. The facts may be of any
document event class (submissions, chunked versions, redacted submissions...): only their
``tenant``, ``document_id`` and ``occurred_at`` are read, so the same function serves whatever
history a replay reads.

An erased data subject's documents stay out too (:func:`replay_skips`): the erasure deleted
their points and rows, and a replay of their kept ``DocumentChunked`` would bring them back."""

from collections.abc import Iterable
from datetime import datetime

import structlog

from ragops_schemas import DocumentDeleted, DocumentEvent, ErasureRequested, Event
from ragops_shared.signing import ControlEventRefused, Verifier

DocumentKey = tuple[str, str]
"""(tenant, document id): a document id is unique per tenant."""

log = structlog.get_logger(__name__)


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


def replay_skips(facts: Iterable[Event], verifier: Verifier) -> set[DocumentKey]:
    """The (tenant, document id) of every document a replay must not bring back: the deleted
    ones (:func:`deleted_documents`), and those whose latest fact names (``subject_id``) a data
    subject of its tenant erased at or after that fact's ``occurred_at``.

    ``facts``: document events of any class (only ``tenant``, ``document_id``, ``subject_id``,
    ``occurred_at`` are read; replays of builds are ignored) and :class:`ErasureRequested`
    events; other events are ignored. An erasure counts only if ``verifier`` accepts its
    signature (a forged or unsigned request must not hide documents); a refused one is logged
    (event id and refusal, never the subject) and ignored. A document submitted again for the
    subject after the erasure is a new fact and is not skipped."""
    facts = list(facts)
    erased: dict[tuple[str, str], datetime] = {}  # (tenant, subject) -> latest erasure
    latest: dict[DocumentKey, DocumentEvent] = {}
    for fact in facts:
        if isinstance(fact, ErasureRequested):
            try:
                verifier.check(fact)
            except ControlEventRefused as refused:
                log.warning("erasure_ignored", event_id=str(fact.event_id), refusal=refused.code)
                continue
            key = (fact.tenant, fact.subject)
            erased[key] = max(erased.get(key, fact.occurred_at), fact.occurred_at)
        elif isinstance(fact, DocumentEvent) and getattr(fact, "index_build", None) is None:
            known = latest.get((fact.tenant, fact.document_id))
            if known is None or known.occurred_at <= fact.occurred_at:
                latest[fact.tenant, fact.document_id] = fact
    documents = [fact for fact in facts if isinstance(fact, DocumentEvent)]
    return deleted_documents(documents) | {
        key
        for key, fact in latest.items()
        if (subject := getattr(fact, "subject_id", None)) is not None
        and (erasure := erased.get((fact.tenant, subject))) is not None
        and fact.occurred_at <= erasure
    }

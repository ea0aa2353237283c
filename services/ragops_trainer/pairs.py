"""Training data for the embedding fine-tune, from retained events: the latest version of
each document, and (question, passage) pairs from the feedback dataset. Plain functions,
free of torch, so the trainer imports torch only when it trains."""

from collections.abc import Sequence
from dataclasses import dataclass

from ragops_schemas import DatasetExampleAdded, DocumentChunked, DocumentDeleted, ErasureRequested, Event
from ragops_shared.deletions import replay_skips
from ragops_shared.shredding import Shredder
from ragops_shared.signing import Verifier


@dataclass(frozen=True)
class TrainingPair:
    """A question and the passage that answers it (its positive)."""

    question: str
    passage: str


def latest_parts(events: Sequence[Event], verifier: Verifier) -> dict[tuple[str, str], list[DocumentChunked]]:
    """The parts of the latest live version of each document, by (tenant, document id) (a
    document id is unique per tenant), in part order (replays of builds excluded): one event
    for a document that came whole. The latest event decides the version; of a part retained
    twice (a version submitted again), the later one is kept. A document whose latest fact in
    ``events`` is a ``DocumentDeleted``, or whose subject an ``ErasureRequested`` (signed: checked
    with ``verifier``) erased since, is left out (:func:`~ragops_shared.deletions.replay_skips`):
    pass the deletions and erasures with the chunks, or a replay brings them back."""
    skipped = replay_skips(
        (e for e in events if isinstance(e, DocumentChunked | DocumentDeleted | ErasureRequested)), verifier
    )
    live = [
        e
        for e in events
        if isinstance(e, DocumentChunked) and e.index_build is None and (e.tenant, e.document_id) not in skipped
    ]
    latest: dict[tuple[str, str], DocumentChunked] = {}
    for event in live:
        known = latest.get((event.tenant, event.document_id))
        if known is None or known.occurred_at <= event.occurred_at:
            latest[event.tenant, event.document_id] = event
    parts: dict[tuple[str, str], dict[int, DocumentChunked]] = {}
    for event in live:
        key = (event.tenant, event.document_id)
        newest = latest[key]
        if (event.document_version, event.parts) == (newest.document_version, newest.parts):
            kept = parts.setdefault(key, {}).get(event.part)
            if kept is None or kept.occurred_at <= event.occurred_at:
                parts[key][event.part] = event
    return {key: [by_number[n] for n in sorted(by_number)] for key, by_number in parts.items()}


def latest_documents(events: Sequence[Event], verifier: Verifier) -> dict[str, DocumentChunked]:
    """The latest live version of each document id with the chunks of all its parts, as one
    event (an in-memory view, never published: it may be larger than a record may be). The
    fine-tune learns one model from every tenant's documents, keyed as the feedback dataset
    and the held-out questions name them, by document id: of two tenants' documents with one
    id, the later read is kept. Deleted and erased documents are left out (:func:`latest_parts`)."""
    return {
        document_id: parts[0].model_copy(
            update={"chunks": [c for p in parts for c in p.chunks], "part": 1, "parts": 1, "chunk_total": None}
        )
        for (_, document_id), parts in latest_parts(events, verifier).items()
    }


def readable_examples(
    examples: Sequence[DatasetExampleAdded], shredder: Shredder
) -> tuple[list[DatasetExampleAdded], int]:
    """The examples with their question and reference answer opened (a sealed value: the text
    sealed for its user; anything else as written), and how many were skipped because their
    user was erased (the key is gone). Blocking (the key store): run it in a thread.

    Raises :class:`~ragops_shared.shredding.KeyStoreUnavailable` (the data cannot be told from
    erased: the action fails rather than train on less) and
    :class:`~ragops_shared.shredding.InvalidToken` for a tampered value."""
    readable, erased = [], 0
    for example in examples:
        question, answer = shredder.reveal(example.question), shredder.reveal(example.reference_answer)
        if question is None or answer is None:
            erased += 1
            continue
        readable.append(example.model_copy(update={"question": question, "reference_answer": answer}))
    return readable, erased


def training_pairs(
    examples: Sequence[DatasetExampleAdded], documents: dict[str, DocumentChunked]
) -> list[TrainingPair]:
    """One (question, passage) pair per example whose referenced documents have a chunk that
    contains the reference answer (case-insensitive). A correction does not say which
    passage holds the answer, and a retrieved passage may be the wrong one: requiring the
    answer text in the passage keeps the pairs that are positives."""
    pairs = []
    for example in examples:
        answer = example.reference_answer.strip().casefold()
        if not answer:
            continue
        for document_id in example.reference_context_ids:
            document = documents.get(document_id)
            chunk = next((c for c in document.chunks if answer in c.text.casefold()), None) if document else None
            if chunk is not None:
                pairs.append(TrainingPair(question=example.question, passage=chunk.text))
                break
    return list(dict.fromkeys(pairs))

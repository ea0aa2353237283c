"""Training data for the embedding fine-tune, from retained events: the latest version of
each document, and (question, passage) pairs from the feedback dataset. Plain functions,
free of torch, so the trainer imports torch only when it trains."""

from collections.abc import Sequence
from dataclasses import dataclass

from ragops_schemas import DatasetExampleAdded, DocumentChunked, Event


@dataclass(frozen=True)
class TrainingPair:
    """A question and the passage that answers it (its positive)."""

    question: str
    passage: str


def latest_documents(events: Sequence[Event]) -> dict[str, DocumentChunked]:
    """The latest live ``DocumentChunked`` per document id (replays of builds excluded)."""
    latest: dict[str, DocumentChunked] = {}
    for event in events:
        if isinstance(event, DocumentChunked) and event.index_build is None:
            known = latest.get(event.document_id)
            if known is None or known.occurred_at <= event.occurred_at:
                latest[event.document_id] = event
    return latest


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

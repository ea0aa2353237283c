"""Splitting an output event that would pass a byte budget into numbered parts.

A record above the broker's ``max.message.bytes`` cannot be published at all, and one near
it slows every consumer that fetches it; so a service whose output grows with its input
(a document's chunks, their vectors) publishes it as parts, each at most a configured budget
of serialised bytes, with the items (chunks) shared out in order."""

from collections.abc import Callable, Sequence
from typing import TypeVar

from pydantic import BaseModel
from pydantic_core import to_json

from ragops_schemas import ChunksEmbedded, DocumentChunked, DocumentRejected, EmbeddingModelInfo, Producer

RECORD_OVERHEAD_BYTES = 4096
"""Room a record needs beyond its value under the broker's ``max.message.bytes``: the key (a
document or request id, at most 512 bytes), the headers and the record batch's framing."""

T = TypeVar("T", bound=BaseModel)
E = TypeVar("E", bound=BaseModel)


class PartTooLarge(ValueError):
    """One item alone, in the event around it, passes the byte budget: no split can fit it.
    The message says the sizes."""


def check_budget(part_bytes: int, max_message_bytes: int, setting: str) -> None:
    """Raise ``ValueError`` (naming ``setting``) unless a part of ``part_bytes`` leaves the
    record room under the broker's ``max_message_bytes`` (:data:`RECORD_OVERHEAD_BYTES`)."""
    if part_bytes > max_message_bytes - RECORD_OVERHEAD_BYTES:
        raise ValueError(
            f"{setting}={part_bytes} leaves no room under KAFKA_MAX_MESSAGE_BYTES={max_message_bytes} "
            f"(at most {max_message_bytes - RECORD_OVERHEAD_BYTES})"
        )


def serialised_size(model: BaseModel) -> int:
    """Bytes of ``model`` as the publisher sends it (pydantic's JSON, UTF-8)."""
    return len(to_json(model))


def split_by_bytes(make: Callable[[list[T], int, int], E], items: Sequence[T], budget: int) -> list[E]:
    """``make(items_of_part, part, parts)`` for consecutive groups of ``items`` (in order,
    ``part`` 1-based), each event at most ``budget`` bytes of JSON (:func:`serialised_size`):
    ``[make(items, 1, 1)]`` when the whole fits, else as few parts as the greedy packing in
    order gives. ``make`` must build events whose size is the fixed rest of the event plus
    each item's own JSON (an item's JSON is the same inside the event and alone).

    Raises:
        PartTooLarge: an item that does not fit the budget even alone.
    """
    whole = make(list(items), 1, 1)
    if serialised_size(whole) <= budget:
        return [whole]
    sizes = [serialised_size(item) for item in items]
    # The event around its items, with the widest part numbers it may carry (one per item).
    overhead = serialised_size(make(list(items[:1]), len(items), len(items))) - sizes[0]
    groups: list[list[T]] = []
    group: list[T] = []
    used = overhead
    for position, (item, size) in enumerate(zip(items, sizes, strict=True)):
        if overhead + size > budget:
            raise PartTooLarge(
                f"item {position} alone takes {overhead + size} bytes with its event, "
                f"above the budget of {budget} bytes"
            )
        cost = size + 1 if group else size  # the comma between items
        if used + cost > budget:
            groups.append(group)
            group, used, cost = [], overhead, size
        group.append(item)
        used += cost
    groups.append(group)
    return [make(group, part, len(groups)) for part, group in enumerate(groups, 1)]


def refused_version(
    event: DocumentChunked | ChunksEmbedded,
    producer: Producer,
    reason: str,
    embedding: EmbeddingModelInfo | None = None,
) -> list[DocumentRejected]:
    """What a dead-lettered part of a document version owes: the version's ``DocumentRejected``
    (stage ``embedding`` for a ``DocumentChunked``, ``indexing`` for a ``ChunksEmbedded``),
    with the version, its model (``embedding``, else the event's) and its chunk total, so the
    indexer withdraws what the other parts wrote and the producer learns the outcome. Its id
    is derived from the refused event's. An index build's part owes nothing here: the build
    is not served, and its run judges it. ``reason`` is the dead letter's."""
    if event.index_build is not None:
        return []
    if isinstance(event, ChunksEmbedded):
        stage, embedding, total = "indexing", event.embedding, event.version_chunks
    else:
        stage, total = "embedding", event.chunk_total or len({chunk.chunk_id for chunk in event.chunks})
    return [
        event.caused(
            DocumentRejected,
            producer,
            document_id=event.document_id,
            stage=stage,
            reason=f"part {event.part} of {event.parts} was dead-lettered: {reason}",
            document_version=event.document_version,
            embedding=embedding,
            chunk_total=total,
        )
    ]

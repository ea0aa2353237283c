"""The ingestion service: consumes ``DocumentRedacted`` (a submitted document, its personal
data replaced by the privacy service); parses (text, Markdown, HTML,
reST), splits into token windows of the embedding model's tokenizer and publishes
``DocumentChunked``, or ``DocumentRejected`` with the reason when the document is empty,
unparsable, of an unsupported type or too large (reported, never skipped silently). A
document whose chunks pass ``RAGOPS_INGESTION_PART_BYTES`` of JSON is published in numbered
parts (``part``/``parts``), so no record comes near the broker's message size limit.
Content too large to travel in its event arrives by reference
(``content_ref``) and is read from the blob store (:mod:`ragops_shared.blobs`), its digest
verified; a missing or corrupt blob is dead-lettered with the reason.

The document version is a hash of the parsed text, so an unchanged re-submission yields
the same chunk ids and a changed one a new version that supersedes the old chunks. A
re-submission of the version (and chunks) already indexed is a no-op: the service knows
what is indexed from the ``DocumentIndexed`` topic (:mod:`ragops_shared.indexed_view`) and
acknowledges it at once with a ``DocumentIndexed`` marked ``unchanged``, so nothing is
embedded or written again and the caller still gets its outcome.

A changed version passes the data-quality checks (:mod:`ragops_ingestion.quality`: near-empty,
exact and near duplicates, language, encoding damage, PII counts) under the policy
``RAGOPS_INGESTION_QUALITY_POLICY``: a check set to ``reject`` ends it in ``DocumentRejected``
naming the check; the findings and warnings travel on its ``DocumentChunked`` (``quality``).
The documents already seen are read from the ``DocumentChunked`` topic at start."""

import asyncio
from collections.abc import Sequence

from faststream.asgi import AsgiFastStream

from ragops_ingestion.chunking import TokenChunker
from ragops_ingestion.parsing import DocumentParseError, parse
from ragops_ingestion.quality import QualityGate, QualityRules, SeenDocuments, warm_up_quality
from ragops_ingestion.settings import MAX_DOCUMENT_BYTES, PART_BYTES, IngestionSettings
from ragops_ingestion.spec import SPEC
from ragops_models.defaults import default_embedding_model_dir
from ragops_schemas import (
    Chunk,
    ChunkerInfo,
    DocumentChunked,
    DocumentIndexed,
    DocumentRedacted,
    DocumentRejected,
    Event,
    Producer,
    QualityCheck,
)
from ragops_schemas.ids import chunk_id, document_version, part_scope
from ragops_shared.blobs import BlobStore, BlobUnavailable, check_out, open_blob_store
from ragops_shared.broker import EventPublisher, EventRejected, EventSubscriber, make_broker
from ragops_shared.indexed_view import IndexedDocuments
from ragops_shared.ops import DOCUMENTS_UNCHANGED
from ragops_shared.parts import PartTooLarge, split_by_bytes
from ragops_shared.service import producer_for, run_service, service_app
from ragops_shared.text import mixed_script_words, normalise

SERVICE = SPEC.name


def ingest(
    chunker: TokenChunker,
    info: ChunkerInfo,
    producer: Producer,
    submitted: DocumentRedacted,
    indexed: DocumentIndexed | None = None,
    *,
    part_bytes: int = PART_BYTES,
    max_document_bytes: int = MAX_DOCUMENT_BYTES,
    blobs: BlobStore | None = None,
    quality: QualityGate | None = None,
) -> list[Event]:
    """Parse and chunk one document (its content inline, or checked out of ``blobs`` by its
    reference and verified): its ``DocumentChunked`` in as many parts as keep each
    under ``part_bytes`` of JSON (ids derived from the submission and the part number), or one
    ``DocumentRejected`` with the reason: unparsable, content above ``max_document_bytes``
    (UTF-8), or a chunk too large for any part. Chunk ids name the submission's tenant. When
    ``indexed`` (the latest live ``DocumentIndexed`` of the tenant's document) holds the same
    version with the same chunks: that event again, marked ``unchanged`` (its id derived from
    the submission, so a redelivered submission is acknowledged once). A changed version
    passes ``quality``'s checks first (:mod:`ragops_ingestion.quality`; None = unchecked):
    ``DocumentRejected`` naming the check that rejects it, or its findings on every part.

    Raises:
        EventRejected: the content's blob is missing, corrupt or not UTF-8 (dead-lettered)."""

    def rejected(reason: str, check: QualityCheck | None = None) -> list[Event]:
        return [
            submitted.caused(
                DocumentRejected,
                producer,
                document_id=submitted.document_id,
                stage="ingestion",
                reason=reason,
                check=check,
            )
        ]

    ref = submitted.content_ref
    size = ref.size if ref is not None else len(submitted.content.encode())
    if size > max_document_bytes:
        return rejected(
            f"content of {size} bytes is above the limit of {max_document_bytes} bytes "
            "(RAGOPS_INGESTION_MAX_DOCUMENT_BYTES)"
        )
    try:
        content = check_out(submitted, blobs)
    except BlobUnavailable as error:
        # Dead-lettered with the reason, once: reading the same missing blob again cannot help.
        raise EventRejected(str(error)) from None
    try:
        parsed = parse(content, submitted.content_type)
    except DocumentParseError as error:
        return rejected(str(error))
    chunks = [
        Chunk(
            chunk_id=chunk_id(submitted.document_id, piece.text, tenant=submitted.tenant),
            index=piece.index,
            text=piece.text,
            token_count=piece.token_count,
            char_start=piece.char_start,
            char_end=piece.char_end,
            # The section of the chunk's middle: a window begins with the overlap, often the end
            # of the previous section, and a short section's heading can sit in its first half.
            section=parsed.section_at((piece.char_start + piece.char_end) // 2),
        )
        for piece in chunker.chunk(parsed.text)
    ]
    if not chunks:
        # A tokenizer may drop every character of a text the parser kept.
        return rejected(f"document is empty after chunking: its {len(parsed.text)} characters have no tokens")
    version = document_version(parsed.text)
    # Same chunks too: a changed chunker (size, overlap, tokenizer) must re-index the text.
    # Compared as sets: a version indexed in parts lists its ids as the store orders them.
    if (
        indexed is not None
        and indexed.document_version == version
        and set(indexed.chunk_ids) == {c.chunk_id for c in chunks}
    ):
        DOCUMENTS_UNCHANGED.labels(SERVICE).inc()
        return [
            submitted.caused(
                DocumentIndexed,
                producer,
                **indexed.model_dump(include=_INDEXED_FACTS),
                superseded_chunks=0,
                reused_chunks=len({chunk.chunk_id for chunk in chunks}),
                unchanged=True,
            )
        ]
    assessment = None
    if quality is not None:
        assessment = quality.assess(
            tenant=submitted.tenant,
            document_id=submitted.document_id,
            version=version,
            text=parsed.text,
            chunks=[chunk.text for chunk in chunks],
            redactions=submitted.redactions,
        )
        if assessment.rejected is not None:
            return rejected(assessment.rejected[1], assessment.rejected[0])
    distinct = len({chunk.chunk_id for chunk in chunks})
    mixed_scripts = mixed_script_words(parsed.text)

    def part_event(part_chunks: list[Chunk], part: int, parts: int) -> DocumentChunked:
        return submitted.caused(
            DocumentChunked,
            producer,
            scope=part_scope(part, parts),
            document_id=submitted.document_id,
            document_version=version,
            title=normalise(submitted.title) if submitted.title else parsed.title,
            source=submitted.source,
            metadata=submitted.metadata,
            subject_id=submitted.subject_id,
            content_type=submitted.content_type,
            chunker=info,
            chunks=part_chunks,
            part=part,
            parts=parts,
            chunk_total=distinct if parts > 1 else None,
            mixed_script_words=mixed_scripts,
            quality=assessment.quality if assessment else None,
        )

    try:
        events: list[Event] = list(split_by_bytes(part_event, chunks, part_bytes))
    except PartTooLarge as error:
        return rejected(f"a chunk does not fit an event of {part_bytes} bytes: {error}")
    if quality is not None and assessment is not None:
        quality.admit(submitted.tenant, submitted.document_id, version, assessment)
    return events


# What an unchanged re-submission's acknowledgement repeats from the indexing it refers to.
_INDEXED_FACTS = {"document_id", "document_version", "collection", "chunk_count", "embedding", "chunk_ids"}


def ingest_all(
    chunker: TokenChunker,
    info: ChunkerInfo,
    producer: Producer,
    indexed: IndexedDocuments,
    events: Sequence[DocumentRedacted],
    *,
    part_bytes: int = PART_BYTES,
    max_document_bytes: int = MAX_DOCUMENT_BYTES,
    blobs: BlobStore | None = None,
    quality: QualityGate | None = None,
) -> list[Event]:
    return [
        output
        for event in events
        for output in ingest(
            chunker,
            info,
            producer,
            event,
            indexed.get(event.tenant, event.document_id),
            part_bytes=part_bytes,
            max_document_bytes=max_document_bytes,
            blobs=blobs,
        )
    ]


def create_app(settings: IngestionSettings | None = None) -> AsgiFastStream:
    settings = settings or IngestionSettings()
    broker = make_broker(settings.kafka, f"ragops-{SERVICE}")
    producer = producer_for(SERVICE)
    publisher = EventPublisher(broker, producer, [DocumentChunked, DocumentRejected, DocumentIndexed])
    indexed = IndexedDocuments(settings.kafka, client_id=f"ragops-{SERVICE}-indexed")
    blobs = open_blob_store(settings.platform)
    seen = SeenDocuments(
        settings.kafka, client_id=f"ragops-{SERVICE}-seen", threshold=settings.quality_near_duplicate_threshold
    )
    quality = QualityGate(
        QualityRules(settings.quality_policy, settings.quality_min_word_chars, tuple(settings.quality_languages)),
        seen,
    )
    chunker = TokenChunker(
        settings.tokenizer or default_embedding_model_dir(),
        settings.chunk_size,
        settings.overlap,
        settings.max_chunk_chars,
    )
    info = ChunkerInfo(
        tokenizer=settings.tokenizer_name,
        chunk_size=settings.chunk_size,
        overlap=settings.overlap,
        max_chars=settings.max_chunk_chars,
    )
    submitted = EventSubscriber(
        broker,
        publisher,
        DocumentRedacted,
        kafka=settings.kafka,
        group_id=SPEC.group,
        max_records=settings.batch_records,
    )

    @submitted
    async def on_document_redacted(events: list[DocumentRedacted]) -> None:
        await submitted.run(
            events,
            lambda batch: asyncio.to_thread(
                ingest_all,
                chunker,
                info,
                producer,
                indexed,
                batch,
                part_bytes=settings.part_bytes,
                max_document_bytes=settings.max_document_bytes,
                blobs=blobs,
                quality=quality,
            ),
        )

    app = service_app(
        SERVICE, __doc__ or "", broker, platform=settings.platform, warm_up=[chunker.warm_up, warm_up_quality]
    )
    # Before the subscriber consumes: a re-submission is recognised from the first record on.
    app.on_startup(indexed.start)
    app.on_startup(seen.start)
    app.after_shutdown(indexed.stop)
    app.after_shutdown(seen.stop)
    return app


def main() -> None:
    run_service(SERVICE, IngestionSettings, create_app)

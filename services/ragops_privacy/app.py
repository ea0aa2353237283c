"""The privacy service: consumes what producers send on the intake topics
(``DocumentSubmitted``, ``QuerySubmitted``, ``FeedbackSubmitted``, ``ReviewSubmitted``: raw
text, kept one day),
replaces the personal data in it (:mod:`ragops_privacy.redaction`: e-mail addresses, phone
numbers, card numbers, IBANs, IP addresses and configured patterns, by type token, mask or
keyed pseudonym), pseudonymizes user and subject ids where the policy says so, and publishes
``DocumentRedacted``, ``QueryRedacted``, ``FeedbackRedacted`` and ``AnswerReviewed`` (a
reviewer's label, its correction and comment redacted) with the counts per entity
type (never the values): what every other reader, the sink and the replays see.

A document whose content came by reference (claim check) is read from the blob store,
redacted, checked in again (a new blob, or inline when small), and its raw blob is deleted
once the redacted event is published; a dead-lettered document keeps its raw blob for a
replay. A record that cannot be redacted (a missing or corrupt blob, a redacted text over
its field's limit) is dead-lettered with the reason; the producer waiting for its outcome
gets that dead letter (keyed like the record).

Erasures (:mod:`ragops_privacy.erasure`): on a signed ``ErasureRequested`` it forgets the
subject's sealing key (crypto-shredding: what was sealed for the subject in the topics kept
forever reads as erased) and reports ``SubjectErasureApplied`` for the key store; it collects the
reports of every store (ClickHouse from the sink, the vector store from the indexer) and
publishes ``SubjectErased`` with the counts per store once all have reported."""

import asyncio
import uuid
from collections.abc import Sequence
from typing import TypeVar

import structlog
from faststream.asgi import AsgiFastStream

from ragops_privacy.erasure import OUTPUTS, ErasureSettings, register
from ragops_privacy.intake import IntakeRedactor, RedactedDocument
from ragops_privacy.keys import pseudonym_key
from ragops_privacy.redaction import Redactor
from ragops_privacy.settings import PrivacySettings
from ragops_privacy.spec import DOCUMENTS_GROUP, FEEDBACK_GROUP, QUERIES_GROUP, REVIEWS_GROUP, SPEC
from ragops_schemas import (
    DocumentRedacted,
    DocumentSubmitted,
    Event,
    FeedbackRedacted,
    FeedbackSubmitted,
    QueryRedacted,
    QuerySubmitted,
)
from ragops_schemas.events import ContentRef
from ragops_schemas.review import AnswerReviewed, ReviewSubmitted
from ragops_shared.blobs import BlobStore, open_blob_store
from ragops_shared.broker import EventPublisher, EventSubscriber, make_broker
from ragops_shared.service import producer_for, run_service, service_app
from ragops_shared.shredding import FileKeyStore, Shredder
from ragops_shared.signing import verifier_for

SERVICE = SPEC.name
E = TypeVar("E", bound=Event)
log = structlog.get_logger(__name__)


def _delete_blobs(blobs: BlobStore, refs: list[ContentRef]) -> None:
    for ref in refs:
        try:
            blobs.delete(ref)
        except OSError as error:
            # The redacted event is out; the raw blob stays until removed by hand (logged, by digest).
            log.error("raw_blob_not_deleted", sha256=ref.sha256, error=repr(error))


def create_app(settings: PrivacySettings | None = None) -> AsgiFastStream:
    settings = settings or PrivacySettings()
    broker = make_broker(settings.kafka, f"ragops-{SERVICE}")
    producer = producer_for(SERVICE)
    publisher = EventPublisher(
        broker, producer, [DocumentRedacted, QueryRedacted, FeedbackRedacted, AnswerReviewed, *OUTPUTS]
    )
    blobs = open_blob_store(settings.platform)
    intake = IntakeRedactor(Redactor(settings.policy, pseudonym_key(settings)), settings.policy, producer)
    inline_max_bytes = settings.platform.inline_content_bytes

    def subscriber(event_type: type[E], group: str, max_records: int) -> EventSubscriber[E]:
        # A dead letter of a raw record copies none of its bytes: the dead-letter topic is kept
        # and sunk; the record stays on its intake topic (a day) to be read back from there.
        return EventSubscriber(
            broker,
            publisher,
            event_type,
            kafka=settings.kafka,
            group_id=group,
            max_records=max_records,
            keep_values=False,
        )

    documents = subscriber(DocumentSubmitted, DOCUMENTS_GROUP, settings.document_batch_records)
    queries = subscriber(QuerySubmitted, QUERIES_GROUP, settings.query_batch_records)
    feedback = subscriber(FeedbackSubmitted, FEEDBACK_GROUP, settings.feedback_batch_records)
    # Reviews are as small as feedback and rarer: the same batch size.
    reviews = subscriber(ReviewSubmitted, REVIEWS_GROUP, settings.feedback_batch_records)

    @documents
    async def on_document_submitted(events: list[DocumentSubmitted]) -> None:
        redacted: dict[uuid.UUID, RedactedDocument] = {}

        def redact(batch: Sequence[DocumentSubmitted]) -> list[DocumentRedacted]:
            for event in batch:
                redacted[event.event_id] = intake.document(event, blobs, inline_max_bytes)
            return [redacted[event.event_id].event for event in batch]

        await documents.run(events, lambda batch: asyncio.to_thread(redact, batch))
        # Only the raw blobs of documents whose redaction is out: a dead letter keeps its blob for a replay.
        raw = [
            found.raw_blob
            for event in events
            if (found := redacted.get(event.event_id)) is not None and found.raw_blob and documents.handled(event)
        ]
        if raw and blobs is not None:
            await asyncio.to_thread(_delete_blobs, blobs, raw)

    @queries
    async def on_query_submitted(events: list[QuerySubmitted]) -> None:
        await queries.run(events, lambda batch: asyncio.to_thread(lambda: [intake.query(e) for e in batch]))

    @feedback
    async def on_feedback_submitted(events: list[FeedbackSubmitted]) -> None:
        await feedback.run(events, lambda batch: asyncio.to_thread(lambda: [intake.feedback(e) for e in batch]))

    @reviews
    async def on_review_submitted(events: list[ReviewSubmitted]) -> None:
        await reviews.run(events, lambda batch: asyncio.to_thread(lambda: [intake.review(e) for e in batch]))

    # Production: a KMS- or Vault-backed key store; the file store is on the volume the feedback
    # service and the trainer share.
    erasures = register(
        broker,
        publisher,
        ErasureSettings(),
        kafka=settings.kafka,
        verifier=verifier_for(settings.platform),
        shredder=Shredder(FileKeyStore.under(settings.platform.data_dir)),
    )
    app = service_app(SERVICE, __doc__ or "", broker, platform=settings.platform)
    app.on_startup(erasures.start)
    app.after_shutdown(erasures.stop)
    return app


def main() -> None:
    run_service(SERVICE, PrivacySettings, create_app)

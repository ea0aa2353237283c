"""What the privacy service makes of one intake record: the same fields with their personal
data replaced (:class:`~ragops_privacy.redaction.Redactor`), counted per entity type, and
subject ids pseudonymized where the policy says so. Plain functions, blocking (the redactor
is CPU work): the service calls them in a worker thread.

Redacted fields: every text a producer writes: a document's content, title, source and
metadata values; a question, its filter values and its evaluation's reference answers; a
feedback comment and correction; a reviewer's correction and comment. Each is first normalised
(:func:`ragops_shared.text.normalise`: format characters removed, NFKC), and the normalised,
redacted text is what is published:
ingestion normalises later, and a value that invisible or compatibility characters hid from
the recognizers (``ann\u200b@example.com``, full-width digits, an IBAN spaced with no-break
spaces) would come back plain there. Metadata and filter values go through the same rule, so a
filter still matches the metadata it was written for. Subject ids (``user_id``,
``subject_id``) become the tenant's keyed pseudonym, the same value wherever the same id
appears, so analysts can still count distinct users and an erasure finds them."""

from collections import Counter
from dataclasses import dataclass
from typing import Any, TypeVar

from pydantic import ValidationError

from ragops_privacy.redaction import RedactionPolicy, Redactor
from ragops_schemas import (
    DocumentRedacted,
    DocumentSubmitted,
    Event,
    FeedbackRedacted,
    FeedbackSubmitted,
    Producer,
    QueryRedacted,
    QuerySubmitted,
)
from ragops_schemas.events import ContentRef, EvaluationContext
from ragops_schemas.review import AnswerReviewed, ReviewSubmitted
from ragops_shared.blobs import BlobStore, BlobUnavailable, ContentTooLarge, check_in, check_out
from ragops_shared.broker import EventRejected, validation_reason
from ragops_shared.text import normalise

R = TypeVar("R", bound=Event)


class _Redacting:
    """One record's redaction: the texts it replaced, and the counts they add up to."""

    def __init__(self, redactor: Redactor, pseudonymize: bool, tenant: str) -> None:
        self.redactor = redactor
        self.pseudonymize = pseudonymize
        self.tenant = tenant
        self.counts: Counter[str] = Counter()

    def text(self, value: str) -> str:
        """``value`` normalised, then redacted (normalised first: see the module's docstring)."""
        redaction = self.redactor.redact(normalise(value), tenant=self.tenant)
        self.counts.update({kind: n for kind, n in redaction.counts.items() if n > 0})
        return redaction.text

    def optional(self, value: str | None) -> str | None:
        return None if value is None else self.text(value)

    def values(self, mapping: dict[str, str]) -> dict[str, str]:
        """A document's metadata with each value redacted (keys are the producer's schema)."""
        return {key: self.text(value) for key, value in mapping.items()}

    def filters(self, filters: dict[str, str | list[str]]) -> dict[str, str | list[str]]:
        """Query filters with each value, or each value of a list, redacted."""
        return {
            key: self.text(value) if isinstance(value, str) else [self.text(item) for item in value]
            for key, value in filters.items()
        }

    def evaluation(self, evaluation: EvaluationContext | None) -> EvaluationContext | None:
        """The evaluation context with its reference answers redacted (ids kept)."""
        if evaluation is None:
            return None
        answers = [self.text(answer) for answer in evaluation.reference_answers]
        return evaluation.model_copy(update={"reference_answers": answers})

    def subject(self, value: str | None) -> str | None:
        if value is None or not self.pseudonymize:
            return value
        return self.redactor.pseudonym(value, tenant=self.tenant)


def _redacted(submitted: Event, redacted_type: type[R], producer: Producer, **changes: Any) -> R:
    """``submitted``'s own fields (not the envelope's) with ``changes``, as ``redacted_type``:
    its id derived from the submission, its ``occurred_at`` the submission's.

    Raises:
        EventRejected: the redacted fields break the schema (e.g. a question that type tokens
            made longer than its limit)."""
    envelope = set(Event.model_fields) | {"event_type"}
    carried = {name: getattr(submitted, name) for name in type(submitted).model_fields if name not in envelope}
    try:
        return submitted.caused(redacted_type, producer, occurred_at=submitted.occurred_at, **{**carried, **changes})
    except ValidationError as error:
        raise EventRejected(f"the redacted {redacted_type.__name__} is not valid: {validation_reason(error)}") from None


class IntakeRedactor:
    """Redacts intake records into their ``*Redacted`` events, published by ``producer``."""

    def __init__(self, redactor: Redactor, policy: RedactionPolicy, producer: Producer) -> None:
        self.redactor = redactor
        self.pseudonymize = policy.pseudonymize_user_ids
        self.producer = producer

    def _redacting(self, submitted: Event) -> _Redacting:
        return _Redacting(self.redactor, self.pseudonymize, submitted.tenant)

    def query(self, submitted: QuerySubmitted) -> QueryRedacted:
        """The question, its filter values and its reference answers redacted, its user and
        session ids pseudonymized where configured (a session id is as linkable as a user's).

        Raises:
            EventRejected: the redacted question or a filter value passes the schema's limit."""
        redacting = self._redacting(submitted)
        question = redacting.text(submitted.question)
        return _redacted(
            submitted,
            QueryRedacted,
            self.producer,
            question=question,
            filters=redacting.filters(submitted.filters),
            evaluation=redacting.evaluation(submitted.evaluation),
            user_id=redacting.subject(submitted.user_id),
            session_id=redacting.subject(submitted.session_id),
            redactions=dict(redacting.counts),
        )

    def feedback(self, submitted: FeedbackSubmitted) -> FeedbackRedacted:
        """The comment and the corrected answer redacted, the user id pseudonymized where configured.

        Raises:
            EventRejected: a redacted text passes the schema's limit."""
        user_id = self._redacting(submitted).subject(submitted.user_id)
        return self._comment_and_correction(submitted, FeedbackRedacted, user_id=user_id)

    def review(self, submitted: ReviewSubmitted) -> AnswerReviewed:
        """A reviewer's correction and comment redacted as a feedback's are (the reviewer is
        staff, named by the gateway's actor id: not pseudonymized).

        Raises:
            EventRejected: a redacted text passes the schema's limit."""
        return self._comment_and_correction(submitted, AnswerReviewed)

    def _comment_and_correction(
        self, submitted: FeedbackSubmitted | ReviewSubmitted, redacted_type: type[R], **changes: Any
    ) -> R:
        """``submitted`` as ``redacted_type`` with ``changes``, its comment and corrected answer redacted."""
        redacting = self._redacting(submitted)
        comment = redacting.optional(submitted.comment)
        corrected = redacting.optional(submitted.corrected_answer)
        return _redacted(
            submitted,
            redacted_type,
            self.producer,
            comment=comment,
            corrected_answer=corrected,
            redactions=dict(redacting.counts),
            **changes,
        )

    def document(
        self, submitted: DocumentSubmitted, blobs: BlobStore | None, inline_max_bytes: int
    ) -> "RedactedDocument":
        """The content (inline, or checked out of ``blobs`` and verified), the title, the
        source and the metadata values redacted, the subject id pseudonymized where configured; redacted content above
        ``inline_max_bytes`` (UTF-8) is checked into ``blobs`` as a new blob.

        Raises:
            EventRejected: the raw blob is missing, corrupt or not UTF-8; the redacted content
                is too large to travel and there is no blob store; a redacted field breaks the schema.
            OSError: the blob store could not be written (transient: retried)."""
        try:
            content = check_out(submitted, blobs)
        except BlobUnavailable as error:
            # Also what a redelivery finds when the raw blob was deleted after its redaction was
            # published: that redaction is out already (same event id), the record still ends here.
            raise EventRejected(str(error)) from None
        redacting = self._redacting(submitted)
        text = redacting.text(content)
        title = redacting.optional(submitted.title)
        event = _redacted(
            submitted,
            DocumentRedacted,
            self.producer,
            content=text,
            content_ref=None,
            title=title,
            source=redacting.optional(submitted.source),
            metadata=redacting.values(submitted.metadata),
            subject_id=redacting.subject(submitted.subject_id),
            redactions=dict(redacting.counts),
            submitted_hash=submitted.content_hash if text != content else None,
        )
        try:
            event = check_in(event, blobs, inline_max_bytes)
        except ContentTooLarge as error:
            raise EventRejected(str(error)) from None
        raw = submitted.content_ref
        return RedactedDocument(event, raw if raw is not None and raw != event.content_ref else None)


@dataclass(frozen=True)
class RedactedDocument:
    """A document's redaction: its event, and the raw content's blob to delete once that
    event is published (None: the content was inline, or the redacted content is the same blob)."""

    event: DocumentRedacted
    raw_blob: ContentRef | None

"""Every Kafka topic of the platform, named once.

Names follow ``ragops.<domain>.<fact>.v<major>``: a breaking schema change gets a new
``.v2`` topic that runs beside the old one (see ``schemas/README.md``).
"""

from enum import StrEnum


class Topic(StrEnum):
    """Kafka topic names. Producers key document events by ``document_id`` and query
    events by ``request_id`` so one document's or one request's events stay ordered on
    one partition."""

    DOCUMENT_SUBMITTED = "ragops.document.submitted.v1"
    DOCUMENT_CHUNKED = "ragops.document.chunked.v1"
    CHUNKS_EMBEDDED = "ragops.document.chunks-embedded.v1"
    DOCUMENT_INDEXED = "ragops.document.indexed.v1"
    DOCUMENT_REJECTED = "ragops.document.rejected.v1"
    QUERY_SUBMITTED = "ragops.query.submitted.v1"
    QUERY_EMBEDDED = "ragops.query.embedded.v1"
    CONTEXT_RETRIEVED = "ragops.query.context-retrieved.v1"
    ANSWER_GENERATED = "ragops.query.answer-generated.v1"
    ANSWER_EVALUATED = "ragops.query.answer-evaluated.v1"
    FEEDBACK_SUBMITTED = "ragops.feedback.submitted.v1"
    FEEDBACK_RECORDED = "ragops.feedback.recorded.v1"
    DATASET_EXAMPLE_ADDED = "ragops.dataset.example-added.v1"
    EVALUATION_RUN_COMPLETED = "ragops.evaluation.run-completed.v1"
    DRIFT_DETECTED = "ragops.monitor.drift-detected.v1"
    DRIFT_RECOVERED = "ragops.monitor.drift-recovered.v1"
    RETRAINING_REQUESTED = "ragops.training.retraining-requested.v1"
    RETRAINING_REJECTED = "ragops.training.retraining-rejected.v1"
    TRAINING_STARTED = "ragops.training.started.v1"
    TRAINING_FAILED = "ragops.training.failed.v1"
    CANDIDATE_EVALUATED = "ragops.training.candidate-evaluated.v1"
    VERSION_REGISTERED = "ragops.registry.version-registered.v1"
    VERSION_PROMOTED = "ragops.registry.version-promoted.v1"
    VERSION_REJECTED = "ragops.registry.version-rejected.v1"
    VERSION_RETIRED = "ragops.registry.version-retired.v1"
    DEAD_LETTER = "ragops.dead-letter.v1"

"""Every Kafka topic of the platform, named once (:class:`Topic`) and declared once
(:class:`TopicSpec`: key, retention, partitions, whether the sink keeps it).

Names follow ``ragops.<domain>.<fact>.v<major>``: a breaking schema change gets a new
``.v2`` topic that runs beside the old one (see ``schemas/README.md``).
"""

from dataclasses import dataclass
from enum import IntEnum, StrEnum


class Topic(StrEnum):
    """Kafka topic names. Producers key document events by ``document_id`` and query
    events by ``request_id`` so one document's or one request's events stay ordered on
    one partition."""

    DOCUMENT_SUBMITTED = "ragops.document.submitted.v1"
    DOCUMENT_REDACTED = "ragops.document.redacted.v1"
    DOCUMENT_CHUNKED = "ragops.document.chunked.v1"
    CHUNKS_EMBEDDED = "ragops.document.chunks-embedded.v1"
    DOCUMENT_INDEXED = "ragops.document.indexed.v1"
    DOCUMENT_REJECTED = "ragops.document.rejected.v1"
    DOCUMENT_DELETED = "ragops.document.deleted.v1"
    DOCUMENT_REMOVED = "ragops.document.removed.v1"
    QUERY_SUBMITTED = "ragops.query.submitted.v1"
    QUERY_REDACTED = "ragops.query.redacted.v1"
    QUERY_EMBEDDED = "ragops.query.embedded.v1"
    CONTEXT_RETRIEVED = "ragops.query.context-retrieved.v1"
    ANSWER_GENERATED = "ragops.query.answer-generated.v1"
    ANSWER_EVALUATED = "ragops.query.answer-evaluated.v1"
    FEEDBACK_SUBMITTED = "ragops.feedback.submitted.v1"
    FEEDBACK_REDACTED = "ragops.feedback.redacted.v1"
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
    AUDIT_RECORDED = "ragops.audit.recorded.v1"
    CHANGE_REQUESTED = "ragops.control.change-requested.v1"
    CHANGE_APPROVED = "ragops.control.change-approved.v1"
    CHANGE_REJECTED = "ragops.control.change-rejected.v1"
    ERASURE_REQUESTED = "ragops.privacy.erasure-requested.v1"
    SUBJECT_ERASURE_APPLIED = "ragops.privacy.subject-erasure-applied.v1"
    SUBJECT_ERASED = "ragops.privacy.subject-erased.v1"
    EXPERIMENT_STARTED = "ragops.experiment.started.v1"
    EXPERIMENT_STOPPED = "ragops.experiment.stopped.v1"
    EXPERIMENT_CONCLUDED = "ragops.experiment.concluded.v1"
    EVALUATION_COMPARISON_COMPLETED = "ragops.evaluation.comparison-completed.v1"
    REVIEW_SUBMITTED = "ragops.review.submitted.v1"
    ANSWER_REVIEWED = "ragops.review.answer-reviewed.v1"
    PRICES_PUBLISHED = "ragops.cost.prices-published.v1"
    DEAD_LETTER = "ragops.dead-letter.v1"


DEFAULT_PARTITIONS = 3
"""Partitions of a topic whose spec names none: the most replicas a consumer service can use
(more idle). Deployments may raise it (``KAFKA_PARTITIONS``, ``TOPIC_PARTITIONS``)."""

_DAY_MS = 24 * 60 * 60 * 1000


class Retention(IntEnum):
    """How long Kafka keeps a topic's records: ``retention.ms`` (delete policy, never compaction:
    every event stays, as the readers expect)."""

    FOREVER = -1
    """A history that its readers replay from the start: a deleted segment is lost state, not
    just old data. Grows with the corpus: size the brokers' disks (or tiered storage) for it."""
    EVENTS = 7 * _DAY_MS
    """7 days. The feedback service links feedback to answers it reads from the start of the
    answer topic, so feedback on an answer older than this is refused."""
    DEAD_LETTERS = 30 * _DAY_MS
    """30 days to look into and replay what could not be processed."""
    INTAKE = 1 * _DAY_MS
    """1 day. What producers send, before the privacy service redacted it (the intake topics):
    raw text with personal data, read once by that service and by nothing that keeps it. A
    day covers an outage of the privacy service over a night; a record it has not read by
    then is lost (its producer got no outcome). Long enough to recover, short enough that the
    raw text does not become a second, unredacted history."""


@dataclass(frozen=True)
class TopicSpec:
    """What the platform declares about one topic. ``deploy/kafka/create-topics.sh`` and the
    Strimzi ``KafkaTopic`` resources (``k8s/dependencies/kafka-topics.yaml``) are generated
    from these (``make schemas``); the embedded platform creates its topics from them too.

    Args:
        topic: its name.
        key: the event fields its records are keyed by (joined with ``/``, UTF-8): one
            document's, request's or version's events stay ordered on one partition.
        retention: how long Kafka keeps its records (the deployments' ``retention.ms``; the
            embedded broker stores it too but deletes nothing).
        partitions: None = the deployment's default (:data:`DEFAULT_PARTITIONS`).
        sink: the sink stores its records in ClickHouse (never an intake topic: raw text
            with personal data).
    """

    topic: Topic
    key: tuple[str, ...]
    retention: Retention = Retention.EVENTS
    partitions: int | None = None
    sink: bool = True


_DOCUMENT = ("document_id",)
_REQUEST = ("request_id",)
_TRAINING_RUN = ("request_event_id",)
_VERSION = ("kind", "name")
_CHANGE = ("change_id",)
_ERASURE = ("erasure_id",)

TOPICS: tuple[TopicSpec, ...] = (
    # Intake: what producers send, raw; only the privacy service reads it (and redacts it).
    TopicSpec(Topic.DOCUMENT_SUBMITTED, _DOCUMENT, Retention.INTAKE, sink=False),
    # The trainer's corpus refresh compares the sources with every document submitted so far
    # (as redacted), so only new or changed ones are sent again.
    TopicSpec(Topic.DOCUMENT_REDACTED, _DOCUMENT, Retention.FOREVER),
    # The trainer's re-index (and the index build after a fine-tune) re-publishes the latest
    # chunks of every document: a document whose chunks expired would drop out of every rebuilt index.
    TopicSpec(Topic.DOCUMENT_CHUNKED, _DOCUMENT, Retention.FOREVER),
    TopicSpec(Topic.CHUNKS_EMBEDDED, _DOCUMENT),
    # Ingestion and embedding read it from the start to know what the live index holds (an
    # unchanged re-submission is a no-op, a changed one embeds only its new chunks): an expired
    # record would make its document's next re-submission embed everything again.
    TopicSpec(Topic.DOCUMENT_INDEXED, _DOCUMENT, Retention.FOREVER),
    TopicSpec(Topic.DOCUMENT_REJECTED, _DOCUMENT),
    # Replays (corpus refresh, re-index, fine-tune) and rebuilt indexes skip a document whose
    # latest fact is a deletion: an expired deletion would bring the document back.
    TopicSpec(Topic.DOCUMENT_DELETED, _DOCUMENT, Retention.FOREVER),
    # Ingestion and embedding read it from the start beside DOCUMENT_INDEXED (kept as long):
    # an expired removal would leave a deleted document "indexed" in their view, and its
    # re-submission would be answered unchanged instead of indexed again.
    TopicSpec(Topic.DOCUMENT_REMOVED, _DOCUMENT, Retention.FOREVER),
    TopicSpec(Topic.QUERY_SUBMITTED, _REQUEST, Retention.INTAKE, sink=False),
    TopicSpec(Topic.QUERY_REDACTED, _REQUEST),
    TopicSpec(Topic.QUERY_EMBEDDED, _REQUEST),
    TopicSpec(Topic.CONTEXT_RETRIEVED, _REQUEST),
    TopicSpec(Topic.ANSWER_GENERATED, _REQUEST),
    TopicSpec(Topic.ANSWER_EVALUATED, _REQUEST),
    TopicSpec(Topic.FEEDBACK_SUBMITTED, _REQUEST, Retention.INTAKE, sink=False),
    TopicSpec(Topic.FEEDBACK_REDACTED, _REQUEST),
    TopicSpec(Topic.FEEDBACK_RECORDED, _REQUEST),
    # The trainer's fine-tuning data (the feedback dataset): with 7 days it would only ever
    # train on last week's feedback, and a registered training-data snapshot could not be read back.
    TopicSpec(Topic.DATASET_EXAMPLE_ADDED, ("dataset",), Retention.FOREVER),
    TopicSpec(Topic.EVALUATION_RUN_COMPLETED, ("run_id",)),
    TopicSpec(Topic.DRIFT_DETECTED, ("signal",)),
    TopicSpec(Topic.DRIFT_RECOVERED, ("signal",)),
    TopicSpec(Topic.RETRAINING_REQUESTED, ("action",)),
    TopicSpec(Topic.RETRAINING_REJECTED, _TRAINING_RUN),
    TopicSpec(Topic.TRAINING_STARTED, _TRAINING_RUN),
    TopicSpec(Topic.TRAINING_FAILED, _TRAINING_RUN),
    TopicSpec(Topic.CANDIDATE_EVALUATED, _TRAINING_RUN),
    # The version registry: every service folds it in at start; the live embedding model,
    # index and prompt versions are whatever it says.
    TopicSpec(Topic.VERSION_REGISTERED, _VERSION, Retention.FOREVER),
    TopicSpec(Topic.VERSION_PROMOTED, _VERSION, Retention.FOREVER),
    TopicSpec(Topic.VERSION_REJECTED, _VERSION, Retention.FOREVER),
    TopicSpec(Topic.VERSION_RETIRED, _VERSION, Retention.FOREVER),
    # Refusals and admin actions: the sink appends them to the audit log, which can be rebuilt
    # (and its chains checked again) from the whole topic.
    TopicSpec(Topic.AUDIT_RECORDED, ("tenant",), Retention.FOREVER),
    # Four-eyes changes: every gateway replica folds them from their start into its book of
    # changes (a pending request must outlive any retention), and they are the record of who
    # asked for and who approved each change.
    TopicSpec(Topic.CHANGE_REQUESTED, _CHANGE, Retention.FOREVER),
    TopicSpec(Topic.CHANGE_APPROVED, _CHANGE, Retention.FOREVER),
    TopicSpec(Topic.CHANGE_REJECTED, _CHANGE, Retention.FOREVER),
    # Erasures of data subjects: the record of what was erased at whose request, and the proof
    # (counts per store). The request names the subject, so the sink does not copy it into
    # ClickHouse (where it would outlive the erasure); the reports name only the erasure id.
    TopicSpec(Topic.ERASURE_REQUESTED, _ERASURE, Retention.FOREVER, sink=False),
    TopicSpec(Topic.SUBJECT_ERASURE_APPLIED, _ERASURE, Retention.FOREVER),
    TopicSpec(Topic.SUBJECT_ERASED, _ERASURE, Retention.FOREVER),
    # Experiments: every assigning service folds them from their start (a running experiment
    # must outlive any retention); the record of who ran which experiment and how it ended.
    # One partition: a total order of starts that every reader sees alike, so every
    # ExperimentBook voids the same start when two gateway replicas race (the later one read).
    TopicSpec(Topic.EXPERIMENT_STARTED, ("experiment_id",), Retention.FOREVER, partitions=1),
    TopicSpec(Topic.EXPERIMENT_STOPPED, ("experiment_id",), Retention.FOREVER),
    TopicSpec(Topic.EXPERIMENT_CONCLUDED, ("experiment_id",), Retention.FOREVER),
    TopicSpec(Topic.EVALUATION_COMPARISON_COMPLETED, ("run_id",)),
    # Human review: the raw label (a reviewer's free text) is intake, read by the privacy
    # service only; the redacted label is kept as long as the datasets it feeds.
    TopicSpec(Topic.REVIEW_SUBMITTED, _REQUEST, Retention.INTAKE, sink=False),
    TopicSpec(Topic.ANSWER_REVIEWED, _REQUEST, Retention.FOREVER),
    # Price lists: the cost views and the budgets price every event at the list in effect
    # when it occurred, so every list ever published is kept. One partition: one order of lists.
    TopicSpec(Topic.PRICES_PUBLISHED, ("price_list_id",), Retention.FOREVER, partitions=1),
    # Keyed like the record that could not be processed.
    TopicSpec(Topic.DEAD_LETTER, ("original_key",), Retention.DEAD_LETTERS),
)
"""Every topic's spec, in :class:`Topic` order."""

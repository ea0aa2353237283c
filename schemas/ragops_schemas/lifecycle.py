"""Events of the improvement loop (schema version 1): drift, retraining and the version registry.

Monitor: ``DriftDetected`` / ``DriftRecovered`` (one alert per signal, recovery is an event
too) and ``RetrainingRequested`` (the retraining policy's decision, with its evidence).
Trainer: ``TrainingStarted`` -> ``CandidateEvaluated`` -> ``VersionPromoted`` or
``VersionRejected``; a request it refuses ends in ``RetrainingRejected``, a run that breaks or
runs out of time in ``TrainingFailed``. Nothing is half-promoted: only ``VersionPromoted``
moves an alias, and the live version serves until it does.

The registry is these events: ``VersionRegistered``, ``VersionPromoted`` (an alias such as
``production`` now points at a version), ``VersionRejected`` and ``VersionRetired`` (a retired
version takes no new traffic). Every service rebuilds the registry by reading them from the
start of their topics (:mod:`ragops_schemas.registry`). They are keyed by ``<kind>/<name>`` so
one artifact's history stays ordered on one partition.
"""

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from ragops_schemas.envelope import Event, SignedEvent, UtcMillis
from ragops_schemas.topics import Topic

VersionKind = Literal["embedding_model", "index", "prompt", "corpus", "dataset"]
RetrainingAction = Literal["reindex", "refresh_corpus", "finetune_embedding", "rollback_prompt"]


class _Part(BaseModel):
    model_config = ConfigDict(frozen=True, extra="ignore")


class DriftWindow(_Part):
    """A window of observations the monitor compared (ordered by ``occurred_at``)."""

    start: UtcMillis = Field(description="occurred_at of the window's first observation.")
    end: UtcMillis = Field(description="occurred_at of the window's last observation.")
    size: int = Field(ge=0, description="Observations in the window (the test's sample size).")


class _DriftTest(Event):
    alert_id: str = Field(description="One alert episode of one signal: detection and recovery share it.")
    signal: str = Field(
        examples=[
            "query_embedding",
            "retrieval_top_similarity",
            "no_context_rate",
            "negative_feedback_rate",
            "evaluation.faithfulness",
        ],
    )
    test: str = Field(
        description="Statistical test: ks, wasserstein_normed, domain_classifier_roc_auc, fisher_exact.",
        examples=["ks"],
    )
    statistic: float
    threshold: float = Field(description="What `threshold_on` is compared with.")
    threshold_on: Literal["p_value", "statistic"]
    p_value: float | None = Field(description="None for tests without one (normed Wasserstein).")
    reference: DriftWindow
    current: DriftWindow

    @property
    def key(self) -> bytes:
        return self.signal.encode()


class DriftDetected(_DriftTest):
    """A monitored signal's current window differs from its reference window."""

    TOPIC = Topic.DRIFT_DETECTED
    event_type: Literal["drift.detected"] = "drift.detected"


class DriftRecovered(_DriftTest):
    """A signal that was drifting no longer is (against the reference in force now)."""

    TOPIC = Topic.DRIFT_RECOVERED
    event_type: Literal["drift.recovered"] = "drift.recovered"
    detected_event_id: str = Field(description="event_id of the DriftDetected this recovery closes.")


class VersionRef(_Part):
    kind: VersionKind
    name: str = Field(examples=["sentence-transformers/all-MiniLM-L6-v2", "rag-answer", "default"])
    version: str = Field(examples=["2e8a342051c5", "2"])


class RetrainingRequested(Event):
    """The retraining policy (or an operator) asks the trainer to act."""

    TOPIC = Topic.RETRAINING_REQUESTED
    event_type: Literal["retraining.requested"] = "retraining.requested"
    action: RetrainingAction
    reason: str
    rule: str | None = Field(default=None, description="Policy rule that fired; None for an operator's request.")
    evidence: list[str] = Field(default_factory=list, description="event_ids of the drift events behind the request.")
    target: VersionRef | None = Field(
        default=None,
        description="Version to act on (e.g. the embedding model to re-index with); None = production.",
    )
    requested_by: str = Field(default="monitor")

    @property
    def key(self) -> bytes:
        return self.action.encode()


class _TrainingStep(Event):
    request_event_id: str = Field(description="event_id of the RetrainingRequested this step belongs to.")
    action: RetrainingAction

    @property
    def key(self) -> bytes:
        return self.request_event_id.encode()


class RetrainingRejected(_TrainingStep):
    """The trainer refused a request before starting: unknown version, too little data..."""

    TOPIC = Topic.RETRAINING_REJECTED
    event_type: Literal["retraining.rejected"] = "retraining.rejected"
    reason: str


class TrainingStarted(_TrainingStep):
    TOPIC = Topic.TRAINING_STARTED
    event_type: Literal["training.started"] = "training.started"
    inputs: dict[str, str] = Field(default_factory=dict, description="What the run uses (base version, snapshot...).")


class TrainingFailed(_TrainingStep):
    """A run broke or ran out of time; nothing was promoted, the live version keeps serving."""

    TOPIC = Topic.TRAINING_FAILED
    event_type: Literal["training.failed"] = "training.failed"
    reason: str
    timed_out: bool = False


class CandidateEvaluated(_TrainingStep):
    """A candidate version measured against the live one on held-out data."""

    TOPIC = Topic.CANDIDATE_EVALUATED
    event_type: Literal["training.candidate_evaluated"] = "training.candidate_evaluated"
    candidate: VersionRef
    live: VersionRef
    metric: str = Field(examples=["hit_rate@5"])
    candidate_value: float
    live_value: float
    questions: int = Field(ge=0, description="Held-out questions evaluated.")
    p_value: float | None = Field(
        default=None,
        description="Paired significance of the difference (McNemar's exact test for hit rates).",
    )
    decision: Literal["promote", "reject"]


class _VersionEvent(SignedEvent):
    kind: VersionKind
    name: str
    version: str

    @property
    def key(self) -> bytes:
        return f"{self.kind}/{self.name}".encode()

    @property
    def ref(self) -> VersionRef:
        return VersionRef(kind=self.kind, name=self.name, version=self.version)


class PromptBody(_Part):
    """The text of one prompt version (kind ``prompt``): two Jinja2 templates rendered in a
    sandbox with ``question`` and ``contexts`` (see ``ragops_shared.prompts``)."""

    description: str = Field(max_length=2000)
    system: str = Field(min_length=1, max_length=20_000)
    user: str = Field(min_length=1, max_length=20_000)
    sha256: str = Field(description="ragops_schemas.ids.prompt_hash of the canonical body (12 hex digits).")


class VersionRegistered(_VersionEvent):
    """A version exists: where its files are and what produced it."""

    TOPIC = Topic.VERSION_REGISTERED
    event_type: Literal["registry.version_registered"] = "registry.version_registered"
    uri: str | None = Field(default=None, description="Where the artifact lives (model directory, collection).")
    parent_version: str | None = Field(default=None, description="Version it was derived from (base model...).")
    training_data: str | None = Field(default=None, description="Id of the training data snapshot (dataset version).")
    request_event_id: str | None = None
    metadata: dict[str, str] = Field(default_factory=dict)
    # Left out of the record when None, so versions signed before prompts keep their signed bytes.
    prompt: PromptBody | None = Field(
        default=None,
        exclude_if=lambda prompt: prompt is None,
        description="The prompt's text (kind prompt): a pushed version is served without a deploy.",
    )


class VersionPromoted(_VersionEvent):
    """``alias`` (``production``, ``candidate``...) now points at this version."""

    TOPIC = Topic.VERSION_PROMOTED
    event_type: Literal["registry.version_promoted"] = "registry.version_promoted"
    alias: str = "production"
    previous_version: str | None = None
    uri: str | None = Field(default=None, description="Repeated from the registration so readers need one event.")
    reason: str
    request_event_id: str | None = None
    metrics: dict[str, float] = Field(default_factory=dict)


class VersionRejected(_VersionEvent):
    """A candidate was not promoted, with the numbers that decided it."""

    TOPIC = Topic.VERSION_REJECTED
    event_type: Literal["registry.version_rejected"] = "registry.version_rejected"
    reason: str
    request_event_id: str | None = None
    metrics: dict[str, float] = Field(default_factory=dict)


class VersionRetired(_VersionEvent):
    """The version takes no new traffic from now on."""

    TOPIC = Topic.VERSION_RETIRED
    event_type: Literal["registry.version_retired"] = "registry.version_retired"
    reason: str


LIFECYCLE_EVENT_TYPES: tuple[type[Event], ...] = (
    DriftDetected,
    DriftRecovered,
    RetrainingRequested,
    RetrainingRejected,
    TrainingStarted,
    TrainingFailed,
    CandidateEvaluated,
    VersionRegistered,
    VersionPromoted,
    VersionRejected,
    VersionRetired,
)
REGISTRY_EVENT_TYPES: tuple[type[Event], ...] = (VersionRegistered, VersionPromoted, VersionRejected, VersionRetired)

__all__ = [
    "LIFECYCLE_EVENT_TYPES",
    "REGISTRY_EVENT_TYPES",
    "CandidateEvaluated",
    "DriftDetected",
    "DriftRecovered",
    "DriftWindow",
    "PromptBody",
    "RetrainingAction",
    "RetrainingRejected",
    "RetrainingRequested",
    "TrainingFailed",
    "TrainingStarted",
    "VersionKind",
    "VersionPromoted",
    "VersionRef",
    "VersionRegistered",
    "VersionRejected",
    "VersionRetired",
]

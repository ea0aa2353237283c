"""Experiments (schema version 1): sticky A/B tests and canaries over versions of one artifact.

``ExperimentStarted`` (signed by the gateway: an operator started it) splits the traffic of one
artifact (``target``: a prompt name, or an index) between its ``variants`` by a keyed hash of
the unit (user, session or request, :func:`assign`), the first variant being the control.
It ends with ``ExperimentStopped`` (an operator, or the gateway refusing to go on) or
``ExperimentConcluded`` (signed by the monitor: its sequential test decided). Every service
that assigns traffic folds the three into an :class:`ExperimentBook` (read from the start of
their topics), so an experiment over a target is running from its start until the first of
its end events, on every replica alike.

The assignment is the embedding service's (the first service a question reaches after
redaction): it stamps :class:`ExperimentAssignment` on ``QueryEmbedded``, retrieval carries it
to ``ContextRetrieved``, generation renders the variant's prompt and writes it to the lineage.
"""

from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from ragops_schemas.changes import ChangeActor, Reason
from ragops_schemas.envelope import Event, SignedEvent
from ragops_schemas.ids import assignment_bucket
from ragops_schemas.topics import Topic

ExperimentId = Annotated[str, Field(pattern=r"^exp-[0-9a-f]{20}$", examples=["exp-9b2e4d5c6f7a803f1c0a"])]
ExperimentUnit = Literal["user", "session", "request"]
ExperimentTarget = Literal["prompt", "index"]
VariantName = Annotated[str, Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,31}$", examples=["control", "v4"])]
BUCKETS = 10_000
"""Assignment resolution: a weight of 1 % is 100 buckets."""


class _Part(BaseModel):
    model_config = ConfigDict(frozen=True, extra="ignore")


class ExperimentVariant(_Part):
    """One arm: a version of the target and its share of the traffic (percent)."""

    name: VariantName
    version: str = Field(min_length=1, max_length=128, description="Prompt version number, or index version.")
    weight: int = Field(ge=1, le=100, description="Percent of the units assigned to this arm.")


class ExperimentPolicy(_Part):
    """How the monitor analyses the experiment and what it does when its test decides."""

    primary_metric: str = Field(
        default="thumbs_down_rate",
        description="Decides win or loss: thumbs_down_rate, an evaluation metric (faithfulness...), "
        "latency_ms or cost_usd.",
    )
    guardrail_metrics: list[str] = Field(
        default_factory=lambda: ["latency_ms"],
        description="A variant significantly worse on one of these is harmful: stopped at once.",
    )
    alpha: float = Field(default=0.05, gt=0, lt=0.5, description="Type I error of the always-valid test.")
    min_samples: int = Field(default=100, ge=1, description="Observations per arm before any decision.")
    auto_rollback: bool = Field(default=True, description="On a loss or harm, end the experiment (all traffic back).")


class ExperimentAssignment(_Part):
    """Which arm of which experiment a request was assigned to (on the query events and the lineage)."""

    experiment_id: ExperimentId
    target: ExperimentTarget
    target_name: str
    variant: VariantName
    version: str


class _ExperimentEvent(SignedEvent):
    experiment_id: ExperimentId = Field(description="ragops_schemas.ids.experiment_id of the start's event id.")

    @property
    def key(self) -> bytes:
        return self.experiment_id.encode()


class ExperimentStarted(_ExperimentEvent):
    """An experiment over ``target``/``target_name`` runs from now on (control = first variant)."""

    TOPIC = Topic.EXPERIMENT_STARTED
    event_type: Literal["experiment.started"] = "experiment.started"
    target: ExperimentTarget
    target_name: str = Field(min_length=1, max_length=256, examples=["rag-answer"])
    variants: list[ExperimentVariant] = Field(min_length=2, max_length=10)
    unit: ExperimentUnit
    policy: ExperimentPolicy = Field(default_factory=ExperimentPolicy)
    started_by: ChangeActor
    reason: Reason

    @model_validator(mode="after")
    def _arms(self) -> "ExperimentStarted":
        if sum(variant.weight for variant in self.variants) != 100:
            raise ValueError("variant weights must sum to 100")
        names = [variant.name for variant in self.variants]
        versions = [variant.version for variant in self.variants]
        if len(set(names)) != len(names) or len(set(versions)) != len(versions):
            raise ValueError("variant names and versions must be distinct")
        return self

    def assign(self, key: bytes, unit_value: str) -> ExperimentVariant:
        """The arm of the unit ``unit_value`` (a user id, session id or request id): bucket
        :func:`~ragops_schemas.ids.assignment_bucket` (HMAC-SHA256 under the platform's
        assignment ``key``) of ``BUCKETS``, arms in declaration order by cumulative weight.
        Stable across restarts and replicas for one key; a unit cannot pick its arm."""
        bucket = assignment_bucket(key, self.experiment_id, unit_value) % BUCKETS
        edge = 0
        for variant in self.variants:
            edge += variant.weight * BUCKETS // 100
            if bucket < edge:
                return variant
        return self.variants[-1]


class ExperimentStopped(_ExperimentEvent):
    """The experiment ended without a decision of its test (an operator, or a refused arm)."""

    TOPIC = Topic.EXPERIMENT_STOPPED
    event_type: Literal["experiment.stopped"] = "experiment.stopped"
    stopped_by: ChangeActor
    reason: Reason


class VariantResult(_Part):
    """One arm against the control on one metric, as the sequential test saw it."""

    variant: VariantName
    metric: str
    samples: int = Field(ge=0, description="Observations of this arm.")
    control_samples: int = Field(ge=0)
    mean: float
    control_mean: float
    difference: float = Field(description="mean - control_mean.")
    ci_low: float = Field(description="Lower end of the always-valid confidence sequence of the difference.")
    ci_high: float
    p_value: float = Field(ge=0, le=1, description="Always-valid p-value (mSPRT).")
    outcome: Literal["better", "worse", "undecided"]


class ExperimentConcluded(_ExperimentEvent):
    """The monitor's always-valid test decided: a variant won, lost or is harmful. With the
    policy's ``auto_rollback`` the experiment ends here (every unit back on production)."""

    TOPIC = Topic.EXPERIMENT_CONCLUDED
    event_type: Literal["experiment.concluded"] = "experiment.concluded"
    decision: Literal["winner", "loser", "harmful"]
    variant: VariantName = Field(description="The arm the decision is about.")
    metric: str
    results: list[VariantResult]
    test: str = Field(default="msprt", description="The statistical test (mixture SPRT, Johari et al. 2017).")
    rolled_back: bool
    reason: Reason


class ExperimentBook:
    """The running experiments, folded from their events. Not thread-safe: fold on one loop.

    Starts are folded in the order they are read: ``ragops.experiment.started.v1`` has one
    partition, so every reader reads them in the same order. A start read while an earlier
    one is running is **void** (:meth:`void`): never running, whatever its ``occurred_at``.
    The earlier one is running at that start unless it ended (a stop, or a conclusion that
    rolled it back) at or before the start's ``occurred_at``; ends may arrive in any order
    (an end read before its start still ends it). Every reader that has read the same starts
    and ends agrees; the gateway starts an experiment only once its own book shows the earlier
    one ended, so its verdict on its own start (read back) is final."""

    def __init__(self) -> None:
        self._started: dict[str, ExperimentStarted] = {}  # in read order
        self._ended: dict[str, Event] = {}
        self._voids: dict[str, str] | None = None  # derived; None = fold again

    def apply(self, event: Event) -> bool:
        """Fold one event; True when it changed the book."""
        if isinstance(event, ExperimentStarted):
            if event.experiment_id in self._started:
                return False
            self._started[event.experiment_id] = event
        elif isinstance(event, ExperimentStopped | ExperimentConcluded):
            if event.experiment_id in self._ended or (isinstance(event, ExperimentConcluded) and not event.rolled_back):
                return False
            self._ended[event.experiment_id] = event
        else:
            return False
        self._voids = None
        return True

    def _void_starts(self) -> dict[str, str]:
        """Each void start's id -> why, from the starts in read order (see the class)."""
        if self._voids is None:
            voids: dict[str, str] = {}
            valid: list[ExperimentStarted] = []
            for started in list(self._started.values()):
                running = next(
                    (
                        earlier
                        for earlier in valid
                        if (end := self._ended.get(earlier.experiment_id)) is None
                        or end.occurred_at > started.occurred_at
                    ),
                    None,
                )
                if running is None:
                    valid.append(started)
                else:
                    voids[started.experiment_id] = (
                        f"experiment {running.experiment_id} was running when it started: one experiment at a time"
                    )
            self._voids = voids
        return self._voids

    def get(self, experiment_id: str) -> ExperimentStarted | None:
        """The start of ``experiment_id`` (a void one too), or None."""
        return self._started.get(experiment_id)

    def void(self, experiment_id: str) -> str | None:
        """Why the start of ``experiment_id`` is void (it never runs), or None."""
        return self._void_starts().get(experiment_id)

    def ended(self, experiment_id: str) -> Event | None:
        """The event that ended it (stop, or a conclusion that rolled it back), or None."""
        return self._ended.get(experiment_id)

    def running(
        self, target: ExperimentTarget | None = None, target_name: str | None = None
    ) -> list[ExperimentStarted]:
        """Experiments started, not void and not ended, oldest first (optionally of one target)."""
        voids = self._void_starts()
        return sorted(
            (
                started
                for experiment_id, started in list(self._started.items())
                if experiment_id not in self._ended
                and experiment_id not in voids
                and (target is None or started.target == target)
                and (target_name is None or started.target_name == target_name)
            ),
            key=lambda started: (started.occurred_at, started.experiment_id),
        )

    def all(self) -> list[ExperimentStarted]:
        """Every start (void ones too), oldest first."""
        return sorted(self._started.values(), key=lambda started: (started.occurred_at, started.experiment_id))


EXPERIMENT_EVENT_TYPES: tuple[type[SignedEvent], ...] = (ExperimentStarted, ExperimentStopped, ExperimentConcluded)

__all__ = [
    "BUCKETS",
    "EXPERIMENT_EVENT_TYPES",
    "ExperimentAssignment",
    "ExperimentBook",
    "ExperimentConcluded",
    "ExperimentPolicy",
    "ExperimentStarted",
    "ExperimentStopped",
    "ExperimentVariant",
    "VariantResult",
]

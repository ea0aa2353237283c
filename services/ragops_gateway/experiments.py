"""Experiments at the gateway: an operator starts a sticky A/B test (or the canary of an index)
over versions of one artifact and stops it; every check runs before any traffic moves.

The plain-function core: :func:`refusal` says why an experiment must not start (the reason,
with 422 or 409) and :func:`start_experiment` / :func:`stop_experiment` build the signed events.
The adapter :func:`add_experiment_routes` (the HTTP API):

- ``POST /v1/experiments`` (operator): ``{"target": "prompt"|"index", "target_name", "variants":
  [{"name", "version", "weight"}], "unit": "user"|"session"|"request", "policy"?, "reason"}``
  -> 201 ``ExperimentOut`` once the gateway's :class:`~ragops_shared.registry_view.ExperimentView`
  read the ``ExperimentStarted`` back; 422 a variant's version is not registered (a prompt: a
  registered version of the prompt; an index: a registered version of the index, not retired,
  built by an embedding model version the registry knows), weights that do not sum to 100, a
  control (the first variant) that is not the version production serves now, arms other than
  the control taking more than ``RAGOPS_GATEWAY_EXPERIMENT_MAX_CANDIDATE_PERCENT`` together,
  repeated names or versions, a prompt version that does not render; 409 an experiment is
  running (one at a time on the platform: two experiments over the same traffic would bias each
  other), or another replica's start was read first (this one is void, stopped with the reason).
- ``GET /v1/experiments`` (operator, approver, auditor, analyst): every experiment with its status;
  a caller outside the platform's tenant gets it without ``started_by``, ``reason`` and
  ``end_reason`` (the platform's people and their notes; the arms and status stay: they
  explain what the tenant was served).
- ``POST /v1/experiments/{experiment_id}/stop`` (operator): ``{"reason"}`` -> ``ExperimentStopped``.

Only principals of the platform's tenant start or stop experiments (403 otherwise): an
experiment moves what every tenant is served. The embedding service assigns the units
(:mod:`ragops_embedding.experiments`) from the events alone."""

import asyncio
from collections.abc import Awaitable, Callable
from datetime import datetime
from typing import Annotated, Literal

import structlog
from fastapi import Depends, FastAPI, HTTPException, Request, status
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from ragops_gateway.changes import ControlPlane, DecisionIn, actor
from ragops_schemas import Producer
from ragops_schemas.changes import ChangeActor, Reason
from ragops_schemas.experiments import (
    ExperimentBook,
    ExperimentConcluded,
    ExperimentPolicy,
    ExperimentStarted,
    ExperimentStopped,
    ExperimentTarget,
    ExperimentUnit,
    ExperimentVariant,
)
from ragops_schemas.ids import experiment_id, new_event_id
from ragops_schemas.registry import Registry
from ragops_shared.identity import Principal
from ragops_shared.prompts import check_renders, resolve_prompt
from ragops_shared.registry_view import ExperimentView

log = structlog.get_logger(__name__)

ExperimentStatus = Literal["running", "stopped", "concluded", "refused"]
"""``refused``: a start read while another experiment ran (void: it never ran, see ExperimentBook)."""


class ExperimentRefused(Exception):
    """An experiment that must not start or stop: ``status_code`` 403, 404, 409 or 422, ``str()`` why."""

    def __init__(self, status_code: Literal[403, 404, 409, 422], detail: str) -> None:
        self.status_code = status_code
        super().__init__(detail)


class VariantIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str = Field(description="The arm's name (e.g. v4); the first variant is the control.")
    version: str = Field(description="The prompt version number, or the index version.")
    weight: int = Field(description="Percent of the units; the weights sum to 100.")


class ExperimentIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    target: ExperimentTarget
    target_name: str = Field(min_length=1, max_length=256, description="The prompt's name, or the index's.")
    variants: list[VariantIn] = Field(min_length=2, max_length=10)
    unit: ExperimentUnit
    policy: ExperimentPolicy = Field(default_factory=ExperimentPolicy)
    reason: Reason


class ExperimentOut(BaseModel):
    experiment_id: str
    status: ExperimentStatus
    target: ExperimentTarget
    target_name: str
    variants: list[ExperimentVariant]
    unit: ExperimentUnit
    policy: ExperimentPolicy
    reason: str | None = Field(description="Why it was started; None for callers outside the platform's tenant.")
    started_by: ChangeActor | None = Field(
        description="Who started it; None for callers outside the platform's tenant."
    )
    started_at: datetime
    ended_at: datetime | None = None
    end_reason: str | None = None

    @classmethod
    def of(cls, book: ExperimentBook, started: ExperimentStarted) -> "ExperimentOut":
        ended, void = book.ended(started.experiment_id), book.void(started.experiment_id)
        state: ExperimentStatus = (
            "refused"
            if void is not None
            else "running"
            if ended is None
            else "concluded"
            if isinstance(ended, ExperimentConcluded)
            else "stopped"
        )
        return cls(
            experiment_id=started.experiment_id,
            status=state,
            target=started.target,
            target_name=started.target_name,
            variants=started.variants,
            unit=started.unit,
            policy=started.policy,
            reason=started.reason,
            started_by=started.started_by,
            started_at=started.occurred_at,
            ended_at=ended.occurred_at if ended else None,
            end_reason=void or getattr(ended, "reason", None),
        )

    def for_tenant(self, tenant: str, platform_tenant: str) -> "ExperimentOut":
        """As a caller of ``tenant`` sees it: outside the platform's tenant, without who
        started it and the free-text reasons (the platform's people and notes are not theirs)."""
        if tenant == platform_tenant:
            return self
        return self.model_copy(update={"started_by": None, "reason": None, "end_reason": None})


def _on_the_platform(principal: Principal, platform_tenant: str) -> None:
    if principal.tenant != platform_tenant:
        raise ExperimentRefused(
            403, f"experiments are started and stopped in the platform's tenant ({platform_tenant})"
        )


def refusal(
    body: ExperimentIn, registry: Registry, book: ExperimentBook, *, max_candidate_percent: int
) -> ExperimentRefused | None:
    """Why the experiment ``body`` must not start, or None: 409 an experiment is running; 422
    the arms do not add up, the control (the first variant) is not the version production
    serves now (:func:`served_now`), the other arms together take more than
    ``max_candidate_percent`` of the units, or a variant's version is unknown to ``registry``
    (retired, or for an index built by an embedding model version it does not know), or its
    prompt does not render (:func:`ragops_shared.prompts.check_renders` on a sample question
    and contexts).

    The control and the cap keep an experiment from being a promotion that skips the approval
    (:mod:`ragops_gateway.changes`): one operator can send at most ``max_candidate_percent`` of
    the traffic to versions nobody approved, and the rest stays on what was approved."""
    running = book.running()
    if running:
        return ExperimentRefused(
            409,
            f"experiment {running[0].experiment_id} over {running[0].target} {running[0].target_name} is running: "
            "one experiment at a time (stop it first)",
        )
    if sum(variant.weight for variant in body.variants) != 100:
        return ExperimentRefused(422, "variant weights must sum to 100")
    for field in ("name", "version"):
        values = [getattr(variant, field) for variant in body.variants]
        if len(set(values)) != len(values):
            return ExperimentRefused(422, f"variant {field}s must be distinct")
    control, *candidates = body.variants
    served = served_now(body.target, body.target_name, registry)
    if control.version != served:
        now = f"version {served}" if served is not None else "no version (none is promoted to production)"
        return ExperimentRefused(
            422,
            f"the control (first variant, {control.name}) must be the version production serves now: "
            f"{body.target} {body.target_name} serves {now}, not {control.version}",
        )
    if sum(variant.weight for variant in candidates) > max_candidate_percent:
        return ExperimentRefused(
            422,
            f"the arms other than the control take at most {max_candidate_percent}% of the units together "
            "(promote a version through an approved change to serve it more)",
        )
    for variant in body.variants:
        why = _unknown_prompt(body.target_name, variant.version, registry) if body.target == "prompt" else None
        why = why or (_unknown_index(body.target_name, variant.version, registry) if body.target == "index" else None)
        if why:
            return ExperimentRefused(422, f"variant {variant.name}: {why}")
    return None


def served_now(target: ExperimentTarget, name: str, registry: Registry) -> str | None:
    """The version of ``name`` production serves now: a prompt's is the one
    :func:`ragops_shared.prompts.resolve_prompt` resolves without a version (the
    ``production`` alias, else the highest seed version); an index's is the one its
    ``production`` alias points at (the live collection), None when there is none."""
    if target == "prompt":
        try:
            return str(resolve_prompt(registry, name, None).version)
        except (LookupError, ValueError):
            return None
    live = registry.alias("index", name)
    return live.ref.version if live else None


def _unknown_prompt(name: str, version: str, registry: Registry) -> str | None:
    state = registry.get("prompt", name, version)
    if state is None or state.registered is None or not version.isdigit():
        return f"prompt {name} has no registered version {version}"
    if state.retired:
        return f"prompt {name} version {version} is retired"
    try:
        check_renders(resolve_prompt(registry, name, int(version)))
    except (LookupError, ValueError) as error:
        return f"prompt {name} version {version} does not render: {error}"
    return None


def _unknown_index(name: str, version: str, registry: Registry) -> str | None:
    state = registry.get("index", name, version)
    if state is None or state.registered is None or not state.uri:
        return f"index {name} has no registered version {version}"
    if state.retired:
        return f"index {name} version {version} is retired"
    # The arm's questions are embedded by the model its index was built with: the embedding
    # service loads that version from where the registry says its files are.
    model = state.metadata.get("embedding_version")
    if model is not None and not any(
        known.ref.version == model and known.uri and not known.retired for known in registry.versions("embedding_model")
    ):
        return f"index {name} version {version} was built by embedding model version {model}, which is not registered"
    return None


def start_experiment(
    principal: Principal,
    body: ExperimentIn,
    registry: Registry,
    book: ExperimentBook,
    producer: Producer,
    *,
    platform_tenant: str,
    max_candidate_percent: int,
) -> ExperimentStarted:
    """The start of the experiment ``body`` by ``principal``.

    Raises:
        ExperimentRefused: 403 ``principal`` is not of ``platform_tenant``; 409 or 422 see :func:`refusal`.
    """
    _on_the_platform(principal, platform_tenant)
    refused = refusal(body, registry, book, max_candidate_percent=max_candidate_percent)
    if refused is not None:
        raise refused
    event_id = new_event_id()
    try:
        return ExperimentStarted(
            event_id=event_id,
            producer=producer,
            tenant=principal.tenant,
            experiment_id=experiment_id(event_id),
            target=body.target,
            target_name=body.target_name,
            variants=[ExperimentVariant.model_validate(variant.model_dump()) for variant in body.variants],
            unit=body.unit,
            policy=body.policy,
            started_by=actor(principal),
            reason=body.reason,
        )
    except ValidationError as error:  # a name or weight out of the schema's bounds
        raise ExperimentRefused(422, "; ".join(str(found["msg"]) for found in error.errors())) from None


def stop_experiment(
    principal: Principal,
    book: ExperimentBook,
    experiment: str,
    reason: str,
    producer: Producer,
    *,
    platform_tenant: str,
) -> ExperimentStopped:
    """``principal``'s stop of the running experiment ``experiment`` (its id derived from the
    start's and the principal: a retry is the same event).

    Raises:
        ExperimentRefused: 403 not of ``platform_tenant``; 404 unknown; 409 it has ended.
    """
    _on_the_platform(principal, platform_tenant)
    started = book.get(experiment)
    if started is None:
        raise ExperimentRefused(404, f"no experiment {experiment}")
    if book.ended(experiment) is not None or book.void(experiment) is not None:
        raise ExperimentRefused(409, f"experiment {experiment} has ended (or never ran)")
    return started.caused(
        ExperimentStopped,
        producer,
        scope=principal.subject,
        experiment_id=experiment,
        stopped_by=actor(principal),
        reason=reason,
    )


def add_experiment_routes(
    app: FastAPI,
    caller: Callable[[str, str], Callable[[Request], Awaitable[Principal]]],
    plane: ControlPlane,
    registry: Registry,
    experiments: ExperimentView,
) -> None:
    """Add the experiment routes (see the module's docstring) to ``app``, each behind the guard
    ``caller`` gives for its method and path; ``plane`` publishes (signed by the gateway),
    ``experiments`` is the gateway's verified view of the experiment topics."""
    settings = plane.settings
    platform = settings.platform.tenant
    book = experiments.book
    Operator = Annotated[Principal, Depends(caller("POST", "/v1/experiments"))]
    Reader = Annotated[Principal, Depends(caller("GET", "/v1/experiments"))]
    Stopper = Annotated[Principal, Depends(caller("POST", "/v1/experiments/{experiment_id}/stop"))]

    async def read_back() -> None:
        if not await experiments.caught_up(settings.publish_timeout_s):
            raise HTTPException(status.HTTP_503_SERVICE_UNAVAILABLE, "the experiment event was not read back in time")

    @app.post("/v1/experiments", status_code=status.HTTP_201_CREATED, tags=["experiments"])
    async def start(body: ExperimentIn, principal: Operator) -> ExperimentOut:
        """Start an experiment; refused with the reason before any traffic moves."""
        try:
            # Off the event loop: refusal() renders each prompt arm's untrusted template on every sample.
            started = await asyncio.to_thread(
                start_experiment,
                principal,
                body,
                registry,
                book,
                plane.producer,
                platform_tenant=platform,
                max_candidate_percent=settings.experiment_max_candidate_percent,
            )
        except ExperimentRefused as refused:
            log.warning("experiment_refused", by=principal.subject, reason=str(refused))
            raise HTTPException(refused.status_code, str(refused)) from None
        await plane.publish(started)
        await read_back()
        # Another replica may have started one meanwhile: the start read first runs, every
        # book voids the other (ExperimentBook), and the void one is stopped for the record.
        if book.get(started.experiment_id) is None:
            raise HTTPException(status.HTTP_503_SERVICE_UNAVAILABLE, "the experiment event was not read back in time")
        void = book.void(started.experiment_id)
        if void is not None:
            await plane.publish(
                started.caused(
                    ExperimentStopped,
                    plane.producer,
                    experiment_id=started.experiment_id,
                    stopped_by=actor(principal),
                    reason=void,
                )
            )
            log.warning("experiment_refused", by=principal.subject, reason=void)
            raise HTTPException(status.HTTP_409_CONFLICT, void)
        log.info("experiment_started", experiment_id=started.experiment_id, by=principal.subject)
        return ExperimentOut.of(book, started)

    @app.get("/v1/experiments", tags=["experiments"])
    async def list_experiments(principal: Reader) -> list[ExperimentOut]:
        """Every experiment, oldest first, with its status (running, stopped, concluded, refused);
        outside the platform's tenant without who started it and why."""
        return [ExperimentOut.of(book, started).for_tenant(principal.tenant, platform) for started in book.all()]

    @app.post("/v1/experiments/{experiment_id}/stop", tags=["experiments"])
    async def stop(experiment_id: str, body: DecisionIn, principal: Stopper) -> ExperimentOut:
        """Stop a running experiment: every unit is served by production again."""
        try:
            stopped = stop_experiment(
                principal, book, experiment_id, body.reason, plane.producer, platform_tenant=platform
            )
        except ExperimentRefused as refused:
            raise HTTPException(refused.status_code, str(refused)) from None
        await plane.publish(stopped)
        await read_back()
        started = book.get(experiment_id)
        assert started is not None  # it was there before, and a book never forgets
        log.info("experiment_stopped", experiment_id=experiment_id, by=principal.subject)
        return ExperimentOut.of(book, started)

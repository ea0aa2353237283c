"""Human review at the gateway: the review queue, the labels, and how far the automatic
evaluators agree with them (``ragops_schemas.review``, ``ragops_analytics.agreement``).

The plain-function core, which the console's pages call too: :func:`queue`,
:func:`submit_review` and :func:`agreement`. The adapter :func:`add_review_routes` (the HTTP API):

- ``GET /v1/reviews/queue?limit=`` (reviewer): up to ``limit`` (1-200, default 20) answers not
  yet reviewed, sampled at random, among the lowest-scoring and among those with negative
  feedback (:func:`ragops_analytics.queries.review_queue`), each with its ``sampled_as`` and
  a ``token`` (:func:`queue_token`).
- ``POST /v1/reviews`` (reviewer): ``{"request_id", "answer_event_id", "correct", "grounded",
  "sampled_as", "token", "corrected_answer"?, "comment"?}`` -> 202 ``{"request_id",
  "event_id"}``: a ``ReviewSubmitted`` on the intake topic (with the ``asker_key_id`` of the request's
  ``user_id``: its dataset example is sealed for the asker), which the privacy service redacts
  into ``AnswerReviewed``; 422 when ``token`` is not the queue's for that tenant, request,
  answer and stratum (the server, not the reviewer, says which stratum an answer was sampled
  from: the random stratum's agreement is only unbiased if nobody can add to it); 404 when the
  caller's tenant has no such answer (as ClickHouse has it: the queue's answers are there).
- ``GET /v1/reviews/agreement`` (reviewer, analyst, operator, auditor): per metric, Spearman's
  rho over all labels, the threshold calibrated on the non-random strata and Cohen's kappa there
  (in-sample) and over the held-out random stratum (``held_out`` false: fitted on all labels,
  too few others; :func:`ragops_analytics.agreement.metric_agreement`).

The tenant is the credential's (the queue is the caller's own tenant's for every role, since a
label is always in the caller's own tenant; a caller with the ``platform`` role reads every
tenant's agreement), the reviewer the caller's actor id
(``key:<id>``, ``person:<sub>``). ClickHouse is read through the sink's ``/sql`` with the
platform key, or the server (``RAGOPS_ANALYTICS_*``); 503 when neither is configured or it does
not answer. Reads are blocking: they run in a worker thread."""

import asyncio
import hashlib
import hmac
import json
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import asdict
from datetime import datetime
from typing import Annotated, Any

import structlog
from fastapi import Depends, FastAPI, HTTPException, Query, Request, status
from pydantic import BaseModel, ConfigDict, Field

from ragops_analytics import queries
from ragops_analytics.agreement import MetricAgreement, by_metric, metric_agreement
from ragops_analytics.store import QueryError, Reader, StoreUnavailable
from ragops_schemas import Event, Producer
from ragops_schemas.ids import subject_key_id
from ragops_schemas.review import ReviewSubmitted, SampledAs
from ragops_shared.audit import actor_of
from ragops_shared.identity import Principal, Role

log = structlog.get_logger(__name__)

QUEUE_MAX = 200
"""The most answers one queue page holds."""


class ReviewIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    request_id: str = Field(min_length=1, max_length=128, pattern=r"^[^\x00-\x1f\x7f]+$")
    answer_event_id: str = Field(min_length=1, max_length=64, pattern=r"^[^\x00-\x1f\x7f]+$")
    correct: bool
    grounded: bool
    sampled_as: SampledAs
    token: str = Field(
        min_length=64, max_length=64, pattern=r"^[0-9a-f]+$", description="The queue item's token, unchanged."
    )
    corrected_answer: str | None = Field(default=None, min_length=1, max_length=4000)
    comment: str | None = Field(default=None, max_length=4000)


class ReviewAccepted(BaseModel):
    request_id: str
    event_id: uuid.UUID


class ReviewItemOut(BaseModel):
    request_id: str
    answer_event_id: str
    occurred_at: datetime
    question: str
    answer: str
    contexts: list[dict[str, Any]]
    scores: dict[str, float]
    thumb: str | None
    sampled_as: SampledAs
    token: str = Field(description="Send it back with the label (POST /v1/reviews): it vouches for sampled_as.")


class AgreementOut(BaseModel):
    metric: str
    label: str
    n: int
    spearman_rho: float | None
    spearman_p: float | None
    threshold: float | None
    cohen_kappa: float | None
    n_random: int
    kappa_random: float | None
    n_fit: int
    held_out: bool


class ReviewRefused(Exception):
    """A review that cannot be taken: ``status_code`` 404 or 503, ``str()`` why."""

    def __init__(self, status_code: int, detail: str) -> None:
        self.status_code = status_code
        super().__init__(detail)


def _tenant_read(principal: Principal) -> str | None:
    """The tenant whose rows ``principal`` reads: its own, or every tenant's (None) for the platform."""
    return None if Role.PLATFORM in principal.roles else principal.tenant


async def _read(reader: Reader | None, read: Callable[[Reader], Any]) -> Any:
    if reader is None:
        raise ReviewRefused(status.HTTP_503_SERVICE_UNAVAILABLE, "analytics is not available here")
    try:
        return await asyncio.to_thread(read, reader)
    except (QueryError, StoreUnavailable) as error:
        log.error("review_read_failed", error=repr(error))
        raise ReviewRefused(
            status.HTTP_503_SERVICE_UNAVAILABLE, "analytics cannot answer now; try again later"
        ) from None


def queue_token(key: bytes, tenant: str, request_id: str, answer_event_id: str, sampled_as: str) -> str:
    """The token the queue hands out with an item: HMAC-SHA256 under the gateway's own key
    (:meth:`ragops_gateway.settings.GatewaySettings.form_key`) of the JSON array ``[purpose,
    tenant, request_id, answer_event_id, sampled_as]`` (a purpose of its own, so no console
    CSRF token is ever a queue token), as 64 lowercase hex digits."""
    message = json.dumps(["review-queue", tenant, request_id, answer_event_id, sampled_as]).encode()
    return hmac.new(key, message, hashlib.sha256).hexdigest()


async def queue(reader: Reader | None, principal: Principal, limit: int, key: bytes) -> list[ReviewItemOut]:
    """The caller's review queue (see the module's docstring): its own tenant's answers only,
    for the platform role too, since a label is always in the caller's tenant
    (:func:`submit_review`), each with its :func:`queue_token` under ``key``. Raises
    :class:`ReviewRefused` (503)."""
    items: list[queries.ReviewItem] = await _read(
        reader, lambda found: queries.review_queue(found, principal.tenant, limit)
    )
    return [
        ReviewItemOut(
            **asdict(item),
            token=queue_token(key, principal.tenant, item.request_id, item.answer_event_id, item.sampled_as),
        )
        for item in items
    ]


async def agreement(reader: Reader | None, principal: Principal) -> list[MetricAgreement]:
    """Agreement of each metric with the labels of the caller's tenant (every tenant's for the
    platform). Raises :class:`ReviewRefused` (503)."""
    tenant = _tenant_read(principal)

    def compute(found: Reader) -> list[MetricAgreement]:
        labels = queries.review_labels(found, tenant)
        scores = queries.evaluation_scores(found, sorted({label.request_id for label in labels}), tenant)
        return metric_agreement(labels, by_metric(scores))

    agreements: list[MetricAgreement] = await _read(reader, compute)
    return agreements


async def submit_review(
    reader: Reader | None,
    publish: Callable[[Event], Awaitable[None]],
    producer: Producer,
    principal: Principal,
    review: ReviewIn,
    key: bytes,
) -> ReviewSubmitted:
    """Publish the caller's label of an answer of its own tenant as ``ReviewSubmitted`` and
    return it. Raises :class:`ReviewRefused`: 422 ``review.token`` is not the
    :func:`queue_token` under ``key`` of the caller's tenant and the review's request, answer
    and stratum, 404 the tenant has no such answer, 503 analytics cannot tell; what
    ``publish`` raises."""
    expected = queue_token(key, principal.tenant, review.request_id, review.answer_event_id, review.sampled_as)
    if not hmac.compare_digest(expected, review.token):
        raise ReviewRefused(
            status.HTTP_422_UNPROCESSABLE_CONTENT,
            "token is not the review queue's for this answer and sampled_as: take both from the queue",
        )

    def target(found: Reader) -> tuple[bool, str | None]:
        exists = queries.answer_exists(found, principal.tenant, review.request_id, review.answer_event_id)
        return exists, queries.asker_of(found, principal.tenant, review.request_id) if exists else None

    exists, asker = await _read(reader, target)
    if not exists:
        raise ReviewRefused(
            status.HTTP_404_NOT_FOUND, f"no answer {review.answer_event_id} of request {review.request_id}"
        )
    event = ReviewSubmitted(
        producer=producer,
        tenant=principal.tenant,
        reviewer=actor_of(principal).id,
        # The question is the asker's: the feedback service seals the review's example with their key.
        asker_key_id=None if asker is None else subject_key_id(principal.tenant, asker),
        **review.model_dump(exclude={"token"}),
    )
    await publish(event)
    log.info("review_submitted", request_id=event.request_id, event_id=str(event.event_id), by=principal.subject)
    return event


def add_review_routes(
    app: FastAPI,
    caller: Callable[[str, str], Callable[[Request], Awaitable[Principal]]],
    publish: Callable[[Event], Awaitable[None]],
    producer: Producer,
    analytics: Reader | None,
    key: bytes,
) -> None:
    """Add the review routes (see the module's docstring) to ``app``, each behind the guard
    ``caller`` gives for its method and path; ``publish`` sends an event (503 when the broker
    does not take it), ``analytics`` reads ClickHouse (None: not configured, 503), ``key``
    signs the queue's tokens (:func:`queue_token`)."""
    Reviewer = Annotated[Principal, Depends(caller("GET", "/v1/reviews/queue"))]
    Labeller = Annotated[Principal, Depends(caller("POST", "/v1/reviews"))]
    Reader_ = Annotated[Principal, Depends(caller("GET", "/v1/reviews/agreement"))]

    @app.get("/v1/reviews/queue", tags=["reviews"])
    async def get_queue(
        principal: Reviewer, limit: Annotated[int, Query(ge=1, le=QUEUE_MAX)] = 20
    ) -> list[ReviewItemOut]:
        """Answers waiting for a reviewer, the strata mixed round-robin."""
        try:
            return await queue(analytics, principal, limit, key)
        except ReviewRefused as refused:
            raise HTTPException(refused.status_code, str(refused)) from None

    @app.post("/v1/reviews", status_code=status.HTTP_202_ACCEPTED, tags=["reviews"])
    async def post_review(review: ReviewIn, principal: Labeller) -> ReviewAccepted:
        """Accepted: redacted by the privacy service, then a dataset example (feedback service)."""
        try:
            event = await submit_review(analytics, publish, producer, principal, review, key)
        except ReviewRefused as refused:
            raise HTTPException(refused.status_code, str(refused)) from None
        return ReviewAccepted(request_id=event.request_id, event_id=event.event_id)

    @app.get("/v1/reviews/agreement", tags=["reviews"])
    async def get_agreement(principal: Reader_) -> list[AgreementOut]:
        """Agreement of each automatic metric with the reviewers' labels."""
        try:
            found = await agreement(analytics, principal)
        except ReviewRefused as refused:
            raise HTTPException(refused.status_code, str(refused)) from None
        return [AgreementOut(**asdict(row)) for row in found]

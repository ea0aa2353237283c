"""An answer and what became of it (``producer``, ``product``: who asked, who gives feedback):

- ``GET /v1/answers/{request_id}`` -> ``AnswerRecord``: the request's ``AnswerGenerated`` as
  stored, its evaluation scores so far (``AnswerEvaluated`` of that answer, by metric) and its
  feedback so far (``FeedbackRecorded``: the redacted text, never the user id). 404 alike for an
  unknown request, one not answered (yet), and another tenant's; 503 when analytics cannot answer.

Read from ClickHouse (``queries.request_events``) with the gateway's own analytics credential,
restricted to the caller's tenant (``principal.tenant``): on the embedded default the sink's
``/sql`` with the platform key, asking for that tenant; in a cluster the ClickHouse server.
"""

import asyncio
from collections.abc import Awaitable, Callable, Sequence
from datetime import datetime
from typing import Annotated, Literal

import structlog
from fastapi import Depends, FastAPI, HTTPException, Path, status
from pydantic import BaseModel, Field

from ragops_analytics.queries import RequestEventRow, request_events
from ragops_analytics.store import QueryError, Reader, StoreUnavailable
from ragops_schemas import AnswerGenerated
from ragops_shared.identity import Principal

log = structlog.get_logger(__name__)


class FeedbackOut(BaseModel):
    """One piece of feedback on the answer, as the feedback service recorded it (redacted)."""

    event_id: str
    occurred_at: datetime
    thumb: Literal["up", "down"] | None = None
    rating: int | None = None
    sentiment: str | None = None
    comment: str | None = None
    corrected_answer: str | None = None


class AnswerRecord(BaseModel):
    request_id: str
    answer: AnswerGenerated
    scores: dict[str, float] = Field(
        description="Evaluation scores of this answer so far, by metric (RAGAS/SQuAD names); a later score wins."
    )
    feedback: list[FeedbackOut] = Field(description="Feedback on this answer so far, oldest first.")


def answer_record(request_id: str, rows: Sequence[RequestEventRow], tenant: str) -> AnswerRecord | None:
    """The record of ``request_id`` from its stored events (oldest first), or None when none of
    them is an answer of ``tenant`` (checked again here, whatever the reader restricted)."""
    mine = [row for row in rows if row.payload.get("tenant") == tenant]
    found = next((row for row in mine if row.event_type == "query.answer_generated"), None)
    if found is None:
        return None
    answer = AnswerGenerated.model_validate(found.payload)
    scores: dict[str, float] = {}
    for row in mine:
        if row.event_type == "query.answer_evaluated" and row.payload.get("answer_event_id") == found.event_id:
            scores |= {
                str(score["gen_ai.evaluation.name"]): float(score["gen_ai.evaluation.score.value"])
                for score in row.payload.get("scores") or []
            }
    feedback = [
        FeedbackOut.model_validate({**row.payload, "event_id": row.event_id, "occurred_at": row.occurred_at})
        for row in mine
        if row.event_type == "feedback.recorded" and row.payload.get("answer_event_id") == found.event_id
    ]
    return AnswerRecord(request_id=request_id, answer=answer, scores=scores, feedback=feedback)


def add_answer_routes(
    app: FastAPI,
    caller: Callable[[str, str], Callable[..., Awaitable[Principal]]],
    reader: Reader | None,
) -> None:
    """``GET /v1/answers/{request_id}`` on ``app``; ``reader``: the gateway's analytics client
    (None: not configured, 503)."""

    @app.get("/v1/answers/{request_id}")
    async def get_answer(
        request_id: Annotated[str, Path(max_length=128, description="The request's id (`ragops ask` prints it).")],
        principal: Annotated[Principal, Depends(caller("GET", "/v1/answers/{request_id}"))],
    ) -> AnswerRecord:
        """The answer of a request of the caller's tenant, with its evaluation scores and feedback so far."""
        if reader is None:
            raise HTTPException(status.HTTP_503_SERVICE_UNAVAILABLE, "analytics is not available here")
        try:
            rows = await asyncio.to_thread(request_events, reader, request_id, tenant=principal.tenant)
        except (QueryError, StoreUnavailable) as error:
            log.error("answers_read_failed", error=type(error).__name__)
            raise HTTPException(
                status.HTTP_503_SERVICE_UNAVAILABLE, "analytics cannot answer now; try again later"
            ) from None
        record = answer_record(request_id, rows, principal.tenant)
        if record is None:
            raise HTTPException(status.HTTP_404_NOT_FOUND, f"no answer of request {request_id}")
        return record

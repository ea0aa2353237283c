"""Erasure of a data subject at the gateway (``admin``):

- ``POST /v1/erasures`` ``{"subject": ..., "reason": ..., "key": ...}`` -> 202 ``ErasureOut``:
  publishes ``ErasureRequested`` (signed with the gateway's key) for the caller's tenant, or,
  with ``RAGOPS_GATEWAY_ERASURE_APPROVAL=true``, records an ``erase_subject`` change that another
  person of the tenant approves first (``state`` ``awaiting_approval``, its ``change_id``). The
  erasure id derives from (tenant, subject, ``key``): the same key again retries the same
  erasure (a store that failed finishes the job); without a key, from the request's time.
- ``GET /v1/erasures/{erasure_id}``: its state and, once every store reported, the counts per
  store (``SubjectErased``). Another tenant's erasure answers like an unknown one (404).

Every replica folds the erasure topics from their start (:class:`ErasureView`); the subject is
never kept there nor returned, only tenant, ids, counts and states.
"""

import asyncio
from collections.abc import Awaitable, Callable
from datetime import datetime, timedelta
from typing import Annotated, Literal

import structlog
from fastapi import Depends, FastAPI, HTTPException, Request, status
from pydantic import BaseModel, ConfigDict, Field

from ragops_gateway.changes import ChangeRecord, ControlPlane, actor, request_change
from ragops_schemas import Event, utc_now
from ragops_schemas.audit import AuditRecorded
from ragops_schemas.changes import EraseSubjectChange, SubjectId
from ragops_schemas.erasure import ErasureRequested, StoreErasure, SubjectErased, SubjectErasureApplied
from ragops_schemas.ids import erasure_id
from ragops_shared.audit import actor_of
from ragops_shared.identity import Principal
from ragops_shared.pseudonyms import pseudonym_key, subject_pseudonym

log = structlog.get_logger(__name__)

READS: tuple[type[Event], ...] = (ErasureRequested, SubjectErasureApplied, SubjectErased)
State = Literal["awaiting_approval", "rejected", "expired", "in_progress", "complete", "incomplete"]


class ErasureIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    subject: SubjectId
    reason: str = Field(default="", max_length=2000, description="Why (a ticket, the data subject's request).")
    key: str | None = Field(
        default=None,
        min_length=1,
        max_length=256,
        description="Idempotency key: the same key names the same erasure (send it again to finish a failed one).",
    )


class ErasureOut(BaseModel):
    erasure_id: str
    state: State
    change_id: str | None = None
    stores: dict[str, StoreErasure] = Field(
        default_factory=dict,
        description="Per store: the conclusion's counts once complete or incomplete; before, each store's last report.",
    )


class _Erasure:
    def __init__(self, tenant: str) -> None:
        self.tenant = tenant
        self.reports: dict[str, SubjectErasureApplied] = {}  # the last report of each store
        self.concluded: SubjectErased | None = None


class ErasureView:
    """The erasures read so far, by id: their tenant, each store's last report, the latest
    conclusion (``occurred_at``, then event id). Fed by a watcher of :data:`READS`."""

    def __init__(self) -> None:
        self._erasures: dict[str, _Erasure] = {}

    def apply(self, event: Event) -> None:
        if not isinstance(event, READS):
            return
        assert isinstance(event, ErasureRequested | SubjectErasureApplied | SubjectErased)
        erasure = self._erasures.setdefault(event.erasure_id, _Erasure(event.tenant))
        if isinstance(event, SubjectErasureApplied):
            last = erasure.reports.get(event.store)
            if last is None or (last.occurred_at, str(last.event_id)) <= (event.occurred_at, str(event.event_id)):
                erasure.reports[event.store] = event
        elif isinstance(event, SubjectErased):
            last_conclusion = erasure.concluded
            if last_conclusion is None or (last_conclusion.occurred_at, str(last_conclusion.event_id)) <= (
                event.occurred_at,
                str(event.event_id),
            ):
                erasure.concluded = event

    def status(self, erasure_id: str, tenant: str) -> ErasureOut | None:
        """What is known of ``tenant``'s erasure ``erasure_id`` (None: unknown, or another tenant's)."""
        erasure = self._erasures.get(erasure_id)
        if erasure is None or erasure.tenant != tenant:
            return None
        if erasure.concluded is not None:
            state: State = "complete" if erasure.concluded.complete else "incomplete"
            return ErasureOut(erasure_id=erasure_id, state=state, stores=erasure.concluded.stores)
        stores = {
            store: StoreErasure(
                deleted=report.deleted, remaining=report.remaining, complete=report.complete, reason=report.reason
            )
            for store, report in sorted(erasure.reports.items())
        }
        return ErasureOut(erasure_id=erasure_id, state="in_progress", stores=stores)


def _awaiting(plane: ControlPlane, erasure: str, tenant: str, now: datetime) -> ErasureOut | None:
    """The erasure as a change not approved yet (or refused, or expired), if it is one."""
    records: list[ChangeRecord] = [
        record
        for record in plane.book.of_tenant(tenant)
        if isinstance(record.requested.change, EraseSubjectChange) and record.requested.change.erasure_id == erasure
    ]
    if not records:
        return None
    record = records[-1]
    decided = record.status(now)
    state: State = "awaiting_approval" if decided == "pending" else "in_progress" if decided == "approved" else decided
    return ErasureOut(erasure_id=erasure, state=state, change_id=record.requested.change_id)


def add_erasure_routes(
    app: FastAPI,
    caller: Callable[[str, str], Callable[[Request], Awaitable[Principal]]],
    plane: ControlPlane,
    view: ErasureView,
    audit: Callable[[AuditRecorded], Awaitable[None]],
    clock: Callable[[], datetime] = utc_now,
) -> None:
    """Add ``POST /v1/erasures`` and ``GET /v1/erasures/{erasure_id}`` (see the module's
    docstring) behind the guards ``caller`` gives (the gateway's route table)."""
    settings = plane.settings
    ttl = None if settings.change_ttl_s is None else timedelta(seconds=settings.change_ttl_s)

    def stored_subject(tenant: str, subject: str) -> str:
        """``subject`` as the stores hold it (blocking: the key file)."""
        if not settings.pseudonymized_ids:
            return subject
        key = pseudonym_key(settings.pseudonym_key_file, settings.platform.data_dir)
        return subject_pseudonym(key, subject, tenant=tenant)

    Requester = Annotated[Principal, Depends(caller("POST", "/v1/erasures"))]
    Reader = Annotated[Principal, Depends(caller("GET", "/v1/erasures/{erasure_id}"))]

    @app.post("/v1/erasures", status_code=status.HTTP_202_ACCEPTED, tags=["erasures"])
    async def erase(body: ErasureIn, principal: Requester) -> ErasureOut:
        """Erase a data subject of the caller's tenant from every store (or ask for approval first)."""
        now = clock()
        erasure = erasure_id(principal.tenant, body.subject, body.key or now.isoformat())
        # The stores hold what the privacy service wrote: the subject's pseudonym, where it makes them.
        subject = await asyncio.to_thread(stored_subject, principal.tenant, body.subject)
        if settings.erasure_approval:
            change = EraseSubjectChange(subject=subject, erasure_id=erasure)
            reason = body.reason or f"erasure {erasure}"
            requested = request_change(
                principal, change, reason, plane.producer, platform_tenant=settings.platform.tenant, ttl=ttl, now=now
            )
            await plane.publish(requested)
            plane.book.apply(requested)  # listed at once on this replica
            outcome = ErasureOut(erasure_id=erasure, state="awaiting_approval", change_id=requested.change_id)
        else:
            request = ErasureRequested(
                producer=plane.producer,
                tenant=principal.tenant,
                erasure_id=erasure,
                subject=subject,
                requested_by=actor(principal),
                reason=body.reason,
            )
            await plane.publish(request)
            view.apply(request)
            outcome = ErasureOut(erasure_id=erasure, state="in_progress")
        await audit(
            AuditRecorded(
                producer=plane.producer,
                tenant=principal.tenant,
                actor=actor_of(principal),
                action="erasure.requested",
                target=erasure,
                outcome="applied",
                after={"state": outcome.state, **({"change_id": outcome.change_id} if outcome.change_id else {})},
            )
        )
        log.info("erasure_requested", erasure_id=erasure, state=outcome.state, by=principal.subject)
        return outcome

    @app.get("/v1/erasures/{erasure_id}", tags=["erasures"])
    async def erasure_status(erasure_id: str, principal: Reader) -> ErasureOut:
        """The erasure's state, and its counts per store once every store reported."""
        found = view.status(erasure_id, principal.tenant) or _awaiting(plane, erasure_id, principal.tenant, clock())
        if found is None:
            raise HTTPException(status.HTTP_404_NOT_FOUND, f"no erasure {erasure_id}")
        return found

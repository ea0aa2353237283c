"""The four-eyes control plane of the gateway: people request changes (promotions,
retirements, retraining) and a different person with an approving role decides them; only an
approved change takes effect.

The plain-function core: :class:`ChangeBook` folds ``ChangeRequested`` / ``ChangeApproved`` /
``ChangeRejected`` (the first decision of a change counts: earliest ``occurred_at``, then
``event_id``, whatever order the three topics are read in); :func:`request_change` and
:func:`decide` build the events and enforce the rules (:class:`ChangeRefused`);
:func:`effect_of` is what an approval sets in motion. The adapters: :class:`ControlPlane` (every
replica reads the change topics from their start and verifies each event's signature; it
publishes with the gateway's key) and :func:`add_change_routes` (the HTTP API):

- ``POST /v1/changes`` (operator): ``{"change": {...}, "reason": ...}`` -> 202 ``ChangeOut``;
- ``GET /v1/changes`` (operator, approver, auditor): the caller's tenant's changes;
- ``POST /v1/changes/{change_id}/approve`` and ``/reject`` (the roles configured in
  ``RAGOPS_GATEWAY_APPROVER_ROLES``): ``{"reason": ...}``.

Only principals of the platform's tenant (``RAGOPS_TENANT``, ``default``) request or decide
changes (403 otherwise): an approved change moves what every tenant is served. The exception is
an ``erase_subject`` change (requested at ``POST /v1/erasures`` where erasures need approval,
never at ``POST /v1/changes``): it erases a subject of its own tenant, so it is requested and
decided within that tenant. The decider's
owner is never the requester's (a person's own subject, an API key's owner): two credentials of
one person are one pair of eyes. Another tenant's change answers exactly like an unknown one
(404). An approval publishes
``ChangeApproved`` and, once the gateway has read it back as the change's decision, the effect,
signed with the gateway's key.
"""

import asyncio
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Annotated, Literal

import structlog
from aiokafka.errors import KafkaError
from fastapi import Depends, FastAPI, HTTPException, Request, status
from faststream.kafka import KafkaBroker
from pydantic import BaseModel, ConfigDict

from ragops_gateway.settings import GatewaySettings
from ragops_gateway.spec import SPEC
from ragops_schemas import (
    ErasureRequested,
    Event,
    Producer,
    RetrainingRequested,
    VersionPromoted,
    VersionRetired,
    utc_now,
)
from ragops_schemas.changes import (
    CHANGE_EVENT_TYPES,
    Change,
    ChangeActor,
    ChangeApproved,
    ChangeKind,
    ChangeRejected,
    ChangeRequested,
    EraseSubjectChange,
    PromoteChange,
    Reason,
    RetireChange,
)
from ragops_schemas.cost import PricesPublished
from ragops_schemas.ids import change_id, new_event_id
from ragops_shared.broker import EventPublisher
from ragops_shared.identity import Principal, Role
from ragops_shared.registry_view import ControlView
from ragops_shared.signing import signer_for, verifier_for

log = structlog.get_logger(__name__)

CHANGE_READERS = "ragops-change-readers"
"""The ``consumer_group`` of a refused change record's dead letter (every replica publishes the same one)."""

Decision = ChangeApproved | ChangeRejected
Status = Literal["pending", "approved", "rejected", "expired"]
PUBLISHES: tuple[type[Event], ...] = (
    *CHANGE_EVENT_TYPES,
    VersionPromoted,
    VersionRetired,
    RetrainingRequested,
    ErasureRequested,
    PricesPublished,
)
"""What the control plane publishes: the change events and the effects of approved changes."""


class ChangeRefused(Exception):
    """A request or decision that must not happen: ``status`` 403, 404 or 409, ``str()`` why."""

    def __init__(self, status_code: Literal[403, 404, 409], detail: str) -> None:
        self.status_code = status_code
        super().__init__(detail)


@dataclass
class ChangeRecord:
    requested: ChangeRequested
    decision: Decision | None = None

    def status(self, now: datetime) -> Status:
        if isinstance(self.decision, ChangeApproved):
            return "approved"
        if isinstance(self.decision, ChangeRejected):
            return "rejected"
        expires_at = self.requested.expires_at
        return "expired" if expires_at is not None and now >= expires_at else "pending"


def _first(one: Decision, other: Decision) -> Decision:
    return min(one, other, key=lambda decision: (decision.occurred_at, str(decision.event_id)))


class ChangeBook:
    """Every change, by id, folded from the change events (any order, duplicates ignored). Not
    thread-safe: fold and read on one event loop."""

    def __init__(self) -> None:
        self._changes: dict[str, ChangeRecord] = {}
        # Decisions read before their request (the topics are read side by side).
        self._early: dict[str, Decision] = {}

    def apply(self, event: Event) -> bool:
        """Fold one event in; True when it changed the book."""
        if isinstance(event, ChangeRequested):
            if event.change_id in self._changes:
                return False
            self._changes[event.change_id] = ChangeRecord(event, self._early.pop(event.change_id, None))
            return True
        if not isinstance(event, ChangeApproved | ChangeRejected):
            return False
        record = self._changes.get(event.change_id)
        current = record.decision if record else self._early.get(event.change_id)
        first = event if current is None else _first(current, event)
        if first is current:
            return False
        if record is None:
            self._early[event.change_id] = first
        else:
            record.decision = first
        return True

    def get(self, change: str, tenant: str) -> ChangeRecord | None:
        """The change ``change`` of ``tenant``; None when unknown or another tenant's (alike)."""
        record = self._changes.get(change)
        return record if record is not None and record.requested.tenant == tenant else None

    def of_tenant(self, tenant: str) -> list[ChangeRecord]:
        """``tenant``'s changes, oldest request first."""
        records = [record for record in self._changes.values() if record.requested.tenant == tenant]
        return sorted(records, key=lambda record: record.requested.occurred_at)


def actor(principal: Principal) -> ChangeActor:
    """Who a principal is, as change events record it."""
    return ChangeActor(subject=principal.subject, name=principal.name, kind=principal.kind, owner=principal.owner)


def _on_the_platform(principal: Principal, platform_tenant: str, kind: ChangeKind) -> None:
    """Raises ``ChangeRefused`` 403 unless ``principal`` is of the platform's tenant: an approved
    change moves what every tenant is served (the registry, the trainer). An erasure stays in
    its tenant: any tenant's principals request and decide their own."""
    if kind != "erase_subject" and principal.tenant != platform_tenant:
        raise ChangeRefused(403, f"changes are requested and decided in the platform's tenant ({platform_tenant})")


def request_change(
    principal: Principal,
    change: Change,
    reason: str,
    producer: Producer,
    *,
    platform_tenant: str,
    ttl: timedelta | None,
    now: datetime,
) -> ChangeRequested:
    """The request of ``change`` by ``principal``, in its tenant; it expires after ``ttl``.

    Raises:
        ChangeRefused: 403 ``principal`` is not of ``platform_tenant``.
    """
    _on_the_platform(principal, platform_tenant, change.kind)
    event_id = new_event_id()
    return ChangeRequested(
        event_id=event_id,
        occurred_at=now,
        producer=producer,
        tenant=principal.tenant,
        change_id=change_id(event_id),
        change=change,
        requested_by=actor(principal),
        reason=reason,
        expires_at=None if ttl is None else now + ttl,
    )


def decide(
    book: ChangeBook,
    change: str,
    principal: Principal,
    *,
    approve: bool,
    reason: str,
    approver_roles: Mapping[ChangeKind, frozenset[Role]],
    platform_tenant: str,
    producer: Producer,
    now: datetime,
) -> Decision:
    """``principal``'s decision on ``change``.

    Raises:
        ChangeRefused: 403 ``principal`` is not of ``platform_tenant``; 404 the change is
            unknown or another tenant's; 403 ``principal`` or another credential of the same
            owner requested it, or ``principal`` holds no role allowed to decide its kind; 409
            it is decided or expired.
    """
    record = book.get(change, principal.tenant)
    _on_the_platform(principal, platform_tenant, record.requested.change.kind if record else "promote")
    if record is None:
        raise ChangeRefused(404, f"no change {change}")
    requested = record.requested
    kind = requested.change.kind
    if not principal.allowed(approver_roles.get(kind, frozenset())):
        raise ChangeRefused(403, f"{principal.subject} holds no role that may decide a {kind} change")
    # Two credentials (a person's token and a key they own, a key an admin minted) are one pair of eyes.
    if principal.subject == requested.requested_by.subject or principal.owner == requested.requested_by.accountable:
        raise ChangeRefused(403, "a change is decided by someone other than who requested it")
    state = record.status(now)
    if state != "pending":
        raise ChangeRefused(409, f"change {change} is {state}")
    outcome: type[Decision] = ChangeApproved if approve else ChangeRejected
    # Two principals' decisions are two events (the first counts); one's retry is the same event.
    fields = {"change_id": change, "decided_by": actor(principal), "reason": reason}
    return requested.caused(outcome, producer, scope=principal.subject, **fields)


def effect_of(requested: ChangeRequested, approved: ChangeApproved, producer: Producer) -> Event:
    """The event an approved change publishes (its id derived from the approval)."""
    change = requested.change
    why = f"{requested.reason} (change {requested.change_id}, approved by {approved.decided_by.name})"
    if isinstance(change, PromoteChange):
        return approved.caused(
            VersionPromoted,
            producer,
            **change.version.model_dump(),
            alias=change.alias,
            uri=change.uri,
            previous_version=change.previous_version,
            request_event_id=change.request_event_id,
            metrics=change.metrics,
            reason=why,
        )
    if isinstance(change, RetireChange):
        return approved.caused(VersionRetired, producer, **change.version.model_dump(), reason=why)
    if isinstance(change, EraseSubjectChange):
        return approved.caused(
            ErasureRequested,
            producer,
            erasure_id=change.erasure_id,
            subject=change.subject,
            requested_by=requested.requested_by,
            reason=why,
        )
    return approved.caused(
        RetrainingRequested,
        producer,
        action=change.action,
        target=change.target,
        reason=why,
        requested_by=requested.requested_by.subject,
    )


def control_publisher(
    settings: GatewaySettings, broker: KafkaBroker, producer: Producer, events: Sequence[type[Event]]
) -> EventPublisher:
    """The gateway's one publisher: ``events`` and :data:`PUBLISHES`, control events signed with
    the gateway's key (``RAGOPS_SIGNING_KEY_FILE``, else the embedded one). Build it before the
    broker starts (it declares publishers)."""
    return EventPublisher(broker, producer, [*events, *PUBLISHES], signer=signer_for(settings.platform, SPEC.name))


class ControlPlane:
    """The gateway's book of changes and how it publishes: ``publisher`` declares
    :data:`PUBLISHES` and signs with the gateway's key (:func:`control_publisher`).
    :meth:`start` once the broker runs."""

    def __init__(self, settings: GatewaySettings, publisher: EventPublisher) -> None:
        self.settings = settings
        self.producer = publisher.producer
        self.publisher = publisher
        self.book = ChangeBook()
        # Every replica folds every change event from the start; one not validly signed by an
        # owner allowed to sign it is dead-lettered as CHANGE_READERS and never folded.
        self.view = ControlView(
            settings.kafka,
            f"ragops-{SPEC.name}-changes",
            (ChangeRequested, ChangeApproved, ChangeRejected),
            self.book.apply,
            verifier=verifier_for(settings.platform),
            readers=CHANGE_READERS,
            dead_letters=self.publisher,
        )

    async def start(self) -> None:
        await self.view.start()
        await self.view.send_dead_letters()

    async def stop(self) -> None:
        await self.view.stop()

    async def publish(self, event: Event) -> None:
        """Raises ``HTTPException`` 503 when the broker does not take ``event`` in time."""
        try:
            await asyncio.wait_for(self.publisher.publish(event), self.settings.publish_timeout_s)
        except (KafkaError, OSError, TimeoutError) as error:
            log.error("publish_failed", error=repr(error))
            raise HTTPException(
                status.HTTP_503_SERVICE_UNAVAILABLE, "the event broker cannot take the change now; try again later"
            ) from None


class ChangeIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    change: Change
    reason: Reason


class DecisionIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    reason: Reason


class ChangeOut(BaseModel):
    change_id: str
    status: Status
    change: Change
    reason: str
    requested_by: ChangeActor
    requested_at: datetime
    expires_at: datetime | None
    decided_by: ChangeActor | None = None
    decision_reason: str | None = None
    decided_at: datetime | None = None

    @classmethod
    def of(cls, record: ChangeRecord, now: datetime) -> "ChangeOut":
        requested, decision = record.requested, record.decision
        return cls(
            change_id=requested.change_id,
            status=record.status(now),
            change=requested.change,
            reason=requested.reason,
            requested_by=requested.requested_by,
            requested_at=requested.occurred_at,
            expires_at=requested.expires_at,
            decided_by=decision.decided_by if decision else None,
            decision_reason=decision.reason if decision else None,
            decided_at=decision.occurred_at if decision else None,
        )


def add_change_routes(
    app: FastAPI,
    caller: Callable[[str, str], Callable[[Request], Awaitable[Principal]]],
    plane: ControlPlane,
    clock: Callable[[], datetime] = utc_now,
) -> None:
    """Add the change routes (see the module's docstring) to ``app``, each behind the guard ``caller``
    gives for its method and path (the gateway's route table; who may decide a change of
    each kind is :attr:`GatewaySettings.approver_roles`, checked again per change)."""
    settings = plane.settings
    book = plane.book
    approver_roles = {kind: frozenset(roles) for kind, roles in settings.approver_roles.items()}
    ttl = settings.change_ttl
    platform = settings.platform.tenant
    Operator = Annotated[Principal, Depends(caller("POST", "/v1/changes"))]
    Reader = Annotated[Principal, Depends(caller("GET", "/v1/changes"))]
    Approver = Annotated[Principal, Depends(caller("POST", "/v1/changes/{change}/approve"))]
    Rejecter = Annotated[Principal, Depends(caller("POST", "/v1/changes/{change}/reject"))]

    @app.post("/v1/changes", status_code=status.HTTP_202_ACCEPTED, tags=["changes"])
    async def request(body: ChangeIn, principal: Operator) -> ChangeOut:
        """Record a change request; nothing takes effect until someone else approves it."""
        if isinstance(body.change, EraseSubjectChange):
            raise HTTPException(status.HTTP_422_UNPROCESSABLE_ENTITY, "an erasure is requested at POST /v1/erasures")
        try:
            requested = request_change(
                principal, body.change, body.reason, plane.producer, platform_tenant=platform, ttl=ttl, now=clock()
            )
        except ChangeRefused as refusal:
            log.warning("change_request_refused", by=principal.subject, reason=str(refusal))
            raise HTTPException(refusal.status_code, str(refusal)) from None
        await plane.publish(requested)
        book.apply(requested)  # this replica lists it at once; the others when they read it
        log.info("change_requested", change_id=requested.change_id, kind=body.change.kind, by=principal.subject)
        return ChangeOut.of(ChangeRecord(requested), clock())

    @app.get("/v1/changes", tags=["changes"])
    async def list_changes(principal: Reader, state: Status | None = None) -> list[ChangeOut]:
        """The caller's tenant's changes, oldest first; ``state`` keeps those in one state."""
        now = clock()
        changes = [ChangeOut.of(record, now) for record in book.of_tenant(principal.tenant)]
        return [change for change in changes if state is None or change.status == state]

    async def decided(change: str, principal: Principal, body: DecisionIn, approve: bool) -> ChangeOut:
        try:
            decision = decide(
                book,
                change,
                principal,
                approve=approve,
                reason=body.reason,
                approver_roles=approver_roles,
                platform_tenant=platform,
                producer=plane.producer,
                now=clock(),
            )
        except ChangeRefused as refusal:
            log.warning("change_decision_refused", change_id=change, by=principal.subject, reason=str(refusal))
            detail = "not found" if refusal.status_code == 404 else str(refusal)
            raise HTTPException(refusal.status_code, detail) from None
        await plane.publish(decision)
        # Another replica may have decided the change meanwhile: the first decision counts,
        # so the effect follows only once this one is read back as it.
        if not await plane.view.caught_up(settings.publish_timeout_s):
            raise HTTPException(status.HTTP_503_SERVICE_UNAVAILABLE, "the decision was not read back in time")
        record = book.get(change, principal.tenant)
        assert record is not None  # it was there before, and a book never forgets
        if record.decision is None or record.decision.event_id != decision.event_id:
            raise HTTPException(status.HTTP_409_CONFLICT, f"change {change} was decided meanwhile")
        if isinstance(decision, ChangeApproved):
            await plane.publish(effect_of(record.requested, decision, plane.producer))
        log.info("change_decided", change_id=change, approved=approve, by=principal.subject)
        return ChangeOut.of(record, clock())

    @app.post("/v1/changes/{change}/approve", tags=["changes"])
    async def approve(change: str, body: DecisionIn, principal: Approver) -> ChangeOut:
        """Approve another principal's pending change: its effect is published."""
        return await decided(change, principal, body, approve=True)

    @app.post("/v1/changes/{change}/reject", tags=["changes"])
    async def reject(change: str, body: DecisionIn, principal: Rejecter) -> ChangeOut:
        """Reject another principal's pending change: it never takes effect."""
        return await decided(change, principal, body, approve=False)

"""The audit trail's events as services build and publish them: :func:`refused_call` turns a
call refused at the door (:class:`~ragops_shared.access.Refusal`, 401 or 403) into the
``AuditRecorded`` that :func:`audited_refusals` (every guard's ``on_refused``) publishes with
:func:`publish_entry`; the sink appends it to the audit log."""

import asyncio

import structlog

from ragops_schemas import Producer
from ragops_schemas.audit import MAX_ACTOR_CHARS, MAX_REASON_CHARS, MAX_TARGET_CHARS, Actor, AuditRecorded
from ragops_shared.access import OnRefused, Refusal, log_refusal
from ragops_shared.broker import EventPublisher
from ragops_shared.identity import Principal

log = structlog.get_logger(__name__)

ANONYMOUS = Actor(kind="anonymous", id="anonymous", name="")
"""The actor of a call without a valid credential."""


def actor_of(principal: Principal) -> Actor:
    """The audit trail's actor for an authenticated caller (a person or an API key)."""
    return Actor(kind=principal.kind, id=principal.subject[:MAX_ACTOR_CHARS], name=principal.name[:MAX_ACTOR_CHARS])


def refused_call(refusal: Refusal, producer: Producer, *, tenant: str) -> AuditRecorded:
    """The ``auth.refused`` entry of ``refusal``: the actor is the principal (403) or
    :data:`ANONYMOUS` (401), the target ``<METHOD> <path>``, the reason ``<status>: <why>``.

    ``tenant`` is the tenant of an anonymous refusal (the service's own,
    ``PlatformSettings.tenant``); a principal's refusal is in the principal's tenant, so each
    tenant's auditors see the refusals of its own credentials."""
    principal = refusal.principal
    actor = ANONYMOUS if principal is None else actor_of(principal)
    return AuditRecorded(
        producer=producer,
        tenant=tenant if principal is None else principal.tenant,
        actor=actor,
        action="auth.refused",
        target=f"{refusal.method} {refusal.path}"[:MAX_TARGET_CHARS],
        outcome="refused",
        reason=f"{refusal.status}: {refusal.reason}"[:MAX_REASON_CHARS],
    )


async def publish_entry(publisher: EventPublisher, entry: AuditRecorded, timeout_s: float) -> None:
    """Publish an audit entry, waiting at most ``timeout_s`` seconds for the broker to take it.
    One it does not take (unreachable, too slow, not started yet) is logged whole as
    ``audit_publish_failed`` (the log is then its only record) and the caller goes on: an audit
    entry never fails the call it describes."""
    try:
        await asyncio.wait_for(publisher.publish(entry), timeout_s)
    # Whatever the publish raised: before its broker starts (a service's HTTP port serves while
    # it loads its models) FastStream raises TypeError or IncorrectState, not a Kafka error.
    except Exception as error:  # noqa: BLE001 - logged with the whole entry, never lost silently
        log.error("audit_publish_failed", error=repr(error), entry=entry.model_dump(mode="json"))


def audited_refusals(publisher: EventPublisher, *, tenant: str, timeout_s: float) -> OnRefused:
    """A guard's ``on_refused``: each refusal logged (:func:`~ragops_shared.access.log_refusal`)
    and published as its ``auth.refused`` entry (:func:`refused_call`, an anonymous one in
    ``tenant``) by ``publisher``, which declares ``AuditRecorded``; see :func:`publish_entry`."""

    async def on_refused(refusal: Refusal) -> None:
        await log_refusal(refusal)
        await publish_entry(publisher, refused_call(refusal, publisher.producer, tenant=tenant), timeout_s)

    return on_refused

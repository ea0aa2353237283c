"""The audit trail's events as services build them: :func:`refused_call` turns a call
refused at the door (:class:`~ragops_shared.access.Refusal`, 401 or 403) into the
``AuditRecorded`` a guard's ``on_refused`` publishes; the sink appends it to the audit log."""

from ragops_schemas import Producer
from ragops_schemas.audit import MAX_ACTOR_CHARS, MAX_REASON_CHARS, MAX_TARGET_CHARS, Actor, AuditRecorded
from ragops_shared.access import Refusal
from ragops_shared.identity import Principal

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

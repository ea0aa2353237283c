"""The audit trail's own event (schema version 1): ``AuditRecorded``, a fact about who did (or
was refused) what, published by the service that decided it (the gateway for refused calls
and admin actions). The sink appends it, with the entries it derives from platform events it
already reads (answers, the version registry, retraining requests), to the hash-chained
``audit_log`` table (``ragops_analytics.audit``)."""

from typing import Annotated, Any, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, StringConstraints

from ragops_schemas.envelope import Event
from ragops_schemas.ids import canonical_json
from ragops_schemas.topics import Topic

MAX_STATE_BYTES = 16 * 1024
"""Most bytes of ``before`` or ``after`` as compact UTF-8 JSON: a summary of the state, never the state itself."""
MAX_TARGET_CHARS = 1024
MAX_REASON_CHARS = 2048
MAX_ACTOR_CHARS = 256
ActorKind = Literal["person", "api_key", "service", "anonymous"]
AuditAction = Annotated[str, StringConstraints(pattern=r"^[a-z][a-z0-9_]*(\.[a-z][a-z0-9_]*)+$", max_length=128)]
"""``<object>.<verb in the past tense>``, dotted lowercase: ``auth.refused``, ``key.created``,
``answer.generated``, ``registry.version_promoted``."""
AuditOutcome = Annotated[str, StringConstraints(pattern=r"^[a-z][a-z_]{0,31}$")]
"""What came of the action, one lowercase word: ``allowed``, ``refused``, ``applied``, ``signed``..."""


def _bounded(state: dict[str, Any] | None) -> dict[str, Any] | None:
    if state is not None and len(canonical_json(state).encode()) > MAX_STATE_BYTES:
        raise ValueError(f"more than {MAX_STATE_BYTES} bytes as JSON: audit a summary, not the whole state")
    return state


State = Annotated[dict[str, Any] | None, AfterValidator(_bounded)]
"""A JSON object of at most :data:`MAX_STATE_BYTES` bytes, or None (nothing before a creation,
nothing after a deletion or a refusal)."""


class Actor(BaseModel):
    """Who acted: a ``person`` (a JWT's subject), an ``api_key`` (``key:<key_id>``), a
    platform ``service`` (its name), or ``anonymous`` (a call without a valid credential)."""

    model_config = ConfigDict(frozen=True, extra="ignore")

    kind: ActorKind
    id: str = Field(
        min_length=1, max_length=MAX_ACTOR_CHARS, examples=["key:3f9a0c1b2d4e5f60", "person:alice", "trainer"]
    )
    name: str = Field(default="", max_length=MAX_ACTOR_CHARS, description="A label: the key's name, the person's name.")


class AuditRecorded(Event):
    """Something happened that an auditor must be able to find: ``actor`` did ``action`` on
    ``target`` in the envelope's ``tenant``, with ``outcome``, the state ``before`` and
    ``after`` (summaries) and the ``reason``. Keyed by tenant: one tenant's entries stay
    ordered on one partition, which is one chain of the audit log."""

    TOPIC = Topic.AUDIT_RECORDED
    event_type: Literal["audit.recorded"] = "audit.recorded"
    actor: Actor
    action: AuditAction = Field(examples=["auth.refused", "key.created", "change.approved"])
    target: str = Field(max_length=MAX_TARGET_CHARS, examples=["POST /v1/documents", "key:3f9a0c1b2d4e5f60"])
    outcome: AuditOutcome = Field(examples=["refused", "allowed", "applied"])
    before: State = None
    after: State = None
    reason: str = Field(default="", max_length=MAX_REASON_CHARS)

    @property
    def key(self) -> bytes:
        return self.tenant.encode()

"""Four-eyes changes (schema version 1): a change to what the platform serves is requested by
one principal and takes effect only once a different one, holding a role allowed to approve
it, approves it.

``ChangeRequested`` (the exact effect asked for, who asked, why) -> ``ChangeApproved`` or
``ChangeRejected``. The first decision of a change counts (earliest ``occurred_at``, then
``event_id``); on approval the gateway publishes the effect (``VersionPromoted``,
``VersionRetired``, ``RetrainingRequested``, ``ErasureRequested``) signed with its own key. All three are control
events (signed, verified by every reader) keyed by ``change_id``; their topics are read from
the start by every gateway replica (the book of changes).

The effect is a tagged union on ``kind``: a new kind of change (a prompt publication, a
policy change) is a new member, and readers that do not know it refuse the record (dead
letter) rather than apply something they cannot check.
"""

from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field

from ragops_schemas.envelope import SignedEvent, UtcMillis
from ragops_schemas.lifecycle import RetrainingAction, VersionRef
from ragops_schemas.topics import Topic

ChangeKind = Literal["promote", "retire", "retrain", "erase_subject"]
Reason = Annotated[str, Field(min_length=1, max_length=2000)]
# Erasure ids and subjects (ragops_schemas.erasure): here, as an erasure can be a change.
ErasureId = Annotated[str, Field(pattern=r"^era-[0-9a-f]{20}$", examples=["era-5d41402abc4b2a76b971"])]
SubjectId = Annotated[
    str,
    Field(
        min_length=1,
        max_length=256,
        pattern=r"^[^\x00-\x1f\x7f]+$",
        description="The data subject's id as the platform stored it (user_id, subject_id).",
        examples=["user-1842"],
    ),
]
ChangeId = Annotated[str, Field(pattern=r"^chg-[0-9a-f]{20}$", examples=["chg-3f1c0a9b2e4d5c6f7a80"])]


class _Part(BaseModel):
    model_config = ConfigDict(frozen=True, extra="ignore")


class ChangeActor(_Part):
    """Who requested or decided a change, as the gateway authenticated it (never from a body)."""

    subject: str = Field(
        min_length=1,
        max_length=256,
        description="Stable identity: key:<key_id> for an API key, person:<sub> for a person, "
        "service:<name> for a platform service.",
        examples=["person:alice", "key:1a2b3c4d5e6f7a8b", "service:trainer"],
    )
    name: str = Field(min_length=1, max_length=256, description="A label for people (key name, token sub).")
    kind: Literal["person", "api_key", "service"]
    # Left out of the record when empty, so an event signed before owners keeps its signed bytes.
    owner: str = Field(
        default="",
        max_length=256,
        exclude_if=lambda owner: not owner,
        description="Who answers for it: the person's own subject, an API key's owner (person:<sub>, "
        "or key:<key_id> for a key owned by itself or the key that created it). Empty (events before "
        "owners): the subject itself (see accountable). Four eyes are two owners.",
        examples=["person:alice", "key:1a2b3c4d5e6f7a8b"],
    )

    @property
    def accountable(self) -> str:
        """Who answers for what this actor did: its owner, else its subject."""
        return self.owner or self.subject


class PromoteChange(_Part):
    """Point ``alias`` at ``version`` (becomes a ``VersionPromoted``)."""

    kind: Literal["promote"] = "promote"
    version: VersionRef
    alias: str = Field(default="production", min_length=1, max_length=128)
    uri: str | None = Field(default=None, description="Where the artifact lives (repeated from its registration).")
    previous_version: str | None = None
    request_event_id: str | None = Field(default=None, description="The retraining request that produced it.")
    metrics: dict[str, float] = Field(default_factory=dict)


class RetireChange(_Part):
    """``version`` takes no new traffic (becomes a ``VersionRetired``)."""

    kind: Literal["retire"] = "retire"
    version: VersionRef


class RetrainChange(_Part):
    """Ask the trainer to act (becomes a ``RetrainingRequested``)."""

    kind: Literal["retrain"] = "retrain"
    action: RetrainingAction
    target: VersionRef | None = Field(default=None, description="Version to act on; None = production.")


class EraseSubjectChange(_Part):
    """Erase a data subject in the requester's tenant (becomes an ``ErasureRequested``): asked
    for at ``POST /v1/erasures`` where erasures need approval, decided within that tenant."""

    kind: Literal["erase_subject"] = "erase_subject"
    subject: SubjectId
    erasure_id: ErasureId


Change = Annotated[PromoteChange | RetireChange | RetrainChange | EraseSubjectChange, Field(discriminator="kind")]


class _ChangeEvent(SignedEvent):
    change_id: ChangeId = Field(description="ragops_schemas.ids.change_id of the request's event id.")

    @property
    def key(self) -> bytes:
        return self.change_id.encode()


class ChangeRequested(_ChangeEvent):
    """A change asked for; nothing happens until it is approved."""

    TOPIC = Topic.CHANGE_REQUESTED
    event_type: Literal["change.requested"] = "change.requested"
    change: Change
    requested_by: ChangeActor
    reason: Reason
    expires_at: UtcMillis | None = Field(default=None, description="Not decidable after this (None: never expires).")


class _ChangeDecision(_ChangeEvent):
    decided_by: ChangeActor
    reason: Reason


class ChangeApproved(_ChangeDecision):
    """A different principal with an approving role approved the change: its effect follows."""

    TOPIC = Topic.CHANGE_APPROVED
    event_type: Literal["change.approved"] = "change.approved"


class ChangeRejected(_ChangeDecision):
    """The change was refused: it never takes effect."""

    TOPIC = Topic.CHANGE_REJECTED
    event_type: Literal["change.rejected"] = "change.rejected"


CHANGE_EVENT_TYPES: tuple[type[SignedEvent], ...] = (ChangeRequested, ChangeApproved, ChangeRejected)

__all__ = [
    "CHANGE_EVENT_TYPES",
    "Change",
    "ChangeActor",
    "ChangeApproved",
    "ChangeKind",
    "ChangeRejected",
    "ChangeRequested",
    "EraseSubjectChange",
    "PromoteChange",
    "RetireChange",
    "RetrainChange",
]

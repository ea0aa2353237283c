"""Erasure of a data subject (schema version 1), keyed by ``erasure_id``; the topics are kept
forever: they are the proof of what was erased, when, by whom's request, and how much.

``ErasureRequested`` (a control event, signed by the gateway that authenticated the admin, or
that applied the approved ``erase_subject`` change) -> every store that holds the subject's
data deletes it and reports a ``SubjectErasureApplied`` (counts per table or collection, and
what is left when it checked) -> the privacy service, once every store it waits for has
reported, publishes ``SubjectErased`` (counts per store, ``complete`` only when every store
verified that nothing is left). A request sent again (the same ``erasure_id``) is applied
again: a store that failed the first time finishes the job, and a new ``SubjectErased`` sums
both attempts.

A subject is the id the platform stored: ``user_id`` of queries and feedback, ``subject_id`` of
documents (whom a document is about). Only ``ErasureRequested`` names it; the reports carry
the erasure id and counts, never the subject.
"""

from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field

from ragops_schemas.changes import ChangeActor, ErasureId, SubjectId
from ragops_schemas.envelope import Event, Producer, SignedEvent
from ragops_schemas.topics import Topic

StoreName = Annotated[
    str,
    Field(
        pattern=r"^[a-z][a-z0-9_-]{0,63}$",
        description="Who holds the data: clickhouse (the sink's tables), vectors (every index build), "
        "keys (the subject key store of crypto-shredding).",
        examples=["clickhouse", "vectors", "keys"],
    ),
]
Counts = dict[Annotated[str, Field(max_length=256)], Annotated[int, Field(ge=0)]]


class _ErasureEvent(Event):
    erasure_id: ErasureId = Field(description="ragops_schemas.ids.erasure_id of (tenant, subject, request key).")

    @property
    def key(self) -> bytes:
        return self.erasure_id.encode()


class ErasureRequested(_ErasureEvent, SignedEvent):
    """Erase everything the platform holds of ``subject`` in the event's tenant."""

    TOPIC = Topic.ERASURE_REQUESTED
    event_type: Literal["privacy.erasure_requested"] = "privacy.erasure_requested"
    subject: SubjectId
    requested_by: ChangeActor
    reason: str = Field(default="", max_length=2000, description="Why (a ticket, the request's reference).")

    def applied(
        self, producer: Producer, store: str, *, deleted: Counts, remaining: Counts, complete: bool, reason: str = ""
    ) -> "SubjectErasureApplied":
        """``store``'s report on this request: its id derived from the request's and the store's
        name, so a store that applies a redelivered request reports under the same id."""
        return self.caused(
            SubjectErasureApplied,
            producer,
            scope=store,
            erasure_id=self.erasure_id,
            request_event_id=str(self.event_id),
            store=store,
            deleted=deleted,
            remaining=remaining,
            complete=complete,
            reason=reason,
        )


class SubjectErasureApplied(_ErasureEvent):
    """One store deleted what it held of the request's subject, and counted what is left."""

    TOPIC = Topic.SUBJECT_ERASURE_APPLIED
    event_type: Literal["privacy.subject_erasure_applied"] = "privacy.subject_erasure_applied"
    request_event_id: str = Field(description="event_id of the ErasureRequested it applied.")
    store: StoreName
    deleted: Counts = Field(
        default_factory=dict, description="Rows (tables), points (collections) or keys deleted, by where they were."
    )
    remaining: Counts = Field(
        default_factory=dict,
        description="What the store still found of the subject after deleting, by table or collection (0 = verified).",
    )
    complete: bool = Field(description="Everything deleted and verified: nothing of the subject is left here.")
    reason: str = Field(default="", max_length=2000, description="Why it is not complete (empty when it is).")


class StoreErasure(BaseModel):
    """What one store did for an erasure, over every attempt."""

    model_config = ConfigDict(frozen=True, extra="ignore")

    deleted: Counts = Field(default_factory=dict, description="Summed over the attempts.")
    remaining: Counts = Field(default_factory=dict, description="As its last attempt found it.")
    complete: bool
    reason: str = ""


class SubjectErased(_ErasureEvent):
    """Every store the privacy service waits for has reported on the erasure. ``complete``:
    each of them verified that nothing of the subject is left; otherwise ``stores`` says
    which did not and why, and the erasure is to be requested again."""

    TOPIC = Topic.SUBJECT_ERASED
    event_type: Literal["privacy.subject_erased"] = "privacy.subject_erased"
    stores: dict[StoreName, StoreErasure]
    complete: bool


ERASURE_EVENT_TYPES: tuple[type[Event], ...] = (ErasureRequested, SubjectErasureApplied, SubjectErased)

__all__ = [
    "ERASURE_EVENT_TYPES",
    "ErasureRequested",
    "StoreErasure",
    "SubjectErased",
    "SubjectErasureApplied",
]

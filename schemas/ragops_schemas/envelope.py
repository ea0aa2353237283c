"""The envelope every event shares.

``event_id`` is the idempotency key: consumers and the ClickHouse sink de-duplicate on it,
so a redelivered event never has a second effect: an event caused by another gets an id
derived from its cause (:meth:`Event.caused`). Times are UTC; a time read or built without a
zone is taken as UTC, never as the host's local time. Trace context follows W3C Trace Context
(https://www.w3.org/TR/trace-context/): ``trace_id`` is 32 lowercase hex digits,
``span_id`` 16, and the same pair travels in the Kafka ``traceparent`` header.
"""

import json
import uuid
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Annotated, Any, ClassVar, Literal, TypeVar

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, PlainSerializer, StringConstraints, field_validator

from ragops_schemas.ids import DEFAULT_TENANT, derived_event_id, new_event_id, new_span_id, new_trace_id
from ragops_schemas.topics import Topic

TraceId = Annotated[str, StringConstraints(pattern=r"^[0-9a-f]{32}$")]
SpanId = Annotated[str, StringConstraints(pattern=r"^[0-9a-f]{16}$")]


def as_utc(value: datetime) -> datetime:
    """``value`` in UTC. A naive datetime (no zone, e.g. ``2026-01-01T01:30:00`` in JSON) is taken
    as UTC, never as the host's local time (what ``datetime.astimezone`` would assume)."""
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


# Millisecond precision, always UTC with a "Z": what ClickHouse DateTime64(3) and every
# JSON consumer can read without guessing a zone. Validation converts to UTC (naive: taken as
# UTC), so events compare and serialise alike whatever zone a producer used.
UtcMillis = Annotated[
    datetime,
    AfterValidator(as_utc),
    PlainSerializer(
        lambda value: as_utc(value).isoformat(timespec="milliseconds").replace("+00:00", "Z"),
        return_type=str,
    ),
]


E = TypeVar("E", bound="Event")


def utc_now() -> datetime:
    """Current time in UTC, truncated to milliseconds (the resolution events carry)."""
    now = datetime.now(UTC)
    return now.replace(microsecond=now.microsecond // 1000 * 1000)


class Producer(BaseModel):
    """Which service (and which release of it) produced an event."""

    model_config = ConfigDict(frozen=True, extra="ignore")

    name: str = Field(examples=["ingestion"])
    version: str = Field(examples=["0.1.0"])


class ComputeUsage(BaseModel):
    """What producing an event held of a machine: the stage's share of the compute it ran on
    (:mod:`ragops_shared.tracing` measures it; the cost views price it per core-hour or
    GPU-hour at the price in effect when the event occurred).

    ``seconds`` is wall time from the start of the work (the batch the event's cause came in)
    to the event's publication, divided evenly among the batch's events; ``units`` is how many
    CPU cores (``device="cpu"``: the threads the stage computes with) or GPUs
    (``device="cuda"``) it held meanwhile. ``seconds x units`` is core-seconds or GPU-seconds."""

    model_config = ConfigDict(frozen=True, extra="ignore")

    device: Literal["cpu", "cuda"] = Field(description="What the stage computed on.")
    seconds: float = Field(ge=0, description="Wall seconds of the stage's work attributed to this event.")
    units: int = Field(default=1, ge=1, le=4096, description="CPU cores or GPUs held during that time.")


class Event(BaseModel):
    """Fields common to every event. Subclasses set ``TOPIC`` and a ``Literal`` ``event_type``.

    Readers tolerate unknown fields (``extra="ignore"``) so producers can add optional
    fields without a coordinated deploy; events are immutable once built.
    """

    model_config = ConfigDict(frozen=True, extra="ignore")

    TOPIC: ClassVar[Topic]
    if TYPE_CHECKING:
        # Declared by each subclass as a Literal field; a field here would move it in every
        # event's JSON (pydantic keeps a base class's field order).
        event_type: str
    SCHEMA_VERSION: ClassVar[int] = 1

    event_id: uuid.UUID = Field(default_factory=new_event_id, description="Idempotency key.")
    schema_version: int = Field(default=1, description="Major version of this event's schema.")
    occurred_at: UtcMillis = Field(default_factory=utc_now, description="When the fact happened (UTC, ms).")
    producer: Producer
    trace_id: TraceId = Field(default_factory=new_trace_id)
    span_id: SpanId = Field(default_factory=new_span_id)
    parent_span_id: SpanId | None = Field(
        default=None,
        description="The span of the event that caused this one (Event.caused); None for a trace's first event. "
        "With trace_id and span_id it makes the request's tree (`ragops trace`, the OTLP spans).",
    )
    tenant: str = Field(default=DEFAULT_TENANT, min_length=1, max_length=128)
    compute: ComputeUsage | None = Field(
        default=None, description="The compute its producing stage spent on it (cost per stage); None: not measured."
    )

    @field_validator("schema_version")
    @classmethod
    def _same_major_version(cls, version: int) -> int:
        # A different major version is a different contract: it belongs on its own topic.
        if version != cls.SCHEMA_VERSION:
            raise ValueError(f"schema_version {version} is not supported by this reader ({cls.SCHEMA_VERSION} is)")
        return version

    @property
    def key(self) -> bytes:
        """Kafka message key: the document or request the event belongs to (UTF-8)."""
        raise NotImplementedError

    @property
    def traceparent(self) -> str:
        """W3C ``traceparent`` header value for this event's span (sampled)."""
        return f"00-{self.trace_id}-{self.span_id}-01"

    def caused(self, event_type: type[E], producer: Producer, *, scope: str = "", **fields: Any) -> E:
        """Build the next event of the same trace: same ``trace_id`` and ``tenant``, a new
        ``span_id`` whose parent is this event's. Used by every service for its output events.

        The output's ``event_id`` is :func:`ragops_schemas.ids.derived_event_id` of the output
        type, this event's id and ``scope``, so processing the same event again (a redelivery)
        yields the same ids. ``scope`` is the output's identity when one cause yields several
        outputs of one type (e.g. one per index build); empty when it yields one.

        Raises ``TypeError`` for a keyword that is not a field of ``event_type``: events ignore
        unknown fields when read, so a misspelled one would otherwise vanish silently."""
        unknown = fields.keys() - event_type.model_fields.keys()
        if unknown:
            raise TypeError(f"{event_type.__name__} has no field(s) {sorted(unknown)}")
        return event_type(
            producer=producer,
            trace_id=self.trace_id,
            parent_span_id=self.span_id,
            tenant=self.tenant,
            event_id=derived_event_id(event_type.__name__, self.event_id, scope),
            **fields,
        )


class Signature(BaseModel):
    """An Ed25519 signature of an event by the key ``key_id`` (see :class:`SignedEvent`)."""

    model_config = ConfigDict(frozen=True, extra="ignore")

    key_id: str = Field(
        min_length=1,
        max_length=64,
        description="Fingerprint of the public key: the first 16 hex digits of its SHA-256.",
    )
    value: str = Field(min_length=1, max_length=128, description="The 64-byte signature, base64 (standard alphabet).")


_ADDED_ENVELOPE_FIELDS = ("parent_span_id", "compute")


class SignedEvent(Event):
    """A control event (the version registry, and in time approvals and policies): signed by
    its owner and verified by every reader before it is applied (:mod:`ragops_shared.signing`).

    The signature covers :meth:`signed_bytes`, every field but ``signature`` itself as the
    reader's schema sees it. A field a reader does not know is not covered, so a producer that
    adds a field to a control event is deployed after its readers (their check fails until then)."""

    signature: Signature | None = Field(default=None, description="The owner's signature; None: unsigned (refused).")

    def signed_bytes(self) -> bytes:
        """The canonical bytes a signature covers: the JSON-mode model dump without
        ``signature`` (nor ``parent_span_id`` or ``compute`` when they are unset), as UTF-8
        JSON with sorted keys, no whitespace and no ASCII escaping."""
        payload = self.model_dump(mode="json", exclude={"signature"})
        # Envelope fields added after control events were first signed: left out while unset,
        # so an event signed before they existed still verifies against this schema.
        for added in _ADDED_ENVELOPE_FIELDS:
            if payload.get(added) is None:
                payload.pop(added, None)
        return json.dumps(payload, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


class DocumentEvent(Event):
    """An event about one document; keyed by ``document_id``."""

    # No control characters: the id is a record key and appears in logs and file names.
    document_id: str = Field(min_length=1, max_length=512, pattern=r"^[^\x00-\x1f\x7f]+$", examples=["Normans-p000"])

    @property
    def key(self) -> bytes:
        return self.document_id.encode()


class RequestEvent(Event):
    """An event about one query request; keyed by ``request_id``."""

    request_id: str = Field(min_length=1, max_length=128, examples=["3f0c1c7e-4a8e-4d7e-9a51-0f9b1f5d2a10"])

    @property
    def key(self) -> bytes:
        return self.request_id.encode()

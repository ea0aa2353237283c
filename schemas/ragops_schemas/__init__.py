"""Event contracts of RAGOps: the topic enum, the envelope and every event (pydantic v2).

The single source of truth: JSON Schema, AsyncAPI and golden examples under ``schemas/``
are generated from or checked against these classes (``make schemas``).
"""

# `X as X`: re-exported names (the computed ``__all__`` below is opaque to type checkers).
from ragops_schemas.envelope import (
    DocumentEvent as DocumentEvent,
    Event as Event,
    Producer as Producer,
    RequestEvent as RequestEvent,
    Signature as Signature,
    SignedEvent as SignedEvent,
    utc_now as utc_now,
)
from ragops_schemas.events import *  # noqa: F403 - the event classes are this package's API
from ragops_schemas.events import EVENT_TYPES as EVENT_TYPES
from ragops_schemas.topics import Topic as Topic

__all__ = [
    "DocumentEvent",
    "EVENT_TYPES",
    "Event",
    "Producer",
    "RequestEvent",
    "Signature",
    "SignedEvent",
    "Topic",
    "utc_now",
] + [cls.__name__ for cls in EVENT_TYPES]

"""Event contracts of RAGOps: the topic enum, the envelope and every event (pydantic v2).

The single source of truth: JSON Schema, AsyncAPI and golden examples under ``schemas/``
are generated from or checked against these classes (``make schemas``).
"""

from ragops_schemas.envelope import DocumentEvent, Event, Producer, RequestEvent, utc_now
from ragops_schemas.events import *  # noqa: F403 - the event classes are this package's API
from ragops_schemas.events import EVENT_TYPES
from ragops_schemas.topics import Topic

__all__ = ["DocumentEvent", "EVENT_TYPES", "Event", "Producer", "RequestEvent", "Topic", "utc_now"] + [
    cls.__name__ for cls in EVENT_TYPES
]

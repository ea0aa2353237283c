"""Deployment facts of the ingestion service (see :class:`ragops_shared.spec.ServiceSpec`)."""

from ragops_schemas.topics import Topic
from ragops_shared.spec import Image, Scaling, ServiceSpec

SPEC = ServiceSpec(
    name="ingestion",
    image=Image.LIGHT,
    scaling=Scaling.LAG,
    consumer_groups=("ragops-ingestion",),
    # The indexed-documents view: what the live index holds (and what was removed from it); the
    # documents seen by the data-quality checks (duplicates): its own DocumentChunked, read from
    # the beginning.
    reads=(Topic.DOCUMENT_REDACTED, Topic.DOCUMENT_INDEXED, Topic.DOCUMENT_REMOVED, Topic.DOCUMENT_CHUNKED),
    writes=(Topic.DOCUMENT_CHUNKED, Topic.DOCUMENT_REJECTED, Topic.DOCUMENT_INDEXED, Topic.DEAD_LETTER),
)

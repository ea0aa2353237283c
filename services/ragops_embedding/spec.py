"""Deployment facts of the embedding service (see :class:`ragops_shared.spec.ServiceSpec`)."""

from ragops_schemas.topics import Topic
from ragops_shared.spec import EXPERIMENT_TOPICS, REGISTRY_TOPICS, Image, Scaling, ServiceSpec

DOCUMENTS_GROUP = "ragops-embedding-documents"
"""Embeds ``DocumentChunked`` in large batches."""
QUERIES_GROUP = "ragops-embedding-queries"
"""Embeds ``QueryRedacted`` in small batches, so queries never wait behind a document backlog."""

SPEC = ServiceSpec(
    name="embedding",
    image=Image.MODEL,
    scaling=Scaling.LAG,
    consumer_groups=(DOCUMENTS_GROUP, QUERIES_GROUP),
    # The indexed-documents view: chunks the live index already holds are not embedded again.
    reads=(
        Topic.DOCUMENT_CHUNKED,
        Topic.QUERY_REDACTED,
        Topic.DOCUMENT_INDEXED,
        Topic.DOCUMENT_REMOVED,
        *REGISTRY_TOPICS,
        # The running experiment: each question is stamped with its arm.
        *EXPERIMENT_TOPICS,
    ),
    # Registers the packaged default model at start.
    writes=(
        Topic.CHUNKS_EMBEDDED,
        Topic.QUERY_EMBEDDED,
        Topic.DOCUMENT_REJECTED,
        Topic.VERSION_REGISTERED,
        Topic.DEAD_LETTER,
    ),
)

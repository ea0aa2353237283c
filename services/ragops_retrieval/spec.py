"""Deployment facts of the retrieval service (see :class:`ragops_shared.spec.ServiceSpec`)."""

from ragops_schemas.topics import Topic
from ragops_shared.spec import REGISTRY_TOPICS, Image, Scaling, ServiceSpec

INDEXER_GROUP = "ragops-indexer"
"""Writes ``ChunksEmbedded`` into the vector store."""
QUERIES_GROUP = "ragops-retrieval"
"""Answers ``QueryEmbedded`` with ``ContextRetrieved``."""
WITHDRAWALS_GROUP = "ragops-indexer-withdrawals"
"""Withdraws the points of a version rejected after its first parts were indexed (``DocumentRejected``)."""
DELETIONS_GROUP = "ragops-indexer-deletions"
"""Removes deleted documents from every collection (``DocumentDeleted`` -> ``DocumentRemoved``)."""
ERASURE_GROUP = "ragops-indexer-erasure"
"""Deletes the points of a data subject's documents from every collection (``ErasureRequested``)."""

SPEC = ServiceSpec(
    name="retrieval",
    image=Image.LIGHT,
    scaling=Scaling.LAG,
    consumer_groups=(INDEXER_GROUP, QUERIES_GROUP, WITHDRAWALS_GROUP, DELETIONS_GROUP, ERASURE_GROUP),
    reads=(
        Topic.CHUNKS_EMBEDDED,
        Topic.QUERY_EMBEDDED,
        Topic.DOCUMENT_REJECTED,
        Topic.DOCUMENT_DELETED,
        Topic.ERASURE_REQUESTED,
        *REGISTRY_TOPICS,
    ),
    writes=(
        Topic.DOCUMENT_INDEXED,
        Topic.DOCUMENT_REJECTED,
        Topic.DOCUMENT_REMOVED,
        Topic.CONTEXT_RETRIEVED,
        Topic.SUBJECT_ERASURE_APPLIED,
        Topic.DEAD_LETTER,
    ),
)

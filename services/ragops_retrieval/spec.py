"""Deployment facts of the retrieval service (see :class:`ragops_shared.spec.ServiceSpec`)."""

from ragops_schemas.topics import Topic
from ragops_shared.spec import REGISTRY_TOPICS, Image, Scaling, ServiceSpec

INDEXER_GROUP = "ragops-indexer"
"""Writes ``ChunksEmbedded`` into the vector store."""
QUERIES_GROUP = "ragops-retrieval"
"""Answers ``QueryEmbedded`` with ``ContextRetrieved``."""

SPEC = ServiceSpec(
    name="retrieval",
    image=Image.LIGHT,
    scaling=Scaling.LAG,
    consumer_groups=(INDEXER_GROUP, QUERIES_GROUP),
    reads=(Topic.CHUNKS_EMBEDDED, Topic.QUERY_EMBEDDED, *REGISTRY_TOPICS),
    writes=(Topic.DOCUMENT_INDEXED, Topic.CONTEXT_RETRIEVED, Topic.DEAD_LETTER),
)

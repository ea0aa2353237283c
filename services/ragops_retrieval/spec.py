"""Deployment facts of the retrieval service (see :class:`ragops_shared.spec.ServiceSpec`)."""

from ragops_shared.spec import Image, Scaling, ServiceSpec

INDEXER_GROUP = "ragops-indexer"
"""Writes ``ChunksEmbedded`` into the vector store."""
QUERIES_GROUP = "ragops-retrieval"
"""Answers ``QueryEmbedded`` with ``ContextRetrieved``."""

SPEC = ServiceSpec(
    name="retrieval",
    image=Image.LIGHT,
    scaling=Scaling.LAG,
    consumer_groups=(INDEXER_GROUP, QUERIES_GROUP),
)

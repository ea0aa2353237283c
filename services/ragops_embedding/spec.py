"""Deployment facts of the embedding service (see :class:`ragops_shared.spec.ServiceSpec`)."""

from ragops_shared.spec import Image, Scaling, ServiceSpec

DOCUMENTS_GROUP = "ragops-embedding-documents"
"""Embeds ``DocumentChunked`` in large batches."""
QUERIES_GROUP = "ragops-embedding-queries"
"""Embeds ``QuerySubmitted`` in small batches, so queries never wait behind a document backlog."""

SPEC = ServiceSpec(
    name="embedding",
    image=Image.MODEL,
    scaling=Scaling.LAG,
    consumer_groups=(DOCUMENTS_GROUP, QUERIES_GROUP),
)

"""Deployment facts of the privacy service (see :class:`ragops_shared.spec.ServiceSpec`).

One consumer group per intake topic: a question never waits behind a backlog of large
documents, and each scales on its own lag."""

from ragops_schemas.topics import Topic
from ragops_shared.spec import Image, Scaling, ServiceSpec

DOCUMENTS_GROUP = "ragops-privacy-documents"
"""Redacts ``DocumentSubmitted`` (large texts, small batches)."""
QUERIES_GROUP = "ragops-privacy-queries"
"""Redacts ``QuerySubmitted``: on every question's path, never behind documents."""
FEEDBACK_GROUP = "ragops-privacy-feedback"
"""Redacts ``FeedbackSubmitted``."""
REVIEWS_GROUP = "ragops-privacy-reviews"
"""Redacts ``ReviewSubmitted`` (a reviewer's correction and comment)."""
KEYS_GROUP = "ragops-privacy-erasure-keys"
"""Forgets the subject's key for each ``ErasureRequested`` (crypto-shredding)."""
COORDINATOR_GROUP = "ragops-privacy-erasure"
"""Concludes erasures from the stores' reports (``SubjectErasureApplied`` -> ``SubjectErased``)."""

SPEC = ServiceSpec(
    name="privacy",
    image=Image.LIGHT,
    scaling=Scaling.LAG,
    consumer_groups=(DOCUMENTS_GROUP, QUERIES_GROUP, FEEDBACK_GROUP, REVIEWS_GROUP, KEYS_GROUP, COORDINATOR_GROUP),
    # The intake topics (raw text, read by this service only); the erasures and the stores'
    # reports of them.
    reads=(
        Topic.DOCUMENT_SUBMITTED,
        Topic.QUERY_SUBMITTED,
        Topic.FEEDBACK_SUBMITTED,
        Topic.REVIEW_SUBMITTED,
        Topic.ERASURE_REQUESTED,
        Topic.SUBJECT_ERASURE_APPLIED,
    ),
    # The only writer of the redacted topics; the key store's report and the proof of erasure.
    writes=(
        Topic.DOCUMENT_REDACTED,
        Topic.QUERY_REDACTED,
        Topic.FEEDBACK_REDACTED,
        Topic.ANSWER_REVIEWED,
        Topic.SUBJECT_ERASURE_APPLIED,
        Topic.SUBJECT_ERASED,
        Topic.DEAD_LETTER,
    ),
)

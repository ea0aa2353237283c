"""Deployment facts of the feedback service (see :class:`ragops_shared.spec.ServiceSpec`)."""

from ragops_schemas.topics import Topic
from ragops_shared.spec import Image, Scaling, ServiceSpec

FEEDBACK_GROUP = "ragops-feedback"
"""Links ``FeedbackRedacted`` to its answer."""
REVIEWS_GROUP = "ragops-feedback-reviews"
"""Turns ``AnswerReviewed`` into dataset examples (its own group: reviews never wait behind feedback)."""

SPEC = ServiceSpec(
    name="feedback",
    image=Image.LIGHT,
    scaling=Scaling.LAG,
    consumer_groups=(FEEDBACK_GROUP, REVIEWS_GROUP),
    # The answers, from the start of their topic: feedback and reviews link to them.
    reads=(Topic.FEEDBACK_REDACTED, Topic.ANSWER_REVIEWED, Topic.ANSWER_GENERATED),
    writes=(Topic.FEEDBACK_RECORDED, Topic.DATASET_EXAMPLE_ADDED, Topic.DEAD_LETTER),
)

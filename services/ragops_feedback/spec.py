"""Deployment facts of the feedback service (see :class:`ragops_shared.spec.ServiceSpec`)."""

from ragops_schemas.topics import Topic
from ragops_shared.spec import Image, Scaling, ServiceSpec

SPEC = ServiceSpec(
    name="feedback",
    image=Image.LIGHT,
    scaling=Scaling.LAG,
    consumer_groups=("ragops-feedback",),
    # The answers, from the start of their topic: feedback links to them.
    reads=(Topic.FEEDBACK_REDACTED, Topic.ANSWER_GENERATED),
    writes=(Topic.FEEDBACK_RECORDED, Topic.DATASET_EXAMPLE_ADDED, Topic.DEAD_LETTER),
)

"""Deployment facts of the generation service (see :class:`ragops_shared.spec.ServiceSpec`)."""

from ragops_schemas.topics import Topic
from ragops_shared.spec import REGISTRY_TOPICS, Image, Scaling, ServiceSpec

SPEC = ServiceSpec(
    name="generation",
    image=Image.MODEL,
    scaling=Scaling.LAG,
    consumer_groups=("ragops-generation",),
    reads=(Topic.CONTEXT_RETRIEVED, *REGISTRY_TOPICS),
    writes=(Topic.ANSWER_GENERATED, Topic.DEAD_LETTER),
)

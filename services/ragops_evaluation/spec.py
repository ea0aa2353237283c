"""Deployment facts of the evaluation service (see :class:`ragops_shared.spec.ServiceSpec`)."""

from ragops_schemas.topics import Topic
from ragops_shared.spec import Image, Scaling, ServiceSpec

SPEC = ServiceSpec(
    name="evaluation",
    image=Image.MODEL,
    scaling=Scaling.LAG,
    consumer_groups=("ragops-evaluation",),
    reads=(Topic.ANSWER_GENERATED,),
    writes=(Topic.ANSWER_EVALUATED, Topic.DEAD_LETTER),
)

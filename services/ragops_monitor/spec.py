"""Deployment facts of the monitor (see :class:`ragops_shared.spec.ServiceSpec`).

One replica, never scaled: it has no consumer group and keeps its open drift alerts in memory,
so a second replica would raise every alert twice."""

from ragops_schemas.topics import Topic
from ragops_shared.spec import EXPERIMENT_TOPICS, REGISTRY_TOPICS, Image, Scaling, ServiceSpec

SPEC = ServiceSpec(
    name="monitor",
    image=Image.LIGHT,
    scaling=Scaling.SINGLE,
    reads=(*REGISTRY_TOPICS, *EXPERIMENT_TOPICS),
    writes=(
        Topic.DRIFT_DETECTED,
        Topic.DRIFT_RECOVERED,
        Topic.RETRAINING_REQUESTED,
        Topic.EXPERIMENT_CONCLUDED,
        Topic.DEAD_LETTER,
    ),
)

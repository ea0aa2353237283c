"""Deployment facts of the sink (see :class:`ragops_shared.spec.ServiceSpec`).

Exposed: ``POST /sql`` on its ops port is the read-only SQL endpoint of ``ragops sql``, the
monitor and the trainer."""

from ragops_schemas.topics import TOPICS
from ragops_shared.spec import Image, Scaling, ServiceSpec

SPEC = ServiceSpec(
    name="sink",
    image=Image.LIGHT,
    scaling=Scaling.LAG,
    consumer_groups=("ragops-sink",),
    # Writes nothing: a record it cannot parse is stored as ``unparsable``, not dead-lettered.
    reads=tuple(spec.topic for spec in TOPICS if spec.sink),
    exposed=True,
)

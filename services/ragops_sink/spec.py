"""Deployment facts of the sink (see :class:`ragops_shared.spec.ServiceSpec`).

Exposed: ``POST /sql`` on its ops port is the read-only SQL endpoint of ``ragops sql``, the
monitor and the trainer."""

from ragops_shared.spec import Image, Scaling, ServiceSpec

SPEC = ServiceSpec(name="sink", image=Image.LIGHT, scaling=Scaling.LAG, consumer_groups=("ragops-sink",), exposed=True)

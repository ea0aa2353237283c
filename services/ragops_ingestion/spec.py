"""Deployment facts of the ingestion service (see :class:`ragops_shared.spec.ServiceSpec`)."""

from ragops_shared.spec import Image, Scaling, ServiceSpec

SPEC = ServiceSpec(name="ingestion", image=Image.LIGHT, scaling=Scaling.LAG, consumer_groups=("ragops-ingestion",))

"""Deployment facts of the generation service (see :class:`ragops_shared.spec.ServiceSpec`)."""

from ragops_shared.spec import Image, Scaling, ServiceSpec

SPEC = ServiceSpec(name="generation", image=Image.MODEL, scaling=Scaling.LAG, consumer_groups=("ragops-generation",))

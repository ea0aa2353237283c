"""Deployment facts of the feedback service (see :class:`ragops_shared.spec.ServiceSpec`)."""

from ragops_shared.spec import Image, Scaling, ServiceSpec

SPEC = ServiceSpec(name="feedback", image=Image.LIGHT, scaling=Scaling.LAG, consumer_groups=("ragops-feedback",))

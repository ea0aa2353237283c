"""Deployment facts of the trainer (see :class:`ragops_shared.spec.ServiceSpec`).

One replica, never scaled: it runs one fine-tuning or re-index at a time (one record per
batch, minutes of CPU and GiBs of memory each), so a second replica could only idle or run a
second training beside the first. Its group is thus the one consumer group without a KEDA trigger."""

from ragops_shared.spec import Image, Scaling, ServiceSpec

SPEC = ServiceSpec(name="trainer", image=Image.MODEL, scaling=Scaling.SINGLE, consumer_groups=("ragops-trainer",))

"""Deployment facts of the sink (see :class:`ragops_shared.spec.ServiceSpec`).

Exposed: ``POST /sql`` on its ops port is the read-only SQL endpoint of ``ragops sql``, the
monitor and the trainer."""

from ragops_schemas.topics import TOPICS, Topic
from ragops_shared.spec import Image, Scaling, ServiceSpec

EVENTS_GROUP = "ragops-sink"
"""Stores every record of every topic in ``events``."""
AUDIT_GROUP = "ragops-sink-audit"
"""Appends the audited events to ``audit_log``."""
ERASURE_GROUP = "ragops-sink-erasure"
"""Deletes a data subject's rows for each ``ErasureRequested`` and reports."""

SPEC = ServiceSpec(
    name="sink",
    image=Image.LIGHT,
    scaling=Scaling.LAG,
    consumer_groups=(EVENTS_GROUP, AUDIT_GROUP, ERASURE_GROUP),
    # A record it cannot parse is stored as ``unparsable``, not dead-lettered; only an erasure
    # request it cannot apply (invalid, unsigned) is.
    reads=(*(spec.topic for spec in TOPICS if spec.sink), Topic.ERASURE_REQUESTED),
    writes=(Topic.SUBJECT_ERASURE_APPLIED, Topic.DEAD_LETTER),
    exposed=True,
)

"""Deployment facts of the trainer (see :class:`ragops_shared.spec.ServiceSpec`).

One replica, never scaled: it runs one fine-tuning or re-index at a time (one record per
batch, minutes of CPU and GiBs of memory each), so a second replica could only idle or run a
second training beside the first. Its group is thus the one consumer group without a KEDA trigger."""

from ragops_schemas.topics import Topic
from ragops_shared.spec import REGISTRY_TOPICS, Image, Scaling, ServiceSpec

SPEC = ServiceSpec(
    name="trainer",
    image=Image.MODEL,
    scaling=Scaling.SINGLE,
    consumer_groups=("ragops-trainer",),
    reads=(
        Topic.RETRAINING_REQUESTED,
        *REGISTRY_TOPICS,
        # Which requests already ended (restart), and the arrivals of a re-index's documents.
        Topic.RETRAINING_REJECTED,
        Topic.TRAINING_FAILED,
        Topic.CHANGE_REQUESTED,
        Topic.DOCUMENT_INDEXED,
        Topic.DOCUMENT_REJECTED,
        # The histories its actions rebuild from: the corpus, the chunks, the feedback dataset.
        Topic.DOCUMENT_REDACTED,
        Topic.DOCUMENT_CHUNKED,
        Topic.DATASET_EXAMPLE_ADDED,
        # Documents deleted, and data subjects erased (signed requests): the replays skip their documents.
        Topic.DOCUMENT_DELETED,
        Topic.ERASURE_REQUESTED,
    ),
    writes=(
        Topic.RETRAINING_REJECTED,
        Topic.TRAINING_STARTED,
        Topic.TRAINING_FAILED,
        Topic.CANDIDATE_EVALUATED,
        Topic.VERSION_REGISTERED,
        Topic.VERSION_PROMOTED,
        Topic.VERSION_REJECTED,
        # Its production promotions, when they need a person's approval (RAGOPS_TRAINER_PROMOTION).
        Topic.CHANGE_REQUESTED,
        # A corpus refresh re-submits documents; a re-index re-publishes their chunks.
        Topic.DOCUMENT_SUBMITTED,
        Topic.DOCUMENT_CHUNKED,
        Topic.DEAD_LETTER,
    ),
)

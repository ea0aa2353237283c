"""Deployment facts of the gateway (see :class:`ragops_shared.spec.ServiceSpec`).

Stateless HTTP (every replica watches the answer topic itself), so scaled on CPU; its API
port also serves ``/health``, ``/ready`` and ``/metrics``."""

from ragops_schemas.topics import Topic
from ragops_shared.spec import EXPERIMENT_TOPICS, REGISTRY_TOPICS, Image, Scaling, ServiceSpec

CHANGE_TOPICS = (Topic.CHANGE_REQUESTED, Topic.CHANGE_APPROVED, Topic.CHANGE_REJECTED)
ERASURE_TOPICS = (Topic.ERASURE_REQUESTED, Topic.SUBJECT_ERASURE_APPLIED, Topic.SUBJECT_ERASED)

SPEC = ServiceSpec(
    name="gateway",
    image=Image.LIGHT,
    scaling=Scaling.CPU,
    port=8080,
    port_setting="RAGOPS_GATEWAY_PORT",
    # Its replies: the answers, the removals of deleted documents and the dead letters of its
    # requests; the book of changes; the erasures and their proof (GET /v1/erasures/{id}); the
    # registry (the prompt versions and their labels, /v1/prompts; the versions an experiment
    # may name); the experiments (the one running).
    reads=(
        Topic.ANSWER_GENERATED,
        Topic.DOCUMENT_REMOVED,
        Topic.DEAD_LETTER,
        *CHANGE_TOPICS,
        *ERASURE_TOPICS,
        *REGISTRY_TOPICS,
        *EXPERIMENT_TOPICS,
    ),
    writes=(
        Topic.DOCUMENT_SUBMITTED,
        Topic.DOCUMENT_DELETED,
        Topic.QUERY_SUBMITTED,
        Topic.FEEDBACK_SUBMITTED,
        Topic.REVIEW_SUBMITTED,  # a reviewer's label (human review)
        Topic.DEAD_LETTER,
        # The audit trail of what callers did and of every refused call.
        Topic.AUDIT_RECORDED,
        # The control plane: change events, and the effects of approved changes.
        *CHANGE_TOPICS,
        Topic.VERSION_PROMOTED,
        Topic.VERSION_RETIRED,
        Topic.RETRAINING_REQUESTED,
        Topic.ERASURE_REQUESTED,  # an admin's erasure, or an approved erase_subject change
        Topic.VERSION_REGISTERED,  # prompt versions pushed by people, and the seeds
        Topic.EXPERIMENT_STARTED,
        Topic.EXPERIMENT_STOPPED,
        Topic.PRICES_PUBLISHED,  # price lists operators publish (ragops_gateway.prices)
    ),
    exposed=True,
)

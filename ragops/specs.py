"""Every service of the platform, listed once, in start order: the list the platform
supervisor, schema generation and the contract tests read. A new service adds its
``ragops_<name>.spec.SPEC`` here (docs/adding-a-service.md).

Only the ``spec`` modules are imported: no app, model or torch."""

from ragops_embedding.spec import SPEC as EMBEDDING
from ragops_evaluation.spec import SPEC as EVALUATION
from ragops_feedback.spec import SPEC as FEEDBACK
from ragops_gateway.spec import SPEC as GATEWAY
from ragops_generation.spec import SPEC as GENERATION
from ragops_ingestion.spec import SPEC as INGESTION
from ragops_monitor.spec import SPEC as MONITOR
from ragops_privacy.spec import SPEC as PRIVACY
from ragops_retrieval.spec import SPEC as RETRIEVAL
from ragops_shared.spec import ServiceSpec
from ragops_sink.spec import SPEC as SINK
from ragops_trainer.spec import SPEC as TRAINER

SERVICE_SPECS: tuple[ServiceSpec, ...] = (
    PRIVACY,
    INGESTION,
    EMBEDDING,
    RETRIEVAL,
    GENERATION,
    EVALUATION,
    FEEDBACK,
    SINK,
    MONITOR,
    TRAINER,
    GATEWAY,
)

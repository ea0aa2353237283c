"""Operations endpoints and metrics every service serves on its HTTP port
(``RAGOPS_OPS_HOST``/``RAGOPS_OPS_PORT``): ``GET /health`` (liveness: the process serves),
``GET /ready`` (readiness: models/stores loaded and the Kafka cluster answers a ping) and
``GET /metrics`` (Prometheus text format).

Kafka counters and handler latencies come from FastStream's Prometheus middleware
(``faststream_received_messages_total``, ``faststream_published_messages_total``,
``faststream_received_processed_messages_duration_seconds``...); the platform adds dead
letters, batch sizes, model latency/tokens and the work skipped for unchanged input below."""

from collections.abc import Callable

from faststream.asgi import AsgiResponse, HttpHandler, get
from faststream.kafka import KafkaBroker
from prometheus_client import CONTENT_TYPE_LATEST, REGISTRY, Counter, Histogram, generate_latest

DEAD_LETTERS = Counter(
    "ragops_dead_letters_total", "Records sent to the dead-letter topic.", ["service", "topic", "error_type"]
)
BATCH_RECORDS = Histogram(
    "ragops_batch_records",
    "Records per fetched batch a service handled.",
    ["service", "topic"],
    buckets=(1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024, 4096),
)
MODEL_LATENCY = Histogram(
    "ragops_model_latency_seconds",
    "Wall time of one model call on a batch (s).",
    ["service", "model"],
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60),
)
DOCUMENTS_UNCHANGED = Counter(
    "ragops_documents_unchanged_total",
    "Submitted documents whose version was already indexed: acknowledged, nothing re-embedded.",
    ["service"],
)
CHUNKS_REUSED = Counter(
    "ragops_chunks_reused_total",
    "Chunks of changed documents not embedded again: a point for their id and model version existed.",
    ["service"],
)
MODEL_TOKENS = Counter(
    "ragops_model_tokens_total",
    "Tokens read or written by a model (gen_ai.usage.*).",
    ["service", "model", "direction"],
)


def ops_routes(broker: KafkaBroker, ready: Callable[[], bool]) -> list[tuple[str, HttpHandler]]:
    """ASGI routes for a FastStream ``AsgiFastStream`` application.

    Args:
        ready: whether the service finished loading what it needs (models, stores).
    """

    def respond(status: int, body: bytes, content_type: str = "application/json") -> AsgiResponse:
        return AsgiResponse(body, status, headers={"content-type": content_type})

    @get
    async def health(scope: object) -> AsgiResponse:
        return respond(200, b'{"status": "ok"}')

    @get
    async def readiness(scope: object) -> AsgiResponse:
        if not ready():
            return respond(503, b'{"status": "loading"}')
        if not await broker.ping(timeout=2.0):
            return respond(503, b'{"status": "kafka unreachable"}')
        return respond(200, b'{"status": "ready"}')

    @get
    async def metrics(scope: object) -> AsgiResponse:
        return respond(200, generate_latest(REGISTRY), CONTENT_TYPE_LATEST)

    return [("/health", health), ("/ready", readiness), ("/metrics", metrics)]

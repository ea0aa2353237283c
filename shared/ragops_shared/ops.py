"""Operations endpoints and metrics every service serves on its HTTP port
(``RAGOPS_OPS_HOST``/``RAGOPS_OPS_PORT``): ``GET /health`` (liveness: the process serves and
no consumer is stuck), ``GET /ready`` (readiness: models/stores loaded, the Kafka cluster
answers a ping, no consumer is stuck; the body reports each consumer's progress) and
``GET /metrics`` (Prometheus text format, for the ``monitoring`` role only: the probes stay
open because the kubelet calls them without a credential).

A consumer is *stuck* when a batch has stayed unprocessed longer than its threshold
(``KAFKA_STUCK_AFTER_S``, at least the consumer's ``max_poll_interval_ms``): a handler that
hangs, or a batch that fails and is redelivered again and again. Then ``/health`` answers
503 too, because only a restart frees its partitions (Kubernetes restarts on the liveness
probe; a failing readiness probe alone just keeps traffic away, and a consumer takes none).
Kafka being unreachable does not make ``/health`` fail: a restart would not bring it back.

Kafka counters and handler latencies come from FastStream's Prometheus middleware
(``faststream_received_messages_total``, ``faststream_published_messages_total``,
``faststream_received_processed_messages_duration_seconds``...); the platform adds dead
letters, skipped duplicates, batch sizes, model latency/tokens and the work skipped for unchanged
input below."""

import json
import time
import weakref
from collections.abc import Callable, Iterable

from faststream.asgi import AsgiResponse, HttpHandler, get
from faststream.kafka import KafkaBroker
from prometheus_client import CONTENT_TYPE_LATEST, REGISTRY, Counter, Gauge, Histogram, generate_latest

from ragops_shared.access import Guard
from ragops_shared.identity import Role

DEAD_LETTERS = Counter(
    "ragops_dead_letters_total", "Records sent to the dead-letter topic.", ["service", "topic", "error_type"]
)
DUPLICATES = Counter(
    "ragops_duplicate_records_total",
    "Records skipped because an event with their event id was handled already (a redelivery).",
    ["service", "topic"],
)
DEAD_LETTERS_PARKED = Counter(
    "ragops_dead_letters_parked",
    "Dead letters that could not be published after every retry; parked in the error log (a reference to the record).",
    ["service", "topic"],
)
OLDEST_UNPROCESSED_AGE = Gauge(
    "ragops_consumer_oldest_unprocessed_age_seconds",
    "Seconds since the oldest record not yet processed was first fetched (0 when idle).",
    ["group", "topic"],
)
BATCH_ATTEMPTS = Gauge(
    "ragops_consumer_batch_attempts",
    "Times the current batch was tried (fetches of the same offsets and retries in place; 0 when idle).",
    ["group", "topic"],
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


class ConsumerProgress:
    """Progress of one subscriber (a consumer group on a topic): which records it holds
    unprocessed since when, and how often their batch was tried.

    A batch counts as the same one again when it starts at an offset still pending for its
    partition (a nack rewinds there and the records come back): the first time it was seen
    is kept, so a batch failing in a loop ages instead of looking fresh at every fetch.
    """

    def __init__(
        self, group: str, topic: str, stuck_after_s: float, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.group = group
        self.topic = topic
        self.stuck_after_s = stuck_after_s
        self._clock = clock
        self._pending: dict[tuple[str, int], tuple[int, float]] = {}
        self.attempts = 0

    def started(self, records: Iterable[tuple[str, int, int]]) -> None:
        """A batch of (topic, partition, offset) records is about to be handled."""
        now = self._clock()
        first: dict[tuple[str, int], int] = {}
        for topic, partition, offset in records:
            first[topic, partition] = min(offset, first.get((topic, partition), offset))
        again = {tp for tp, offset in first.items() if self._pending.get(tp, (-1, 0.0))[0] == offset}
        self._pending = {tp: (offset, self._pending[tp][1] if tp in again else now) for tp, offset in first.items()}
        self.attempts = self.attempts + 1 if again else 1

    def retried(self) -> None:
        """The current batch is tried again in place."""
        self.attempts += 1

    def finished(self) -> None:
        """The current batch was handled (processed or dead-lettered)."""
        self._pending.clear()
        self.attempts = 0

    def age_s(self) -> float:
        """Seconds since the oldest pending record was first fetched; 0 when idle."""
        return self._clock() - min(since for _, since in self._pending.values()) if self._pending else 0.0

    def stuck(self) -> bool:
        return self.age_s() > self.stuck_after_s

    def report(self) -> dict[str, object]:
        return {
            "group": self.group,
            "topic": self.topic,
            "oldest_unprocessed_age_s": round(self.age_s(), 3),
            "batch_attempts": self.attempts,
            "stuck_after_s": self.stuck_after_s,
            "stuck": self.stuck(),
        }


_CONSUMERS: "weakref.WeakKeyDictionary[KafkaBroker, list[ConsumerProgress]]" = weakref.WeakKeyDictionary()


def track_consumer(broker: KafkaBroker, progress: ConsumerProgress) -> None:
    """Report ``progress`` in the ``/health`` and ``/ready`` of ``broker``'s application and
    as the ``ragops_consumer_*`` gauges (read at scrape time)."""
    _CONSUMERS.setdefault(broker, []).append(progress)
    OLDEST_UNPROCESSED_AGE.labels(progress.group, progress.topic).set_function(progress.age_s)
    BATCH_ATTEMPTS.labels(progress.group, progress.topic).set_function(lambda: progress.attempts)


def consumers_of(broker: KafkaBroker) -> list[ConsumerProgress]:
    return list(_CONSUMERS.get(broker, ()))


def ops_routes(broker: KafkaBroker, ready: Callable[[], bool], guard: Guard) -> list[tuple[str, HttpHandler]]:
    """ASGI routes for a FastStream ``AsgiFastStream`` application.

    ``/health``: 200 ``{"status": "ok"}``, or 503 ``{"status": "stuck", "consumers": [...]}``.
    ``/ready``: 503 ``{"status": "loading" | "kafka unreachable" | "stuck", ...}`` or 200
    ``{"status": "ready", "consumers": [...]}``; each consumer as
    :meth:`ConsumerProgress.report`. ``/metrics``: 401/403 unless the caller has ``monitoring``.

    Args:
        ready: whether the service finished loading what it needs (models, stores).
        guard: who may read ``/metrics``.
    """

    def respond(status: int, body: dict[str, object] | bytes, content_type: str = "application/json") -> AsgiResponse:
        data = body if isinstance(body, bytes) else json.dumps(body).encode()
        return AsgiResponse(data, status, headers={"content-type": content_type})

    def consumers() -> tuple[bool, list[dict[str, object]]]:
        reports = [progress.report() for progress in consumers_of(broker)]
        return any(report["stuck"] for report in reports), reports

    @get
    async def health(scope: object) -> AsgiResponse:
        stuck, reports = consumers()
        if stuck:
            return respond(503, {"status": "stuck", "consumers": reports})
        return respond(200, {"status": "ok"})

    @get
    async def readiness(scope: object) -> AsgiResponse:
        if not ready():
            return respond(503, {"status": "loading"})
        if not await broker.ping(timeout=2.0):
            return respond(503, {"status": "kafka unreachable"})
        stuck, reports = consumers()
        return respond(503 if stuck else 200, {"status": "stuck" if stuck else "ready", "consumers": reports})

    @get
    async def metrics(scope: object) -> AsgiResponse:
        return respond(200, generate_latest(REGISTRY), CONTENT_TYPE_LATEST)

    # /health and /ready stay open: the kubelet's probes carry no credential.
    return [("/health", health), ("/ready", readiness), ("/metrics", guard.protect(metrics, Role.MONITORING))]

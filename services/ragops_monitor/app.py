"""The monitor service: drift and quality signals from ClickHouse, on a schedule.

Every ``interval_s`` it reads, per signal, a reference window (the first
``reference_size`` observations since the baseline) and a current window (the latest
``current_size`` observations after the reference), runs the signal's test
(:mod:`ragops_monitor.drift`) and publishes ``DriftDetected`` when the test fires
``consecutive`` evaluations in a row, ``DriftRecovered`` when it stops firing: one alert
per signal, never a storm. Each detection goes through the retraining policy
(:mod:`ragops_monitor.policy`), which may publish ``RetrainingRequested``.

The baseline is the start of the data, moved to the latest promotion of a corpus, index or
embedding model version (read from the version registry): the new version is the new
normal, so the reference is collected again after it. A prompt promotion does not move it,
so a prompt that makes answers worse shows as drift.

Signals:

- ``query_embedding``: question vectors; a domain classifier's ROC AUC (Evidently's default
  method for embeddings, threshold 0.55) with an MMD permutation p-value.
- ``retrieval_top_similarity``: cosine similarity of each question's nearest chunk; KS, or
  normed Wasserstein for windows above 1,000 (Evidently's choice).
- ``no_context_rate``: share of questions whose nearest chunk is below
  ``no_context_similarity``; one-sided Fisher exact test.
- ``evaluation.<metric>``: the evaluation service's reference-free scores; as the similarity.
- ``negative_feedback_rate``: share of feedback with negative sentiment; Fisher exact.
"""

import asyncio
import contextlib
import math
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Literal

import numpy as np
import structlog
from faststream.asgi import AsgiFastStream
from prometheus_client import Counter, Gauge
from pydantic import Field, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from ragops_analytics import queries
from ragops_analytics.client import AnalyticsSettings
from ragops_analytics.store import Reader
from ragops_monitor.drift import AlertTracker, TestResult, embedding_drift, numeric_drift, proportion_increase
from ragops_monitor.policy import PolicyRule, RetrainingPolicy
from ragops_schemas import DriftDetected, DriftRecovered, Producer, RetrainingRequested
from ragops_schemas.lifecycle import DriftWindow, VersionKind
from ragops_schemas.registry import Registry
from ragops_shared.broker import EventPublisher, make_broker
from ragops_shared.registry import RegistryView
from ragops_shared.service import producer_for, run_service, service_app
from ragops_shared.settings import KafkaSettings, PlatformSettings

SERVICE = "monitor"
log = structlog.get_logger(__name__)

DRIFT_STATISTIC = Gauge("ragops_drift_statistic", "Latest test statistic of a monitored signal.", ["signal", "test"])
DRIFT_ACTIVE = Gauge("ragops_drift_active", "1 while a signal's drift alert is open.", ["signal"])
SIGNAL_CHECKS = Counter(
    "ragops_monitor_checks_total", "Signal checks by outcome: drifted, stable, or waiting for data.", ["signal", "outcome"],
)

Kind = Literal["embedding", "numeric", "proportion"]


class MonitorSettings(BaseSettings):
    """Env prefix ``RAGOPS_MONITOR_``. Thresholds default to Evidently's, except ``alpha``:
    the monitor tests overlapping windows against one reference again and again, so the
    usual 0.05 would alarm many times a day on unchanged traffic. Measured on unchanged
    streams of 2,000 observations (100/50 windows, a test every 10, 2 in a row to alert):
    0.047 alerts per signal at 0.001, none in 150 streams at 0.0001 (the demo's 2,000
    unchanged questions raised 1 alert over 7 signals at 0.001)."""

    model_config = SettingsConfigDict(env_prefix="RAGOPS_MONITOR_", extra="ignore")

    interval_s: float = Field(default=30.0, gt=0, description="Seconds between two evaluations.")
    reference_size: int = Field(default=200, ge=20, description="Observations in a reference window.")
    current_size: int = Field(default=100, ge=10, description="Observations in a current window.")
    min_new: int = Field(default=10, ge=1, description="New observations needed before a signal is tested again.")
    consecutive: int = Field(default=2, ge=1, description="Evaluations in a row that must agree to open or close an alert.")
    alpha: float = Field(default=0.0001, gt=0, lt=1, description="p-value threshold of KS, Fisher and MMD tests.")
    roc_auc_threshold: float = Field(default=0.55, gt=0.5, lt=1, description="Domain-classifier ROC AUC (Evidently).")
    wasserstein_threshold: float = Field(default=0.1, gt=0, description="Normed Wasserstein distance (Evidently).")
    no_context_similarity: float = Field(
        default=0.35, description="A question whose nearest chunk is less similar than this has no good context.",
    )
    evaluation_metrics: list[str] = Field(default=["faithfulness", "answer_relevancy", "context_relevance"])
    rebaseline_on: list[VersionKind] = Field(default=["corpus", "index", "embedding_model"])
    policy: Path | None = Field(default=None, description="Retraining policy TOML; None = the packaged policy.toml.")
    prompt_name: str = Field(default="rag-answer", description="Prompt whose promotions the policy watches.")
    analytics: AnalyticsSettings = Field(default_factory=AnalyticsSettings)
    platform: PlatformSettings = Field(default_factory=PlatformSettings)
    kafka: KafkaSettings = Field(default_factory=KafkaSettings)

    @model_validator(mode="after")
    def _needs_clickhouse(self) -> "MonitorSettings":
        if not self.analytics.configured:
            raise ValueError("the monitor reads ClickHouse: set RAGOPS_ANALYTICS_SQL_URL or RAGOPS_ANALYTICS_CLICKHOUSE_URL")
        return self

    @field_validator("evaluation_metrics")
    @classmethod
    def _metric_names(cls, names: list[str]) -> list[str]:
        # Metric names become signal names (evaluation.<metric>): identifiers only.
        bad = [name for name in names if not name.replace("_", "").replace("@", "").isalnum()]
        if bad:
            raise ValueError(f"not metric names: {bad}")
        return names


@dataclass(frozen=True)
class Signal:
    """One monitored quantity: the observations of ``source`` (a named query of
    :mod:`ragops_analytics.queries`) with ``parameters``, tested as ``kind``."""

    name: str
    kind: Kind
    source: queries.SignalSource
    parameters: dict[str, object] = field(default_factory=dict)


def signals(settings: MonitorSettings) -> list[Signal]:
    return [
        Signal("query_embedding", "embedding", "query_vector"),
        Signal("retrieval_top_similarity", "numeric", "top_similarity"),
        Signal("no_context_rate", "proportion", "no_context", {"no_context_similarity": float(settings.no_context_similarity)}),
        *(
            Signal(f"evaluation.{metric}", "numeric", "evaluation_score", {"metric": metric})
            for metric in settings.evaluation_metrics
        ),
        Signal("negative_feedback_rate", "proportion", "negative_feedback"),
    ]


@dataclass(frozen=True)
class Window:
    times_ms: np.ndarray  # (n,) int64, ms since the epoch, ascending
    values: np.ndarray  # (n,) float64, or (n, d) float32 for embeddings

    def describe(self) -> DriftWindow:
        return DriftWindow(start=_time(self.times_ms[0]), end=_time(self.times_ms[-1]), size=len(self.times_ms))


def _time(ms: int) -> datetime:
    return datetime.fromtimestamp(int(ms) / 1000, UTC)


def read_windows(
    reader: Reader, signal: Signal, since: datetime, reference_size: int, current_size: int,
) -> tuple[Window, Window] | None:
    """The reference and current windows of ``signal`` (blocking: run in a thread), or None
    while there are not yet ``reference_size`` + ``current_size`` observations since ``since``."""

    def window(rows: list[tuple[int, object]]) -> Window:
        rows = sorted(rows, key=lambda row: row[0])
        times = np.array([row[0] for row in rows], dtype=np.int64)
        if signal.kind == "embedding":
            values = np.array([row[1] for row in rows], dtype=np.float32).reshape(len(rows), -1 if rows else 0)
        else:
            values = np.array([row[1] for row in rows], dtype=np.float64)
        return Window(times, values)

    reference = window(queries.reference_window(
        reader, signal.source, signal.parameters, since_ms=int(since.timestamp() * 1000), size=reference_size,
    ))
    if len(reference.times_ms) < reference_size:
        return None
    current = window(queries.current_window(
        reader, signal.source, signal.parameters, after_ms=int(reference.times_ms[-1]), size=current_size,
    ))
    if len(current.times_ms) < current_size:
        return None
    return reference, current


def run_test(kind: Kind, reference: np.ndarray, current: np.ndarray, settings: MonitorSettings) -> TestResult:
    """The signal kind's test with the configured thresholds (see the module docstring)."""
    if kind == "embedding":
        # A permutation p-value cannot go below 1 / (permutations + 1): enough of them to reach alpha.
        permutations = max(2000, math.ceil(2 / settings.alpha))
        return embedding_drift(
            reference, current, roc_auc_threshold=settings.roc_auc_threshold, alpha=settings.alpha,
            n_permutations=permutations,
        )
    if kind == "numeric":
        return numeric_drift(reference, current, alpha=settings.alpha, wasserstein_threshold=settings.wasserstein_threshold)
    return proportion_increase(
        int(reference.sum()), len(reference), int(current.sum()), len(current), alpha=settings.alpha,
    )


@dataclass
class _Alert:
    alert_id: str
    detected: DriftDetected


@dataclass
class _Pending:
    rule: PolicyRule
    detected: DriftDetected


class Monitor:
    """The evaluation loop's state and one evaluation (:meth:`tick`). ``publish`` is the
    event sink; SQL and statistics run in worker threads."""

    def __init__(
        self, settings: MonitorSettings, analytics: Reader, registry: Registry, producer: Producer,
        policy: RetrainingPolicy,
    ) -> None:
        self.settings = settings
        self.analytics = analytics
        self.registry = registry
        self.producer = producer
        self.policy = policy
        self.signals = signals(settings)
        self.tracker = AlertTracker(consecutive=settings.consecutive)
        self.alerts: dict[str, _Alert] = {}
        self.pending: list[_Pending] = []
        self.last_request: dict[str, datetime] = {}
        self._evaluated_until: dict[str, int] = {}

    def baseline(self) -> datetime:
        return self.registry.last_promotion(self.settings.rebaseline_on) or datetime.fromtimestamp(0, UTC)

    async def tick(self) -> list[DriftDetected | DriftRecovered | RetrainingRequested]:
        """Evaluate every signal whose current window moved on; returns the events to publish."""
        since = self.baseline()
        out: list[DriftDetected | DriftRecovered | RetrainingRequested] = []
        for signal in self.signals:
            try:
                windows = await asyncio.to_thread(
                    read_windows, self.analytics, signal, since, self.settings.reference_size, self.settings.current_size,
                )
            except Exception as error:  # noqa: BLE001 - one broken signal must not stop the others
                log.warning("signal unavailable", signal=signal.name, error=str(error))
                continue
            if windows is None:
                SIGNAL_CHECKS.labels(signal.name, "waiting").inc()
                continue
            reference, current = windows
            new = int((current.times_ms > self._evaluated_until.get(signal.name, 0)).sum())
            if new < self.settings.min_new:
                SIGNAL_CHECKS.labels(signal.name, "waiting").inc()
                continue
            self._evaluated_until[signal.name] = int(current.times_ms[-1])
            result = await asyncio.to_thread(run_test, signal.kind, reference.values, current.values, self.settings)
            DRIFT_STATISTIC.labels(signal.name, result.test).set(result.statistic)
            SIGNAL_CHECKS.labels(signal.name, "drifted" if result.drifted else "stable").inc()
            change = self.tracker.update(signal.name, result)
            if change == "detected":
                detected = self._detected(signal.name, result, reference, current)
                out.append(detected)
                out += self._apply_policy(detected, reference)
            elif change == "recovered" and signal.name in self.alerts:
                out.append(self._recovered(signal.name, result, reference, current))
            DRIFT_ACTIVE.labels(signal.name).set(1 if self.tracker.active(signal.name) else 0)
        out += await self._release_pending()
        return out

    def _fields(self, signal: str, result: TestResult, reference: Window, current: Window) -> dict[str, object]:
        return {
            "signal": signal, "test": result.test, "statistic": result.statistic, "threshold": result.threshold,
            "threshold_on": result.threshold_on, "p_value": result.p_value,
            "reference": reference.describe(), "current": current.describe(),
        }

    def _detected(self, signal: str, result: TestResult, reference: Window, current: Window) -> DriftDetected:
        alert_id = uuid.uuid4().hex
        event = DriftDetected(
            producer=self.producer, tenant=self.settings.platform.tenant, alert_id=alert_id,
            **self._fields(signal, result, reference, current),
        )
        self.alerts[signal] = _Alert(alert_id, event)
        log.warning("drift detected", signal=signal, test=result.test, statistic=result.statistic, p_value=result.p_value)
        return event

    def _recovered(self, signal: str, result: TestResult, reference: Window, current: Window) -> DriftRecovered:
        alert = self.alerts.pop(signal)
        log.info("drift recovered", signal=signal, test=result.test, statistic=result.statistic)
        return alert.detected.caused(
            DriftRecovered, self.producer, alert_id=alert.alert_id, detected_event_id=str(alert.detected.event_id),
            **self._fields(signal, result, reference, current),
        )

    def _apply_policy(self, detected: DriftDetected, reference: Window) -> list[RetrainingRequested]:
        requests = []
        for rule in self.policy.rules_for(detected.signal):
            if rule.only_if_prompt_changed:
                changed = self.registry.promoted_at("prompt", self.settings.prompt_name)
                if changed is None or changed < _time(reference.times_ms[0]):
                    continue
            if rule.min_examples_after:
                self.pending.append(_Pending(rule, detected))
                continue
            requests += self._request(rule, detected, f"{detected.signal} drifted ({detected.test})")
        return requests

    def _request(self, rule: PolicyRule, detected: DriftDetected, reason: str) -> list[RetrainingRequested]:
        last = self.last_request.get(rule.name)
        now = datetime.now(UTC)
        if last is not None and (now - last).total_seconds() < rule.cooldown_s:
            log.info("retraining rule in cooldown", rule=rule.name)
            return []
        self.last_request[rule.name] = now
        return [detected.caused(
            RetrainingRequested, self.producer, derived_id=rule.name,
            action=rule.action, reason=reason, rule=rule.name, evidence=[str(detected.event_id)],
        )]

    async def _release_pending(self) -> list[RetrainingRequested]:
        """Rules waiting for feedback gathered after their alert: fire those that have it."""
        requests: list[RetrainingRequested] = []
        for pending in list(self.pending):
            added = await asyncio.to_thread(queries.dataset_examples_since, self.analytics, pending.detected.occurred_at)
            if added >= pending.rule.min_examples_after:
                self.pending.remove(pending)
                requests += self._request(
                    pending.rule, pending.detected,
                    f"{pending.detected.signal} drifted ({pending.detected.test}); {added} dataset examples gathered since",
                )
        return requests

    def restore(self) -> None:
        """After a restart: reopen the alerts ClickHouse shows open and the rules' cooldowns
        and pending requests, so a restart neither repeats nor forgets an alert."""
        open_ids = queries.open_drift_alerts(self.analytics)
        answered: set[tuple[str, str]] = set()
        for rule, (last, evidence) in queries.retraining_requests_by_rule(self.analytics).items():
            self.last_request[rule] = last
            answered |= {(rule, event_id) for event_id in evidence}
        for signal, event_id in open_ids.items():
            payload = queries.event_payload(self.analytics, event_id)
            if payload is None:
                continue
            detected = DriftDetected.model_validate_json(payload)
            self.alerts[signal] = _Alert(detected.alert_id, detected)
            self.tracker.restore(signal)
            self.pending += [
                _Pending(rule, detected) for rule in self.policy.rules_for(signal)
                if rule.min_examples_after and (rule.name, event_id) not in answered
            ]


async def run_forever(monitor: Monitor, publish: Callable[[object], object], interval_s: float) -> None:
    """The schedule: restore the open alerts once ClickHouse answers, then evaluate, publish,
    sleep; an error is logged and the next tick retries."""
    while True:
        try:
            await asyncio.to_thread(monitor.restore)
            break
        except Exception as error:  # noqa: BLE001 - ClickHouse (the sink) may start after us
            log.warning("cannot read open alerts yet", error=str(error))
            await asyncio.sleep(interval_s)
    while True:
        try:
            for event in await monitor.tick():
                await publish(event)
        except Exception:
            log.exception("monitor tick failed")
        await asyncio.sleep(interval_s)


def create_app(settings: MonitorSettings | None = None) -> AsgiFastStream:
    settings = settings or MonitorSettings()
    broker = make_broker(settings.kafka, f"ragops-{SERVICE}")
    producer = producer_for(SERVICE)
    publisher = EventPublisher(broker, producer, [DriftDetected, DriftRecovered, RetrainingRequested])
    registry = RegistryView(settings.kafka, client_id=f"ragops-{SERVICE}-registry")
    monitor = Monitor(
        settings, settings.analytics.client(), registry.registry, producer, RetrainingPolicy.load(settings.policy),
    )
    app = service_app(SERVICE, __doc__ or "", broker)
    app.on_startup(registry.start)
    task: dict[str, asyncio.Task[None]] = {}

    @app.after_startup
    async def start_schedule() -> None:
        task["loop"] = asyncio.create_task(run_forever(monitor, publisher.publish, settings.interval_s))

    @app.on_shutdown
    async def stop_schedule() -> None:
        if "loop" in task:
            task["loop"].cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task["loop"]

    app.after_shutdown(registry.stop)
    return app


def main() -> None:
    run_service(SERVICE, MonitorSettings, create_app)

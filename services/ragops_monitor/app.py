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

Every ``experiment_interval_s`` it also analyses the running experiments and concludes them
(:mod:`ragops_monitor.experiments`), signing each ``ExperimentConcluded`` with its own key.
"""

import asyncio
import contextlib
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Literal, TypedDict

import structlog
from faststream.asgi import AsgiFastStream
from prometheus_client import Counter, Gauge

from ragops_analytics import queries
from ragops_analytics.store import Reader
from ragops_models.defaults import shipped_model_dirs
from ragops_monitor.alerts import AlertTracker
from ragops_monitor.drift import TestResult
from ragops_monitor.experiments import Conclusions, ExperimentConcluder, conclude_forever
from ragops_monitor.policy import PolicyRule, RetrainingPolicy
from ragops_monitor.settings import MonitorSettings
from ragops_monitor.signals import run_test, signals
from ragops_monitor.spec import SPEC
from ragops_monitor.windows import Window, read_windows
from ragops_schemas import DriftDetected, DriftRecovered, Event, Producer, RetrainingRequested
from ragops_schemas.experiments import ExperimentConcluded
from ragops_schemas.ids import new_alert_id
from ragops_schemas.lifecycle import DriftWindow
from ragops_schemas.registry import Registry
from ragops_shared.broker import EventPublisher, make_broker
from ragops_shared.registry_view import EXPERIMENT_READERS, ControlView, ExperimentView, RegistryView
from ragops_shared.service import producer_for, run_service, service_app
from ragops_shared.signing import signer_for, verifier_for

SERVICE = SPEC.name
log = structlog.get_logger(__name__)

DRIFT_STATISTIC = Gauge("ragops_drift_statistic", "Latest test statistic of a monitored signal.", ["signal", "test"])
DRIFT_ACTIVE = Gauge("ragops_drift_active", "1 while a signal's drift alert is open.", ["signal"])
SIGNAL_CHECKS = Counter(
    "ragops_monitor_checks_total",
    "Signal checks by outcome: drifted, stable, or waiting for data.",
    ["signal", "outcome"],
)


class _TestFields(TypedDict):
    """The fields DriftDetected and DriftRecovered share: one signal's test outcome."""

    signal: str
    test: str
    statistic: float
    threshold: float
    threshold_on: Literal["p_value", "statistic"]
    p_value: float | None
    reference: DriftWindow
    current: DriftWindow


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
        self,
        settings: MonitorSettings,
        analytics: Reader,
        registry: Registry,
        producer: Producer,
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
                    read_windows,
                    self.analytics,
                    signal,
                    since,
                    self.settings.reference_size,
                    self.settings.current_size,
                )
            except Exception as error:  # noqa: BLE001 - one broken signal must not stop the others
                log.warning("signal_unavailable", signal=signal.name, error=str(error))
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

    def _fields(self, signal: str, result: TestResult, reference: Window, current: Window) -> _TestFields:
        return {
            "signal": signal,
            "test": result.test,
            "statistic": result.statistic,
            "threshold": result.threshold,
            "threshold_on": result.threshold_on,
            "p_value": result.p_value,
            "reference": reference.describe(),
            "current": current.describe(),
        }

    def _detected(self, signal: str, result: TestResult, reference: Window, current: Window) -> DriftDetected:
        alert_id = new_alert_id()
        event = DriftDetected(
            producer=self.producer,
            tenant=self.settings.platform.tenant,
            alert_id=alert_id,
            **self._fields(signal, result, reference, current),
        )
        self.alerts[signal] = _Alert(alert_id, event)
        log.warning(
            "drift_detected", signal=signal, test=result.test, statistic=result.statistic, p_value=result.p_value
        )
        return event

    def _recovered(self, signal: str, result: TestResult, reference: Window, current: Window) -> DriftRecovered:
        alert = self.alerts.pop(signal)
        log.info("drift_recovered", signal=signal, test=result.test, statistic=result.statistic)
        return alert.detected.caused(
            DriftRecovered,
            self.producer,
            alert_id=alert.alert_id,
            detected_event_id=str(alert.detected.event_id),
            **self._fields(signal, result, reference, current),
        )

    def _apply_policy(self, detected: DriftDetected, reference: Window) -> list[RetrainingRequested]:
        requests = []
        for rule in self.policy.rules_for(detected.signal):
            if rule.only_if_prompt_changed:
                changed = self.registry.promoted_at("prompt", self.settings.prompt_name)
                if changed is None or changed < reference.start:
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
            log.info("retraining_rule_in_cooldown", rule=rule.name)
            return []
        self.last_request[rule.name] = now
        return [
            detected.caused(
                RetrainingRequested,
                self.producer,
                scope=rule.name,
                action=rule.action,
                reason=reason,
                rule=rule.name,
                evidence=[str(detected.event_id)],
            )
        ]

    async def _release_pending(self) -> list[RetrainingRequested]:
        """Rules waiting for feedback gathered after their alert: fire those that have it."""
        requests: list[RetrainingRequested] = []
        for pending in list(self.pending):
            added = await asyncio.to_thread(
                queries.dataset_examples_since, self.analytics, pending.detected.occurred_at
            )
            if added >= pending.rule.min_examples_after:
                self.pending.remove(pending)
                requests += self._request(
                    pending.rule,
                    pending.detected,
                    f"{pending.detected.signal} drifted ({pending.detected.test}); "
                    f"{added} dataset examples gathered since",
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
                _Pending(rule, detected)
                for rule in self.policy.rules_for(signal)
                if rule.min_examples_after and (rule.name, event_id) not in answered
            ]


async def run_forever(monitor: Monitor, publish: Callable[[Event], Awaitable[None]], interval_s: float) -> None:
    """The schedule: restore the open alerts once ClickHouse answers, then evaluate, publish,
    sleep; an error is logged and the next tick retries."""
    while True:
        try:
            await asyncio.to_thread(monitor.restore)
            break
        except Exception as error:  # noqa: BLE001 - ClickHouse (the sink) may start after us
            log.warning("open_alerts_unreadable_yet", error=str(error))
            await asyncio.sleep(interval_s)
    while True:
        try:
            for event in await monitor.tick():
                await publish(event)
        except Exception:
            log.exception("monitor_tick_failed")
        await asyncio.sleep(interval_s)


def create_app(settings: MonitorSettings | None = None) -> AsgiFastStream:
    settings = settings or MonitorSettings()
    broker = make_broker(settings.kafka, f"ragops-{SERVICE}")
    producer = producer_for(SERVICE)
    publisher = EventPublisher(
        broker,
        producer,
        [DriftDetected, DriftRecovered, RetrainingRequested, ExperimentConcluded],
        signer=signer_for(settings.platform, SERVICE),
    )
    verifier = verifier_for(settings.platform, shipped_model_dirs())
    registry = RegistryView(
        settings.kafka, client_id=f"ragops-{SERVICE}-registry", verifier=verifier, dead_letters=publisher
    )
    experiments = ExperimentView(
        settings.kafka, client_id=f"ragops-{SERVICE}-experiments", verifier=verifier, dead_letters=publisher
    )
    # The conclusions already made, winners included (which the book does not record); the
    # experiment view dead-letters what this one refuses too.
    conclusions = Conclusions()
    concluded = ControlView(
        settings.kafka,
        f"ragops-{SERVICE}-conclusions",
        [ExperimentConcluded],
        conclusions.apply,
        verifier=verifier,
        readers=EXPERIMENT_READERS,
    )
    analytics = settings.analytics.client()
    monitor = Monitor(settings, analytics, registry.registry, producer, RetrainingPolicy.load(settings.policy))
    concluder = ExperimentConcluder(analytics, producer, experiments.book, conclusions)
    app = service_app(SERVICE, __doc__ or "", broker, platform=settings.platform)
    for view in (registry, experiments, concluded):
        app.on_startup(view.start)
    app.after_startup(registry.send_dead_letters)  # once the broker can publish them
    app.after_startup(experiments.send_dead_letters)
    task: dict[str, asyncio.Task[None]] = {}

    @app.after_startup
    async def start_schedule() -> None:
        task["loop"] = asyncio.create_task(run_forever(monitor, publisher.publish, settings.interval_s))
        task["experiments"] = asyncio.create_task(
            conclude_forever(concluder, publisher.publish, settings.experiment_interval_s)
        )

    @app.on_shutdown
    async def stop_schedule() -> None:
        for running in task.values():
            running.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await running

    for view in (registry, experiments, concluded):
        app.after_shutdown(view.stop)
    app.after_shutdown(analytics.close)
    return app


def main() -> None:
    run_service(SERVICE, MonitorSettings, create_app)

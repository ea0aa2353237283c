"""The monitor concludes experiments: every ``experiment_interval_s`` it analyses each running
experiment (the verified :class:`~ragops_shared.registry_view.ExperimentView`) with
:func:`ragops_analytics.experiments.experiment_results` (each variant against the control, on
the primary metric and the guardrails, mSPRT with Bonferroni) and publishes one
``ExperimentConcluded`` once :func:`ragops_analytics.experiments.decide` supports a decision.

- ``harmful`` / ``loser``: ``rolled_back`` is the policy's ``auto_rollback``; a rolled-back
  experiment ends (every :class:`~ragops_schemas.experiments.ExperimentBook` stops counting it
  as running, so the embedding service assigns no more units to it: all traffic back on the
  production version).
- ``winner``: ``rolled_back`` False; the experiment goes on until an operator promotes the
  winner and stops it.

One conclusion per experiment: its event id is derived from the start's (a republish after a
restart, or by a second replica, is the same event), and the verified conclusions already on
the topic (:class:`Conclusions`, read from its start) are never concluded again.
"""

import asyncio
from collections.abc import Awaitable, Callable

import structlog
from prometheus_client import Counter

from ragops_analytics.experiments import Decision, decide, experiment_results
from ragops_analytics.store import Reader
from ragops_schemas import Event, Producer
from ragops_schemas.experiments import ExperimentBook, ExperimentConcluded, ExperimentStarted, VariantResult

log = structlog.get_logger(__name__)

EXPERIMENTS_CONCLUDED = Counter(
    "ragops_experiments_concluded_total", "Experiments the monitor concluded, by decision.", ["decision"]
)


class Conclusions:
    """The verified ``ExperimentConcluded`` events seen so far, by experiment id (the first of
    each): the fold of a :class:`~ragops_shared.registry_view.ControlView` of the conclusion
    topic. A winner's conclusion does not end its experiment, so the book cannot tell it was
    concluded; this can."""

    def __init__(self) -> None:
        self._concluded: dict[str, ExperimentConcluded] = {}

    def apply(self, event: Event) -> bool:
        if not isinstance(event, ExperimentConcluded) or event.experiment_id in self._concluded:
            return False
        self._concluded[event.experiment_id] = event
        return True

    def __contains__(self, experiment_id: object) -> bool:
        return experiment_id in self._concluded


def conclusion(
    started: ExperimentStarted, results: list[VariantResult], decision: Decision, producer: Producer
) -> ExperimentConcluded:
    """The unsigned ``ExperimentConcluded`` of ``decision`` on ``started`` (the publisher signs
    it), its event id derived from the start's: one conclusion per experiment."""
    return started.caused(
        ExperimentConcluded,
        producer,
        experiment_id=started.experiment_id,
        decision=decision.decision,
        variant=decision.variant,
        metric=decision.metric,
        results=results,
        rolled_back=decision.decision != "winner" and started.policy.auto_rollback,
        reason=decision.reason,
    )


class ExperimentConcluder:
    """One analysis of every running experiment (:meth:`tick`); ``book`` and ``concluded`` are
    the monitor's verified views, ``analytics`` its ClickHouse (read in worker threads)."""

    def __init__(self, analytics: Reader, producer: Producer, book: ExperimentBook, concluded: Conclusions) -> None:
        self.analytics = analytics
        self.producer = producer
        self.book = book
        self.concluded = concluded
        self._published: set[str] = set()

    async def tick(self, publish: Callable[[Event], Awaitable[None]]) -> list[ExperimentConcluded]:
        """Analyse each running experiment not concluded yet; publish (and return) the
        conclusions the test supports. One experiment's error is logged and the others go on."""
        out = []
        for started in self.book.running():
            experiment = started.experiment_id
            if experiment in self.concluded or experiment in self._published:
                continue
            try:
                results = await asyncio.to_thread(experiment_results, self.analytics, started)
            except Exception as error:  # noqa: BLE001 - ClickHouse may be down: the next tick retries
                log.warning("experiment_unreadable", experiment_id=experiment, error=str(error))
                continue
            decision = decide(started, results)
            if decision is None:
                continue
            event = conclusion(started, results, decision, self.producer)
            await publish(event)
            self._published.add(experiment)
            EXPERIMENTS_CONCLUDED.labels(decision.decision).inc()
            log.warning(
                "experiment_concluded",
                experiment_id=experiment,
                decision=decision.decision,
                variant=decision.variant,
                metric=decision.metric,
                rolled_back=event.rolled_back,
            )
            out.append(event)
        return out


async def conclude_forever(
    concluder: ExperimentConcluder, publish: Callable[[Event], Awaitable[None]], interval_s: float
) -> None:
    """The schedule: analyse, publish, sleep ``interval_s``; an error is logged and the next
    tick retries (a conclusion whose publication failed is published at the next one)."""
    while True:
        try:
            await concluder.tick(publish)
        except Exception:
            log.exception("experiment_tick_failed")
        await asyncio.sleep(interval_s)

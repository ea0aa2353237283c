"""The trainer service: acts on ``RetrainingRequested`` (group ``ragops-trainer``), one
request at a time, and reports every step as an event.

- ``refresh_corpus``: submit the documents of the configured sources (JSONL corpora) that
  are new or changed since they were last submitted, wait until each is indexed (or
  rejected), then register and promote the corpus version.
- ``reindex``: rebuild the index by replay: re-publish the latest retained
  ``DocumentChunked`` of every document with an ``index_build`` target, so the embedding
  service embeds them (with the build's model version) and the indexer writes a new
  collection beside the live one; when every document is indexed, promote the build (the
  retrieval service switches to it in one step).
- ``finetune_embedding``: (question, passage) pairs from the feedback dataset (a passage of
  a referenced document that holds the reference answer), contrastive fine-tuning within a
  time bound, registration of the model with its training-data snapshot, hit@5 of the
  candidate and of the live model on held-out questions; promoted only if the candidate is
  better (after its index is built by replay), otherwise rejected with both numbers.
- ``rollback_prompt``: promote the earlier prompt version whose answers scored better.

A request it cannot act on ends in ``RetrainingRejected``; a run that breaks or runs out of
time in ``TrainingFailed``. Nothing is promoted half-way: the live versions serve until a
``VersionPromoted``. With ``RAGOPS_TRAINER_PROMOTION=approval`` a production promotion is a
``ChangeRequested`` instead, which a person approves at the gateway (four eyes). A redelivered
request whose outcome (or final promotion request) is already on record is skipped.
"""

from collections.abc import Awaitable, Callable, Sequence

import structlog
from faststream.asgi import AsgiFastStream

from ragops_models.defaults import shipped_model_dirs
from ragops_schemas import (
    CandidateEvaluated,
    DocumentChunked,
    DocumentSubmitted,
    Event,
    RetrainingRejected,
    RetrainingRequested,
    TrainingFailed,
    TrainingStarted,
    VersionPromoted,
    VersionRegistered,
    VersionRejected,
)
from ragops_schemas.changes import ChangeRequested, PromoteChange
from ragops_schemas.lifecycle import RetrainingAction, VersionKind
from ragops_shared.broker import EventPublisher, EventSubscriber, make_broker
from ragops_shared.registry_view import RegistryView
from ragops_shared.service import producer_for, run_service, service_app
from ragops_shared.signing import signer_for, verifier_for
from ragops_trainer.actions import finetune_embedding, refresh_corpus, reindex, rollback_prompt
from ragops_trainer.context import SERVICE, ActionRejected, TrainerContext, read_topics
from ragops_trainer.settings import TrainerSettings
from ragops_trainer.spec import SPEC

log = structlog.get_logger(__name__)

ACTIONS: dict[str, Callable[[TrainerContext, RetrainingRequested], Awaitable[object]]] = {
    "refresh_corpus": refresh_corpus.run,
    "reindex": reindex.run,
    "finetune_embedding": finetune_embedding.run,
    "rollback_prompt": rollback_prompt.run,
}
# The alias whose move ends a request of each action (a redelivered request with it on
# record is not run again).
FINAL_KIND: dict[RetrainingAction, VersionKind] = {
    "refresh_corpus": "corpus",
    "reindex": "index",
    "finetune_embedding": "embedding_model",
    "rollback_prompt": "prompt",
}


class Trainer:
    """Acts on requests one at a time (:meth:`handle`) and remembers which are answered."""

    def __init__(self, context: TrainerContext) -> None:
        self.context = context
        self.finished: set[str] = set()
        # (request event id, version kind) of the promotions it asked a person to approve.
        self.requested: set[tuple[str, str]] = set()

    async def restore(self) -> None:
        """Requests already answered (rejected, failed, or their final promotion requested
        under the approval policy) before a restart."""
        ended = await read_topics(
            self.context.settings.kafka,
            [RetrainingRejected, TrainingFailed, ChangeRequested],
            f"ragops-{SERVICE}-history",
        )
        for event in ended:
            if isinstance(event, RetrainingRejected | TrainingFailed):
                self.finished.add(event.request_event_id)
            elif isinstance(event, ChangeRequested) and isinstance(event.change, PromoteChange):
                change = event.change
                if change.request_event_id is not None:
                    self.requested.add((change.request_event_id, change.version.kind))

    def _done(self, request: RetrainingRequested) -> bool:
        kind = FINAL_KIND[request.action]
        if str(request.event_id) in self.finished or (str(request.event_id), kind) in self.requested:
            return True
        return any(
            (state.promoted and state.promoted.request_event_id == str(request.event_id))
            or (state.rejected and state.rejected.request_event_id == str(request.event_id))
            for state in self.context.registry.versions(kind)
        )

    async def handle(self, requests: Sequence[RetrainingRequested]) -> list[Event]:
        """Act on each request; steps are published as they happen, so nothing is returned."""
        for request in requests:
            if self._done(request):
                log.info("request_already_answered", request=str(request.event_id))
                continue
            await self._act(request)
        return []

    async def _act(self, request: RetrainingRequested) -> None:
        context, producer = self.context, self.context.producer
        step = {"request_event_id": str(request.event_id), "action": request.action}
        try:
            await ACTIONS[request.action](context, request)
        except ActionRejected as reason:
            log.warning("retraining_request_rejected", action=request.action, reason=str(reason))
            await context.publish(request.caused(RetrainingRejected, producer, reason=str(reason), **step))
        except TimeoutError as error:  # a document wait, or the training bound (TrainingTimeout)
            await context.publish(
                request.caused(
                    TrainingFailed,
                    producer,
                    reason=f"ran out of time: {error}",
                    timed_out=True,
                    **step,
                )
            )
        except Exception as error:
            log.exception("training_run_failed", action=request.action)
            await context.publish(
                request.caused(
                    TrainingFailed,
                    producer,
                    reason=f"{type(error).__name__}: {error}",
                    **step,
                )
            )
        self.finished.add(str(request.event_id))


def create_app(settings: TrainerSettings | None = None) -> AsgiFastStream:
    settings = settings or TrainerSettings()
    broker = make_broker(settings.kafka, f"ragops-{SERVICE}")
    producer = producer_for(SERVICE)
    publisher = EventPublisher(
        broker,
        producer,
        [
            RetrainingRejected,
            TrainingStarted,
            TrainingFailed,
            CandidateEvaluated,
            VersionRegistered,
            VersionPromoted,
            VersionRejected,
            ChangeRequested,
            DocumentChunked,
            DocumentSubmitted,
        ],
        signer=signer_for(settings.platform, SERVICE),
    )
    registry = RegistryView(
        settings.kafka,
        client_id=f"ragops-{SERVICE}-registry",
        verifier=verifier_for(settings.platform, shipped_model_dirs()),
        dead_letters=publisher,
    )
    analytics = settings.analytics.client() if settings.analytics.configured else None
    trainer = Trainer(TrainerContext(settings, publisher, registry.registry, analytics))
    requests = EventSubscriber(
        broker,
        publisher,
        RetrainingRequested,
        kafka=settings.kafka,
        group_id=SPEC.group,
        max_records=1,
        # A run may take the whole training and build time: the group must not take it for dead.
        max_poll_interval_ms=int((settings.max_train_seconds + 2 * settings.build_timeout_s + 600) * 1000),
    )

    @requests
    async def on_retraining_requested(events: list[RetrainingRequested]) -> None:
        await requests.run(events, trainer.handle)

    app = service_app(SERVICE, __doc__ or "", broker, platform=settings.platform)
    app.on_startup(registry.start)
    app.after_startup(registry.send_dead_letters)  # once the broker can publish them
    app.on_startup(trainer.restore)
    app.after_shutdown(registry.stop)
    if analytics is not None:
        app.after_shutdown(analytics.close)
    return app


def main() -> None:
    run_service(SERVICE, TrainerSettings, create_app)

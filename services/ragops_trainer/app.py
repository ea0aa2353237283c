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
``VersionPromoted``. A redelivered request whose outcome is already on record is skipped.
"""

import asyncio
import hashlib
import random
import shutil
import uuid
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import structlog
from faststream.asgi import AsgiFastStream
from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict
from scipy.stats import binomtest

from ragops_analytics import queries
from ragops_analytics.client import AnalyticsClient, AnalyticsSettings
from ragops_schemas import (
    CandidateEvaluated,
    DatasetExampleAdded,
    DocumentChunked,
    DocumentIndexed,
    DocumentRejected,
    DocumentSubmitted,
    Event,
    Producer,
    RetrainingRejected,
    RetrainingRequested,
    TrainingFailed,
    TrainingStarted,
    VersionPromoted,
    VersionRegistered,
    VersionRejected,
)
from ragops_schemas.events import IndexBuild
from ragops_schemas.lifecycle import VersionRef
from ragops_schemas.registry import Registry, VersionState, index_name
from ragops_shared.broker import EventPublisher, EventSubscriber, make_broker
from ragops_shared.datasets import load_corpus, load_questions
from ragops_shared.models import DEFAULT_EMBEDDING_MODEL_NAME
from ragops_shared.registry import RegistryView
from ragops_shared.service import producer_for, run_service, service_app
from ragops_shared.settings import KafkaSettings, PlatformSettings
from ragops_shared.watch import EventWatcher
from ragops_trainer.pairs import TrainingPair, latest_documents, training_pairs

SERVICE = "trainer"
log = structlog.get_logger(__name__)

# The alias whose move ends a request of each action (a redelivered request with it on
# record is not run again).
FINAL_KIND = {"refresh_corpus": "corpus", "reindex": "index", "finetune_embedding": "embedding_model",
              "rollback_prompt": "prompt"}


class TrainerSettings(BaseSettings):
    """Env prefix ``RAGOPS_TRAINER_``."""

    model_config = SettingsConfigDict(env_prefix="RAGOPS_TRAINER_", extra="ignore")

    corpus: str = Field(default="default", pattern=r"^[a-zA-Z0-9_-]+$", description="Same as the retrieval service's.")
    sources: list[Path] = Field(default_factory=list, description="Corpus JSONL files refresh_corpus reads.")
    embedding_model_name: str = Field(default=DEFAULT_EMBEDDING_MODEL_NAME, description="Registry name of the model.")
    holdout: Path | None = Field(default=None, description="Held-out questions (SQuAD JSONL); None = a share of the feedback.")
    holdout_size: int = Field(default=300, ge=10, description="Held-out questions sampled from `holdout`.")
    holdout_share: float = Field(default=0.2, gt=0, lt=1, description="Share of feedback pairs held out without `holdout`.")
    min_pairs: int = Field(default=50, ge=2, description="Fewer usable training pairs: the request is rejected.")
    epochs: int = Field(default=3, ge=1, description="3 epochs of ~200 pairs raised held-out hit@5 by 3-4 points; 1 was not reliably enough.")
    batch_size: int = Field(default=16, ge=2)
    learning_rate: float = Field(default=2e-5, gt=0)
    max_train_seconds: float = Field(default=900.0, gt=0, description="Training wall-time bound (s).")
    min_improvement: float = Field(default=0.0, ge=0, description="hit@5 the candidate must gain over the live model.")
    promotion_alpha: float | None = Field(
        default=None, gt=0, lt=1,
        description="Also require McNemar's exact test p-value below this (None: a higher hit@5 is enough).",
    )
    build_timeout_s: float = Field(default=1800.0, gt=0, description="Wait for replayed or refreshed documents (s).")
    quality_metric: str = Field(default="faithfulness", pattern=r"^[a-z_@0-9]+$")
    min_answers: int = Field(default=30, ge=1, description="Answers a prompt version needs for its quality to count.")
    prompt_name: str = Field(default="rag-answer", pattern=r"^[a-zA-Z0-9_.-]+$")
    analytics: AnalyticsSettings = Field(default_factory=AnalyticsSettings)
    platform: PlatformSettings = Field(default_factory=PlatformSettings)
    kafka: KafkaSettings = Field(default_factory=KafkaSettings)

    @property
    def models_dir(self) -> Path:
        return self.platform.data_dir / "models" / "embedding"


class Rejected(Exception):
    """The request cannot be acted on (unknown version, too little data...): its reason."""


def mcnemar_p_value(candidate: np.ndarray, live: np.ndarray) -> float:
    """Two-sided exact McNemar test of paired hit/miss outcomes (bool arrays of shape
    ``(questions,)``): a binomial test of the questions only the candidate gets right against
    those only the live model gets right (scipy.stats.binomtest, p = 0.5). 1.0 when the two
    models disagree on no question."""
    gained, lost = int((candidate & ~live).sum()), int((~candidate & live).sum())
    return 1.0 if gained + lost == 0 else float(binomtest(gained, gained + lost, 0.5).pvalue)


def content_sha(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()[:16]


async def read_topics(kafka: KafkaSettings, types: Sequence[type[Event]], client_id: str, timeout_s: float = 120.0) -> list[Event]:
    """Every retained event of ``types``' topics. Raises ``TimeoutError`` if they are not
    read within ``timeout_s``."""
    events: list[Event] = []
    watcher = EventWatcher(kafka, types, client_id=client_id, from_beginning=True)
    watcher.listen(events.append)
    await watcher.start()
    try:
        if not await watcher.caught_up(timeout_s):
            raise TimeoutError(f"retained {', '.join(t.__name__ for t in types)} not read within {timeout_s:.0f} s")
    finally:
        await watcher.stop()
    return events


class _Arrivals:
    """Waits for one outcome event per document id (``DocumentIndexed`` of a build, or of
    live traffic, or ``DocumentRejected``), watching from before the requests are published."""

    def __init__(self, kafka: KafkaSettings, build_id: str | None) -> None:
        self.build_id = build_id
        self.done: dict[str, Event] = {}
        self._changed = asyncio.Event()
        self._watcher = EventWatcher(kafka, [DocumentIndexed, DocumentRejected], client_id=f"ragops-{SERVICE}-arrivals")
        self._watcher.listen(self._seen)

    def _seen(self, event: Event) -> None:
        if isinstance(event, DocumentIndexed):
            build = event.index_build.build_id if event.index_build else None
            if build != self.build_id:
                return
        elif not isinstance(event, DocumentRejected):
            return
        self.done[event.document_id] = event
        self._changed.set()

    async def __aenter__(self) -> "_Arrivals":
        await self._watcher.start()
        return self

    async def __aexit__(self, *_: object) -> None:
        await self._watcher.stop()

    async def wait(self, document_ids: set[str], timeout_s: float) -> None:
        """Raises ``TimeoutError`` naming how many documents did not arrive in time."""
        async with asyncio.timeout(timeout_s):
            while not document_ids <= self.done.keys():
                self._changed.clear()
                await self._changed.wait()


class Trainer:
    def __init__(
        self, settings: TrainerSettings, publisher: EventPublisher, registry: Registry, analytics: AnalyticsClient | None,
    ) -> None:
        self.settings = settings
        self.publisher = publisher
        self.producer: Producer = publisher.producer
        self.registry = registry
        self.analytics = analytics
        self.finished: set[str] = set()

    async def restore(self) -> None:
        """Requests already answered (rejected, failed) before a restart."""
        ended = await read_topics(self.settings.kafka, [RetrainingRejected, TrainingFailed], f"ragops-{SERVICE}-history")
        self.finished |= {event.request_event_id for event in ended}  # type: ignore[attr-defined]

    def _done(self, request: RetrainingRequested) -> bool:
        if str(request.event_id) in self.finished:
            return True
        kind = FINAL_KIND[request.action]
        return any(
            (state.promoted and state.promoted.request_event_id == str(request.event_id))
            or (state.rejected and state.rejected.request_event_id == str(request.event_id))
            for state in self.registry.versions(kind)  # type: ignore[arg-type]
        )

    async def handle(self, requests: Sequence[RetrainingRequested]) -> list[Event]:
        """Act on each request; steps are published as they happen, so nothing is returned."""
        for request in requests:
            if self._done(request):
                log.info("request already answered", request=str(request.event_id))
                continue
            await self._act(request)
        return []

    async def _act(self, request: RetrainingRequested) -> None:
        step = {"request_event_id": str(request.event_id), "action": request.action}
        try:
            action = {
                "refresh_corpus": self.refresh_corpus, "reindex": self.reindex,
                "finetune_embedding": self.finetune, "rollback_prompt": self.rollback_prompt,
            }[request.action]
            await action(request)
        except Rejected as reason:
            log.warning("retraining request rejected", action=request.action, reason=str(reason))
            await self.publish(request.caused(RetrainingRejected, self.producer, derived_id=True, reason=str(reason), **step))
        except TimeoutError as error:  # a document wait, or the training bound (TrainingTimeout)
            await self.publish(request.caused(
                TrainingFailed, self.producer, derived_id=True, reason=f"ran out of time: {error}", timed_out=True, **step,
            ))
        except Exception as error:  # noqa: BLE001 - any failure ends the run with its reason, live versions untouched
            log.exception("training run failed", action=request.action)
            await self.publish(request.caused(
                TrainingFailed, self.producer, derived_id=True, reason=f"{type(error).__name__}: {error}", **step,
            ))
        self.finished.add(str(request.event_id))

    async def publish(self, event: Event) -> None:
        await self.publisher.publish(event)
        self.registry.apply(event)  # our own registry events count at once, not when read back

    async def started(self, request: RetrainingRequested, **inputs: object) -> None:
        await self.publish(request.caused(
            TrainingStarted, self.producer, derived_id=True, request_event_id=str(request.event_id),
            action=request.action, inputs={key: str(value) for key, value in inputs.items()},
        ))

    # ------------------------------------------------------------------ versions

    def live_model(self) -> VersionState:
        """The production embedding model, else the one the embedding service registered
        first. Raises :class:`Rejected` when the registry knows none."""
        name = self.settings.embedding_model_name
        state = self.registry.alias("embedding_model", name)
        if state is None:
            state = next((s for s in self.registry.versions("embedding_model", name)
                          if s.registered and s.registered.parent_version is None), None)
        if state is None or not state.uri:
            raise Rejected(f"no registered version of embedding model {name!r}")
        return state

    # ------------------------------------------------------------------ reindex

    async def reindex(self, request: RetrainingRequested, *, embedding_version: str | None = None) -> VersionPromoted:
        """Rebuild the index of ``embedding_version`` (default: the request's target, else the
        live model) by replay and promote it. Returns the promotion."""
        name = self.settings.embedding_model_name
        target = request.target
        if embedding_version is None and target is not None:
            if target.kind != "embedding_model" or self.registry.get("embedding_model", target.name, target.version) is None:
                raise Rejected(f"unknown version {target.kind}/{target.name}@{target.version}")
            embedding_version = target.version
        version = embedding_version or self.live_model().ref.version
        model = self.registry.get("embedding_model", name, version)
        documents = latest_documents(await read_topics(self.settings.kafka, [DocumentChunked], f"ragops-{SERVICE}-chunks"))
        if not documents:
            raise Rejected("nothing to re-index: no retained DocumentChunked events")
        alias = index_name(self.settings.corpus, name, version)
        build_id = f"b{request.event_id.hex[:12]}"
        # The files travel with the replay: the embedding service need not have read the
        # registration yet (it checks that the files are that version).
        build = IndexBuild(build_id=build_id, collection=f"{alias}__{build_id}", embedding_version=version,
                           embedding_uri=model.uri if model else None)
        if request.action == "reindex":
            await self.started(request, embedding_version=version, documents=len(documents), build=build_id)
        await self.publish(request.caused(
            VersionRegistered, self.producer, derived_id=f"index:{build_id}", kind="index", name=alias, version=build_id,
            uri=build.collection, parent_version=version, request_event_id=str(request.event_id),
            metadata={"embedding_version": version, "documents": str(len(documents))},
        ))
        replayed: dict[str, str] = {}
        async with _Arrivals(self.settings.kafka, build_id) as arrivals:
            # Two passes at most: documents that changed while the first one ran are replayed again.
            for _ in range(2):
                pending = [doc for doc in documents.values() if replayed.get(doc.document_id) != doc.document_version]
                if not pending:
                    break
                for document in pending:
                    await self.publisher.publish(document.caused(
                        DocumentChunked, self.producer, derived_id=build_id, index_build=build,
                        **document.model_dump(include={"document_id", "document_version", "title", "source", "metadata",
                                                       "content_type", "chunker", "chunks"}),
                    ))
                    replayed[document.document_id] = document.document_version
                    arrivals.done.pop(document.document_id, None)
                await arrivals.wait({doc.document_id for doc in pending}, self.settings.build_timeout_s)
                documents = latest_documents(await read_topics(self.settings.kafka, [DocumentChunked], f"ragops-{SERVICE}-chunks"))
        previous = self.registry.alias("index", alias)
        promotion = request.caused(
            VersionPromoted, self.producer, derived_id=f"index:{build_id}", kind="index", name=alias, version=build_id,
            uri=build.collection, previous_version=previous.ref.version if previous else None,
            reason=f"re-indexed {len(replayed)} documents by replay ({request.reason})",
            request_event_id=str(request.event_id), metrics={"documents": float(len(replayed))},
        )
        await self.publish(promotion)
        return promotion

    # ------------------------------------------------------------------ refresh

    async def refresh_corpus(self, request: RetrainingRequested) -> None:
        if not self.settings.sources:
            raise Rejected("no corpus sources configured (RAGOPS_TRAINER_SOURCES)")
        documents = [document for source in self.settings.sources for document in load_corpus(source)]
        submitted: dict[str, str] = {}
        for event in await read_topics(self.settings.kafka, [DocumentSubmitted], f"ragops-{SERVICE}-submitted"):
            submitted[event.document_id] = content_sha(event.content)  # type: ignore[attr-defined]
        new = [doc for doc in documents if submitted.get(doc.id) != content_sha(doc.text)]
        if not new:
            raise Rejected(f"the sources hold nothing new ({len(documents)} documents, all submitted already)")
        await self.started(request, sources=",".join(map(str, self.settings.sources)), new_documents=len(new))
        async with _Arrivals(self.settings.kafka, None) as arrivals:
            for document in new:
                event = document.submitted(self.producer, self.settings.platform.tenant)
                await self.publisher.publish(event.model_copy(update={
                    "event_id": uuid.uuid5(request.event_id, f"{document.id}:{content_sha(document.text)}"),
                    "trace_id": request.trace_id,
                }))
            await arrivals.wait({doc.id for doc in new}, self.settings.build_timeout_s)
        rejected = sum(isinstance(arrivals.done[doc.id], DocumentRejected) for doc in new)
        submitted |= {doc.id: content_sha(doc.text) for doc in new}
        version = hashlib.sha256("\n".join(f"{k}:{v}" for k, v in sorted(submitted.items())).encode()).hexdigest()[:16]
        previous = self.registry.alias("corpus", self.settings.corpus)
        await self.publish(request.caused(
            VersionRegistered, self.producer, derived_id="corpus", kind="corpus", name=self.settings.corpus, version=version,
            request_event_id=str(request.event_id), metadata={"documents": str(len(submitted)), "added": str(len(new))},
        ))
        await self.publish(request.caused(
            VersionPromoted, self.producer, derived_id="corpus", kind="corpus", name=self.settings.corpus, version=version,
            previous_version=previous.ref.version if previous else None, request_event_id=str(request.event_id),
            reason=f"{len(new) - rejected} new or changed documents indexed from the sources ({request.reason})",
            metrics={"added": float(len(new) - rejected), "rejected": float(rejected), "documents": float(len(submitted))},
        ))

    # ------------------------------------------------------------------ fine-tune

    def holdout_questions(self, train: list[TrainingPair], documents: dict[str, DocumentChunked]) -> list[tuple[str, set[str]]]:
        """Held-out (question, gold document ids): the configured question set minus the
        training questions, restricted to documents in the index."""
        assert self.settings.holdout is not None
        trained = {pair.question for pair in train}
        questions = [
            (q.question, set(q.context_ids) & documents.keys())
            for q in load_questions(self.settings.holdout)
            if q.question not in trained and set(q.context_ids) & documents.keys()
        ]
        random.Random(0).shuffle(questions)
        return questions[: self.settings.holdout_size]

    async def finetune(self, request: RetrainingRequested) -> None:
        # torch is imported here, not at start: an idle trainer stays ~200 MiB smaller.
        from ragops_embedding.embedder import weights_version
        from ragops_trainer.finetune import finetune_embedding, hits_at_k

        settings = self.settings
        live = self.live_model()
        examples = [e for e in await read_topics(settings.kafka, [DatasetExampleAdded], f"ragops-{SERVICE}-examples")
                    if isinstance(e, DatasetExampleAdded)]
        documents = latest_documents(await read_topics(settings.kafka, [DocumentChunked], f"ragops-{SERVICE}-chunks"))
        pairs = training_pairs(examples, documents)
        if len(pairs) < settings.min_pairs:
            raise Rejected(
                f"too little data: {len(pairs)} usable (question, passage) pairs from {len(examples)} dataset examples; "
                f"{settings.min_pairs} needed (RAGOPS_TRAINER_MIN_PAIRS)"
            )
        snapshot = hashlib.sha256("\n".join(sorted(e.example_id for e in examples)).encode()).hexdigest()[:16]
        if settings.holdout is not None:
            train, questions = pairs, self.holdout_questions(pairs, documents)
        else:
            by_passage = {chunk.text: document_id for document_id, doc in documents.items() for chunk in doc.chunks}
            held = {p for p in pairs if int(hashlib.sha256(p.question.encode()).hexdigest(), 16) % 100 < settings.holdout_share * 100}
            train = [p for p in pairs if p not in held]
            questions = [(p.question, {by_passage[p.passage]}) for p in held]
        if len(questions) < 10:
            raise Rejected(f"too few held-out questions to compare models: {len(questions)} (10 needed)")
        await self.publish(request.caused(
            VersionRegistered, self.producer, derived_id="dataset", kind="dataset", name="feedback", version=snapshot,
            request_event_id=str(request.event_id), metadata={"examples": str(len(examples)), "pairs": str(len(pairs))},
        ))
        await self.started(request, base_version=live.ref.version, training_data=snapshot, pairs=len(train),
                           heldout_questions=len(questions))
        settings.models_dir.mkdir(parents=True, exist_ok=True)
        scratch = settings.models_dir / f".run-{request.event_id.hex[:12]}"
        result = await asyncio.to_thread(
            finetune_embedding, Path(live.uri or ""), train, scratch, epochs=settings.epochs, batch_size=settings.batch_size,
            learning_rate=settings.learning_rate, max_seconds=settings.max_train_seconds,
            torch_threads=settings.platform.torch_threads,
        )
        version = weights_version(result.model_dir)
        model_dir = settings.models_dir / version
        if model_dir.exists():
            shutil.rmtree(result.model_dir)
        else:
            result.model_dir.rename(model_dir)
        name = settings.embedding_model_name
        await self.publish(request.caused(
            VersionRegistered, self.producer, derived_id="embedding_model", kind="embedding_model", name=name,
            version=version, uri=str(model_dir), parent_version=live.ref.version, training_data=snapshot,
            request_event_id=str(request.event_id),
            metadata={"pairs": str(len(train)), "steps": str(result.steps), "seconds": f"{result.seconds:.1f}",
                      "first_loss": f"{result.first_loss:.4f}", "last_loss": f"{result.last_loss:.4f}"},
        ))
        await self.publish(request.caused(
            VersionPromoted, self.producer, derived_id="candidate", kind="embedding_model", name=name, version=version,
            alias="candidate", uri=str(model_dir), request_event_id=str(request.event_id),
            reason=f"fine-tuned on {len(train)} feedback pairs; evaluating against the live model",
        ))
        passages = [(document_id, chunk.text) for document_id, doc in documents.items() for chunk in doc.chunks]
        live_hits = await asyncio.to_thread(hits_at_k, Path(live.uri or ""), passages, questions, k=5,
                                            torch_threads=settings.platform.torch_threads)
        candidate_hits = await asyncio.to_thread(hits_at_k, model_dir, passages, questions, k=5,
                                                 torch_threads=settings.platform.torch_threads)
        live_hit, candidate_hit = float(live_hits.mean()), float(candidate_hits.mean())
        p_value = mcnemar_p_value(candidate_hits, live_hits)
        promote = candidate_hit > live_hit + settings.min_improvement and (
            settings.promotion_alpha is None or p_value < settings.promotion_alpha
        )
        metrics = {"hit_rate@5_candidate": candidate_hit, "hit_rate@5_live": live_hit, "questions": float(len(questions)),
                   "mcnemar_p_value": p_value}
        await self.publish(request.caused(
            CandidateEvaluated, self.producer, derived_id=True, request_event_id=str(request.event_id),
            action=request.action, candidate=VersionRef(kind="embedding_model", name=name, version=version),
            live=live.ref, metric="hit_rate@5", candidate_value=candidate_hit, live_value=live_hit,
            questions=len(questions), p_value=p_value, decision="promote" if promote else "reject",
        ))
        if not promote:
            await self.publish(request.caused(
                VersionRejected, self.producer, derived_id="embedding_model", kind="embedding_model", name=name,
                version=version, request_event_id=str(request.event_id), metrics=metrics,
                reason=f"hit@5 {candidate_hit:.3f} does not beat the live model's {live_hit:.3f} "
                       f"(+{settings.min_improvement:.3f} needed, McNemar p {p_value:.3f}"
                       f"{'' if settings.promotion_alpha is None else f' vs {settings.promotion_alpha}'}) "
                       f"on {len(questions)} held-out questions",
            ))
            return
        # Queries switch to the new model only once its index is complete.
        await self.reindex(request, embedding_version=version)
        await self.publish(request.caused(
            VersionPromoted, self.producer, derived_id="embedding_model", kind="embedding_model", name=name,
            version=version, uri=str(model_dir), previous_version=live.ref.version, request_event_id=str(request.event_id),
            metrics=metrics, reason=f"hit@5 {candidate_hit:.3f} > live {live_hit:.3f} on {len(questions)} held-out questions "
                                    f"(McNemar p {p_value:.3f})",
        ))

    # ------------------------------------------------------------------ prompt rollback

    async def rollback_prompt(self, request: RetrainingRequested) -> None:
        if self.analytics is None:
            raise Rejected("no ClickHouse to read prompt quality from (RAGOPS_ANALYTICS_*)")
        name, metric = self.settings.prompt_name, self.settings.quality_metric
        rows = await asyncio.to_thread(queries.prompt_quality, self.analytics, name, metric)
        production = self.registry.alias("prompt", name)
        quality = {row.version: (row.mean, row.answers) for row in rows}
        current = production.ref.version if production else (max(rows, key=lambda r: r.last_served).version if rows else None)
        if current is None or current not in quality:
            raise Rejected(f"no {metric} scores for prompt {name!r} in production yet")
        last_served = {row.version: row.last_served for row in rows}
        better = [
            (last_served[version], mean, version) for version, (mean, n) in quality.items()
            if version != current and n >= self.settings.min_answers and mean > quality[current][0]
            and not self.registry.is_retired("prompt", name, version)
        ]
        if not better:
            raise Rejected(f"no earlier version of prompt {name!r} scored better {metric} than version {current} "
                           f"({quality[current][0]:.3f}) over at least {self.settings.min_answers} answers")
        _, mean, version = max(better)  # the last version that served and was better
        await self.started(request, prompt=name, current_version=current)
        await self.publish(request.caused(
            VersionPromoted, self.producer, derived_id="prompt", kind="prompt", name=name, version=version,
            previous_version=current, request_event_id=str(request.event_id),
            reason=f"rolled back: version {version} scored {metric} {mean:.3f} vs {quality[current][0]:.3f} for {current}",
            metrics={f"{metric}_restored": mean, f"{metric}_replaced": quality[current][0]},
        ))


def create_app(settings: TrainerSettings | None = None) -> AsgiFastStream:
    settings = settings or TrainerSettings()
    broker = make_broker(settings.kafka, f"ragops-{SERVICE}")
    producer = producer_for(SERVICE)
    publisher = EventPublisher(broker, producer, [
        RetrainingRejected, TrainingStarted, TrainingFailed, CandidateEvaluated, VersionRegistered, VersionPromoted,
        VersionRejected, DocumentChunked, DocumentSubmitted,
    ])
    registry = RegistryView(settings.kafka, client_id=f"ragops-{SERVICE}-registry")
    trainer = Trainer(settings, publisher, registry.registry, settings.analytics.client() if settings.analytics.configured else None)
    requests = EventSubscriber(
        broker, publisher, RetrainingRequested, kafka=settings.kafka, group_id="ragops-trainer", max_records=1,
        # A run may take the whole training and build time: the group must not take it for dead.
        max_poll_interval_ms=int((settings.max_train_seconds + 2 * settings.build_timeout_s + 600) * 1000),
    )

    @requests
    async def on_retraining_requested(events: list[RetrainingRequested]) -> None:
        await requests.run(events, trainer.handle)

    app = service_app(SERVICE, __doc__ or "", broker)
    app.on_startup(registry.start)
    app.on_startup(trainer.restore)
    app.after_shutdown(registry.stop)
    return app


def main() -> None:
    run_service(SERVICE, TrainerSettings, create_app)

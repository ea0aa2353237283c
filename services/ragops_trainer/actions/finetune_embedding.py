"""``finetune_embedding``: (question, passage) pairs from the feedback dataset (a passage of a
referenced document that holds the reference answer), contrastive fine-tuning within a time
bound, registration of the model with its training-data snapshot, hit@5 of the candidate and
of the live model on held-out questions; promoted only if the candidate is better (after its
index is built by replay), otherwise rejected with both numbers.

Steps: :func:`gather` the data, :func:`train` and register the candidate, :func:`evaluate`
both models, :func:`decide`."""

import asyncio
import random
import shutil
from dataclasses import dataclass
from pathlib import Path

from ragops_analytics.paired import mcnemar_exact
from ragops_schemas import (
    CandidateEvaluated,
    DatasetExampleAdded,
    DocumentChunked,
    DocumentDeleted,
    ErasureRequested,
    RetrainingRequested,
    VersionPromoted,
    VersionRegistered,
    VersionRejected,
)
from ragops_schemas.ids import dataset_version, holdout_bucket
from ragops_schemas.lifecycle import VersionRef
from ragops_schemas.registry import VersionState
from ragops_shared.datasets import load_questions
from ragops_shared.shredding import FileKeyStore, Shredder
from ragops_trainer.actions import reindex
from ragops_trainer.context import ActionRejected, TrainerContext
from ragops_trainer.pairs import TrainingPair, latest_documents, readable_examples, training_pairs
from ragops_trainer.settings import TrainerSettings

HeldOut = list[tuple[str, set[str]]]
"""Held-out (question, gold document ids)."""


@dataclass(frozen=True)
class TrainingData:
    """What one fine-tune learns from and is judged on."""

    examples: list[DatasetExampleAdded]  # readable ones, opened
    erased: int  # examples skipped: their user was erased
    documents: dict[str, DocumentChunked]  # the latest live version of each document
    pairs: list[TrainingPair]  # every usable pair
    train: list[TrainingPair]  # the pairs trained on
    questions: HeldOut
    snapshot: str  # the dataset version: a hash of the example ids


@dataclass(frozen=True)
class Candidate:
    """The fine-tuned model, registered."""

    version: str
    model_dir: Path


@dataclass(frozen=True)
class Evaluation:
    """hit@5 of both models on the held-out questions."""

    candidate_hit: float
    live_hit: float
    p_value: float  # McNemar's exact test of the paired outcomes

    def metrics(self, questions: int) -> dict[str, float]:
        return {
            "hit_rate@5_candidate": self.candidate_hit,
            "hit_rate@5_live": self.live_hit,
            "questions": float(questions),
            "mcnemar_p_value": self.p_value,
        }


def holdout_questions(
    settings: TrainerSettings, train: list[TrainingPair], documents: dict[str, DocumentChunked]
) -> HeldOut:
    """Held-out (question, gold document ids): the configured question set minus the
    training questions, restricted to documents in the index."""
    assert settings.holdout is not None
    trained = {pair.question for pair in train}
    questions = [
        (q.question, set(q.context_ids) & documents.keys())
        for q in load_questions(settings.holdout)
        if q.question not in trained and set(q.context_ids) & documents.keys()
    ]
    random.Random(0).shuffle(questions)
    return questions[: settings.holdout_size]


async def gather(ctx: TrainerContext) -> TrainingData:
    """The pairs and held-out questions from the retained dataset examples and documents.
    Raises :class:`ActionRejected` when there are too few of either."""
    settings = ctx.settings
    retained = [e for e in await ctx.read([DatasetExampleAdded], "examples") if isinstance(e, DatasetExampleAdded)]
    # Production: a KMS- or Vault-backed key store; the file store is on the volume the
    # feedback and privacy services share.
    shredder = Shredder(FileKeyStore.under(settings.platform.data_dir))
    examples, erased = await asyncio.to_thread(readable_examples, retained, shredder)
    documents = latest_documents(
        await ctx.read([DocumentChunked, DocumentDeleted, ErasureRequested], "chunks"), ctx.verifier
    )
    pairs = training_pairs(examples, documents)
    if len(pairs) < settings.min_pairs:
        raise ActionRejected(
            f"too little data: {len(pairs)} usable (question, passage) pairs from {len(examples)} dataset examples "
            f"({erased} more skipped: their users were erased); "
            f"{settings.min_pairs} needed (RAGOPS_TRAINER_MIN_PAIRS)"
        )
    snapshot = dataset_version(e.example_id for e in examples)
    if settings.holdout is not None:
        train, questions = pairs, holdout_questions(settings, pairs, documents)
    else:
        by_passage = {chunk.text: document_id for document_id, doc in documents.items() for chunk in doc.chunks}
        held = {p for p in pairs if holdout_bucket(p.question) < settings.holdout_share * 100}
        train = [p for p in pairs if p not in held]
        questions = [(p.question, {by_passage[p.passage]}) for p in held]
    if len(questions) < 10:
        raise ActionRejected(f"too few held-out questions to compare models: {len(questions)} (10 needed)")
    return TrainingData(examples, erased, documents, pairs, train, questions, snapshot)


async def train(ctx: TrainerContext, request: RetrainingRequested, live: VersionState, data: TrainingData) -> Candidate:
    """Fine-tune the live model on the training pairs, keep it under its weights' version
    and register it (also as the ``candidate`` alias)."""
    # torch is imported here, not at start: an idle trainer stays ~200 MiB smaller.
    from ragops_models.weights import weights_version
    from ragops_trainer.finetune import finetune_embedding

    settings = ctx.settings
    settings.models_dir.mkdir(parents=True, exist_ok=True)
    scratch = settings.models_dir / f".run-{request.event_id.hex[:12]}"
    result = await asyncio.to_thread(
        finetune_embedding,
        Path(live.uri or ""),
        data.train,
        scratch,
        epochs=settings.epochs,
        batch_size=settings.batch_size,
        learning_rate=settings.learning_rate,
        max_seconds=settings.max_train_seconds,
        torch_threads=settings.platform.torch_threads,
    )
    version = weights_version(result.model_dir)
    model_dir = settings.models_dir / version
    if model_dir.exists():
        shutil.rmtree(result.model_dir)
    else:
        result.model_dir.rename(model_dir)
    name = settings.embedding_model_name
    await ctx.publish(
        request.caused(
            VersionRegistered,
            ctx.producer,
            scope="embedding_model",
            kind="embedding_model",
            name=name,
            version=version,
            uri=str(model_dir),
            parent_version=live.ref.version,
            training_data=data.snapshot,
            request_event_id=str(request.event_id),
            metadata={
                "pairs": str(len(data.train)),
                "steps": str(result.steps),
                "seconds": f"{result.seconds:.1f}",
                "first_loss": f"{result.first_loss:.4f}",
                "last_loss": f"{result.last_loss:.4f}",
            },
        )
    )
    await ctx.publish(
        request.caused(
            VersionPromoted,
            ctx.producer,
            scope="candidate",
            kind="embedding_model",
            name=name,
            version=version,
            alias="candidate",
            uri=str(model_dir),
            request_event_id=str(request.event_id),
            reason=f"fine-tuned on {len(data.train)} feedback pairs; evaluating against the live model",
        )
    )
    return Candidate(version, model_dir)


async def evaluate(ctx: TrainerContext, live: VersionState, candidate: Candidate, data: TrainingData) -> Evaluation:
    """hit@5 of the live model and of the candidate over every chunk of the documents."""
    from ragops_trainer.finetune import hits_at_k

    threads = ctx.settings.platform.torch_threads
    passages = [(document_id, chunk.text) for document_id, doc in data.documents.items() for chunk in doc.chunks]
    live_hits = await asyncio.to_thread(
        hits_at_k, Path(live.uri or ""), passages, data.questions, k=5, torch_threads=threads
    )
    candidate_hits = await asyncio.to_thread(
        hits_at_k, candidate.model_dir, passages, data.questions, k=5, torch_threads=threads
    )
    p_value = mcnemar_exact(live_hits, candidate_hits)
    # No question on which the models disagree: no evidence of a difference (p = 1).
    return Evaluation(float(candidate_hits.mean()), float(live_hits.mean()), 1.0 if p_value is None else p_value)


async def decide(
    ctx: TrainerContext,
    request: RetrainingRequested,
    live: VersionState,
    candidate: Candidate,
    data: TrainingData,
    evaluation: Evaluation,
) -> None:
    """Publish the comparison; promote the candidate (once its index is built) if it beats
    the live model by the required margin (and significance), else reject it."""
    settings, name, questions = ctx.settings, ctx.settings.embedding_model_name, len(data.questions)
    candidate_hit, live_hit, p_value = evaluation.candidate_hit, evaluation.live_hit, evaluation.p_value
    promote = candidate_hit > live_hit + settings.min_improvement and (
        settings.promotion_alpha is None or p_value < settings.promotion_alpha
    )
    await ctx.publish(
        request.caused(
            CandidateEvaluated,
            ctx.producer,
            request_event_id=str(request.event_id),
            action=request.action,
            candidate=VersionRef(kind="embedding_model", name=name, version=candidate.version),
            live=live.ref,
            metric="hit_rate@5",
            candidate_value=candidate_hit,
            live_value=live_hit,
            questions=questions,
            p_value=p_value,
            decision="promote" if promote else "reject",
        )
    )
    if not promote:
        await ctx.publish(
            request.caused(
                VersionRejected,
                ctx.producer,
                scope="embedding_model",
                kind="embedding_model",
                name=name,
                version=candidate.version,
                request_event_id=str(request.event_id),
                metrics=evaluation.metrics(questions),
                reason=f"hit@5 {candidate_hit:.3f} does not beat the live model's {live_hit:.3f} "
                f"(+{settings.min_improvement:.3f} needed, McNemar p {p_value:.3f}"
                f"{'' if settings.promotion_alpha is None else f' vs {settings.promotion_alpha}'}) "
                f"on {questions} held-out questions",
            )
        )
        return
    # Queries switch to the new model only once its index is complete.
    await reindex.run(ctx, request, embedding_version=candidate.version)
    await ctx.publish(
        request.caused(
            VersionPromoted,
            ctx.producer,
            scope="embedding_model",
            kind="embedding_model",
            name=name,
            version=candidate.version,
            uri=str(candidate.model_dir),
            previous_version=live.ref.version,
            request_event_id=str(request.event_id),
            metrics=evaluation.metrics(questions),
            reason=(
                f"hit@5 {candidate_hit:.3f} > live {live_hit:.3f} on {questions} held-out questions "
                f"(McNemar p {p_value:.3f})"
            ),
        )
    )


async def run(ctx: TrainerContext, request: RetrainingRequested) -> None:
    live = ctx.live_model()
    data = await gather(ctx)
    await ctx.publish(
        request.caused(
            VersionRegistered,
            ctx.producer,
            scope="dataset",
            kind="dataset",
            name="feedback",
            version=data.snapshot,
            request_event_id=str(request.event_id),
            metadata={
                "examples": str(len(data.examples)),
                "erased_examples": str(data.erased),
                "pairs": str(len(data.pairs)),
            },
        )
    )
    await ctx.started(
        request,
        base_version=live.ref.version,
        training_data=data.snapshot,
        pairs=len(data.train),
        heldout_questions=len(data.questions),
    )
    candidate = await train(ctx, request, live, data)
    evaluation = await evaluate(ctx, live, candidate, data)
    await decide(ctx, request, live, candidate, data, evaluation)

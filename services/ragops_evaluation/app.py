"""The evaluation service: consumes ``AnswerGenerated`` and publishes ``AnswerEvaluated``
with one score per metric, each naming the method that produced it.

Reference-free scores (faithfulness, answer_relevancy, context_relevance) are computed for
every answer, or for a deterministic sample of them (``RAGOPS_EVALUATION_SAMPLE_RATE``);
answers that carry an evaluation context (offline runs, questions with a reference) are
always scored, and also get the reference-based scores (exact_match, f1, contains_answer,
context_recall, hit@k). Definitions and their approximations: ``ragops_evaluation.metrics``.
Model inference runs in a worker thread."""

import asyncio
from collections.abc import Sequence

from faststream.asgi import AsgiFastStream

from ragops_evaluation.metrics import reference_free_scores, reference_scores
from ragops_evaluation.settings import EvaluationSettings
from ragops_evaluation.spec import SPEC
from ragops_models.defaults import DEFAULT_EMBEDDING_MODEL_NAME, default_embedding_model_dir
from ragops_models.device import compute_spec
from ragops_models.embedder import Embedder
from ragops_schemas import AnswerEvaluated, AnswerGenerated, EvaluationScore, Producer
from ragops_schemas.ids import sample_fraction
from ragops_shared.broker import EventPublisher, EventSubscriber, make_broker
from ragops_shared.citations import strip_markers
from ragops_shared.service import producer_for, run_service, service_app

SERVICE = SPEC.name


def sampled(request_id: str, rate: float) -> bool:
    """Deterministic sampling on the request id: a redelivered answer gets the same decision."""
    return sample_fraction(request_id) < rate


def evaluate(
    embedder: Embedder, producer: Producer, sample_rate: float, events: Sequence[AnswerGenerated]
) -> list[AnswerEvaluated]:
    """Score the sampled answers of a batch (blocking: run it in a worker thread)."""
    evaluated = []
    for answer in events:
        context = answer.evaluation
        if context is None and not sampled(answer.request_id, sample_rate):
            continue
        # Scored as what it says: the [n] citation markers are not words of the answer.
        said = strip_markers(answer.answer)
        scores = reference_free_scores(answer.question, said, [c.text for c in answer.contexts], embedder.embed)
        if context is not None and (context.reference_answers or context.reference_context_ids):
            scores += reference_scores(
                said,
                context.reference_answers,
                [c.document_id for c in answer.contexts],
                context.reference_context_ids,
            )
        evaluated.append(
            answer.caused(
                AnswerEvaluated,
                producer,
                request_id=answer.request_id,
                answer_event_id=str(answer.event_id),
                scores=[
                    EvaluationScore(name=s.name, value=s.value, method=s.method, reference_based=s.reference_based)
                    for s in scores
                ],
                run_id=context.run_id if context else None,
                example_id=context.example_id if context else None,
                prompt=answer.lineage.prompt,
                generation_model=answer.lineage.generation_model,
                embedding_model=embedder.name,
                collection=answer.lineage.collection,
            )
        )
    return evaluated


def create_app(settings: EvaluationSettings | None = None) -> AsgiFastStream:
    settings = settings or EvaluationSettings()
    broker = make_broker(settings.kafka, f"ragops-{SERVICE}")
    producer = producer_for(SERVICE)
    publisher = EventPublisher(broker, producer, [AnswerEvaluated])
    embedder = Embedder(
        default_embedding_model_dir(), name=DEFAULT_EMBEDDING_MODEL_NAME, torch_threads=settings.platform.torch_threads
    )
    answers = EventSubscriber(
        broker,
        publisher,
        AnswerGenerated,
        kafka=settings.kafka,
        group_id=SPEC.group,
        max_records=settings.batch_records,
    )

    @answers
    async def on_answer_generated(events: list[AnswerGenerated]) -> None:
        await answers.run(
            events, lambda batch: asyncio.to_thread(evaluate, embedder, producer, settings.sample_rate, batch)
        )

    return service_app(
        SERVICE,
        __doc__ or "",
        broker,
        platform=settings.platform,
        warm_up=[embedder.warm_up],
        compute=compute_spec(embedder.device, settings.platform.torch_threads),
    )


def main() -> None:
    run_service(SERVICE, EvaluationSettings, create_app)

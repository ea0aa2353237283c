"""The generation service: consumes ``ContextRetrieved``, renders a version of the prompt
(:meth:`Answerer.prompt_for`: pinned, else the request's experiment arm, else production, read
live from the registry), runs the model, checks the draft with the calibrated abstention check
(:meth:`Answerer.check`: "the documents do not say" when the context does not hold the answer)
and publishes ``AnswerGenerated`` with the token usage, latency and full lineage of the answer.

A fetch of up to ``batch_records`` queries is generated as one padded batch (micro-batching
across messages: measured with one CPU thread, 8 prompts decode at about 2.5x the tokens/s of one)."""

import asyncio
import dataclasses
import time
from collections.abc import Callable, Mapping, Sequence
from functools import partial

import structlog
from faststream.asgi import AsgiFastStream
from prometheus_client import Counter

from ragops_analytics.budgets import SpendWatch
from ragops_generation.settings import GenerationSettings
from ragops_generation.spec import SPEC
from ragops_models.defaults import shipped_model_dirs
from ragops_models.device import compute_spec
from ragops_models.generation import Generation, Generator
from ragops_models.transformers_generator import TransformersGenerator
from ragops_schemas import (
    AbstentionCheck,
    AnswerGenerated,
    ContextRetrieved,
    GenAIUsage,
    GenerationInfo,
    Lineage,
    Producer,
    PromptRef,
    RetrievedChunk,
)
from ragops_schemas.events import Citation
from ragops_schemas.experiments import ExperimentAssignment
from ragops_schemas.registry import Registry
from ragops_shared.abstention import ABSTAINED, ABSTAINED_ANSWER, Calibration
from ragops_shared.broker import EventPublisher, EventSubscriber, make_broker
from ragops_shared.budgets import over_budget
from ragops_shared.citations import cite
from ragops_shared.ops import MODEL_LATENCY, MODEL_TOKENS
from ragops_shared.prompts import PromptTemplate, load_prompt, resolve_prompt, without_passage_tags
from ragops_shared.registry_view import RegistryView
from ragops_shared.service import producer_for, run_service, service_app
from ragops_shared.signing import verifier_for
from ragops_shared.tracing import LIGHT

SERVICE = SPEC.name
NO_CONTEXT = Generation(text="", input_tokens=0, output_tokens=0, finish_reason="no_context")
log = structlog.get_logger(__name__)


def _untagged(draft: Generation) -> Generation:
    """``draft`` without the passage tags the model copied from its prompt."""
    return dataclasses.replace(draft, text=without_passage_tags(draft.text))


GENERATION_DEGRADED = Counter(
    "ragops_generation_budget_degraded_total",
    "Answers served more cheaply (fewer retrieved chunks) because their tenant reached a degrade budget.",
    ["tenant"],
)
ABSTAINED_ANSWERS = Counter(
    "ragops_generation_abstained_total",
    "Answers replaced by 'the documents do not say' because the abstention check judged that the context "
    "does not hold the answer.",
    ["tenant"],
)
PROMPT_RENDER_FAILURES = Counter(
    "ragops_prompt_render_failures_total",
    "Requests whose experiment-assigned prompt version failed to resolve or render: served production instead.",
    ["prompt", "version"],
)


class Answerer:
    """Prompt rendering, the model call and the ``AnswerGenerated`` events for a batch."""

    def __init__(
        self,
        settings: GenerationSettings,
        generator: Generator,
        producer: Producer,
        registry: Registry | None = None,
        degraded: Callable[[str], bool] = lambda tenant: False,
        abstention: Calibration | None = None,
    ) -> None:
        self.settings = settings
        self.generator = generator
        self.producer = producer
        self.registry = registry or Registry()
        # Whether a tenant is over a degrade budget now (a dict lookup: never waits on analytics).
        self.degraded = degraded
        # None: no abstention check (answers are served as generated).
        self.abstention = abstention

    def prompt_for(self, event: ContextRetrieved) -> tuple[PromptTemplate, ExperimentAssignment | None]:
        """The prompt version a request gets, and the experiment arm it serves (None: none).

        The version the request pinned, else the one its experiment assignment names (an
        assignment whose ``target`` is ``prompt`` and ``target_name`` this prompt), else the
        registry's ``production`` version, else the highest seed (:func:`resolve_prompt`, read
        live: a version pushed after the start is served at once). A retired version takes no
        new traffic: a request pinned or assigned to one gets the production (or highest seed)
        version, and then serves no arm. An assigned version that cannot be resolved (any
        error) falls back to production (:meth:`_fall_back`). Raises as :func:`resolve_prompt`
        for a pinned or production version."""
        name = event.prompt_name or self.settings.prompt_name
        assignment = event.assignment
        if (
            event.prompt_version is None
            and assignment
            and (assignment.target, assignment.target_name) == ("prompt", name)
        ):
            try:
                prompt = resolve_prompt(self.registry, name, int(assignment.version), self.settings.prompt_dir)
            except Exception as error:  # noqa: BLE001  an arm's failure must not cost the request
                self._fall_back(name, assignment, error)
            else:
                return prompt, assignment if str(prompt.version) == assignment.version else None
        return resolve_prompt(self.registry, name, event.prompt_version, self.settings.prompt_dir), None

    def render(
        self, event: ContextRetrieved, contexts: Sequence[Mapping[str, str]]
    ) -> tuple[PromptTemplate, ExperimentAssignment | None, list[dict[str, str]]]:
        """The request's prompt (:meth:`prompt_for`), its arm and the rendered messages.

        An assigned version that fails to render (any error: a Jinja2 error, a sandbox limit, a
        ZeroDivisionError the template raises on this number of passages) must not cost the
        request: the production version is rendered instead, with no arm
        (:meth:`_fall_back`). A pinned or production version that fails raises (the request is
        dead-lettered with the reason)."""
        prompt, assignment = self.prompt_for(event)
        try:
            return prompt, assignment, prompt.render(event.question, contexts)
        except Exception as error:  # untrusted template code: anything it raises
            if assignment is None:
                raise
            self._fall_back(prompt.name, assignment, error)
        production = resolve_prompt(self.registry, prompt.name, None, self.settings.prompt_dir)
        return production, None, production.render(event.question, contexts)

    @staticmethod
    def _fall_back(name: str, assignment: ExperimentAssignment, error: Exception) -> None:
        """Count and log that ``assignment``'s version of prompt ``name`` failed on a request.

        Only the error's type is logged: its message may quote the question or a passage
        (a ``KeyError`` from ``question.format()`` names a word of the question)."""
        PROMPT_RENDER_FAILURES.labels(name, assignment.version).inc()
        log.warning(
            "prompt_render_failed",
            prompt=name,
            version=assignment.version,
            experiment_id=assignment.experiment_id,
            variant=assignment.variant,
            error=type(error).__name__,
        )

    def check(
        self, event: ContextRetrieved, used: Sequence[RetrievedChunk], draft: Generation
    ) -> tuple[Generation, AbstentionCheck | None]:
        """The answer to serve and the abstention check's verdict on the draft.

        No calibration or no context: the draft as it is, no verdict. When the check abstains,
        the answer is :data:`ABSTAINED_ANSWER` with the finish reason ``abstained`` (counted
        per tenant), its token usage that of the draft (the model did run)."""
        if self.abstention is None or not used:
            return draft, None
        verdict = self.abstention.check(
            event.question, event.retrieval.similarities, [chunk.text for chunk in used], draft.text
        )
        if not verdict.abstained:
            return draft, verdict
        ABSTAINED_ANSWERS.labels(tenant=event.tenant).inc()
        return dataclasses.replace(draft, text=ABSTAINED_ANSWER, finish_reason=ABSTAINED), verdict

    def answer(self, events: Sequence[ContextRetrieved]) -> list[AnswerGenerated]:
        """Generate answers for a batch of requests (blocking; run in a worker thread).

        A request without retrieved context gets an empty answer with the finish reason
        ``no_context`` and no model call. Every other draft loses the passage tags the model
        copied from its prompt and goes through :meth:`check` (abstention). Raises
        ``PromptNotFoundError`` when a request names a prompt that does not exist."""
        cheaper = [self.degraded(event.tenant) for event in events]
        for event, degraded in zip(events, cheaper, strict=True):
            if degraded:
                GENERATION_DEGRADED.labels(tenant=event.tenant).inc()
        contexts = [
            event.contexts[: self.settings.degraded_context_chunks if degraded else self.settings.context_chunks]
            for event, degraded in zip(events, cheaper, strict=True)
        ]
        # With no context the model could only make an answer up: answer nothing instead (and
        # render nothing: such an answer serves no experiment arm).
        rendered = [
            self.render(event, [chunk.model_dump() for chunk in used])
            if used
            else (self.prompt_for(event)[0], None, [])
            for event, used in zip(events, contexts, strict=True)
        ]
        messages = [chat for _, _, chat in rendered if chat]
        started = time.perf_counter()
        generated = iter(self.generator.generate(messages) if messages else [])
        latency_ms = (time.perf_counter() - started) * 1000
        drafts = [_untagged(next(generated)) if used else NO_CONTEXT for used in contexts]
        if messages:
            model = self.generator.model_name
            MODEL_LATENCY.labels(SERVICE, model).observe(latency_ms / 1000)
            MODEL_TOKENS.labels(SERVICE, model, "input").inc(sum(g.input_tokens for g in drafts))
            MODEL_TOKENS.labels(SERVICE, model, "output").inc(sum(g.output_tokens for g in drafts))
        checked = [self.check(event, used, draft) for event, used, draft in zip(events, contexts, drafts, strict=True)]
        cited = [self.cited(generation, used) for (generation, _), used in zip(checked, contexts, strict=True)]
        return [
            event.caused(
                AnswerGenerated,
                self.producer,
                request_id=event.request_id,
                question=event.question,
                answer=text,
                contexts=used,
                citations=citations,
                evaluation=event.evaluation,
                generation=GenerationInfo(
                    provider_name=self.settings.backend,
                    request_model=self.generator.model_name,
                    model_version=self.generator.model_version,
                    temperature=self.settings.temperature,
                    max_tokens=self.settings.max_new_tokens,
                    finish_reasons=[generation.finish_reason],
                    usage=GenAIUsage(input_tokens=generation.input_tokens, output_tokens=generation.output_tokens),
                    latency_ms=latency_ms,
                    degraded_by_budget=degraded,
                ),
                lineage=Lineage(
                    chunk_ids=[chunk.chunk_id for chunk in used],
                    document_versions={chunk.document_id: chunk.document_version for chunk in used},
                    embedding=event.retrieval.embedding,
                    collection=event.retrieval.collection,
                    retrieval_mode=event.retrieval.mode,
                    prompt=PromptRef(name=prompt.name, version=prompt.version, sha256=prompt.sha256),
                    generation_model=self.generator.model_name,
                    generation_model_version=self.generator.model_version,
                    variant=assignment.variant if assignment else None,
                    experiment_id=assignment.experiment_id if assignment else None,
                ),
                abstention=verdict,
            )
            for event, (prompt, assignment, _), used, (generation, verdict), degraded, (citations, text) in zip(
                events, rendered, contexts, checked, cheaper, cited, strict=True
            )
        ]

    @staticmethod
    def cited(generation: Generation, used: Sequence[RetrievedChunk]) -> tuple[list[Citation], str]:
        """The citations of ``generation`` among the chunks ``used`` in its prompt and the
        answer text with their ``[n]`` markers (:func:`ragops_shared.citations.cite`: lexical
        attribution). An abstained answer says the documents do not say: it cites nothing."""
        if generation.finish_reason == ABSTAINED:
            return [], generation.text
        return cite(generation.text, used)


def create_app(settings: GenerationSettings | None = None) -> AsgiFastStream:
    settings = settings or GenerationSettings()
    broker = make_broker(settings.kafka, f"ragops-{SERVICE}")
    producer = producer_for(SERVICE)
    publisher = EventPublisher(broker, producer, [AnswerGenerated])
    registry = RegistryView(
        settings.kafka,
        client_id=f"ragops-{SERVICE}-registry",
        verifier=verifier_for(settings.platform, shipped_model_dirs()),
        dead_letters=publisher,
    )
    # Month-to-date spend per tenant, read in the background (only where budgets are set).
    spend = SpendWatch(settings.analytics.client, settings.platform.budget_refresh_s)
    watching = bool(settings.platform.budgets) and settings.analytics.configured

    def degraded(tenant: str) -> bool:
        budget = over_budget(settings.platform.budgets, spend.spend, tenant)
        return budget is not None and budget.action == "degrade"

    answerer = Answerer(settings, settings.generator(), producer, registry.registry, degraded, settings.calibration())
    retrieved = EventSubscriber(
        broker,
        publisher,
        ContextRetrieved,
        kafka=settings.kafka,
        group_id=SPEC.group,
        max_records=settings.batch_records,
        batch_wait_ms=settings.batch_wait_ms,
    )

    @retrieved
    async def on_context_retrieved(events: list[ContextRetrieved]) -> None:
        await retrieved.run(events, lambda batch: asyncio.to_thread(answerer.answer, batch))

    # The default prompt is loaded at start so a missing one fails the start, not each request.
    app = service_app(
        SERVICE,
        __doc__ or "",
        broker,
        platform=settings.platform,
        warm_up=[
            answerer.generator.warm_up,
            partial(load_prompt, settings.prompt_name, None, settings.prompt_dir),
        ],
        # An API backend computes elsewhere (priced by its tokens): here only the waiting.
        compute=compute_spec(answerer.generator.device, settings.platform.torch_threads)
        if isinstance(answerer.generator, TransformersGenerator)
        else LIGHT,
    )
    app.on_startup(registry.start)
    watched: list[asyncio.Task[None]] = []

    async def watch_spend() -> None:
        await asyncio.to_thread(spend.refresh)
        watched.append(asyncio.create_task(spend.run()))

    async def stop_watching() -> None:
        for task in watched:
            task.cancel()

    if watching:
        app.on_startup(watch_spend)
        app.after_shutdown(stop_watching)
    app.after_startup(registry.send_dead_letters)  # once the broker can publish them
    app.after_shutdown(registry.stop)
    return app


def main() -> None:
    run_service(SERVICE, GenerationSettings, create_app)

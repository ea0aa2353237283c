"""The generation service: consumes ``ContextRetrieved``, renders the requested (or latest)
version of the prompt template, runs the model and publishes ``AnswerGenerated`` with the
token usage, latency and full lineage of the answer.

A fetch of up to ``batch_records`` queries is generated as one padded batch (micro-batching
across messages: 8 prompts decode at about 2.5x the tokens/s of one, ../shared/DESIGN.md)."""

import asyncio
import time
from collections.abc import Sequence
from functools import partial
from pathlib import Path

from typing import Literal

from faststream.asgi import AsgiFastStream
from pydantic import Field, SecretStr, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from ragops_generation.generator import Generation, TransformersGenerator, default_generation_model
from ragops_generation.openai_backend import OpenAICompatibleGenerator
from ragops_generation.prompts import PromptTemplate, load_prompt
from ragops_generation.spec import SPEC
from ragops_schemas.registry import Registry
from ragops_schemas import AnswerGenerated, ContextRetrieved, GenAIUsage, GenerationInfo, Lineage, Producer, PromptRef
from ragops_shared.broker import EventPublisher, EventSubscriber, make_broker
from ragops_shared.ops import MODEL_LATENCY, MODEL_TOKENS
from ragops_shared.registry import RegistryView
from ragops_shared.service import producer_for, run_service, service_app
from ragops_shared.settings import KafkaSettings, PlatformSettings

SERVICE = SPEC.name
NO_CONTEXT = Generation(text="", input_tokens=0, output_tokens=0, finish_reason="no_context")


class GenerationSettings(BaseSettings):
    """Env prefix ``RAGOPS_GENERATION_``."""

    model_config = SettingsConfigDict(env_prefix="RAGOPS_GENERATION_", extra="ignore")

    backend: Literal["transformers", "openai"] = Field(
        default="transformers", description="In-process transformers, or an OpenAI-compatible server (vLLM, TGI, Ollama, hosted APIs)."
    )
    model: str | None = Field(default=None, description="HF causal-LM directory or id (transformers), or the served model name (openai); None = packaged SmolLM2-135M-Instruct.")
    openai_base_url: str | None = Field(default=None, description="OpenAI-compatible API root, e.g. http://vllm:8000/v1.")
    openai_api_key: SecretStr | None = None
    gguf_file: str | None = Field(default=None, description="GGUF file inside `model`, if the weights are GGUF.")
    prompt_name: str = "rag-answer"
    prompt_dir: Path | None = Field(default=None, description="Prompt templates directory; None = the packaged prompts.")
    context_chunks: int = Field(default=3, gt=0, description="Retrieved chunks put into the prompt (best first).")
    max_new_tokens: int = Field(default=48, gt=0)
    dtype: Literal["auto", "float32", "bfloat16"] = Field(default="auto", description="auto = bf16 where the CPU computes it natively.")
    temperature: float = Field(default=0.0, ge=0.0)
    batch_records: int = Field(default=8, gt=0, description="Queries generated as one batch.")
    # A batch takes seconds, so a request one fetch late would wait for all of it: 50 ms
    # (two fetch waits on the embedded broker) lets requests that arrive together share it.
    batch_wait_ms: int = Field(default=50, ge=0, description="Longest wait to fill a batch after a short fetch (ms).")
    platform: PlatformSettings = Field(default_factory=PlatformSettings)
    kafka: KafkaSettings = Field(default_factory=KafkaSettings)

    @model_validator(mode="after")
    def _openai_needs_a_server(self) -> "GenerationSettings":
        if self.backend == "openai" and not (self.openai_base_url and self.model):
            raise ValueError("RAGOPS_GENERATION_BACKEND=openai needs RAGOPS_GENERATION_OPENAI_BASE_URL and RAGOPS_GENERATION_MODEL")
        return self

    def generator(self) -> "Generator":
        if self.backend == "openai":
            assert self.openai_base_url is not None and self.model is not None  # checked above
            return OpenAICompatibleGenerator(
                self.openai_base_url, self.model, api_key=self.openai_api_key, max_new_tokens=self.max_new_tokens,
                temperature=self.temperature, concurrency=self.batch_records,
            )
        model, gguf_file = (self.model, self.gguf_file) if self.model else default_generation_model()
        return TransformersGenerator(
            model, gguf_file=gguf_file, cache_dir=self.platform.cache_dir / "models",
            max_new_tokens=self.max_new_tokens, torch_threads=self.platform.torch_threads, temperature=self.temperature,
            dtype=self.dtype,
        )


Generator = TransformersGenerator | OpenAICompatibleGenerator


class Answerer:
    """Prompt rendering, the model call and the ``AnswerGenerated`` events for a batch."""

    def __init__(
        self, settings: GenerationSettings, generator: Generator, producer: Producer, registry: Registry | None = None,
    ) -> None:
        self.settings = settings
        self.generator = generator
        self.producer = producer
        self.registry = registry or Registry()

    def prompt_for(self, event: ContextRetrieved) -> PromptTemplate:
        """The prompt version the request pinned, else the registry's ``production`` version
        of the prompt, else its latest version. A retired version takes no new traffic: a
        request pinned to one gets the production (or latest) version instead, and its
        lineage records the version actually used."""
        name = event.prompt_name or self.settings.prompt_name
        version = event.prompt_version
        if version is None or self.registry.is_retired("prompt", name, str(version)):
            production = self.registry.alias("prompt", name)
            version = int(production.ref.version) if production else None
        return load_prompt(name, version, self.settings.prompt_dir)

    def answer(self, events: Sequence[ContextRetrieved]) -> list[AnswerGenerated]:
        """Generate answers for a batch of requests (blocking; run in a worker thread).

        A request without retrieved context gets an empty answer with the finish reason
        ``no_context`` and no model call. Raises ``PromptNotFoundError`` when a request names
        a prompt that does not exist."""
        prompts = [self.prompt_for(event) for event in events]
        contexts = [event.contexts[: self.settings.context_chunks] for event in events]
        # With no context the model could only make an answer up: answer nothing instead.
        asking = [i for i, used in enumerate(contexts) if used]
        messages = [prompts[i].render(events[i].question, [chunk.model_dump() for chunk in contexts[i]]) for i in asking]
        started = time.perf_counter()
        generated = iter(self.generator.generate(messages) if messages else [])
        latency_ms = (time.perf_counter() - started) * 1000
        generations = [next(generated) if used else NO_CONTEXT for used in contexts]
        if messages:
            model = self.generator.model_name
            MODEL_LATENCY.labels(SERVICE, model).observe(latency_ms / 1000)
            MODEL_TOKENS.labels(SERVICE, model, "input").inc(sum(g.input_tokens for g in generations))
            MODEL_TOKENS.labels(SERVICE, model, "output").inc(sum(g.output_tokens for g in generations))
        return [
            event.caused(
                AnswerGenerated, self.producer,
                request_id=event.request_id, question=event.question, answer=generation.text, contexts=used,
                evaluation=event.evaluation,
                generation=GenerationInfo(
                    system=self.settings.backend, request_model=self.generator.model_name, model_version=self.generator.model_version,
                    temperature=self.settings.temperature, max_tokens=self.settings.max_new_tokens,
                    finish_reasons=[generation.finish_reason],
                    usage=GenAIUsage(input_tokens=generation.input_tokens, output_tokens=generation.output_tokens),
                    latency_ms=latency_ms,
                ),
                lineage=Lineage(
                    chunk_ids=[chunk.chunk_id for chunk in used],
                    document_versions={chunk.document_id: chunk.document_version for chunk in used},
                    embedding=event.retrieval.embedding, collection=event.retrieval.collection,
                    retrieval_mode=event.retrieval.mode,
                    prompt=PromptRef(name=prompt.name, version=prompt.version, sha256=prompt.sha256),
                    generation_model=self.generator.model_name, generation_model_version=self.generator.model_version,
                ),
            )
            for event, prompt, used, generation in zip(events, prompts, contexts, generations, strict=True)
        ]


def create_app(settings: GenerationSettings | None = None) -> AsgiFastStream:
    settings = settings or GenerationSettings()
    broker = make_broker(settings.kafka, f"ragops-{SERVICE}")
    producer = producer_for(SERVICE)
    publisher = EventPublisher(broker, producer, [AnswerGenerated])
    registry = RegistryView(settings.kafka, client_id=f"ragops-{SERVICE}-registry")
    answerer = Answerer(settings, settings.generator(), producer, registry.registry)
    retrieved = EventSubscriber(
        broker, publisher, ContextRetrieved, kafka=settings.kafka,
        group_id=SPEC.group, max_records=settings.batch_records, batch_wait_ms=settings.batch_wait_ms,
    )

    @retrieved
    async def on_context_retrieved(events: list[ContextRetrieved]) -> None:
        await retrieved.run(events, partial(asyncio.to_thread, answerer.answer))

    # The default prompt is loaded at start so a missing one fails the start, not each request.
    app = service_app(SERVICE, __doc__ or "", broker, warm_up=[
        answerer.generator.warm_up, partial(load_prompt, settings.prompt_name, None, settings.prompt_dir),
    ])
    app.on_startup(registry.start)
    app.after_shutdown(registry.stop)
    return app


def main() -> None:
    run_service(SERVICE, GenerationSettings, create_app)

"""Settings of the generation service (env prefix ``RAGOPS_GENERATION_``)."""

from pathlib import Path
from typing import Literal

from pydantic import Field, SecretStr, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from ragops_analytics.client import AnalyticsSettings
from ragops_models.defaults import GenerationPreset, generation_preset
from ragops_models.device import DeviceName, DtypeName
from ragops_models.generation import Generator
from ragops_models.openai_generator import OpenAICompatibleGenerator
from ragops_models.transformers_generator import PromptFormat, TransformersGenerator
from ragops_shared.abstention import DEFAULT_CALIBRATION, Calibration
from ragops_shared.settings import KafkaSettings, PlatformSettings


class GenerationSettings(BaseSettings):
    """Env prefix ``RAGOPS_GENERATION_``."""

    model_config = SettingsConfigDict(env_prefix="RAGOPS_GENERATION_", extra="ignore")

    backend: Literal["transformers", "openai"] = Field(
        default="transformers",
        description="In-process transformers, or an OpenAI-compatible server (vLLM, TGI, Ollama, hosted APIs).",
    )
    model: str | None = Field(
        default=None,
        description=(
            "HF causal-LM directory or id (transformers), or the served model name (openai); "
            "None = the packaged model named by `preset`."
        ),
    )
    preset: GenerationPreset = Field(
        default="gemma-3-270m",
        description="Packaged local model used when `model` is None, chosen by `make bench-generators` "
        "(README 'Choosing a generator'): gemma-3-270m (base model, Gemma Terms of Use) or "
        "smollm2-135m-instruct (Apache-2.0 chat model).",
    )
    prompt_format: PromptFormat = Field(
        default="auto",
        description="chat (the tokenizer's chat template), completion (plain text, for base models), "
        "auto = chat when the tokenizer has a chat template (transformers backend).",
    )
    stop: list[str] | None = Field(
        default=None,
        description='Stop sequences (JSON list); None = ["\\n"] for completion prompts, none for chat ones '
        "(the openai backend sends none).",
    )
    repetition_penalty: float = Field(
        default=1.2, ge=1.0, description="CTRL repetition penalty on the answer's own tokens; 1.0 = off."
    )
    no_repeat_ngram_size: int = Field(
        default=4, ge=0, description="No n-gram of this many tokens generated twice in an answer; 0 = off."
    )
    complete_sentences: bool = Field(
        default=True, description="An answer cut by max_new_tokens ends at its last complete sentence."
    )
    openai_base_url: str | None = Field(
        default=None, description="OpenAI-compatible API root, e.g. http://vllm:8000/v1."
    )
    openai_api_key: SecretStr | None = None
    gguf_file: str | None = Field(default=None, description="GGUF file inside `model`, if the weights are GGUF.")
    prompt_name: str = "rag-answer"
    prompt_dir: Path | None = Field(
        default=None, description="Prompt templates directory; None = the packaged prompts."
    )
    context_chunks: int = Field(default=3, gt=0, description="Retrieved chunks put into the prompt (best first).")
    degraded_context_chunks: int = Field(
        default=1,
        gt=0,
        description="Retrieved chunks a tenant over a degrade budget gets (RAGOPS_BUDGETS): the prompt's "
        "tokens are most of a small model's work.",
    )
    max_new_tokens: int = Field(default=48, gt=0)
    dtype: DtypeName = Field(default="auto", description="auto = bf16 on a GPU, or where the CPU computes it natively.")
    device: DeviceName = Field(
        default="auto",
        description="auto = CUDA when torch sees a GPU, else cpu; or cpu, cuda, cuda:N (transformers backend).",
    )
    temperature: float = Field(default=0.0, ge=0.0)
    batch_records: int = Field(default=8, gt=0, description="Queries generated as one batch.")
    # A batch takes seconds, so a request one fetch late would wait for all of it: 50 ms
    # (two fetch waits on the embedded broker) lets requests that arrive together share it.
    batch_wait_ms: int = Field(default=50, ge=0, description="Longest wait to fill a batch after a short fetch (ms).")
    abstention: bool = Field(
        default=True,
        description="Check each answer with the abstention calibration and answer that the documents do not say "
        "when the context does not hold the answer (ragops_shared.abstention); false = no check.",
    )
    abstention_calibration: Path = Field(
        default=DEFAULT_CALIBRATION,
        description="The calibration file (`ragops calibrate abstention` writes one); default: the packaged one.",
    )
    platform: PlatformSettings = Field(default_factory=PlatformSettings)
    analytics: AnalyticsSettings = Field(
        default_factory=AnalyticsSettings, description="Where the tenants' spend is read (budgets only)."
    )
    kafka: KafkaSettings = Field(default_factory=KafkaSettings)

    @model_validator(mode="after")
    def _openai_needs_a_server(self) -> "GenerationSettings":
        if self.backend == "openai" and not (self.openai_base_url and self.model):
            raise ValueError(
                "RAGOPS_GENERATION_BACKEND=openai needs RAGOPS_GENERATION_OPENAI_BASE_URL and RAGOPS_GENERATION_MODEL"
            )
        return self

    def generator(self) -> Generator:
        if self.backend == "openai":
            # Both checked by _openai_needs_a_server.
            assert self.openai_base_url is not None
            assert self.model is not None
            return OpenAICompatibleGenerator(
                self.openai_base_url,
                self.model,
                api_key=self.openai_api_key,
                max_new_tokens=self.max_new_tokens,
                temperature=self.temperature,
                concurrency=self.batch_records,
                stop=self.stop or (),
            )
        cache_dir = self.platform.cache_dir / "models"
        model, gguf_file = (self.model, self.gguf_file) if self.model else generation_preset(self.preset, cache_dir)
        return TransformersGenerator(
            model,
            gguf_file=gguf_file,
            cache_dir=cache_dir,
            max_new_tokens=self.max_new_tokens,
            torch_threads=self.platform.torch_threads,
            temperature=self.temperature,
            dtype=self.dtype,
            device=self.device,
            prompt_format=self.prompt_format,
            stop=self.stop,
            repetition_penalty=self.repetition_penalty,
            no_repeat_ngram_size=self.no_repeat_ngram_size,
            complete_sentences=self.complete_sentences,
        )

    def calibration(self) -> Calibration | None:
        """The abstention calibration to apply, or None when the check is off (``abstention``
        false). Raises ``OSError`` or ``CalibrationError`` for a missing or invalid file: a
        service configured to check answers must not start without its calibration."""
        return Calibration.load(self.abstention_calibration) if self.abstention else None

"""The trainer's settings (env prefix ``RAGOPS_TRAINER_``)."""

from pathlib import Path
from typing import Literal

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

from ragops_analytics.client import AnalyticsSettings
from ragops_models.defaults import DEFAULT_EMBEDDING_MODEL_NAME
from ragops_shared.settings import KafkaSettings, PlatformSettings


class TrainerSettings(BaseSettings):
    """Env prefix ``RAGOPS_TRAINER_``."""

    model_config = SettingsConfigDict(env_prefix="RAGOPS_TRAINER_", extra="ignore")

    corpus: str = Field(default="default", pattern=r"^[a-zA-Z0-9_-]+$", description="Same as the retrieval service's.")
    sources: list[Path] = Field(default_factory=list, description="Corpus JSONL files refresh_corpus reads.")
    embedding_model_name: str = Field(default=DEFAULT_EMBEDDING_MODEL_NAME, description="Registry name of the model.")
    holdout: Path | None = Field(
        default=None, description="Held-out questions (SQuAD JSONL); None = a share of the feedback."
    )
    holdout_size: int = Field(default=300, ge=10, description="Held-out questions sampled from `holdout`.")
    holdout_share: float = Field(
        default=0.2, gt=0, lt=1, description="Share of feedback pairs held out without `holdout`."
    )
    min_pairs: int = Field(default=50, ge=2, description="Fewer usable training pairs: the request is rejected.")
    epochs: int = Field(
        default=3,
        ge=1,
        description="3 epochs of ~200 pairs raised held-out hit@5 by 3-4 points; 1 was not reliably enough.",
    )
    batch_size: int = Field(default=16, ge=2)
    learning_rate: float = Field(default=2e-5, gt=0)
    max_train_seconds: float = Field(default=900.0, gt=0, description="Training wall-time bound (s).")
    min_improvement: float = Field(default=0.0, ge=0, description="hit@5 the candidate must gain over the live model.")
    promotion_alpha: float | None = Field(
        default=None,
        gt=0,
        lt=1,
        description="Also require McNemar's exact test p-value below this (None: a higher hit@5 is enough).",
    )
    promotion: Literal["automatic", "approval"] = Field(
        default="automatic",
        description="approval: a production promotion becomes a ChangeRequested that a person with an "
        "approving role approves at the gateway (four eyes); automatic: the trainer promotes itself.",
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

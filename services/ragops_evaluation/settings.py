"""Settings of the evaluation service (env prefix ``RAGOPS_EVALUATION_``)."""

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

from ragops_shared.settings import KafkaSettings, PlatformSettings


class EvaluationSettings(BaseSettings):
    """Env prefix ``RAGOPS_EVALUATION_``."""

    model_config = SettingsConfigDict(env_prefix="RAGOPS_EVALUATION_", extra="ignore")

    sample_rate: float = Field(default=1.0, ge=0.0, le=1.0, description="Share of production answers scored.")
    batch_records: int = Field(default=32, gt=0)
    platform: PlatformSettings = Field(default_factory=PlatformSettings)
    kafka: KafkaSettings = Field(default_factory=KafkaSettings)

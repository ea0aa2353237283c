"""Settings of the ingestion service (env prefix ``RAGOPS_INGESTION_``)."""

from pathlib import Path

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

from ragops_models.defaults import DEFAULT_EMBEDDING_MODEL_NAME
from ragops_shared.settings import KafkaSettings, PlatformSettings


class IngestionSettings(BaseSettings):
    """Env prefix ``RAGOPS_INGESTION_``."""

    model_config = SettingsConfigDict(env_prefix="RAGOPS_INGESTION_", extra="ignore")

    tokenizer: Path | None = Field(
        default=None, description="Tokenizer of the embedding model; None = packaged all-MiniLM-L6-v2."
    )
    tokenizer_name: str = DEFAULT_EMBEDDING_MODEL_NAME
    chunk_size: int = Field(default=200, gt=0, description="Maximum tokens per chunk (the model reads 256).")
    overlap: int = Field(default=32, ge=0, description="Tokens shared by consecutive chunks.")
    batch_records: int = Field(default=16, gt=0, description="DocumentSubmitted records per fetch.")
    platform: PlatformSettings = Field(default_factory=PlatformSettings)
    kafka: KafkaSettings = Field(default_factory=KafkaSettings)

"""Settings of the retrieval service (env prefix ``RAGOPS_RETRIEVAL_``)."""

from typing import Literal

from pydantic import Field, SecretStr, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from ragops_retrieval.store import VectorStore, open_store
from ragops_shared.settings import KafkaSettings, PlatformSettings


class RetrievalSettings(BaseSettings):
    """Env prefix ``RAGOPS_RETRIEVAL_``."""

    model_config = SettingsConfigDict(env_prefix="RAGOPS_RETRIEVAL_", extra="ignore")

    qdrant_url: str | None = Field(default=None, description="Qdrant server URL; None = embedded Qdrant Edge.")
    qdrant_api_key: SecretStr | None = None
    corpus: str = Field(
        default="default", pattern=r"^[a-zA-Z0-9_-]+$", description="Corpus name, part of collection names."
    )
    mode: Literal["hybrid", "dense", "sparse"] = "hybrid"
    score_threshold: float | None = Field(default=None, description="Minimum dense cosine similarity of a hit.")
    index_batch_records: int = Field(default=16, gt=0)
    query_batch_records: int = Field(default=32, gt=0)
    platform: PlatformSettings = Field(default_factory=PlatformSettings)
    kafka: KafkaSettings = Field(default_factory=KafkaSettings)

    @model_validator(mode="after")
    def _server_in_production(self) -> "RetrievalSettings":
        # Qdrant Edge lives inside one process: replicas could not share it.
        if self.platform.environment == "production" and not self.qdrant_url:
            raise ValueError("RAGOPS_RETRIEVAL_QDRANT_URL is required when RAGOPS_ENVIRONMENT=production")
        return self

    def open_store(self) -> VectorStore:
        api_key = self.qdrant_api_key.get_secret_value() if self.qdrant_api_key else None
        return open_store(url=self.qdrant_url, api_key=api_key, path=self.platform.data_dir / "qdrant")

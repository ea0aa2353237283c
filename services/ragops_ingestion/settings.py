"""Settings of the ingestion service (env prefix ``RAGOPS_INGESTION_``)."""

from pathlib import Path

from pydantic import Field, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from ragops_models.defaults import DEFAULT_EMBEDDING_MODEL_NAME
from ragops_shared.parts import check_budget
from ragops_shared.settings import KafkaSettings, PlatformSettings

PART_BYTES = 1024 * 1024
"""Default budget of one DocumentChunked part: its ChunksEmbedded (text plus a 384-d vector
per chunk, about 2.7 times larger) then stays under the embedding service's 4 MiB budget."""
MAX_DOCUMENT_BYTES = 8 * 1024 * 1024


class IngestionSettings(BaseSettings):
    """Env prefix ``RAGOPS_INGESTION_``."""

    model_config = SettingsConfigDict(env_prefix="RAGOPS_INGESTION_", extra="ignore")

    tokenizer: Path | None = Field(
        default=None, description="Tokenizer of the embedding model; None = packaged all-MiniLM-L6-v2."
    )
    tokenizer_name: str = DEFAULT_EMBEDDING_MODEL_NAME
    chunk_size: int = Field(default=200, gt=0, description="Maximum tokens per chunk (the model reads 256).")
    overlap: int = Field(default=32, ge=0, description="Tokens shared by consecutive chunks.")
    batch_records: int = Field(default=16, gt=0, description="DocumentRedacted records per fetch.")
    part_bytes: int = Field(
        default=PART_BYTES, ge=64 * 1024, description="Most bytes of JSON per DocumentChunked event (one part)."
    )
    max_document_bytes: int = Field(
        default=MAX_DOCUMENT_BYTES, gt=0, description="Larger content (UTF-8 bytes) is rejected, not chunked."
    )
    platform: PlatformSettings = Field(default_factory=PlatformSettings)
    kafka: KafkaSettings = Field(default_factory=KafkaSettings)

    @model_validator(mode="after")
    def _parts_fit_the_broker(self) -> "IngestionSettings":
        check_budget(self.part_bytes, self.kafka.max_message_bytes, "RAGOPS_INGESTION_PART_BYTES")
        return self

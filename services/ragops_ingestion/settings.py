"""Settings of the ingestion service (env prefix ``RAGOPS_INGESTION_``)."""

from pathlib import Path
from typing import Literal

from pydantic import Field, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from ragops_ingestion.chunking import MAX_CHUNK_CHARS
from ragops_models.defaults import DEFAULT_EMBEDDING_MODEL_NAME
from ragops_schemas import QualityCheck
from ragops_shared.parts import check_budget
from ragops_shared.settings import KafkaSettings, PlatformSettings

PART_BYTES = 1024 * 1024
"""Default budget of one DocumentChunked part: its ChunksEmbedded (text plus a 384-d vector
per chunk, about 2.7 times larger) then stays under the embedding service's 4 MiB budget."""
MAX_DOCUMENT_BYTES = 8 * 1024 * 1024

QualityAction = Literal["reject", "warn", "accept"]
DEFAULT_QUALITY_POLICY: dict[QualityCheck, QualityAction] = {
    # Nothing to retrieve: a chunk of a few characters only adds noise to every search.
    "near_empty": "reject",
    # Legitimate (the same notice under two ids) but worth a look: it doubles results.
    "duplicate": "warn",
    "near_duplicate": "warn",
    # The default embedding model (all-MiniLM-L6-v2) is trained on English: other languages
    # are indexed but retrieve poorly.
    "language": "warn",
    # Damaged text still has most words right; whoever sent it should re-send it decoded right.
    "encoding": "warn",
    # Already redacted upstream: the counts are recorded, nothing to warn about.
    "pii": "accept",
}
"""What each data-quality check does when it fires (``ragops_ingestion.quality``)."""


class IngestionSettings(BaseSettings):
    """Env prefix ``RAGOPS_INGESTION_``."""

    model_config = SettingsConfigDict(env_prefix="RAGOPS_INGESTION_", extra="ignore")

    tokenizer: Path | None = Field(
        default=None, description="Tokenizer of the embedding model; None = packaged all-MiniLM-L6-v2."
    )
    tokenizer_name: str = DEFAULT_EMBEDDING_MODEL_NAME
    chunk_size: int = Field(default=200, gt=0, description="Maximum tokens per chunk (the model reads 256).")
    overlap: int = Field(default=32, ge=0, description="Tokens shared by consecutive chunks.")
    max_chunk_chars: int = Field(
        default=MAX_CHUNK_CHARS,
        gt=0,
        description="Maximum characters per chunk: bounds what an unbroken run (one [UNK] token) brings "
        "into a prompt; 2000 is above every 200-token chunk of the development corpora (at most 1,291).",
    )
    batch_records: int = Field(default=16, gt=0, description="DocumentRedacted records per fetch.")
    part_bytes: int = Field(
        default=PART_BYTES, ge=64 * 1024, description="Most bytes of JSON per DocumentChunked event (one part)."
    )
    max_document_bytes: int = Field(
        default=MAX_DOCUMENT_BYTES, gt=0, description="Larger content (UTF-8 bytes) is rejected, not chunked."
    )
    quality_policy: dict[QualityCheck, QualityAction] = Field(
        default_factory=lambda: dict(DEFAULT_QUALITY_POLICY),
        description="Per data-quality check: reject (DocumentRejected naming the check), warn (named in "
        "DocumentChunked.quality.warnings) or accept; JSON, merged over the defaults "
        '(e.g. {"duplicate": "reject"}).',
    )
    quality_min_word_chars: int = Field(
        default=20, ge=0, description="Fewer word characters than this: the near_empty check fires (a few words)."
    )
    quality_languages: list[str] = Field(
        default_factory=lambda: ["en"],
        description="ISO 639 codes of the expected languages (JSON list); another fires the language check; [] = any.",
    )
    quality_near_duplicate_threshold: float = Field(
        default=0.8, gt=0, le=1, description="Estimated Jaccard similarity of word 5-grams from which a near duplicate."
    )
    platform: PlatformSettings = Field(default_factory=PlatformSettings)
    kafka: KafkaSettings = Field(default_factory=KafkaSettings)

    @field_validator("quality_policy", mode="after")
    @classmethod
    def _over_the_defaults(cls, policy: dict[QualityCheck, QualityAction]) -> dict[QualityCheck, QualityAction]:
        return {**DEFAULT_QUALITY_POLICY, **policy}

    @model_validator(mode="after")
    def _parts_fit_the_broker(self) -> "IngestionSettings":
        check_budget(self.part_bytes, self.kafka.max_message_bytes, "RAGOPS_INGESTION_PART_BYTES")
        return self

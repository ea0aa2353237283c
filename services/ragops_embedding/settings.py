"""Settings of the embedding service (env prefix ``RAGOPS_EMBEDDING_``)."""

from pathlib import Path

from pydantic import Field, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from ragops_models.defaults import DEFAULT_EMBEDDING_MODEL_NAME, default_embedding_model_dir
from ragops_models.device import DeviceName, DtypeName
from ragops_models.embedder import Embedder
from ragops_shared.parts import check_budget
from ragops_shared.settings import KafkaSettings, PlatformSettings

PART_BYTES = 4 * 1024 * 1024
"""Default budget of one ChunksEmbedded event: a quarter of the broker's 16 MiB limit."""
EXPERIMENT_KEY_FILE = Path("keys") / "experiment.key"
"""The embedded experiment assignment key, under the data dir."""


class EmbeddingSettings(BaseSettings):
    """Env prefix ``RAGOPS_EMBEDDING_``."""

    model_config = SettingsConfigDict(env_prefix="RAGOPS_EMBEDDING_", extra="ignore")

    model: Path | None = Field(default=None, description="HF model directory; None = packaged all-MiniLM-L6-v2.")
    model_name: str | None = Field(default=None, description="Name recorded on events; None = derived.")
    max_length: int = Field(default=256, gt=0, description="Tokens per text (longer texts are truncated).")
    batch_size: int = Field(default=32, gt=0, description="Texts per forward pass.")
    dtype: DtypeName = Field(default="auto", description="auto = bf16 on a GPU, or where the CPU computes it natively.")
    device: DeviceName = Field(
        default="auto", description="auto = CUDA when torch sees a GPU, else cpu; or cpu, cuda, cuda:N."
    )
    document_batch_records: int = Field(default=8, gt=0, description="DocumentChunked records per fetch.")
    part_bytes: int = Field(
        default=PART_BYTES, ge=64 * 1024, description="Most bytes of JSON per ChunksEmbedded event (one part)."
    )
    query_batch_records: int = Field(default=32, gt=0, description="QueryRedacted records per fetch.")
    # 0: a query embeds in ~40 ms, so waiting for more costs about what batching saves; the
    # fetch already gathers the queries of one fetch wait (KAFKA_FETCH_MAX_WAIT_MS).
    query_batch_wait_ms: int = Field(
        default=0, ge=0, description="Longest wait to fill a query batch after a short fetch (ms)."
    )
    experiment_key_file: Path | None = Field(
        default=None,
        description="The secret key of the experiments' sticky assignment (HMAC-SHA256), at least 32 bytes; "
        "unset: <data_dir>/keys/experiment.key, created on first use (mode 0600; not in production). Every "
        "replica reads the same key; changing it moves units between the arms of a running experiment.",
    )
    platform: PlatformSettings = Field(default_factory=PlatformSettings)
    kafka: KafkaSettings = Field(default_factory=KafkaSettings)

    @model_validator(mode="after")
    def _parts_fit_the_broker(self) -> "EmbeddingSettings":
        check_budget(self.part_bytes, self.kafka.max_message_bytes, "RAGOPS_EMBEDDING_PART_BYTES")
        return self

    @model_validator(mode="after")
    def _key_in_production(self) -> "EmbeddingSettings":
        if self.platform.environment == "production" and self.experiment_key_file is None:
            raise ValueError("RAGOPS_EMBEDDING_EXPERIMENT_KEY_FILE must be set in production (no embedded key there)")
        return self

    def embedder(self, directory: Path | None = None) -> Embedder:
        """The configured model, or another version of it in ``directory`` (same name)."""
        model = directory or self.model or default_embedding_model_dir()
        name = self.model_name or (DEFAULT_EMBEDDING_MODEL_NAME if self.model is None else None)
        if directory is not None and name is None:
            name = self.embedder().name
        return Embedder(
            model,
            name=name,
            max_length=self.max_length,
            batch_size=self.batch_size,
            dtype=self.dtype,
            torch_threads=self.platform.torch_threads,
            device=self.device,
        )

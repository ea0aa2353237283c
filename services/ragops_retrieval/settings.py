"""Settings of the retrieval service (env prefix ``RAGOPS_RETRIEVAL_``)."""

from typing import Literal

from pydantic import Field, SecretStr, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from ragops_retrieval.store import DEFAULT_FUSION, RankFusion, VectorStore, open_store
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
    rrf_k: float = Field(
        default=DEFAULT_FUSION.k, gt=0, description="Hybrid mode: the k of weighted Reciprocal Rank Fusion."
    )
    dense_weight: float = Field(
        default=DEFAULT_FUSION.dense_weight, ge=0, description="Hybrid mode: the dense list's weight in the fusion."
    )
    sparse_weight: float = Field(
        default=DEFAULT_FUSION.sparse_weight, ge=0, description="Hybrid mode: the BM25 list's weight in the fusion."
    )
    fusion_depth: int = Field(
        default=DEFAULT_FUSION.depth, ge=1, description="Hybrid mode: candidates each retriever gives the fusion."
    )
    per_document: int | None = Field(
        default=None,
        ge=1,
        description="Most chunks of one document version among a query's hits (None: no cap).",
    )
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

    @model_validator(mode="after")
    def _fusion_valid(self) -> "RetrievalSettings":
        self.fusion  # noqa: B018 -- RankFusion refuses both weights zero
        return self

    @property
    def fusion(self) -> RankFusion:
        """How hybrid mode fuses its two lists (defaults tuned by ``python -m bench.retrieval_study``)."""
        return RankFusion(
            k=self.rrf_k, dense_weight=self.dense_weight, sparse_weight=self.sparse_weight, depth=self.fusion_depth
        )

    def open_store(self) -> VectorStore:
        api_key = self.qdrant_api_key.get_secret_value() if self.qdrant_api_key else None
        return open_store(url=self.qdrant_url, api_key=api_key, path=self.platform.data_dir / "qdrant")

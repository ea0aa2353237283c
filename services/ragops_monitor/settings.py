"""The monitor's settings (env prefix ``RAGOPS_MONITOR_``)."""

from pathlib import Path

from pydantic import Field, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from ragops_analytics.client import AnalyticsSettings
from ragops_schemas.lifecycle import VersionKind
from ragops_shared.settings import KafkaSettings, PlatformSettings


class MonitorSettings(BaseSettings):
    """Env prefix ``RAGOPS_MONITOR_``. Thresholds default to Evidently's, except ``alpha``:
    the monitor tests overlapping windows against one reference again and again, so the
    usual 0.05 would alarm many times a day on unchanged traffic. Measured on unchanged
    streams of 2,000 observations (100/50 windows, a test every 10, 2 in a row to alert):
    0.047 alerts per signal at 0.001, none in 150 streams at 0.0001 (the demo's 2,000
    unchanged questions raised 1 alert over 7 signals at 0.001)."""

    model_config = SettingsConfigDict(env_prefix="RAGOPS_MONITOR_", extra="ignore")

    interval_s: float = Field(default=30.0, gt=0, description="Seconds between two evaluations.")
    experiment_interval_s: float = Field(
        default=30.0, gt=0, description="Seconds between two analyses of the running experiments."
    )
    reference_size: int = Field(default=200, ge=20, description="Observations in a reference window.")
    current_size: int = Field(default=100, ge=10, description="Observations in a current window.")
    min_new: int = Field(default=10, ge=1, description="New observations needed before a signal is tested again.")
    consecutive: int = Field(
        default=2, ge=1, description="Evaluations in a row that must agree to open or close an alert."
    )
    alpha: float = Field(default=0.0001, gt=0, lt=1, description="p-value threshold of KS, Fisher and MMD tests.")
    roc_auc_threshold: float = Field(default=0.55, gt=0.5, lt=1, description="Domain-classifier ROC AUC (Evidently).")
    wasserstein_threshold: float = Field(default=0.1, gt=0, description="Normed Wasserstein distance (Evidently).")
    no_context_similarity: float = Field(
        default=0.35,
        description="A question whose nearest chunk is less similar than this has no good context.",
    )
    evaluation_metrics: list[str] = Field(default=["faithfulness", "answer_relevancy", "context_relevance"])
    rebaseline_on: list[VersionKind] = Field(default=["corpus", "index", "embedding_model"])
    policy: Path | None = Field(default=None, description="Retraining policy TOML; None = the packaged policy.toml.")
    prompt_name: str = Field(default="rag-answer", description="Prompt whose promotions the policy watches.")
    analytics: AnalyticsSettings = Field(default_factory=AnalyticsSettings)
    platform: PlatformSettings = Field(default_factory=PlatformSettings)
    kafka: KafkaSettings = Field(default_factory=KafkaSettings)

    @model_validator(mode="after")
    def _needs_clickhouse(self) -> "MonitorSettings":
        if not self.analytics.configured:
            raise ValueError(
                "the monitor reads ClickHouse: set RAGOPS_ANALYTICS_SQL_URL or RAGOPS_ANALYTICS_CLICKHOUSE_URL"
            )
        return self

    @field_validator("evaluation_metrics")
    @classmethod
    def _metric_names(cls, names: list[str]) -> list[str]:
        # Metric names become signal names (evaluation.<metric>): identifiers only.
        bad = [name for name in names if not name.replace("_", "").replace("@", "").isalnum()]
        if bad:
            raise ValueError(f"not metric names: {bad}")
        return names

"""Settings of the sink service (env prefix ``RAGOPS_SINK_``)."""

from typing import Literal

from pydantic import Field, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from ragops_analytics.queries import DEFAULT_RETENTION_DAYS
from ragops_shared.settings import KafkaSettings, PlatformSettings
from ragops_sink.schema import MAX_DAYS
from ragops_sink.spec import AUDIT_GROUP, EVENTS_GROUP


class SinkSettings(BaseSettings):
    """Env prefix ``RAGOPS_SINK_``."""

    model_config = SettingsConfigDict(env_prefix="RAGOPS_SINK_", extra="ignore")

    group_id: str = Field(
        default=EVENTS_GROUP, description="Consumer group; a new one replays every topic from the start."
    )
    audit_group_id: str = Field(
        default=AUDIT_GROUP,
        description="Consumer group of the audit log; a new one reads it all again, appending nothing twice.",
    )
    clickhouse_url: str | None = Field(
        default=None, description="ClickHouse server (http://user:pass@host:8123/db); None = embedded chDB."
    )
    # Each insert pays ~45 ms for the 13 materialized views whatever its size: 20,000-record
    # batches cost 9 us per event in chDB, 5,000-record ones 18 (make bench, P4).
    batch_records: int = Field(default=20_000, gt=0, description="Most records written per insert.")
    batch_wait_ms: int = Field(default=500, ge=0, description="Longest wait to fill a batch (ms).")
    retry_initial_s: float = Field(default=0.5, gt=0, description="First backoff while ClickHouse is unavailable.")
    retry_max_s: float = Field(default=30.0, gt=0, description="Backoff cap.")
    # One embedded sink may migrate at start; several sink replicas on one ClickHouse server
    # must not (a table rebuild such as 0005 loses the rows another sink inserts meanwhile),
    # so in a cluster a one-off Job migrates and the sinks wait for it (k8s/base/sink-migrate-job.yaml).
    migrations: Literal["apply", "require"] = Field(
        default="apply",
        description="apply: the sink applies pending migrations at start; require: it waits, "
        "not ready, until `python -m ragops_sink.migrate` (a one-off Job) has applied them.",
    )
    migrations_poll_s: float = Field(
        default=10.0, gt=0, description="How often a sink that requires migrations looks again (s)."
    )
    retention_days: dict[str, int | None] = Field(
        default_factory=lambda: dict(DEFAULT_RETENTION_DAYS),
        description="Table -> days a row is kept after its occurred_at (None: forever), as JSON; "
        "tables not named keep their default (README, Retention).",
    )
    prices_usd_per_million: dict[str, tuple[float, float]] = Field(
        default_factory=lambda: {"SmolLM2-135M-Instruct": (0.0, 0.0)},
        description="gen_ai.request.model -> (input, output) USD per million tokens, for the cost views.",
    )
    platform: PlatformSettings = Field(default_factory=PlatformSettings)
    kafka: KafkaSettings = Field(default_factory=KafkaSettings)

    @field_validator("retention_days", mode="after")
    @classmethod
    def _retention_over_defaults(cls, days: dict[str, int | None]) -> dict[str, int | None]:
        unknown = sorted(set(days) - set(DEFAULT_RETENTION_DAYS))
        if unknown:
            raise ValueError(f"no retention for {unknown}: tables are {sorted(DEFAULT_RETENTION_DAYS)}")
        if any(value is not None and not 1 <= value <= MAX_DAYS for value in days.values()):
            raise ValueError(f"retention is a whole number of days in 1..{MAX_DAYS}, or null to keep rows")
        return {**DEFAULT_RETENTION_DAYS, **days}

    @model_validator(mode="after")
    def _server_in_production(self) -> "SinkSettings":
        # chDB lives inside one process on one disk: fine on a laptop, data loss in a cluster.
        if self.platform.environment == "production" and not self.clickhouse_url:
            raise ValueError("RAGOPS_SINK_CLICKHOUSE_URL is required when RAGOPS_ENVIRONMENT=production")
        return self

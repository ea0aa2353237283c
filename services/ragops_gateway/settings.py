"""Settings of the gateway service (env prefix ``RAGOPS_GATEWAY_``)."""

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

from ragops_analytics.client import AnalyticsSettings
from ragops_gateway.spec import SPEC
from ragops_schemas.changes import ChangeKind
from ragops_shared.identity import Role
from ragops_shared.settings import KafkaSettings, PlatformSettings


class GatewaySettings(BaseSettings):
    """Env prefix ``RAGOPS_GATEWAY_``."""

    model_config = SettingsConfigDict(env_prefix="RAGOPS_GATEWAY_", extra="ignore")

    host: str = "127.0.0.1"
    port: int = Field(default=SPEC.port, ge=0, le=65535)
    default_timeout_s: float = Field(default=60.0, gt=0, description="How long POST /v1/queries waits by default.")
    max_timeout_s: float = Field(default=300.0, gt=0)
    publish_timeout_s: float = Field(
        default=10.0, gt=0, description="A request whose event the broker has not taken by then gets 503."
    )
    max_document_bytes: int = Field(
        default=8 * 1024 * 1024,
        gt=0,
        description="POST /v1/documents refuses larger content (UTF-8 bytes) with 413; keep it at most "
        "RAGOPS_INGESTION_MAX_DOCUMENT_BYTES.",
    )
    analytics: AnalyticsSettings = Field(
        default_factory=AnalyticsSettings,
        description="POST /v1/sql forwards to RAGOPS_ANALYTICS_SQL_URL (the sink's /sql); unset = 503.",
    )
    approver_roles: dict[ChangeKind, list[Role]] = Field(
        default_factory=lambda: {kind: [Role.APPROVER] for kind in ("promote", "retire", "retrain")},
        description="Who may approve or reject each kind of change (JSON); a kind left out cannot be approved. "
        "Never the principal that requested it.",
    )
    change_ttl_s: float | None = Field(
        default=7 * 24 * 3600.0, gt=0, description="A change not decided within this is expired (None: never)."
    )
    platform: PlatformSettings = Field(default_factory=PlatformSettings)
    kafka: KafkaSettings = Field(default_factory=KafkaSettings)

"""Settings of the gateway service (env prefix ``RAGOPS_GATEWAY_``)."""

from datetime import timedelta
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, SecretStr, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from ragops_analytics.client import AnalyticsSettings
from ragops_gateway.spec import SPEC
from ragops_schemas.changes import ChangeKind
from ragops_shared.identity import Role
from ragops_shared.pseudonyms import KEY_BYTES, secret_key
from ragops_shared.settings import KafkaSettings, PlatformSettings

CONSOLE_KEY_FILE = Path("keys") / "console.key"
"""The embedded key of :meth:`GatewaySettings.form_key`, under the data dir."""

# The routes a tenant's rate is counted on, each apart: POST /v1/documents, /v1/queries, /v1/feedback;
# reads: the console's pages, GET /v1/answers/{request_id} and GET /v1/reviews/* (each reads ClickHouse).
RouteClass = Literal["documents", "queries", "feedback", "reads"]


class Rate(BaseModel):
    """A token bucket: at most ``burst`` requests at once, ``rate`` more a second after that."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    rate: float = Field(gt=0, description="Requests a second, on average.")
    burst: int = Field(ge=1, description="Requests at once (the bucket's size).")


class TenantLimits(BaseModel):
    """One tenant's own limits; what it leaves out is the gateway's default."""

    model_config = ConfigDict(extra="forbid")

    documents: Rate | None = None
    queries: Rate | None = None
    feedback: Rate | None = None
    reads: Rate | None = None
    max_document_bytes: int | None = Field(
        default=None, gt=0, description="At most RAGOPS_GATEWAY_MAX_DOCUMENT_BYTES: an override only lowers it."
    )


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
    experiment_max_candidate_percent: int = Field(
        default=50,
        ge=0,
        le=100,
        description="POST /v1/experiments refuses (422) arms other than the control (the version production serves "
        "now) taking more than this percent of the units together: more traffic to an unapproved version is a "
        "promotion, which passes the approval.",
    )
    max_document_bytes: int = Field(
        default=8 * 1024 * 1024,
        gt=0,
        description="POST /v1/documents refuses larger content (UTF-8 bytes) with 413; keep it at most "
        "RAGOPS_INGESTION_MAX_DOCUMENT_BYTES. The default of every tenant, and the ceiling of its override.",
    )
    rate: Rate = Field(
        default=Rate(rate=50.0, burst=100),
        description="Every tenant's rate on each of POST /v1/documents, /v1/queries, /v1/feedback (JSON "
        '{"rate": requests/s, "burst": requests}); over it: 429 with Retry-After. Per replica, in memory.',
    )
    read_rate: Rate = Field(
        default=Rate(rate=10.0, burst=200),
        description="Every tenant's rate on its reads: the console's pages, GET /v1/answers/{request_id} and "
        "GET /v1/reviews/* together (JSON, as RAGOPS_GATEWAY_RATE); over it: 429 with Retry-After. Per replica.",
    )
    tenant_limits: dict[str, TenantLimits] = Field(
        default_factory=dict,
        description='Per-tenant overrides (JSON): {"<tenant>": {"documents": {"rate": 1, "burst": 5}, '
        '"queries": ..., "feedback": ..., "reads": ..., "max_document_bytes": 100000}}.',
    )
    analytics: AnalyticsSettings = Field(
        default_factory=AnalyticsSettings,
        description="POST /v1/sql forwards to RAGOPS_ANALYTICS_SQL_URL (the sink's /sql); unset = 503.",
    )
    approver_roles: dict[ChangeKind, list[Role]] = Field(
        default_factory=lambda: {kind: [Role.APPROVER] for kind in ("promote", "retire", "retrain", "erase_subject")},
        description="Who may approve or reject each kind of change (JSON); a kind left out cannot be approved. "
        "Never the principal that requested it.",
    )
    erasure_approval: bool = Field(
        default=False,
        description="true: POST /v1/erasures records an erase_subject change that another person of the tenant "
        "with an approving role approves (four eyes) before anything is erased; false (default): the admin's "
        "request is published at once. An erasure is owed within a legal deadline, only removes data, and is "
        "signed, audited and proven by its counts; deployments whose policy wants two people turn this on.",
    )
    pseudonymized_ids: bool = Field(
        default=True,
        description="Whether the privacy service pseudonymizes user and subject ids (its RAGOPS_PRIVACY_POLICY "
        "pseudonymize_user_ids, default true): an erasure then looks for the subject's pseudonym, the id the "
        "stores hold. Keep the two equal.",
    )
    pseudonym_key_file: Path | None = Field(
        default=None,
        description="The privacy service's pseudonym key (the same file as RAGOPS_PRIVACY_PSEUDONYM_KEY_FILE); "
        "unset: the embedded <data_dir>/keys/pseudonym.key.",
    )
    change_ttl_s: float | None = Field(
        default=7 * 24 * 3600.0, gt=0, description="A change not decided within this is expired (None: never)."
    )
    prompt_labels_needing_approval: list[str] = Field(
        default_factory=lambda: ["production"],
        description="Prompt labels that POST /v1/prompts/{name}/labels sets only through a four-eyes change "
        "(a promote change another person approves); other labels are set at once.",
    )
    console_session_s: int = Field(
        default=8 * 3600, gt=0, description="Seconds a console login lasts (the session cookie's Max-Age)."
    )
    console_max_days: int = Field(
        default=92,
        gt=0,
        description="The longest date range (days, both ends included) the console's request list searches at once.",
    )
    console_secure_cookie: bool = Field(
        default=False,
        description="Always mark the console's cookie Secure (set it behind a TLS-terminating proxy, where the "
        "gateway itself sees http); it is Secure anyway when the request came over https.",
    )
    console_csrf_secret: SecretStr | None = Field(
        default=None,
        description="Key of the console forms' CSRF tokens and of other tokens the gateway signs for itself "
        "(HMAC-SHA256), at least 32 characters, the same on every replica (a token one replica made is checked by "
        "another); required in production. Unset in development: <data_dir>/keys/console.key, created on first use.",
    )
    prices_clock_skew_s: float = Field(
        default=300.0,
        ge=0,
        description="How far before now POST /v1/prices accepts an effective_from (the caller's clock may be "
        "behind); an earlier one is refused (422): a price list never re-prices what already happened.",
    )
    platform: PlatformSettings = Field(default_factory=PlatformSettings)
    kafka: KafkaSettings = Field(default_factory=KafkaSettings)

    @model_validator(mode="after")
    def _overrides_only_lower_the_size(self) -> "GatewaySettings":
        for tenant, limits in self.tenant_limits.items():
            if limits.max_document_bytes is not None and limits.max_document_bytes > self.max_document_bytes:
                raise ValueError(
                    f"RAGOPS_GATEWAY_TENANT_LIMITS: {tenant}'s max_document_bytes {limits.max_document_bytes} is above "
                    f"RAGOPS_GATEWAY_MAX_DOCUMENT_BYTES ({self.max_document_bytes})"
                )
        return self

    @model_validator(mode="after")
    def _console_secret_in_production(self) -> "GatewaySettings":
        # A key drawn per process would make every replica refuse the forms another one served.
        if self.platform.environment == "production" and self.console_csrf_secret is None:
            raise ValueError("RAGOPS_GATEWAY_CONSOLE_CSRF_SECRET must be set in production (the same on every replica)")
        secret = self.console_csrf_secret
        if secret is not None and len(secret.get_secret_value()) < KEY_BYTES:
            raise ValueError(f"RAGOPS_GATEWAY_CONSOLE_CSRF_SECRET must hold at least {KEY_BYTES} characters")
        return self

    def form_key(self) -> bytes:
        """The gateway's own HMAC key (console CSRF tokens, review-queue tokens): the bytes of
        :attr:`console_csrf_secret`, else of ``<data_dir>/keys/console.key``, created once (mode 0600;
        development only, every process of one data dir reads the same key).

        Raises:
            ValueError: the embedded key file holds fewer than 32 bytes.
            OSError: it cannot be read or created."""
        if self.console_csrf_secret is not None:
            return self.console_csrf_secret.get_secret_value().encode()
        return secret_key(None, self.platform.data_dir / CONSOLE_KEY_FILE, "console")

    @property
    def change_ttl(self) -> timedelta | None:
        """:attr:`change_ttl_s` as a duration (None: changes never expire)."""
        return None if self.change_ttl_s is None else timedelta(seconds=self.change_ttl_s)

    def rate_of(self, tenant: str, route: RouteClass) -> Rate:
        """``tenant``'s rate on ``route``: its override, else :attr:`read_rate` (reads) or :attr:`rate`."""
        limits = self.tenant_limits.get(tenant)
        own = getattr(limits, route) if limits is not None else None
        return own or (self.read_rate if route == "reads" else self.rate)

    def max_document_bytes_of(self, tenant: str) -> int:
        """The most content bytes (UTF-8) ``tenant`` may send in one document."""
        limits = self.tenant_limits.get(tenant)
        own = limits.max_document_bytes if limits is not None else None
        return own if own is not None else self.max_document_bytes

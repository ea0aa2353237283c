"""Settings shared by every service, read from the environment by pydantic-settings.

Each service composes these with its own ``BaseSettings`` class (env prefix
``RAGOPS_<SERVICE>_``); nothing else in the code base reads ``os.environ``.
"""

from pathlib import Path
from typing import Literal

from pydantic import Field, SecretStr, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from ragops_schemas.topics import DEFAULT_PARTITIONS
from ragops_shared.budgets import Budget
from ragops_shared.spec import OPS_PORT


class KafkaSettings(BaseSettings):
    """How to reach the Kafka cluster (env prefix ``KAFKA_``, e.g. ``KAFKA_BOOTSTRAP_SERVERS``)."""

    model_config = SettingsConfigDict(env_prefix="KAFKA_", extra="ignore")

    bootstrap_servers: str = "127.0.0.1:9092"
    security_protocol: Literal["PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"] = "PLAINTEXT"
    sasl_mechanism: Literal["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"] | None = None
    sasl_username: str | None = None
    sasl_password: SecretStr | None = None
    ssl_cafile: Path | None = None
    # Tansu answers a fetch only when its wait expires (it is not woken by a produce), so a
    # long wait adds up to that much latency per hop: measured, a request/reply hop takes
    # about 250 ms at 500 and 3-8 ms p50 at 10-50. Apache Kafka is woken by produces: 500 is fine there.
    fetch_max_wait_ms: int = Field(default=25, ge=0)
    # The readers of the version registry (five services) change rarely: at 25 ms their
    # fetches alone cost Tansu ~200 requests/s; at 500 a promotion reaches every replica
    # within about half a second on Tansu, at once on Apache Kafka.
    registry_fetch_max_wait_ms: int = Field(default=500, ge=0)
    # A group's first assignment takes about half the session timeout on Tansu.
    session_timeout_ms: int = Field(default=6000, ge=1000)
    heartbeat_interval_ms: int = Field(default=1000, ge=100)
    # Embedded chunk batches of long documents exceed Kafka's 1 MiB default.
    max_message_bytes: int = Field(default=16 * 1024 * 1024, gt=0)
    # A consumer whose oldest unprocessed record waits longer than this (or than its
    # max_poll_interval_ms, whichever is longer) is stuck: /health and /ready answer 503.
    stuck_after_s: float = Field(default=300.0, gt=0)
    # Tansu (the embedded broker) does not implement InitProducerId, so idempotent producers
    # cannot start there; turn it on against Apache Kafka. Consumers de-duplicate anyway
    # (event ids, deterministic point ids), so a retried produce has no second effect.
    enable_idempotence: bool = False
    partitions: int = Field(
        default=DEFAULT_PARTITIONS, ge=1, description="Partitions of each topic the platform creates."
    )
    replication_factor: int = Field(default=1, ge=1)

    @model_validator(mode="after")
    def _sasl_needs_credentials(self) -> "KafkaSettings":
        if self.security_protocol.startswith("SASL") and not (
            self.sasl_mechanism and self.sasl_username and self.sasl_password
        ):
            raise ValueError(
                f"KAFKA_SECURITY_PROTOCOL={self.security_protocol} needs KAFKA_SASL_MECHANISM, "
                "KAFKA_SASL_USERNAME and KAFKA_SASL_PASSWORD"
            )
        return self


class EmbeddedBrokerSettings(BaseSettings):
    """How the embedded platform (``ragops up``, ``make demo``, ``make bench``) runs its broker
    (env prefix ``RAGOPS_BROKER_``, e.g. ``RAGOPS_BROKER_STORAGE=memory``)."""

    model_config = SettingsConfigDict(env_prefix="RAGOPS_BROKER_", extra="ignore")

    # Durable by default: a restart of the broker or of `ragops up` loses no event. (Readers
    # that start at the end take it from a fetch's high watermark: Tansu's latest offset is
    # short, see ragops_shared.watch.)
    storage: Literal["durable", "memory"] = Field(
        default="durable",
        description="durable: the event log, topics and committed offsets survive a restart "
        "(kept on disk under the data dir); memory: gone when the broker stops.",
    )


class SigningSettings(BaseSettings):
    """Keys of signed control events (env prefix ``RAGOPS_SIGNING_``; see :mod:`ragops_shared.signing`)."""

    model_config = SettingsConfigDict(env_prefix="RAGOPS_SIGNING_", extra="ignore")

    key_file: Path | None = Field(
        default=None,
        description="This process's Ed25519 private key (PEM, PKCS#8), for the services that publish control "
        "events; unset: the embedded key of its owner under <data_dir>/keys (not in production).",
    )
    trust_file: Path | None = Field(
        default=None,
        description="The trusted public keys and the event types each owner may sign (JSON); unset: "
        "<data_dir>/keys/trust.json, created on first use (not in production).",
    )
    max_clock_skew_s: float = Field(
        default=300.0, ge=0, description="A control event dated further ahead of this reader's clock is refused."
    )
    model_dirs: list[Path] = Field(
        default_factory=list,
        description="Where model files named by registry events may lie, besides <data_dir>/models and the "
        "shipped default models.",
    )


class AuthSettings(BaseSettings):
    """Env prefix ``RAGOPS_AUTH_``."""

    model_config = SettingsConfigDict(env_prefix="RAGOPS_AUTH_", extra="ignore")

    api_keys_file: Path | None = Field(
        default=None, description="The API key file (hashes only); default <data_dir>/auth/api-keys.json."
    )
    oidc_issuer: str | None = Field(default=None, description="Expected `iss` of people's JWTs; unset = no JWTs.")
    oidc_audience: str = Field(default="ragops", description="Expected `aud` of people's JWTs.")
    oidc_jwks_url: str | None = Field(default=None, description="The issuer's JWKS URL (https in production).")
    oidc_jwks_file: Path | None = Field(default=None, description="A JWKS JSON file instead of the URL.")
    oidc_algorithms: list[str] = Field(default=["RS256", "ES256", "EdDSA"], description="Allowed JWT algorithms.")
    tenant_claim: str = "ragops_tenant"
    roles_claim: str = "ragops_roles"
    leeway_s: float = Field(default=30.0, ge=0, le=300, description="Clock skew allowed on exp/iat/nbf.")
    refusal_audit_timeout_s: float = Field(
        default=5.0,
        gt=0,
        description="How long a refused call (401/403) waits for the broker to take its audit entry; "
        "after that the entry is logged whole instead and the refusal answered.",
    )


class PlatformSettings(BaseSettings):
    """Settings every service reads (env prefix ``RAGOPS_``)."""

    model_config = SettingsConfigDict(env_prefix="RAGOPS_", extra="ignore")

    environment: Literal["development", "production"] = "development"
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"
    log_format: Literal["json", "console"] = "json"
    tenant: str = "default"
    data_dir: Path = Field(default=Path(".ragops"), description="Where embedded stores keep their files.")
    cache_dir: Path = Field(default=Path.home() / ".cache" / "ragops", description="Converted model weights.")
    # One intra-op thread per model-running process: on a 2-core machine two processes with
    # 2 OpenMP threads each spin against each other (measured up to 13x slower).
    torch_threads: int = Field(default=1, ge=1)
    ops_host: str = Field(
        default="127.0.0.1",
        description="Interface of the /health, /ready, /metrics HTTP server (0.0.0.0 in containers).",
    )
    ops_port: int = Field(
        default=OPS_PORT, ge=0, le=65535, description="Port of the /health, /ready, /metrics HTTP server."
    )
    blob_store: Literal["directory", "none"] = Field(
        default="directory",
        description="Where document content above inline_content_bytes is left (claim check): directory = "
        "<data_dir>/blobs, shared by the processes of one machine; none = such content is refused.",
    )
    inline_content_bytes: int = Field(
        default=1024 * 1024,
        gt=0,
        description="A DocumentSubmitted whose content (UTF-8) is larger travels by reference to the blob store.",
    )
    signing: SigningSettings = Field(default_factory=SigningSettings)
    auth: AuthSettings = Field(default_factory=AuthSettings)
    budgets: dict[str, Budget] = Field(
        default_factory=dict,
        description='Monthly budgets per tenant, JSON: {"acme": {"usd_per_month": 100, "action": "refuse"}} '
        "(ragops_shared.budgets; refuse: the gateway answers questions 429 until the month ends).",
    )
    budget_refresh_s: float = Field(
        default=60.0, gt=0, description="Seconds between reads of the tenants' month-to-date spend."
    )


def aiokafka_options(kafka: KafkaSettings) -> dict[str, object]:
    """Connection keyword arguments for aiokafka clients (consumer, producer, admin)."""
    import ssl  # only clients that talk TLS need it

    options: dict[str, object] = {
        "bootstrap_servers": kafka.bootstrap_servers,
        "security_protocol": kafka.security_protocol,
    }
    if kafka.security_protocol.endswith("SSL"):
        options["ssl_context"] = ssl.create_default_context(cafile=kafka.ssl_cafile)
    if kafka.security_protocol.startswith("SASL"):
        options["sasl_mechanism"] = kafka.sasl_mechanism
        options["sasl_plain_username"] = kafka.sasl_username
        options["sasl_plain_password"] = kafka.sasl_password.get_secret_value() if kafka.sasl_password else None
    return options

"""Settings of the privacy service (env prefix ``RAGOPS_PRIVACY_``)."""

from pathlib import Path

from pydantic import Field, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from ragops_privacy.redaction import RedactionPolicy
from ragops_shared.settings import KafkaSettings, PlatformSettings


class PrivacySettings(BaseSettings):
    """Env prefix ``RAGOPS_PRIVACY_``."""

    model_config = SettingsConfigDict(env_prefix="RAGOPS_PRIVACY_", extra="ignore")

    policy: RedactionPolicy = Field(
        default_factory=RedactionPolicy,
        description='The redaction policy, as JSON (RAGOPS_PRIVACY_POLICY=\'{"modes": {"PHONE_NUMBER": '
        '"mask"}}\'): a mode per entity type, extra patterns and deny lists, whether user ids are '
        "pseudonymized.",
    )
    pseudonym_key_file: Path | None = Field(
        default=None,
        description="The secret key of the per-tenant pseudonyms (HMAC-SHA256), at least 32 bytes; unset: "
        "<data_dir>/keys/pseudonym.key, created on first use (mode 0600; not in production). Changing it "
        "changes every pseudonym.",
    )
    document_batch_records: int = Field(default=4, gt=0, description="DocumentSubmitted records per fetch.")
    query_batch_records: int = Field(default=32, gt=0, description="QuerySubmitted records per fetch.")
    feedback_batch_records: int = Field(default=64, gt=0, description="FeedbackSubmitted records per fetch.")
    platform: PlatformSettings = Field(default_factory=PlatformSettings)
    kafka: KafkaSettings = Field(default_factory=KafkaSettings)

    @model_validator(mode="after")
    def _key_in_production(self) -> "PrivacySettings":
        if self.platform.environment == "production" and self.pseudonym_key_file is None:
            raise ValueError("RAGOPS_PRIVACY_PSEUDONYM_KEY_FILE must be set in production (no embedded key there)")
        return self

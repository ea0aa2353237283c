"""Settings of the feedback service (env prefix ``RAGOPS_FEEDBACK_``)."""

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

from ragops_shared.settings import KafkaSettings, PlatformSettings


class FeedbackSettings(BaseSettings):
    """Env prefix ``RAGOPS_FEEDBACK_``."""

    model_config = SettingsConfigDict(env_prefix="RAGOPS_FEEDBACK_", extra="ignore")

    dataset: str = Field(default="feedback", description="Dataset that corrections and liked answers join.")
    max_answers: int = Field(
        default=1_000_000, gt=0, description="Answers remembered for linking (oldest dropped first)."
    )
    unknown_wait_s: float = Field(default=5.0, ge=0, description="How long to wait for an answer still in flight.")
    replay_wait_s: float = Field(
        default=240.0,
        ge=0,
        description="After a start, how long feedback for a request not read yet waits for the answers "
        "to be read from the topic's start (less than the consumer's 300 s poll interval).",
    )
    max_clock_skew_s: float = Field(
        default=300.0, ge=0, description="Feedback stamped further in the future is refused."
    )
    batch_records: int = Field(default=64, gt=0)
    platform: PlatformSettings = Field(default_factory=PlatformSettings)
    kafka: KafkaSettings = Field(default_factory=KafkaSettings)

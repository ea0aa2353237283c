"""The retraining policy: rules that map drift alerts to ``RetrainingRequested`` events.

Loaded from a TOML file (``RAGOPS_MONITOR_POLICY``; the packaged ``policy.toml`` by
default) and validated with pydantic, so a typo in an action or field stops the monitor at
start with the rule's position."""

import tomllib
from fnmatch import fnmatch
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field

from ragops_schemas.lifecycle import RetrainingAction

DEFAULT_POLICY = Path(__file__).with_name("policy.toml")


class PolicyRule(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str = Field(min_length=1)
    signals: list[str] = Field(min_length=1, description="fnmatch patterns of signal names.")
    action: RetrainingAction
    min_examples_after: int = Field(
        default=0,
        ge=0,
        description="Wait until this many dataset examples were added after the alert.",
    )
    only_if_prompt_changed: bool = Field(
        default=False,
        description="Fire only if the production prompt changed after the reference window began.",
    )
    cooldown_s: float = Field(default=900, ge=0, description="Minimum seconds between two requests of this rule.")

    def matches(self, signal: str) -> bool:
        return any(fnmatch(signal, pattern) for pattern in self.signals)


class RetrainingPolicy(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    rules: list[PolicyRule] = Field(default_factory=list)

    @classmethod
    def load(cls, path: Path | None = None) -> "RetrainingPolicy":
        """Raises ``OSError`` if the file cannot be read, ``tomllib.TOMLDecodeError`` or
        ``pydantic.ValidationError`` if it is not a valid policy."""
        with (path or DEFAULT_POLICY).open("rb") as handle:
            return cls.model_validate(tomllib.load(handle))

    def rules_for(self, signal: str) -> list[PolicyRule]:
        return [rule for rule in self.rules if rule.matches(signal)]

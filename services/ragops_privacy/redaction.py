"""Stand-in for the redaction engine (helper "pii" writes the real one, with Presidio): the
same API, e-mail addresses only. Replaced at merge; nothing else belongs in this file."""

import hashlib
import hmac
import re
from dataclasses import dataclass
from typing import Literal

from pydantic import BaseModel, ConfigDict

Mode = Literal["mask", "type", "pseudonym"]
_EMAIL = re.compile(r"[A-Za-z0-9._%+-]+@[A-Za-z0-9.-]+\.[A-Za-z]{2,}")


class RedactionPolicy(BaseModel):
    """Per entity type a mode (``default_mode`` for unlisted types), extra patterns and deny
    lists, and whether user ids are pseudonymized."""

    model_config = ConfigDict(frozen=True)

    modes: dict[str, Mode] = {}
    default_mode: Mode = "type"
    patterns: dict[str, list[str]] = {}
    deny_lists: dict[str, list[str]] = {}
    pseudonymize_user_ids: bool = True


@dataclass(frozen=True)
class Redaction:
    text: str
    counts: dict[str, int]


class Redactor:
    def __init__(self, policy: RedactionPolicy, pseudonym_key: bytes) -> None:
        self.policy = policy
        self._key = pseudonym_key

    def redact(self, text: str, *, tenant: str) -> Redaction:
        mode = self.policy.modes.get("EMAIL_ADDRESS", self.policy.default_mode)

        def replace(match: re.Match[str]) -> str:
            if mode == "mask":
                return "*" * len(match.group())
            if mode == "pseudonym":
                return f"<EMAIL_ADDRESS:{self.pseudonym(match.group(), tenant=tenant)}>"
            return "<EMAIL_ADDRESS>"

        text, found = _EMAIL.subn(replace, text)
        return Redaction(text, {"EMAIL_ADDRESS": found} if found else {})

    def pseudonym(self, value: str, *, tenant: str) -> str:
        digest = hmac.new(self._key, f"{tenant}\x00{value}".encode(), hashlib.sha256).hexdigest()
        return digest[:16]

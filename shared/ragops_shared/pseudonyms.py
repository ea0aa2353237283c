"""The per-tenant pseudonyms of user and subject ids, and their secret key.

The privacy service writes a user's or data subject's id onto the kept topics as its keyed
pseudonym (:func:`subject_pseudonym`); the gateway computes the same pseudonym to find what the
stores hold of a subject it is asked to erase. Both read one key: a mounted Secret in production
(``RAGOPS_PRIVACY_PSEUDONYM_KEY_FILE``, ``RAGOPS_GATEWAY_PSEUDONYM_KEY_FILE``), else the embedded
one, ``<data_dir>/keys/pseudonym.key``, created once."""

import fcntl
import os
import secrets
import unicodedata
from pathlib import Path

import structlog

from ragops_schemas import ids

KEY_FILE = Path("keys") / "pseudonym.key"
"""The embedded pseudonym key, under the data dir."""
KEY_BYTES = 32
"""Bytes of a created key (HMAC-SHA256's block is 64; 32 random bytes are its full strength)."""

log = structlog.get_logger(__name__)


def pseudonym_key(key_file: Path | None, data_dir: Path) -> bytes:
    """The key's bytes: ``key_file``, else ``data_dir``/:data:`KEY_FILE`, created with mode 0600
    (never readable by others, not even for a moment) in a 0700 folder; processes starting
    together take turns (a lock file), so they all read the same key.

    Raises:
        ValueError: the key file holds fewer than :data:`KEY_BYTES` bytes.
        OSError: it cannot be read (or the embedded one created)."""
    return secret_key(key_file, data_dir / KEY_FILE, "pseudonym")


def secret_key(key_file: Path | None, embedded: Path, what: str) -> bytes:
    """The bytes of the secret key ``key_file``, else of ``embedded``, created once
    (:func:`created_once`); ``what`` names the key in errors and logs.

    Raises:
        ValueError: the key file holds fewer than :data:`KEY_BYTES` bytes.
        OSError: it cannot be read (or the embedded one created)."""
    path = key_file or created_once(embedded, what)
    key = path.read_bytes()
    if len(key) < KEY_BYTES:
        raise ValueError(f"the {what} key {path} holds {len(key)} bytes: at least {KEY_BYTES} are needed")
    return key


def created_once(path: Path, what: str = "pseudonym") -> Path:
    """``path``, holding :data:`KEY_BYTES` random bytes written once (an existing key is kept: a
    new pseudonym key would change every pseudonym, a new experiment key every assignment)."""
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    with (path.parent / f".{what}.lock").open("a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not path.exists():
            descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(descriptor, "wb") as file:
                file.write(secrets.token_bytes(KEY_BYTES))
            log.warning(f"{what}_key_created", path=str(path))
    return path


def subject_pseudonym(key: bytes, value: str, *, tenant: str) -> str:
    """16 hex digits: the keyed per-tenant pseudonym of a user or subject id, NFKC-normalised and
    stripped (ids are case-sensitive): :func:`ragops_schemas.ids.pseudonym`."""
    return ids.pseudonym(key, unicodedata.normalize("NFKC", value).strip(), tenant=tenant)

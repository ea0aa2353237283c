"""The secret key of the per-tenant pseudonyms: ``RAGOPS_PRIVACY_PSEUDONYM_KEY_FILE``, else
(outside production) the embedded one, ``<data_dir>/keys/pseudonym.key``, created once."""

import fcntl
import os
import secrets
import sys
from pathlib import Path

import structlog

from ragops_privacy.settings import PSEUDONYM_KEY_FILE, PrivacySettings

KEY_BYTES = 32
"""Bytes of a created key (HMAC-SHA256's block is 64; 32 random bytes are its full strength)."""

log = structlog.get_logger(__name__)


def pseudonym_key(settings: PrivacySettings) -> bytes:
    """The key's bytes. The embedded key is created with mode 0600 (never readable by others,
    not even for a moment) in a 0700 folder; processes starting together take turns (a lock
    file), so they all read the same key.

    Raises:
        ValueError: the key file holds fewer than :data:`KEY_BYTES` bytes.
        OSError: it cannot be read (or the embedded one created)."""
    path = settings.pseudonym_key_file or _created_once(settings.platform.data_dir / PSEUDONYM_KEY_FILE)
    key = path.read_bytes()
    if len(key) < KEY_BYTES:
        raise ValueError(f"the pseudonym key {path} holds {len(key)} bytes: at least {KEY_BYTES} are needed")
    return key


def _created_once(path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    with (path.parent / ".pseudonym.lock").open("a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not path.exists():
            descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(descriptor, "wb") as file:
                file.write(secrets.token_bytes(KEY_BYTES))
            log.warning("pseudonym_key_created", path=str(path))
    return path


def main() -> None:
    """``python -m ragops_privacy.keys PATH``: create the key file ``PATH`` once (mode 0600);
    an existing one is kept (a new key would change every pseudonym)."""
    _created_once(Path(sys.argv[1]))


if __name__ == "__main__":
    main()

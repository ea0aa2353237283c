"""Crypto-shredding: a data subject's values in the topics kept forever are sealed with a key of
their own, and erasing the subject deletes the key, so every copy (every replay, every
consumer's re-read, every backup of the topic) reads as erased from then on.

A sealed value is a self-describing string, ``shred:v1:<key id>:<sealed>``: ``<key id>`` is
:func:`ragops_schemas.ids.subject_key_id` of (tenant, subject) and ``<sealed>`` the URL-safe
base64 (RFC 4648 §5, no padding) of a 12-byte random nonce followed by the AES-256-GCM
ciphertext and its 16-byte tag (NIST SP 800-38D, through ``cryptography``'s ``AESGCM``); the
prefix up to the key id is the associated data, so a token moved to another key or version
does not open.

:class:`SubjectKeyStore` is the interface a key store implements; :class:`FileKeyStore` keeps
one 32-byte key per subject in ``<data_dir>/keys/subjects/<key id>.key`` (files 0600 in a 0700
directory, created atomically). Every process that seals or opens must see the same
directory: on several hosts it needs a shared volume. Production should back the interface
with a KMS or Vault (a key per subject, or data keys wrapped by one): the key store is then
the only place to audit and to back up without the data.

Errors: :class:`KeyStoreUnavailable` (a ``ConnectionError``, so consumers retry it as transient
and then dead-letter it) when the store cannot be read or written; the caller never falls back
to plaintext. :class:`InvalidToken` (a ``ValueError``) for a string that is not a sealed value
or that does not authenticate (tampered, truncated).
"""

import base64
import binascii
import contextlib
import os
import re
import secrets
import tempfile
from pathlib import Path
from typing import Protocol

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from ragops_schemas.ids import subject_key_id

PREFIX = "shred:v1:"
"""What every sealed value starts with."""
_KEY_BYTES = 32
_NONCE_BYTES = 12
_TAG_BYTES = 16
_KEY_ID = re.compile(r"^[0-9a-f]{32}$")


class KeyStoreUnavailable(ConnectionError):
    """The key store could not be read or written (missing volume, permissions, KMS down):
    nothing was sealed, opened or forgotten. Transient for consumers (retried, then
    dead-lettered), never a reason to write plaintext."""


class InvalidToken(ValueError):
    """A string that is not a sealed value, or one that does not authenticate with its key."""


class SubjectKeyStore(Protocol):
    """Per-subject keys, named by key id (:func:`ragops_schemas.ids.subject_key_id`).

    Every method raises :class:`KeyStoreUnavailable` when the store cannot be reached."""

    def get_or_create(self, key_id: str) -> bytes:
        """The 32-byte key ``key_id``, created (atomically, once across processes) if absent."""
        ...

    def get(self, key_id: str) -> bytes | None:
        """The 32-byte key ``key_id``; None when it never existed or was deleted."""
        ...

    def delete(self, key_id: str) -> bool:
        """Delete the key ``key_id``: True if it existed, False if there was none."""
        ...


def _unavailable(root: Path, error: OSError) -> KeyStoreUnavailable:
    return KeyStoreUnavailable(f"subject key store {root}: {error.strerror or error}")


class FileKeyStore:
    """:class:`SubjectKeyStore` on a local (or shared) directory: ``<root>/<key id>.key`` holds
    the 32 raw key bytes, mode 0600, in a directory of mode 0700. A key is created by writing a
    temporary file and hard-linking it into place, so two processes creating the same key at
    once agree on one. Nothing is cached: a key deleted by one process is gone for all at once.

    ``root`` is created (0700) when first needed; a root that cannot be created, read or
    written makes the call raise :class:`KeyStoreUnavailable`."""

    def __init__(self, root: Path) -> None:
        self.root = root

    @classmethod
    def under(cls, data_dir: Path) -> "FileKeyStore":
        """The platform's store: ``<data_dir>/keys/subjects``."""
        return cls(data_dir / "keys" / "subjects")

    def _path(self, key_id: str) -> Path:
        if not _KEY_ID.match(key_id):
            raise InvalidToken("a key id is 32 lowercase hex digits")
        try:
            self.root.mkdir(mode=0o700, parents=True, exist_ok=True)
        except OSError as error:
            raise _unavailable(self.root, error) from error
        return self.root / f"{key_id}.key"

    def _read(self, path: Path) -> bytes | None:
        try:
            key = path.read_bytes()
        except FileNotFoundError:
            return None
        except OSError as error:
            raise _unavailable(self.root, error) from error
        if len(key) != _KEY_BYTES:
            raise KeyStoreUnavailable(f"subject key store {self.root}: a key file of {len(key)} bytes, not 32")
        return key

    def get(self, key_id: str) -> bytes | None:
        return self._read(self._path(key_id))

    def get_or_create(self, key_id: str) -> bytes:
        path = self._path(key_id)
        if (key := self._read(path)) is not None:
            return key
        try:
            # mkstemp creates the file 0600; linking it into place fails if another process was first.
            handle, temporary = tempfile.mkstemp(dir=self.root, prefix=".new-")
            try:
                with os.fdopen(handle, "wb") as file:
                    file.write(secrets.token_bytes(_KEY_BYTES))
                    file.flush()
                    os.fsync(file.fileno())
                # Another process created it first: its key is the one (read below).
                with contextlib.suppress(FileExistsError):
                    os.link(temporary, path)
            finally:
                os.unlink(temporary)
        except OSError as error:
            raise _unavailable(self.root, error) from error
        key = self._read(path)
        if key is None:  # deleted between the link and the read: an erasure came in between
            raise KeyStoreUnavailable(f"subject key {key_id} was deleted while it was created")
        return key

    def delete(self, key_id: str) -> bool:
        path = self._path(key_id)
        try:
            path.unlink()
        except FileNotFoundError:
            return False
        except OSError as error:
            raise _unavailable(self.root, error) from error
        return True


def is_sealed(value: str) -> bool:
    """Whether ``value`` is a sealed value (starts with :data:`PREFIX`)."""
    return value.startswith(PREFIX)


class Shredder:
    """Seals values under their subject's key and opens them while the key exists."""

    def __init__(self, store: SubjectKeyStore) -> None:
        self.store = store

    def seal(self, value: str, tenant: str, subject: str) -> str:
        """``value`` encrypted with the key of (``tenant``, ``subject``), created if the subject
        has none: ``shred:v1:<key id>:<base64url(nonce | ciphertext | tag)>``, 4/3 of the
        value's UTF-8 length plus about 80 characters. Raises :class:`KeyStoreUnavailable`."""
        return self.seal_for(value, subject_key_id(tenant, subject))

    def seal_for(self, value: str, key_id: str) -> str:
        """``value`` sealed as :meth:`seal` seals it, with the key ``key_id``
        (:func:`ragops_schemas.ids.subject_key_id` of the subject), for a caller that is given
        the key id and not the subject (a review's ``asker_key_id``). Raises
        :class:`KeyStoreUnavailable`; ``ValueError`` for a ``key_id`` that is not one."""
        if not _KEY_ID.match(key_id):
            raise ValueError("not a subject key id")
        header = f"{PREFIX}{key_id}:"
        nonce = secrets.token_bytes(_NONCE_BYTES)
        sealed = AESGCM(self.store.get_or_create(key_id)).encrypt(nonce, value.encode(), header.encode())
        return header + base64.urlsafe_b64encode(nonce + sealed).rstrip(b"=").decode()

    def open(self, token: str) -> str | None:
        """The value sealed in ``token``; None when its subject's key is gone (erased).

        Raises :class:`InvalidToken` for a string that is not a sealed value or does not
        authenticate, :class:`KeyStoreUnavailable` when the store cannot be read."""
        if not is_sealed(token):
            raise InvalidToken("not a sealed value")
        key_id, _, body = token[len(PREFIX) :].partition(":")
        if not _KEY_ID.match(key_id):
            raise InvalidToken("sealed value: no key id")
        try:
            raw = base64.b64decode(body + "=" * (-len(body) % 4), altchars=b"-_", validate=True)
        except (binascii.Error, ValueError):
            raise InvalidToken("sealed value: not base64url") from None
        if len(raw) < _NONCE_BYTES + _TAG_BYTES:
            raise InvalidToken("sealed value: too short")
        key = self.store.get(key_id)
        if key is None:
            return None
        header = f"{PREFIX}{key_id}:"
        try:
            return AESGCM(key).decrypt(raw[:_NONCE_BYTES], raw[_NONCE_BYTES:], header.encode()).decode()
        except InvalidTag:
            raise InvalidToken("sealed value does not authenticate (tampered, or sealed with another key)") from None

    def reveal(self, value: str) -> str | None:
        """``value`` opened if sealed (None once erased), else ``value`` itself (a value
        written before sealing, or one that belongs to no subject). Raises as :meth:`open`."""
        return self.open(value) if is_sealed(value) else value

    def forget(self, tenant: str, subject: str) -> bool:
        """Delete the subject's key: every value sealed for it reads as erased from now on.
        True if there was a key, False if the subject had none (nothing was ever sealed).
        Raises :class:`KeyStoreUnavailable`."""
        return self.store.delete(subject_key_id(tenant, subject))

"""Claim check for large documents: content too large to travel in its ``DocumentSubmitted``
is stored once in a content-addressed blob store, and the event carries a reference (its
SHA-256 and size, :class:`~ragops_schemas.events.ContentRef`) instead.

Whoever produces ``DocumentSubmitted`` (the gateway, the CLI and client) checks content in
(:func:`check_in`); the privacy service checks it out (:func:`check_out`), verifying the
digest, checks the redacted content in again and deletes the raw blob; ingestion checks the
redacted content out. The
store is an interface (:class:`BlobStore`): the embedded default is a directory under the
data dir (:class:`DirectoryBlobStore`), shared by the processes of one machine; a deployment
whose producers and ingestion run on different machines needs a shared store (an object
store adapter, to come) or ``RAGOPS_BLOB_STORE=none``, which refuses such content at the
producer instead of sending an event the broker would refuse."""

import os
import tempfile
from pathlib import Path
from typing import Protocol, TypeVar

from ragops_schemas.events import ContentRef, DocumentContent
from ragops_schemas.ids import blob_digest
from ragops_shared.settings import PlatformSettings


class BlobUnavailable(Exception):
    """A referenced blob cannot be read as it was stored: missing, of another size or digest,
    or no blob store is configured. The message names the digest and what is wrong."""


class ContentTooLarge(ValueError):
    """Content above the inline limit and no blob store to leave it in; the message says the sizes."""


class BlobStore(Protocol):
    """A content-addressed store of immutable blobs, keyed by their SHA-256."""

    def put(self, data: bytes) -> ContentRef:
        """Store ``data`` (idempotent: the same bytes, the same key, stored once); its reference.
        Raises ``OSError`` when the store cannot be written."""
        ...

    def get(self, ref: ContentRef) -> bytes:
        """The bytes of ``ref``, checked against its size and digest.

        Raises:
            BlobUnavailable: missing, or not the bytes the reference names."""
        ...

    def delete(self, ref: ContentRef) -> None:
        """Remove the blob of ``ref`` (idempotent: a missing one is no error). Raises
        ``OSError`` when the store cannot be written."""
        ...


class DirectoryBlobStore:
    """Blobs as files ``<root>/<sha256>``: written to a temporary file in ``root`` and renamed
    into place (atomic on one file system), so a reader sees a whole blob or none, and
    concurrent writers of the same bytes both succeed."""

    def __init__(self, root: Path) -> None:
        self.root = root

    def put(self, data: bytes) -> ContentRef:
        ref = ContentRef(sha256=blob_digest(data), size=len(data))
        path = self.root / ref.sha256
        if path.is_file() and path.stat().st_size == ref.size:
            return ref  # content-addressed: already there
        self.root.mkdir(parents=True, exist_ok=True)
        fd, temporary = tempfile.mkstemp(dir=self.root, prefix=f".{ref.sha256[:16]}-", suffix=".tmp")
        try:
            with os.fdopen(fd, "wb") as file:
                file.write(data)
                file.flush()
                os.fsync(file.fileno())  # the event that refers to it may outlive a crash
            os.replace(temporary, path)
        except BaseException:
            Path(temporary).unlink(missing_ok=True)
            raise
        return ref

    def get(self, ref: ContentRef) -> bytes:
        try:
            data = (self.root / ref.sha256).read_bytes()
        except FileNotFoundError:
            raise BlobUnavailable(f"blob {ref.sha256} ({ref.size} bytes) is not in {self.root}") from None
        if len(data) != ref.size or blob_digest(data) != ref.sha256:
            raise BlobUnavailable(
                f"blob {ref.sha256} in {self.root} is corrupt: {len(data)} bytes with digest {blob_digest(data)}, "
                f"expected {ref.size} bytes"
            )
        return data

    def delete(self, ref: ContentRef) -> None:
        (self.root / ref.sha256).unlink(missing_ok=True)


def open_blob_store(platform: PlatformSettings) -> BlobStore | None:
    """The store ``RAGOPS_BLOB_STORE`` names: ``directory`` (``<RAGOPS_DATA_DIR>/blobs``) or
    ``none`` (``None``: large content is refused)."""
    if platform.blob_store == "none":
        return None
    return DirectoryBlobStore(platform.data_dir / "blobs")


D = TypeVar("D", bound=DocumentContent)


def check_in(event: D, store: BlobStore | None, inline_max_bytes: int) -> D:
    """``event`` as it may travel: unchanged when its content is at most ``inline_max_bytes``
    (UTF-8) or already a reference; else with the content put in ``store`` and replaced by
    its ``content_ref``.

    Raises:
        ContentTooLarge: the content is above the limit and ``store`` is ``None``.
        OSError: the store could not be written."""
    data = event.content.encode()
    if event.content_ref is not None or len(data) <= inline_max_bytes:
        return event
    if store is None:
        raise ContentTooLarge(
            f"content of {len(data)} bytes is above the inline limit of {inline_max_bytes} bytes "
            "(RAGOPS_INLINE_CONTENT_BYTES) and no blob store is configured (RAGOPS_BLOB_STORE=none)"
        )
    return event.model_copy(update={"content": "", "content_ref": store.put(data)})


def check_out(event: DocumentContent, store: BlobStore | None) -> str:
    """The content of ``event``: inline, or read from ``store`` and verified (decoded as
    UTF-8 without a leading byte order mark: an encoding signature, not text).

    Raises:
        BlobUnavailable: the blob is missing or corrupt, not UTF-8, or there is no store."""
    if event.content_ref is None:
        return event.content
    if store is None:
        raise BlobUnavailable(
            f"document content is a reference to blob {event.content_ref.sha256} and no blob store is "
            "configured (RAGOPS_BLOB_STORE=none)"
        )
    ref = event.content_ref
    data = store.get(ref)
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as error:
        raise BlobUnavailable(f"blob {ref.sha256} is not UTF-8 ({error.reason} at {error.start})") from None

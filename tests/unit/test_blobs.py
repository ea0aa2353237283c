"""The claim check's blob store and its two ends (no broker): content-addressed, atomic and
verified; content under the inline limit travels as it is; above it with no store, refused."""

from pathlib import Path

import pytest
from pydantic import ValidationError

from ragops_schemas import DocumentSubmitted
from ragops_schemas.events import ContentRef
from ragops_schemas.ids import blob_digest, content_hash
from ragops_shared.blobs import BlobUnavailable, ContentTooLarge, DirectoryBlobStore, check_in, check_out
from tests.helpers import PRODUCER


def _document(content: str) -> DocumentSubmitted:
    return DocumentSubmitted(producer=PRODUCER, document_id="d", content=content)


def test_a_blob_is_stored_once_under_its_digest_with_no_temporary_file_left(tmp_path: Path) -> None:
    store = DirectoryBlobStore(tmp_path / "blobs")
    ref = store.put(b"some bytes")
    assert ref == ContentRef(sha256=blob_digest(b"some bytes"), size=10) == store.put(b"some bytes")
    assert [path.name for path in (tmp_path / "blobs").iterdir()] == [ref.sha256]
    assert store.get(ref) == b"some bytes"


def test_a_missing_or_altered_blob_is_unavailable_with_the_reason(tmp_path: Path) -> None:
    store = DirectoryBlobStore(tmp_path)
    ref = store.put(b"original")
    (tmp_path / ref.sha256).write_bytes(b"altered!")  # same size, other digest
    with pytest.raises(BlobUnavailable, match="is corrupt"):
        store.get(ref)
    with pytest.raises(BlobUnavailable, match="is not in"):
        store.get(ContentRef(sha256="0" * 64, size=1))


def test_check_in_moves_only_content_above_the_limit(tmp_path: Path) -> None:
    store = DirectoryBlobStore(tmp_path)
    small, large = _document("x" * 100), _document("é" * 100)  # 100 and 200 bytes
    assert check_in(small, store, 100) is small
    moved = check_in(large, store, 100)
    assert moved.content == "" and moved.content_ref == ContentRef(sha256=blob_digest(("é" * 100).encode()), size=200)
    assert moved.event_id == large.event_id and moved.content_hash == large.content_hash == content_hash("é" * 100)
    assert check_out(moved, store) == "é" * 100 and check_out(small, None) == small.content
    with pytest.raises(ContentTooLarge, match="no blob store is configured"):
        check_in(large, None, 100)
    with pytest.raises(BlobUnavailable, match="no blob store"):
        check_out(moved, None)


def test_a_document_carries_content_or_a_reference_not_both() -> None:
    with pytest.raises(ValidationError, match="exclusive"):
        DocumentSubmitted(
            producer=PRODUCER, document_id="d", content="x", content_ref=ContentRef(sha256="a" * 64, size=1)
        )

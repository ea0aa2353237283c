"""Claim check (issue 12, item 8): a document of several MiB travels by reference through
the real broker: the client leaves its content in the blob store, the ``DocumentSubmitted``
record carries only its digest and size, the privacy service checks it out, verifies and
redacts it, and ingestion checks the redacted content out and chunks it in parts. A missing
or corrupt blob is dead-lettered once with the reason, and the stream goes on."""

import asyncio
import contextlib
from pathlib import Path

import pytest

from ragops.client import PlatformClient
from ragops_ingestion.app import create_app
from ragops_ingestion.settings import IngestionSettings
from ragops_privacy.app import create_app as privacy_app
from ragops_privacy.settings import PrivacySettings
from ragops_schemas import DocumentChunked, DocumentSubmitted, MessageDeadLettered
from ragops_shared.blobs import check_in, open_blob_store
from ragops_shared.settings import PlatformSettings
from tests.helpers import PRODUCER
from tests.integration.services import read_records, running, wait_for, watching

pytestmark = [pytest.mark.kafka, pytest.mark.model]

MIB = 1024 * 1024


def _document(corpus_rows: list[dict], size: int) -> str:
    block = "\n\n".join(row["text"] for row in corpus_rows[:12])
    return "\n\n".join([block] * (size // len(block.encode()) + 1))


def _parts_of(seen: list, document_id: str) -> list[DocumentChunked]:
    return [e for e in seen if isinstance(e, DocumentChunked) and e.document_id == document_id]


async def test_a_document_of_several_mib_travels_by_reference_and_is_chunked(
    kafka, tmp_path: Path, corpus_rows: list[dict]
) -> None:
    platform = PlatformSettings(data_dir=tmp_path)
    content = _document(corpus_rows, 5 * MIB)
    assert len(content.encode()) > 5 * MIB > 4 * platform.inline_content_bytes
    async with (
        watching(kafka, [DocumentChunked, MessageDeadLettered]) as seen,
        running(privacy_app(PrivacySettings(kafka=kafka, platform=platform))),
        running(create_app(IngestionSettings(kafka=kafka, platform=platform))),
        PlatformClient(kafka, "test", platform) as client,
    ):
        # No DocumentIndexed comes (nothing embeds here): wait for the parts instead.
        waiting = asyncio.create_task(client.ingest([client.document("big", content)], timeout_s=300))
        parts = await wait_for(
            seen,
            lambda events: (found := _parts_of(events, "big")) and len(found) == found[0].parts,
            timeout_s=300,
        )
        waiting.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await waiting

    [(submitted, _)] = await read_records(kafka, DocumentSubmitted, 1)
    assert submitted.content == "" and submitted.content_ref is not None
    assert submitted.content_ref.size == len(content.encode())
    assert len(submitted.model_dump_json()) < 4096, "the record carries the reference, not the content"
    assert (tmp_path / "blobs" / submitted.content_ref.sha256).stat().st_size == submitted.content_ref.size
    chunked = sorted(_parts_of(parts, "big"), key=lambda e: e.part)
    assert len(chunked) > 1 and not [e for e in seen if isinstance(e, MessageDeadLettered)]
    chunks = [chunk for part in chunked for chunk in part.chunks]
    assert chunks[0].char_start == 0 and chunks[-1].char_end >= len(content.rstrip()) - 1


async def test_a_missing_or_corrupt_blob_is_dead_lettered_once_and_the_stream_goes_on(kafka, tmp_path: Path) -> None:
    platform = PlatformSettings(data_dir=tmp_path, inline_content_bytes=1024)
    blobs = open_blob_store(platform)
    corrupt, missing = (
        check_in(DocumentSubmitted(producer=PRODUCER, document_id=name, content=f"{name} " * 1000), blobs, 1024)
        for name in ("corrupt", "missing")
    )
    assert corrupt.content_ref is not None and missing.content_ref is not None
    (tmp_path / "blobs" / corrupt.content_ref.sha256).write_text("tampered " * 100)
    (tmp_path / "blobs" / missing.content_ref.sha256).unlink()
    after = DocumentSubmitted(producer=PRODUCER, document_id="after", content="A small document, inline.")

    async with (
        watching(kafka, [DocumentChunked, MessageDeadLettered]) as seen,
        running(privacy_app(PrivacySettings(kafka=kafka, platform=platform))),
        running(create_app(IngestionSettings(kafka=kafka, platform=platform))),
        PlatformClient(kafka, "test", platform) as client,
    ):
        for event in (corrupt, missing, after):
            await client.publish(event)
        await wait_for(seen, lambda events: bool(_parts_of(events, "after")))
        # Behind "after" on no partition in particular: give the letters their own wait.
        await wait_for(seen, lambda events: sum(isinstance(e, MessageDeadLettered) for e in events) >= 2)

    letters = {e.original_key: e for e in seen if isinstance(e, MessageDeadLettered)}
    assert set(letters) == {"corrupt", "missing"} and len([e for e in seen if isinstance(e, MessageDeadLettered)]) == 2
    assert letters["corrupt"].error_type == "rejected" and "is corrupt" in letters["corrupt"].reason
    assert letters["missing"].error_type == "rejected" and "is not in" in letters["missing"].reason
    assert letters["corrupt"].attempts == 1, "refused at once, not retried"

"""Every event derived from the largest document the gateway accepts fits the broker (issue
13, "Bounded input"): a document at every limit (content inline up to the inline limit, by
reference up to ``RAGOPS_GATEWAY_MAX_DOCUMENT_BYTES``; the longest title, source and
metadata, in 4-byte characters) goes through ingestion and embedding (their plain
functions, the real tokenizer and model), and each event, and the dead letter of each, is
under ``KAFKA_MAX_MESSAGE_BYTES`` with the record's framing."""

from pathlib import Path

import pytest
from aiokafka import ConsumerRecord
from pydantic_core import to_json

from ragops_embedding.app import embed_documents
from ragops_embedding.settings import EmbeddingSettings
from ragops_gateway.app import DocumentIn
from ragops_gateway.settings import GatewaySettings
from ragops_ingestion.app import ingest
from ragops_ingestion.settings import IngestionSettings
from ragops_schemas import ChunkerInfo, DocumentChunked, DocumentIndexed, DocumentSubmitted, Event
from ragops_schemas.events import MAX_METADATA_KEYS, MAX_SOURCE_CHARS, MAX_TITLE_CHARS
from ragops_schemas.ids import chunk_id
from ragops_shared.blobs import check_in, open_blob_store
from ragops_shared.dead_letters import dead_letter_for, fits
from ragops_shared.parts import RECORD_OVERHEAD_BYTES, serialised_size
from ragops_shared.settings import KafkaSettings, PlatformSettings
from tests.helpers import PRODUCER

pytestmark = pytest.mark.model

WIDE = "\U0001d538"  # 4 bytes in UTF-8, as JSON too (pydantic writes non-ASCII unescaped)
MAX_BYTES = KafkaSettings().max_message_bytes


def _largest(content: str) -> DocumentIn:
    """The gateway's request at every limit but the content's."""
    return DocumentIn(
        document_id=WIDE * 512,
        content=content,
        content_type="text/plain",
        title=WIDE * MAX_TITLE_CHARS,
        source=WIDE * MAX_SOURCE_CHARS,
        metadata={f"{n:03d}" + WIDE * 125: WIDE * 1024 for n in range(MAX_METADATA_KEYS)},
    )


def _assert_fits(event: Event) -> None:
    """The record and a dead letter of it fit the broker (a copy, or a reference when a copy
    would not fit: as ``dead_letter_for`` builds it)."""
    value = to_json(event)
    assert len(value) + len(event.key) <= MAX_BYTES - RECORD_OVERHEAD_BYTES, (event.event_type, len(value))
    record = ConsumerRecord(event.TOPIC, 0, 2**62, 0, 0, event.key, value, None, len(event.key), len(value), [])
    letter = dead_letter_for(
        record,
        event_id=event.event_id,
        producer=PRODUCER,
        consumer_group="ragops-sink",
        error_type="processing",
        reason="x" * 100_000,
        max_bytes=MAX_BYTES,
    )
    assert fits(letter, MAX_BYTES), (event.event_type, serialised_size(letter))


def _submitted(request: DocumentIn, tmp_path: Path) -> DocumentSubmitted:
    """The event the gateway publishes for ``request`` (content checked in as it does)."""
    gateway = GatewaySettings(platform=PlatformSettings(data_dir=tmp_path))
    assert len(request.content.encode()) <= gateway.max_document_bytes
    event = DocumentSubmitted(producer=PRODUCER, **request.model_dump())
    return check_in(event, open_blob_store(gateway.platform), gateway.platform.inline_content_bytes)


def test_the_largest_inline_document_fits_as_an_event(tmp_path: Path) -> None:
    # Control characters: 6 bytes each as JSON (\u0001), the widest escape of a byte.
    inline = PlatformSettings().inline_content_bytes
    submitted = _submitted(_largest("\x01" * inline), tmp_path)
    assert submitted.content_ref is None
    _assert_fits(submitted)


def test_every_event_of_the_largest_document_fits_the_broker(embedder, chunker, tmp_path: Path) -> None:
    largest = GatewaySettings().max_document_bytes
    # One word repeated: the most chunks' worth of text the model embeds once.
    submitted = _submitted(_largest("word " * (largest // 5)), tmp_path)
    assert submitted.content_ref is not None
    _assert_fits(submitted)

    ingestion = IngestionSettings(platform=PlatformSettings(data_dir=tmp_path))
    info = ChunkerInfo(tokenizer="minilm", chunk_size=ingestion.chunk_size, overlap=ingestion.overlap)
    chunked = ingest(
        chunker,
        info,
        PRODUCER,
        submitted,
        part_bytes=ingestion.part_bytes,
        max_document_bytes=ingestion.max_document_bytes,
        blobs=open_blob_store(ingestion.platform),
    )
    assert len(chunked) > 1 and all(isinstance(event, DocumentChunked) for event in chunked)
    for event in chunked:
        _assert_fits(event)
    embedded = embed_documents(embedder, PRODUCER, chunked, part_bytes=EmbeddingSettings().part_bytes)  # type: ignore[arg-type]
    assert len(embedded) > 1
    for event in embedded:
        _assert_fits(event)

    # DocumentIndexed lists every distinct chunk id: at most one per stride of one-byte
    # tokens (punctuation) of the largest content.
    most_chunks = largest // (ingestion.chunk_size - ingestion.overlap) + 1
    indexed = chunked[0].caused(
        DocumentIndexed,
        PRODUCER,
        document_id=submitted.document_id,
        document_version=chunked[0].document_version,
        collection="c" * 255,
        chunk_count=most_chunks,
        superseded_chunks=most_chunks,
        embedding=embedded[0].embedding,
        chunk_ids=[chunk_id(submitted.document_id, str(n), tenant=submitted.tenant) for n in range(most_chunks)],
    )
    _assert_fits(indexed)

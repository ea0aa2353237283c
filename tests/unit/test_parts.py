"""Large results travel small: vectors as base64 of float32, and events split into numbered
parts by their serialised bytes (issue 12, item 8b)."""

import itertools
import json
import random

import numpy as np
import pytest
from pydantic import ValidationError

from ragops_schemas import ChunksEmbedded, EmbeddedChunk
from ragops_schemas.events import decode_vector, encode_vector
from ragops_schemas.ids import DEFAULT_TENANT, chunk_id, part_event_id, part_scope
from ragops_shared.parts import PartTooLarge, serialised_size, split_by_bytes
from tests.helpers import PRODUCER, VERIFIER, example

DIMENSION = 384


def _unit_vector(rng: np.random.Generator) -> list[float]:
    vector = rng.standard_normal(DIMENSION).astype(np.float32)
    values: list[float] = (vector / np.linalg.norm(vector)).tolist()
    return values


def _chunk(index: int, text: str, vector: list[float]) -> EmbeddedChunk:
    return EmbeddedChunk(
        chunk_id=chunk_id("doc", text, tenant=DEFAULT_TENANT),
        index=index,
        text=text,
        token_count=len(text.split()),
        char_start=0,
        char_end=len(text),
        vector=vector,
    )


def test_a_vector_round_trips_exactly_through_its_base64_encoding() -> None:
    vector = _unit_vector(np.random.default_rng(0))
    encoded = encode_vector(vector)
    assert isinstance(encoded, str) and len(encoded) == 4 * (DIMENSION * 4 // 3) == 2048
    assert decode_vector(encoded) == vector  # float32 values survive bit for bit
    chunk = _chunk(0, "text", vector)
    wire = json.loads(chunk.model_dump_json())
    assert wire["vector"] == encoded
    assert EmbeddedChunk.model_validate_json(chunk.model_dump_json()).vector == vector
    assert chunk.model_dump()["vector"] == vector  # Python dumps keep the list


def test_json_number_vectors_are_still_read() -> None:
    """Events written before the encoding (the golden example among them) stay valid."""
    assert example(ChunksEmbedded).chunks[0].vector == [0.5, 0.5, 0.5, 0.5]


@pytest.mark.parametrize("bad", ["not base64!", "AAAAAAA="])  # not base64; 5 bytes, not float32s
def test_a_malformed_vector_string_is_a_validation_error(bad: str) -> None:
    with pytest.raises(ValidationError, match="vector"):
        _chunk(0, "text", bad)  # type: ignore[arg-type]


def test_a_vector_takes_a_quarter_of_its_json_number_bytes() -> None:
    chunk = _chunk(0, "word " * 150, _unit_vector(np.random.default_rng(1)))
    as_numbers = len(json.dumps(chunk.model_dump()).encode())
    compact = serialised_size(chunk)
    assert compact < 0.45 * as_numbers, (compact, as_numbers)


def _event(chunks: list[EmbeddedChunk], part: int, parts: int) -> ChunksEmbedded:
    event = example(ChunksEmbedded)
    return event.caused(
        ChunksEmbedded,
        PRODUCER,
        scope=part_scope(part, parts),
        document_id="doc",
        document_version="v1",
        embedding={"name": "m", "version": "v", "dimension": DIMENSION},
        chunks=chunks,
        part=part,
        parts=parts,
        chunk_total=len(chunks) if parts > 1 else None,
    )


def test_parts_are_each_within_the_budget_and_keep_every_item_in_order() -> None:
    rng = np.random.default_rng(2)
    words = random.Random(2)
    chunks = [
        _chunk(i, " ".join(words.choice(["alpha", "beta", "gamma"]) for _ in range(words.randint(5, 400))), v)
        for i, v in enumerate(_unit_vector(rng) for _ in range(300))
    ]
    budget = 64 * 1024
    parts = split_by_bytes(_event, chunks, budget)
    sizes = [serialised_size(part) for part in parts]
    assert len(parts) > 1 and max(sizes) <= budget, sizes
    assert [p.part for p in parts] == list(range(1, len(parts) + 1)) and {p.parts for p in parts} == {len(parts)}
    assert [c for p in parts for c in p.chunks] == chunks
    # Greedy: a part and the first chunk of the next would not have fitted together.
    for part, following in itertools.pairwise(parts):
        assert serialised_size(part) + serialised_size(following.chunks[0]) + 1 > budget
    assert len({p.event_id for p in parts}) == len(parts)


def test_an_event_that_fits_is_one_part_with_the_unsplit_id() -> None:
    chunks = [_chunk(0, "short", _unit_vector(np.random.default_rng(3)))]
    [whole] = split_by_bytes(_event, chunks, 64 * 1024)
    assert (whole.part, whole.parts, whole.chunk_total) == (1, 1, None)
    assert whole.event_id == part_event_id("ChunksEmbedded", example(ChunksEmbedded).event_id, 1, 1)


def test_an_item_larger_than_the_budget_alone_is_refused() -> None:
    vector = _unit_vector(np.random.default_rng(4))
    chunks = [_chunk(0, "short", vector), _chunk(1, "long " * 20_000, vector)]
    with pytest.raises(PartTooLarge, match="item 1 alone"):
        split_by_bytes(_event, chunks, 64 * 1024)


def test_a_part_number_cannot_pass_the_number_of_parts() -> None:
    with pytest.raises(ValidationError, match="part 3 of 2"):
        _event([_chunk(0, "short", [1.0] * DIMENSION)], 3, 2)


def test_the_trainer_sees_every_part_of_the_latest_version() -> None:
    """A re-index replays each part (each under the budget); the fine-tune reads all chunks."""
    from ragops_schemas import DocumentChunked
    from ragops_trainer.pairs import latest_documents, latest_parts

    def chunked(version: str, part: int, parts: int, text: str) -> DocumentChunked:
        event = example(DocumentChunked)
        chunk = event.chunks[0].model_copy(
            update={"chunk_id": chunk_id("doc", text, tenant=DEFAULT_TENANT), "text": text}
        )
        return event.model_copy(
            update={"document_id": "doc", "document_version": version, "chunks": [chunk], "part": part, "parts": parts}
        )

    old = chunked("v1", 1, 1, "old")
    first, second = chunked("v2", 1, 2, "new one"), chunked("v2", 2, 2, "new two")
    # Same occurred_at (the golden example's): the later in the log is the newer.
    assert latest_parts([old, second, first], VERIFIER) == {(DEFAULT_TENANT, "doc"): [first, second]}
    assert [c.text for c in latest_documents([old, first, second], VERIFIER)["doc"].chunks] == ["new one", "new two"]
    # Another tenant's "doc" is another document: a re-index replays both.
    theirs = old.model_copy(update={"tenant": "acme"})
    assert latest_parts([old, second, first, theirs], VERIFIER) == {
        (DEFAULT_TENANT, "doc"): [first, second],
        ("acme", "doc"): [theirs],
    }


def test_a_part_budget_must_leave_the_record_room_under_the_broker_limit() -> None:
    from ragops_ingestion.settings import IngestionSettings
    from ragops_shared.settings import KafkaSettings

    with pytest.raises(ValidationError, match="RAGOPS_INGESTION_PART_BYTES=1048576 leaves no room"):
        IngestionSettings(kafka=KafkaSettings(max_message_bytes=1024 * 1024))

"""Point ids must be stable across processes and releases: redelivery relies on them."""

import uuid

from ragops_schemas.ids import point_id


def test_same_chunk_and_model_give_the_same_id() -> None:
    assert point_id("doc-1#0", "minilm-v1") == point_id("doc-1#0", "minilm-v1")


def test_id_is_a_uuid5_string() -> None:
    assert uuid.UUID(point_id("doc-1#0", "minilm-v1")).version == 5


def test_id_is_pinned() -> None:
    # Changing the namespace or the encoding would orphan every point already indexed.
    assert point_id("doc-1#0", "minilm-v1") == "c8535f4d-c9f3-581b-a87b-eccc63ef2915"


def test_chunk_and_model_version_both_matter() -> None:
    ids = {
        point_id("doc-1#0", "minilm-v1"),
        point_id("doc-1#1", "minilm-v1"),
        point_id("doc-1#0", "minilm-v2"),
    }
    assert len(ids) == 3


def test_parts_cannot_be_confused_by_their_separator() -> None:
    assert point_id("b:c", "a") != point_id("c", "a:b")

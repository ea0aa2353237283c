"""Every id and hash rule of ragops_schemas.ids, pinned to a known value: an id already in
topics, indexes or ClickHouse must come out the same in every release."""

import re
import uuid
from datetime import UTC, datetime, timedelta, timezone

import pytest

from ragops_schemas.ids import (
    AUDIT_GENESIS,
    DEFAULT_TENANT,
    audit_chain,
    audit_hash,
    blob_digest,
    canonical_json,
    change_id,
    chunk_id,
    content_hash,
    corpus_version,
    dataset_file_hash,
    dataset_registration_id,
    dataset_snapshot_version,
    dataset_version,
    dead_letter_event_id,
    derived_event_id,
    document_version,
    erasure_id,
    evaluation_run_id,
    example_id,
    holdout_bucket,
    index_build_collection,
    index_build_id,
    index_name,
    indexed_version_event_id,
    keyed_request_event_id,
    model_registration_id,
    new_alert_id,
    new_document_id,
    new_event_id,
    new_request_id,
    new_span_id,
    new_trace_id,
    part_event_id,
    point_id,
    prompt_hash,
    prompt_registration_id,
    pseudonym,
    resubmission_event_id,
    sample_fraction,
    subject_key_id,
    unparsable_event_id,
)

CAUSE = uuid.UUID("12345678-1234-5678-1234-567812345678")


def test_chunk_id_is_a_content_hash() -> None:
    first = chunk_id("doc-1", "some text", tenant=DEFAULT_TENANT)
    # The default tenant's ids are those of before ids named tenants: an index built then stays valid.
    assert first == "580ffe2ca4adb249558e05d36a3ca47c"
    assert chunk_id("doc-2", "some text", tenant=DEFAULT_TENANT) != first
    assert chunk_id("doc-1", "some text.", tenant=DEFAULT_TENANT) != first
    # The separator keeps (id, text) pairs that concatenate alike apart.
    assert chunk_id("doc-1", "0text", tenant=DEFAULT_TENANT) != chunk_id("doc-10", "text", tenant=DEFAULT_TENANT)


def test_chunk_id_names_the_tenant() -> None:
    """The same document id and text in two tenants: two chunks, two points."""
    acme = chunk_id("doc-1", "some text", tenant="acme")
    assert acme == "85e73e3dd709e35b8cb54641c3ebb350"
    assert acme != chunk_id("doc-1", "some text", tenant=DEFAULT_TENANT)
    assert acme != chunk_id("doc-1", "some text", tenant="globex")
    assert chunk_id("doc-1", "x", tenant="a\u0000b") != chunk_id("b\u0000doc-1", "x", tenant="a")


def test_document_version_changes_with_content() -> None:
    version = document_version("parsed text")
    assert version == "2ca0fd2a7fe934dc"
    assert document_version("parsed text!") != version


def test_content_hash() -> None:
    assert content_hash("text") == "982d9e3eb996f559"


def test_pseudonym_is_a_keyed_per_tenant_hash() -> None:
    key = b"0123456789abcdef"
    value = pseudonym(key, "alice@example.com", tenant="acme")
    assert value == "95dca96638ca42cb"  # HMAC-SHA256(key, b"acme\x00alice@example.com"), 64 bits
    assert pseudonym(key, "alice@example.com", tenant="globex") != value
    assert pseudonym(b"another key of 16", "alice@example.com", tenant="acme") != value


def test_blob_digest() -> None:
    digest = blob_digest(b"text")
    assert digest == "982d9e3eb996f559e633f4d194def3761d909f5a3b647d1a851fead67c32c9d1"
    assert digest[:16] == content_hash("text")


def test_point_id() -> None:
    assert point_id("doc-1#0", "minilm-v1") == "c8535f4d-c9f3-581b-a87b-eccc63ef2915"


def test_index_names_are_the_retrieval_collection_names() -> None:
    assert index_name("default", "sentence-transformers/all-MiniLM-L6-v2", "2e8a342051c5") == (
        "default__all-MiniLM-L6-v2__2e8a342051c5"
    )


def test_index_build_id_and_collection() -> None:
    assert index_build_id(CAUSE) == "b123456781234"
    assert index_build_collection("default__m__v1", "b123456781234") == "default__m__v1__b123456781234"


def test_corpus_version_ignores_order() -> None:
    assert corpus_version({"b": "2", "a": "1"}) == "2bc11e86e8348c7c"
    assert corpus_version({"a": "1", "b": "2"}) == "2bc11e86e8348c7c"


def test_example_id() -> None:
    assert example_id("feedback", "What is X?", "X is Y.") == "93891e618ea40b216c8708d03e20b722"


def test_dataset_version_ignores_order() -> None:
    assert dataset_version(["e2", "e1"]) == dataset_version(iter(["e1", "e2"])) == "c5a9367884b7c141"


def test_dataset_file_hash() -> None:
    assert dataset_file_hash(b"{}\n") == "ca3d163bab055381"
    assert dataset_snapshot_version(b"{}\n") == "ca3d163bab05"  # a pushed dataset's version


def test_prompt_hash() -> None:
    assert prompt_hash("d", "s", "u") == "6c83963bc144"
    assert prompt_hash("d", "s", "u") != prompt_hash("", "ds", "u"), "the parts stay apart"


def test_prompt_registration_id() -> None:
    assert prompt_registration_id("rag-answer", 1, "0123456789ab") == uuid.UUID("9fb530cc-3780-592d-8166-ff6cae2ab10a")


def test_dataset_registration_id() -> None:
    assert dataset_registration_id("squad-mini", "0123456789ab") == uuid.UUID("af5ccdb8-85ce-5217-91bd-bc9f2fb8cbae")
    assert dataset_registration_id("squad-mini", "0123456789ab") != dataset_registration_id("squad", "0123456789ab")


def test_evaluation_run_id_is_the_utc_start() -> None:
    assert evaluation_run_id("eval", datetime(2026, 1, 1, 12, 0, 0, tzinfo=UTC)) == "eval-20260101T120000Z"
    plus_two = timezone(timedelta(hours=2))
    assert evaluation_run_id("demo", datetime(2026, 1, 1, 14, 0, 0, tzinfo=plus_two)) == "demo-20260101T120000Z"


def test_sample_fraction() -> None:
    assert sample_fraction("r1") == 0.5115343198439884


def test_holdout_bucket() -> None:
    assert holdout_bucket("What is X?") == 26


def test_derived_event_id() -> None:
    assert derived_event_id("DocumentChunked", CAUSE) == uuid.UUID("436afc1d-ddab-5d35-90fa-82c7dc4478c5")
    assert derived_event_id("DocumentChunked", CAUSE, "b1") == uuid.UUID("8263accf-6e60-582b-8ddb-9fb396a87270")


@pytest.mark.parametrize(
    ("event_type", "pinned"),
    [
        # The outputs of the query and document paths, evaluation and feedback: each is
        # derived from its cause's id, so a redelivered cause gives the same id.
        ("DocumentChunked", "436afc1d-ddab-5d35-90fa-82c7dc4478c5"),
        ("ChunksEmbedded", "f56f8ee5-bf59-5470-a461-b42bbe2f6301"),
        ("DocumentIndexed", "823ed1f2-ac92-540c-a931-249b327bda61"),
        ("QueryEmbedded", "52b6ba33-c5e8-522c-81d4-a6fbea4c8adf"),
        ("ContextRetrieved", "413c638a-24ad-5963-900b-ee1c1e8815cd"),
        ("AnswerGenerated", "f2ddf8d9-9958-562c-ac98-7b900c4170e7"),
        ("AnswerEvaluated", "b90c7e8c-fee2-5463-8f3c-b44245a72854"),
        ("FeedbackRecorded", "4979a126-a2ef-5d1b-a2d3-0866af710df1"),
        ("DatasetExampleAdded", "9402a886-2dba-5089-ac11-d5f6c8dbb58c"),
    ],
)
def test_derived_event_id_of_each_output(event_type: str, pinned: str) -> None:
    assert derived_event_id(event_type, CAUSE) == uuid.UUID(pinned)


def test_dead_letter_event_id() -> None:
    topic = "ragops.query.submitted.v1"
    assert dead_letter_event_id(topic, 2, 17, "ragops-embedding-queries") == uuid.UUID(
        "ae864c1d-3146-5f02-a584-b920077e2cca"
    )
    # No group (a consumer that commits nothing) counts as the empty group id.
    assert dead_letter_event_id(topic, 2, 17, None) == uuid.UUID("e7ed1adb-a38e-5ba3-af79-f6820b315194")
    assert dead_letter_event_id(topic, 2, 17, "") == dead_letter_event_id(topic, 2, 17, None)
    # Each group's refusal is its own fact; each record its own letter.
    assert dead_letter_event_id(topic, 2, 17, "other") != dead_letter_event_id(topic, 2, 17, None)
    assert dead_letter_event_id(topic, 2, 18, None) != dead_letter_event_id(topic, 2, 17, None)


def test_part_event_id() -> None:
    assert part_event_id("DocumentChunked", CAUSE, 2, 3) == uuid.UUID("2c659563-0079-5e7d-a7ca-5c00b87c6a1a")
    assert part_event_id("DocumentChunked", CAUSE, 1, 1) == derived_event_id("DocumentChunked", CAUSE)


def test_indexed_version_event_id() -> None:
    collection = "default__all-MiniLM-L6-v2__2e8a342051c5"
    expected = uuid.UUID("08b381f5-67c4-53b8-8eab-951cd8b0f5f1")
    assert indexed_version_event_id("doc-1", "5d41402abc4b2a76", collection, tenant=DEFAULT_TENANT) == expected
    acme = indexed_version_event_id("doc-1", "5d41402abc4b2a76", collection, tenant="acme")
    assert acme == uuid.UUID("365c7074-34da-5653-b3ec-b3bd48dc01de")


def test_unparsable_event_id() -> None:
    assert unparsable_event_id("ragops.query.submitted.v1", 2, 17) == uuid.UUID("9a981e9f-2571-5890-a4d5-f06ec8c3c4b6")


def test_model_registration_id() -> None:
    assert model_registration_id("all-MiniLM-L6-v2", "2e8a342051c5") == uuid.UUID(
        "63864627-3155-57e8-9d7c-46f1034a257d"
    )


def test_resubmission_event_id() -> None:
    assert resubmission_event_id(CAUSE, "doc-1", content_hash("text")) == uuid.UUID(
        "d3a86fb2-bdf0-5226-8005-f5f1dd906845"
    )


def test_change_id() -> None:
    assert change_id(uuid.UUID("5a1d0c2e-7f3b-4c89-9a4b-5c6d7e8f9a07")) == "chg-3ff50c9884055ee78266"


def test_random_ids_have_their_formats() -> None:
    assert new_event_id().version == 4
    assert uuid.UUID(new_request_id()).version == 4 and uuid.UUID(new_document_id()).version == 4
    assert re.fullmatch(r"[0-9a-f]{32}", new_alert_id())
    assert re.fullmatch(r"[0-9a-f]{32}", new_trace_id())
    assert re.fullmatch(r"[0-9a-f]{16}", new_span_id())
    assert new_request_id() != new_request_id()


def test_audit_chain_and_hash() -> None:
    assert audit_chain("acme", "ragops.audit.recorded.v1", 2) == "acme/ragops.audit.recorded.v1/2"
    assert canonical_json({"b": [1, "é"], "a": None}) == '{"a":null,"b":[1,"é"]}'
    # SHA-256 of the 64 zeros of the genesis, then the canonical JSON: `printf %s ... | sha256sum`.
    content = {"seq": 1, "target": "POST /v1/documents", "tenant": "acme", "reason": "ü"}
    assert audit_hash(AUDIT_GENESIS, content) == "af00c8b5b5323803cb05a1de1c67a3d544ff435b925e51d0e1152600d6bb3b07"


def test_subject_key_id() -> None:
    assert subject_key_id("acme", "user-1") == subject_key_id("acme", "user-1")
    assert subject_key_id("acme", "user-1") != subject_key_id("other", "user-1")
    assert len(subject_key_id("acme", "user-1")) == 32


def test_keyed_request_event_id() -> None:
    body = {"question": "Where is Paris?", "top_k": 5}
    keyed = keyed_request_event_id("default", "POST /v1/queries", "retry-1", body)
    assert keyed == uuid.UUID("09b83a44-89e3-5b1a-8abb-f735cf5a31c8")
    # Key order in the body is not identity; every other part is.
    assert keyed_request_event_id("default", "POST /v1/queries", "retry-1", {"top_k": 5, **body}) == keyed
    others = [
        keyed_request_event_id("acme", "POST /v1/queries", "retry-1", body),
        keyed_request_event_id("default", "POST /v1/feedback", "retry-1", body),
        keyed_request_event_id("default", "POST /v1/queries", "retry-2", body),
        keyed_request_event_id("default", "POST /v1/queries", "retry-1", {**body, "top_k": 6}),
    ]
    assert keyed not in others and len(set(others)) == len(others)


def test_erasure_id() -> None:
    assert erasure_id("default", "user-1842", "ticket-4711") == "era-161a6d14502c11adca6c"
    assert erasure_id("default", "user-1842", "ticket-4711") != erasure_id("other", "user-1842", "ticket-4711")

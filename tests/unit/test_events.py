"""The envelope: ids, keys, trace context, OpenTelemetry GenAI names, tolerance of unknown fields;
the content type of a submitted file from its name."""

import json
from datetime import UTC, datetime
from pathlib import Path

import pytest
from pydantic import ValidationError

from ragops_schemas import DocumentRejected, DocumentSubmitted, GenAIUsage, QueryEmbedded, QuerySubmitted
from ragops_schemas.events import UnsupportedFileType, content_type_for
from ragops_schemas.ids import derived_event_id
from tests.helpers import PRODUCER


def test_keys_and_traceparent() -> None:
    query = QuerySubmitted(producer=PRODUCER, request_id="r-1", question="why?")
    assert query.key == b"r-1"
    assert query.traceparent == f"00-{query.trace_id}-{query.span_id}-01"
    assert DocumentSubmitted(producer=PRODUCER, document_id="d", content="x").key == b"d"


def test_caused_continues_the_trace_with_a_new_span_and_id() -> None:
    query = QuerySubmitted(producer=PRODUCER, request_id="r-1", question="why?", tenant="acme")
    embedded = query.caused(
        QueryEmbedded,
        PRODUCER,
        request_id="r-1",
        question="why?",
        top_k=5,
        embedding={"name": "m", "version": "v", "dimension": 2},
        vector=[0.6, 0.8],
    )
    assert (embedded.trace_id, embedded.tenant) == (query.trace_id, "acme")
    assert embedded.span_id != query.span_id and embedded.event_id != query.event_id


def test_occurred_at_is_utc_milliseconds() -> None:
    payload = json.loads(QuerySubmitted(producer=PRODUCER, request_id="r", question="q").model_dump_json())
    assert payload["occurred_at"].endswith("Z") and len(payload["occurred_at"]) == len("2026-01-01T00:00:00.000Z")


def test_usage_uses_opentelemetry_genai_names() -> None:
    usage = GenAIUsage(input_tokens=3, output_tokens=4)
    assert json.loads(usage.model_dump_json()) == {"gen_ai.usage.input_tokens": 3, "gen_ai.usage.output_tokens": 4}
    assert GenAIUsage.model_validate_json(usage.model_dump_json()) == usage


def test_readers_tolerate_unknown_fields_and_events_are_frozen() -> None:
    payload = json.loads(QuerySubmitted(producer=PRODUCER, request_id="r", question="q").model_dump_json())
    payload["added_in_a_later_release"] = 1
    parsed = QuerySubmitted.model_validate(payload)
    with pytest.raises(ValidationError):
        parsed.question = "changed"


def test_derived_ids_are_stable_per_cause_and_output_type() -> None:
    query = QuerySubmitted(producer=PRODUCER, request_id="r-1", question="why?")
    fields = {
        "request_id": "r-1",
        "question": "why?",
        "top_k": 5,
        "embedding": {"name": "m", "version": "v", "dimension": 2},
        "vector": [0.6, 0.8],
    }
    first = query.caused(QueryEmbedded, PRODUCER, **fields)
    again = query.caused(QueryEmbedded, PRODUCER, **fields)
    other = QuerySubmitted(producer=PRODUCER, request_id="r-1", question="why?").caused(
        QueryEmbedded, PRODUCER, **fields
    )
    assert first.event_id == again.event_id != other.event_id
    assert first.event_id == derived_event_id("QueryEmbedded", query.event_id)
    assert query.caused(QueryEmbedded, PRODUCER, scope="part-2", **fields).event_id == derived_event_id(
        "QueryEmbedded", query.event_id, "part-2"
    )


def test_caused_refuses_a_field_the_output_does_not_have() -> None:
    # Events ignore unknown fields when read: without this a misspelled keyword (or the old
    # ``derived_id``) would be dropped silently.
    query = QuerySubmitted(producer=PRODUCER, request_id="r-1", question="why?")
    with pytest.raises(TypeError, match="derived_id"):
        query.caused(DocumentRejected, PRODUCER, derived_id="x", document_id="d", stage="ingestion", reason="r")


@pytest.mark.usefixtures("host_zone_berlin")
def test_a_naive_occurred_at_is_utc_not_host_time() -> None:
    assert datetime(2026, 1, 1, 1, 30).astimezone(UTC).hour == 0, "the host zone is Berlin"
    built = QuerySubmitted(producer=PRODUCER, request_id="r", question="q", occurred_at=datetime(2026, 1, 1, 1, 30))
    assert json.loads(built.model_dump_json())["occurred_at"] == "2026-01-01T01:30:00.000Z"
    assert built.occurred_at == datetime(2026, 1, 1, 1, 30, tzinfo=UTC)
    payload = json.loads(built.model_dump_json()) | {"occurred_at": "2026-01-01T01:30:00"}
    read = QuerySubmitted.model_validate_json(json.dumps(payload))
    assert read.occurred_at == datetime(2026, 1, 1, 1, 30, tzinfo=UTC)
    assert json.loads(read.model_dump_json())["occurred_at"] == "2026-01-01T01:30:00.000Z"
    # A zoned time keeps its instant.
    zoned = payload | {"occurred_at": "2026-01-01T02:30:00+01:00"}
    assert QuerySubmitted.model_validate_json(json.dumps(zoned)).occurred_at == read.occurred_at


@pytest.mark.parametrize(
    "bad", [{"question": ""}, {"top_k": 0}, {"request_id": ""}, {"trace_id": "xyz"}, {"schema_version": 2}]
)
def test_invalid_queries_are_refused(bad: dict) -> None:
    fields = {"producer": PRODUCER, "request_id": "r", "question": "q", **bad}
    with pytest.raises(ValidationError):
        QuerySubmitted(**fields)


# --- content types from file names --------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "content_type"),
    [
        ("a.txt", "text/plain"),
        ("a.TEXT", "text/plain"),
        ("a.md", "text/markdown"),
        ("a.markdown", "text/markdown"),
        ("a.html", "text/html"),
        ("a.htm", "text/html"),
        ("a.rst", "text/x-rst"),
        ("a.rest", "text/x-rst"),
        ("library/asyncio.rst.txt", "text/x-rst"),
        ("notes.v2.txt", "text/plain"),
    ],
)
def test_content_type_for(name: str, content_type: str) -> None:
    assert content_type_for(Path(name)) == content_type


@pytest.mark.parametrize("name", ["a.pdf", "Makefile", "a.docx"])
def test_content_type_for_unknown_suffix(name: str) -> None:
    with pytest.raises(UnsupportedFileType, match="unsupported file type"):
        content_type_for(Path(name))

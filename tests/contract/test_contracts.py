"""Contracts: generated files are fresh, every topic has exactly one event schema and one
spec (whose key its events use), every service's AsyncAPI lists its channels, and the golden
examples still validate."""

import json
from pathlib import Path

import pytest

from ragops import kafka_topics, kafka_users
from ragops.schemagen import ROOT, render, stale
from ragops.specs import SERVICE_SPECS
from ragops_schemas import EVENT_TYPES, Topic
from ragops_schemas.topics import TOPICS, Retention

EXAMPLES = ROOT / "examples"


def test_generated_schemas_are_fresh() -> None:
    outdated = [str(path.relative_to(ROOT.parent)) for path in stale()]
    assert not outdated, f"stale generated files {outdated}: run `make schemas` and commit"


def test_every_topic_has_exactly_one_event_type() -> None:
    topics = [event.TOPIC for event in EVENT_TYPES]
    assert sorted(topics) == sorted(Topic), "each topic is carried by exactly one event class"


def test_every_topic_has_one_spec_in_topic_order() -> None:
    assert [spec.topic for spec in TOPICS] == list(Topic)


@pytest.mark.parametrize("event", EVENT_TYPES, ids=lambda event: event.__name__)
def test_events_are_keyed_as_their_topic_spec_says(event) -> None:
    [spec] = [spec for spec in TOPICS if spec.topic == event.TOPIC]
    example = event.model_validate_json((EXAMPLES / f"{event.__name__}.json").read_text())
    assert example.key == "/".join(str(getattr(example, field) or "") for field in spec.key).encode()


def test_topic_retention_stays_as_deployed() -> None:
    """The deployments' retention, pinned: a history kept for less loses the state that its
    readers rebuild from its start."""
    assert {spec.topic for spec in TOPICS if spec.retention is Retention.FOREVER} == {
        Topic.DOCUMENT_REDACTED,
        Topic.DOCUMENT_CHUNKED,
        Topic.DOCUMENT_INDEXED,
        Topic.DOCUMENT_DELETED,
        Topic.DOCUMENT_REMOVED,
        Topic.DATASET_EXAMPLE_ADDED,
        Topic.VERSION_REGISTERED,
        Topic.VERSION_PROMOTED,
        Topic.VERSION_REJECTED,
        Topic.VERSION_RETIRED,
        Topic.AUDIT_RECORDED,
        Topic.CHANGE_REQUESTED,
        Topic.CHANGE_APPROVED,
        Topic.CHANGE_REJECTED,
        Topic.ERASURE_REQUESTED,
        Topic.SUBJECT_ERASURE_APPLIED,
        Topic.SUBJECT_ERASED,
        Topic.EXPERIMENT_STARTED,
        Topic.EXPERIMENT_STOPPED,
        Topic.EXPERIMENT_CONCLUDED,
        Topic.ANSWER_REVIEWED,
        Topic.PRICES_PUBLISHED,
    }
    assert [spec.topic for spec in TOPICS if spec.retention is Retention.DEAD_LETTERS] == [Topic.DEAD_LETTER]
    assert (Retention.FOREVER, Retention.EVENTS, Retention.DEAD_LETTERS) == (-1, 604_800_000, 2_592_000_000)
    assert Retention.INTAKE == 86_400_000


INTAKE_TOPICS = {Topic.DOCUMENT_SUBMITTED, Topic.QUERY_SUBMITTED, Topic.FEEDBACK_SUBMITTED, Topic.REVIEW_SUBMITTED}


ERASURE_FLOW = {Topic.ERASURE_REQUESTED, Topic.SUBJECT_ERASURE_APPLIED}
"""What the privacy service reads of an erasure: the request (its key store's part) and every
store's report (it concludes the erasure)."""


def test_raw_text_stays_on_the_intake_topics() -> None:
    """What producers send is kept a day, never by the sink, and read by the privacy service
    only; only it writes the redacted topics, which every other reader reads instead."""
    assert {spec.topic for spec in TOPICS if spec.retention is Retention.INTAKE} == INTAKE_TOPICS
    # And the erasure requests, which name the subject they erase.
    assert {spec.topic for spec in TOPICS if not spec.sink} == INTAKE_TOPICS | {Topic.ERASURE_REQUESTED}
    redacted = {Topic.DOCUMENT_REDACTED, Topic.QUERY_REDACTED, Topic.FEEDBACK_REDACTED, Topic.ANSWER_REVIEWED}
    for spec in SERVICE_SPECS:
        if spec.name == "privacy":
            assert set(spec.reads) == INTAKE_TOPICS | ERASURE_FLOW
            assert redacted <= set(spec.writes)
        else:
            assert not INTAKE_TOPICS & set(spec.reads), spec.name
            assert not redacted & set(spec.writes), spec.name


def test_event_types_are_past_tense_and_unique() -> None:
    names = [event.model_fields["event_type"].default for event in EVENT_TYPES]
    assert len(set(names)) == len(names)
    assert all(name.endswith("ed") for name in names), names


@pytest.mark.parametrize(
    ("service", "consumes", "publishes"),
    [
        (
            "privacy",
            INTAKE_TOPICS | ERASURE_FLOW,
            {
                Topic.DOCUMENT_REDACTED,
                Topic.QUERY_REDACTED,
                Topic.FEEDBACK_REDACTED,
                # A reviewer's label, its correction and comment redacted.
                Topic.ANSWER_REVIEWED,
                Topic.SUBJECT_ERASURE_APPLIED,
                Topic.SUBJECT_ERASED,
            },
        ),
        (
            "ingestion",
            {Topic.DOCUMENT_REDACTED},
            {Topic.DOCUMENT_CHUNKED, Topic.DOCUMENT_REJECTED, Topic.DOCUMENT_INDEXED},
        ),
        (
            "embedding",
            {Topic.DOCUMENT_CHUNKED, Topic.QUERY_REDACTED},
            {Topic.CHUNKS_EMBEDDED, Topic.QUERY_EMBEDDED, Topic.VERSION_REGISTERED, Topic.DOCUMENT_REJECTED},
        ),
        (
            "retrieval",
            {
                Topic.CHUNKS_EMBEDDED,
                Topic.QUERY_EMBEDDED,
                Topic.DOCUMENT_REJECTED,
                Topic.DOCUMENT_DELETED,
                Topic.ERASURE_REQUESTED,
            },
            {
                Topic.DOCUMENT_INDEXED,
                Topic.CONTEXT_RETRIEVED,
                Topic.DOCUMENT_REJECTED,
                Topic.DOCUMENT_REMOVED,
                Topic.SUBJECT_ERASURE_APPLIED,
            },
        ),
        ("generation", {Topic.CONTEXT_RETRIEVED}, {Topic.ANSWER_GENERATED}),
        ("evaluation", {Topic.ANSWER_GENERATED}, {Topic.ANSWER_EVALUATED}),
        (
            "feedback",
            {Topic.FEEDBACK_REDACTED, Topic.ANSWER_REVIEWED},
            {Topic.FEEDBACK_RECORDED, Topic.DATASET_EXAMPLE_ADDED},
        ),
        (
            "sink",
            {spec.topic for spec in TOPICS if spec.sink} | {Topic.ERASURE_REQUESTED},
            {Topic.SUBJECT_ERASURE_APPLIED, Topic.DEAD_LETTER},  # an erasure request it cannot apply
        ),
        (
            "monitor",
            set(),
            {Topic.DRIFT_DETECTED, Topic.DRIFT_RECOVERED, Topic.RETRAINING_REQUESTED, Topic.EXPERIMENT_CONCLUDED},
        ),
        (
            "trainer",
            {Topic.RETRAINING_REQUESTED},
            {
                Topic.RETRAINING_REJECTED,
                Topic.TRAINING_STARTED,
                Topic.TRAINING_FAILED,
                Topic.CANDIDATE_EVALUATED,
                Topic.VERSION_REGISTERED,
                Topic.VERSION_PROMOTED,
                Topic.VERSION_REJECTED,
                Topic.CHANGE_REQUESTED,  # its promotions, under RAGOPS_TRAINER_PROMOTION=approval
                Topic.DOCUMENT_CHUNKED,
                Topic.DOCUMENT_SUBMITTED,
            },
        ),
        (
            "gateway",
            set(),
            {
                Topic.DOCUMENT_SUBMITTED,
                Topic.DOCUMENT_DELETED,
                Topic.QUERY_SUBMITTED,
                Topic.FEEDBACK_SUBMITTED,
                Topic.REVIEW_SUBMITTED,  # a reviewer's label
                Topic.AUDIT_RECORDED,  # also its key changes and four-eyes decisions
                # The control plane: change events and the effects of approved changes.
                Topic.CHANGE_REQUESTED,
                Topic.CHANGE_APPROVED,
                Topic.CHANGE_REJECTED,
                Topic.VERSION_PROMOTED,
                Topic.VERSION_RETIRED,
                Topic.RETRAINING_REQUESTED,
                Topic.ERASURE_REQUESTED,  # an admin's erasure, or an approved erase_subject change
                Topic.EXPERIMENT_STARTED,  # an operator's experiment
                Topic.EXPERIMENT_STOPPED,
                Topic.VERSION_REGISTERED,  # prompt versions (pushed, and the seeds)
                Topic.PRICES_PUBLISHED,  # price lists (ragops_gateway.prices)
            },
        ),
    ],
)
def test_asyncapi_lists_the_service_channels(service: str, consumes: set[Topic], publishes: set[Topic]) -> None:
    document = json.loads((ROOT / "asyncapi" / f"{service}.json").read_text())
    operations = document["operations"].values()
    channels = document["channels"]

    def topics(action: str) -> set[str]:
        named = (channels[op["channel"]["$ref"].rsplit("/", 1)[-1]] for op in operations if op["action"] == action)
        return {channel["address"] for channel in named if "kafka" in channel.get("bindings", {})}  # not HTTP routes

    received, sent = topics("receive"), topics("send")
    assert received == {topic.value for topic in consumes}
    # Every service that validates events may dead-letter what it cannot process; the sink
    # keeps even unparsable records itself. Every service audits the calls its HTTP port refuses.
    dead_letter = set() if service == "sink" else {Topic.DEAD_LETTER.value}
    assert sent == {topic.value for topic in publishes} | dead_letter | {Topic.AUDIT_RECORDED.value}


def test_every_event_has_a_golden_example() -> None:
    assert {path.stem for path in EXAMPLES.glob("*.json")} == {event.__name__ for event in EVENT_TYPES}


@pytest.mark.parametrize("event", EVENT_TYPES, ids=lambda event: event.__name__)
def test_golden_example_still_validates(event) -> None:
    """Golden examples are written once and never regenerated: a change that breaks one
    breaks consumers still reading the topic (see schemas/README.md on versioning)."""
    payload = (EXAMPLES / f"{event.__name__}.json").read_text()
    parsed = event.model_validate_json(payload)
    assert parsed.event_type == json.loads(payload)["event_type"]


def test_generation_writes_the_files_it_checks(tmp_path: Path) -> None:
    files = render()
    assert all(text.endswith("\n") for text in files.values())
    assert all(json.loads(text) for path, text in files.items() if path.suffix == ".json")
    # events, services, gateway OpenAPI, the two topic files and the Kafka users of the deployments
    expected = len(EVENT_TYPES) + len(SERVICE_SPECS) + 1 + len(kafka_topics.render()) + len(kafka_users.render())
    assert len(files) == expected

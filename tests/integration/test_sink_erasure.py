"""The sink's part of an erasure on a real ClickHouse engine (chDB): every row of a subject's
requests and documents is deleted from every table, verified by count, and reported with
counts per table; another subject's rows and another tenant's stay; feedback whose events have
expired is still found (by its user id) and erased; a retry and an unknown subject delete
nothing and are complete."""

import uuid
from datetime import UTC, datetime

import pytest
from aiokafka import ConsumerRecord

from ragops_analytics import queries
from ragops_analytics.chdb_store import ChdbStore
from ragops_schemas import (
    AnswerGenerated,
    DatasetExampleAdded,
    DocumentIndexed,
    DocumentRedacted,
    Event,
    FeedbackRecorded,
    FeedbackRedacted,
    Producer,
    QueryRedacted,
)
from ragops_schemas.changes import ChangeActor
from ragops_schemas.erasure import ErasureRequested
from ragops_schemas.ids import erasure_id
from ragops_schemas.review import AnswerReviewed
from ragops_sink.erasure import erase_subject
from ragops_sink.rows import events_to_arrow, to_row
from tests.helpers import example

pytestmark = pytest.mark.clickhouse
PRODUCER = Producer(name="test", version="0")


def _records(events: list[Event]) -> list[ConsumerRecord]:
    return [
        ConsumerRecord(
            topic=event.TOPIC.value,
            partition=0,
            offset=offset,
            timestamp=0,
            timestamp_type=0,
            key=event.key,
            value=(value := event.model_dump_json().encode()),
            checksum=None,
            serialized_key_size=len(event.key),
            serialized_value_size=len(value),
            headers=(),
        )
        for offset, event in enumerate(events)
    ]


def _request_events(tenant: str, request_id: str, user_id: str) -> list[Event]:
    """A question (as the sink receives it: redacted, with counts), its answer, feedback on it by
    ``user_id``, the dataset example it made and a reviewer's label of the answer."""
    # Fresh event ids: copies of one example would be one event (and one row in ClickHouse).
    answer = example(AnswerGenerated).model_copy(
        update={"tenant": tenant, "request_id": request_id, "event_id": uuid.uuid4()}
    )
    recorded = example(FeedbackRecorded).model_copy(
        update={"tenant": tenant, "request_id": request_id, "user_id": user_id, "event_id": uuid.uuid4()}
    )
    return [
        QueryRedacted(
            producer=PRODUCER,
            tenant=tenant,
            request_id=request_id,
            question="what is my card <CREDIT_CARD>?",
            redactions={"CREDIT_CARD": 1},
        ),
        answer,
        FeedbackRedacted(producer=PRODUCER, tenant=tenant, request_id=request_id, thumb="up", user_id=user_id),
        recorded,
        example(DatasetExampleAdded).model_copy(
            update={"tenant": tenant, "request_id": request_id, "event_id": uuid.uuid4()}
        ),
        example(AnswerReviewed).model_copy(
            update={"tenant": tenant, "request_id": request_id, "event_id": uuid.uuid4()}
        ),
    ]


def _request(tenant: str, subject: str, key: str = "ticket") -> ErasureRequested:
    return ErasureRequested(
        producer=PRODUCER,
        tenant=tenant,
        erasure_id=erasure_id(tenant, subject, key),
        subject=subject,
        requested_by=ChangeActor(subject="person:admin", name="admin", kind="person"),
    )


def _store_events(store: ChdbStore, events: list[Event]) -> None:
    now = datetime.now(UTC)
    queries.insert_events(store, events_to_arrow([to_row(record, now) for record in _records(events)]))


def test_the_subjects_rows_are_deleted_verified_and_counted(chdb_store: ChdbStore) -> None:
    document = DocumentRedacted(
        producer=PRODUCER,
        tenant="acme",
        document_id="about-alice",
        content="Alice's file, <EMAIL_ADDRESS>",
        subject_id="alice",
        redactions={"EMAIL_ADDRESS": 1},
    )
    _store_events(
        chdb_store,
        [
            *_request_events("acme", "r-alice-1", "alice"),
            *_request_events("acme", "r-alice-2", "alice"),
            *_request_events("acme", "r-bob", "bob"),
            *_request_events("other", "r-other", "alice"),  # the same id in another tenant
            document,
            example(DocumentIndexed).model_copy(update={"tenant": "acme", "document_id": "about-alice"}),
            DocumentRedacted(producer=PRODUCER, tenant="acme", document_id="general", content="x"),
        ],
    )
    alice = queries.subject_keys(chdb_store, "acme", "alice")
    assert alice == (["r-alice-1", "r-alice-2"], ["about-alice"])
    before_others = queries.subject_rows(chdb_store, "acme", ["r-bob"], ["general"])

    report = erase_subject(chdb_store, _request("acme", "alice"), PRODUCER)

    assert report.store == "clickhouse" and report.complete is True, report.reason
    assert report.deleted["events"] == 14  # 6 events of each of 2 requests, 2 of the document
    assert report.deleted["feedback"] == 2
    assert report.deleted["dataset_examples"] == 2
    assert report.deleted["queries"] == 2
    assert report.deleted["generations"] == 2
    assert report.deleted["reviews"] == 2
    assert report.deleted["documents"] == 1
    assert report.deleted["pii_redactions"] == 3  # one per question, one of the document
    assert set(report.remaining.values()) == {0}
    # Nothing of the subject is left in any table, nor found by its id...
    assert queries.subject_rows(chdb_store, "acme", *alice) == dict.fromkeys(queries.ERASABLE_TABLES, 0)
    assert queries.subject_keys(chdb_store, "acme", "alice") == ([], [])
    for table in queries.ERASABLE_TABLES:  # a scan of every column of every row
        found = f"SELECT count() FROM {table} WHERE tenant = 'acme' AND position(toString(tuple(*)), 'alice') > 0"
        assert chdb_store.execute(found).rows == [(0,)], table
    # ...and the others' rows are all there.
    assert queries.subject_rows(chdb_store, "acme", ["r-bob"], ["general"]) == before_others
    assert queries.subject_keys(chdb_store, "other", "alice") == (["r-other"], [])


def test_feedback_whose_events_have_expired_is_still_erased(chdb_store: ChdbStore) -> None:
    """``feedback`` keeps rows 180 days, ``events`` 90: the subject's user id in ``feedback``
    finds its requests once their events are gone, and everything kept of them goes."""
    _store_events(chdb_store, [*_request_events("acme", "r-old", "alice"), *_request_events("acme", "r-bob", "bob")])
    # What the events' TTL does to rows past 90 days (the other tables' TTLs are longer).
    chdb_store.execute("DELETE FROM events WHERE request_id = 'r-old'")
    assert queries.subject_keys(chdb_store, "acme", "alice") == (["r-old"], [])
    before_bob = queries.subject_rows(chdb_store, "acme", ["r-bob"], [])

    report = erase_subject(chdb_store, _request("acme", "alice"), PRODUCER)

    assert report.complete is True, report.reason
    assert report.deleted["feedback"] == 1
    assert report.deleted["dataset_examples"] == 1
    assert report.deleted["pii_redactions"] == 1
    assert report.deleted["events"] == 0
    assert queries.subject_rows(chdb_store, "acme", ["r-old"], []) == dict.fromkeys(queries.ERASABLE_TABLES, 0)
    assert queries.subject_keys(chdb_store, "acme", "alice") == ([], [])
    assert queries.subject_rows(chdb_store, "acme", ["r-bob"], []) == before_bob


def test_a_retry_and_an_unknown_subject_delete_nothing_and_are_complete(chdb_store: ChdbStore) -> None:
    _store_events(chdb_store, _request_events("acme", "r-alice", "alice"))
    assert erase_subject(chdb_store, _request("acme", "alice"), PRODUCER).complete
    retry = erase_subject(chdb_store, _request("acme", "alice"), PRODUCER)
    unknown = erase_subject(chdb_store, _request("acme", "nobody"), PRODUCER)
    for report in (retry, unknown):
        assert report.complete is True
        assert set(report.deleted.values()) == {0}


def test_a_closed_store_reports_not_complete(chdb_store: ChdbStore) -> None:
    chdb_store.close()
    report = erase_subject(chdb_store, _request("acme", "alice"), PRODUCER)
    assert report.complete is False
    assert report.reason.startswith("ClickHouse:")

"""The scan of :mod:`ragops.pii_scan` on each real store, one planted value at a time: a chDB
store migrated like the sink's, a Qdrant Edge shard written by the retrieval service's adapter,
a Tansu broker's topics, and files such as service logs. Each finds what was planted where it
was planted, and nothing in the same store without it."""

import base64
import uuid
from pathlib import Path

import pytest

from ragops.pii_plant import PlantedValue
from ragops.pii_scan import Finder, scan_clickhouse, scan_data_dir, scan_files, scan_qdrant, scan_topics
from ragops_analytics.chdb_store import ChdbStore
from ragops_retrieval.edge_store import EdgeStore
from ragops_retrieval.store import ChunkPoint
from ragops_schemas import FeedbackRedacted, MessageDeadLettered, Producer, QueryRedacted, Topic
from ragops_schemas.topics import TOPICS, Retention, TopicSpec
from ragops_shared.settings import KafkaSettings
from tests.integration.services import produce_raw
from tests.integration.test_clickhouse import golden_rows, insert, row_from_json

PRODUCER = Producer(name="test", version="0")
EMAIL = PlantedValue("email-0", "email", "Olga.Ivanova77@example.net", "feedback", "r1")
PHONE = PlantedValue("phone-1", "phone", "(212) 555-0142", "question", "q1")
IBAN = PlantedValue("iban-2", "iban", "GB82 WEST 1234 5698 7654 32", "document", "d1")
FINDER = Finder([EMAIL, PHONE, IBAN])


def feedback_with(comment: str) -> FeedbackRedacted:
    return FeedbackRedacted(producer=PRODUCER, request_id=str(uuid.uuid4()), thumb="down", comment=comment)


@pytest.mark.clickhouse
def test_clickhouse_a_planted_value_is_found_in_every_table_and_column_that_keeps_it(chdb_store: ChdbStore) -> None:
    insert(chdb_store, golden_rows())
    assert scan_clickhouse(chdb_store, FINDER) == []  # the golden events hold none

    planted = [
        feedback_with(f"Wrong, write to {EMAIL.value}").model_dump_json(),
        QueryRedacted(
            producer=PRODUCER, request_id="r-q", question=f"Who? (call me on {PHONE.value})"
        ).model_dump_json(),
    ]
    insert(chdb_store, [row_from_json(raw, offset=100 + i) for i, raw in enumerate(planted)])
    found = {finding.location: finding.idents for finding in scan_clickhouse(chdb_store, FINDER)}
    assert found["events.payload"] == {EMAIL.ident, PHONE.ident}
    assert found["queries.question"] == {PHONE.ident}  # a typed table the sink's views fill
    assert {finding.store for finding in scan_clickhouse(chdb_store, FINDER)} == {"clickhouse"}


@pytest.mark.clickhouse
def test_clickhouse_a_value_inside_a_dead_letters_base64_record_is_found(chdb_store: ChdbStore) -> None:
    record = feedback_with(f"IBAN {IBAN.value}, thanks").model_dump_json().encode()
    dead = MessageDeadLettered(
        producer=PRODUCER,
        original_topic=Topic.FEEDBACK_SUBMITTED,
        partition=0,
        offset=3,
        original_key=None,
        original_value_b64=base64.b64encode(record).decode(),
        consumer_group="feedback",
        error_type="rejected",
        reason="unknown request",
    )
    insert(chdb_store, [row_from_json(dead.model_dump_json(), offset=1)])
    found = {finding.location: finding.idents for finding in scan_clickhouse(chdb_store, FINDER)}
    assert found == {"events.payload": {IBAN.ident}}  # the dead_letters table keeps no value


def chunk(text: str, n: int) -> ChunkPoint:
    return ChunkPoint(
        chunk_id=f"c{n}", document_id=f"d{n}", document_version="v1", text=text, vector=[1.0, 0.0, 0.0, 0.0]
    )


@pytest.mark.qdrant
def test_qdrant_a_planted_value_is_found_in_the_payload_of_its_collection_only(tmp_path: Path) -> None:
    store = EdgeStore(tmp_path / "qdrant")
    for collection in ("corpus-v1", "corpus-v2"):
        store.ensure_collection(collection, 4)
    store.upsert("corpus-v1", [chunk("Plain text about oil.", 1), chunk(f"Royalties to {IBAN.value}.", 2)], "m1")
    store.upsert("corpus-v2", [chunk("Plain text about oil.", 1)], "m1")
    store.close()

    findings = scan_qdrant(tmp_path / "qdrant", FINDER)
    assert [(f.store, f.location, f.idents) for f in findings] == [("qdrant", "corpus-v1", {IBAN.ident})]
    assert scan_qdrant(tmp_path / "nothing", FINDER) == []


@pytest.mark.kafka
async def test_topics_a_planted_value_is_found_and_intake_and_dead_letters_are_kept_apart(
    kafka: KafkaSettings,
) -> None:
    assert await scan_topics(kafka, FINDER) == []  # every topic, empty

    await produce_raw(
        kafka, Topic.FEEDBACK_SUBMITTED, [(b"r1", feedback_with(f"mail {EMAIL.value}").model_dump_json().encode())]
    )
    await produce_raw(kafka, Topic.FEEDBACK_RECORDED, [(b"r2", b'{"comment": "nothing here"}')])
    await produce_raw(kafka, Topic.QUERY_EMBEDDED, [(PHONE.value.encode(), b"{}")])  # in a key too
    encoded = base64.b64encode(f'{{"content": "{IBAN.value}"}}'.encode()).decode()
    await produce_raw(kafka, Topic.DEAD_LETTER, [(None, f'{{"original_value_b64": "{encoded}"}}'.encode())])

    # The feedback intake (the privacy step's) is reported apart; declared as a kept topic, it
    # would count as a leak.
    kept = tuple(
        TopicSpec(spec.topic, spec.key, Retention.EVENTS if spec.topic == Topic.FEEDBACK_SUBMITTED else spec.retention)
        for spec in TOPICS
    )
    for specs, feedback_store in ((TOPICS, "intake_topics"), (kept, "topics")):
        found = {(f.store, f.location): f.idents for f in await scan_topics(kafka, FINDER, specs=specs)}
        assert found == {
            (feedback_store, Topic.FEEDBACK_SUBMITTED.value): {EMAIL.ident},
            ("topics", Topic.QUERY_EMBEDDED.value): {PHONE.ident},
            ("dead_letter_topic", Topic.DEAD_LETTER.value): {IBAN.ident},
        }


def test_files_a_planted_value_is_found_in_a_log_and_skipped_folders_are_not_read(tmp_path: Path) -> None:
    logs = tmp_path / "logs"
    logs.mkdir()
    (logs / "gateway.log").write_text('{"event": "request", "path": "/v1/queries"}\n')
    (logs / "feedback.log").write_text('{"event": "refused", "reason": "2125550142 unknown"}\n')  # digits only
    (tmp_path / "clickhouse").mkdir()
    (tmp_path / "clickhouse" / "part.bin").write_text(EMAIL.value)  # searched through the engine, not as a file
    (tmp_path / "blobs").mkdir()
    (tmp_path / "blobs" / "ab12").write_bytes(b"\xff\xfe" + IBAN.value.encode())

    findings, too_large = scan_files(logs, FINDER, "logs")
    assert [(f.store, f.location, f.idents) for f in findings] == [("logs", "feedback.log", {PHONE.ident})]
    assert too_large == 0
    others, _ = scan_files(tmp_path, FINDER, "files", skip=("logs", "clickhouse"))
    assert [(f.location, f.idents) for f in others] == [("blobs/ab12", {IBAN.ident})]
    assert scan_files(tmp_path / "missing", FINDER, "logs") == ([], 0)


@pytest.mark.clickhouse
@pytest.mark.qdrant
def test_a_clean_data_directory_reports_nothing(tmp_path: Path, chdb_store: ChdbStore) -> None:
    (tmp_path / "logs").mkdir()
    (tmp_path / "logs" / "sink.log").write_text('{"event": "batch_written", "rows": 12}\n')
    insert(chdb_store, golden_rows())
    assert scan_data_dir(tmp_path, FINDER, chdb_store) == ([], 0)

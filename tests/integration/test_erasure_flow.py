"""An erasure on a real broker with the stores that hold a subject: the sink (chDB), the indexer
(Qdrant Edge) and the privacy service's key store and coordinator, each as it runs in the
platform. The subject's feedback and dataset examples reach ClickHouse through the sink, its
document's points are in the live index and in an index build; one ErasureRequested later, the
SubjectErased proof has the counts per store, and a replay of every topic, a scan of every
table and of every collection find nothing of the subject. A request that is not signed is
dead-lettered and erases nothing."""

import asyncio
import uuid
from pathlib import Path

import pytest
from faststream import FastStream

from ragops_analytics import queries
from ragops_analytics.chdb_store import ChdbStore
from ragops_feedback.app import record
from ragops_privacy.erasure import OUTPUTS, ErasureSettings, register
from ragops_retrieval.app import create_app as create_retrieval
from ragops_retrieval.settings import RetrievalSettings
from ragops_retrieval.store import SUBJECT_FIELD, ChunkPoint
from ragops_schemas import (
    AnswerGenerated,
    DatasetExampleAdded,
    FeedbackRedacted,
    MessageDeadLettered,
    Producer,
    QueryRedacted,
)
from ragops_schemas.changes import ChangeActor
from ragops_schemas.erasure import ErasureRequested, SubjectErased
from ragops_schemas.ids import erasure_id
from ragops_shared.broker import EventPublisher, make_broker
from ragops_shared.settings import KafkaSettings, PlatformSettings
from ragops_shared.shredding import FileKeyStore, Shredder, is_sealed
from ragops_shared.signing import signer_for, verifier_for
from ragops_sink.app import create_app as create_sink
from ragops_sink.settings import SinkSettings
from tests.helpers import example
from tests.integration.services import read_records, running, wait_for, watching

pytestmark = [pytest.mark.kafka, pytest.mark.clickhouse, pytest.mark.qdrant, pytest.mark.slow]
TENANT, SUBJECT, OTHER = "acme", "user-erase-me", "user-keep-me"
PRODUCT = Producer(name="product", version="1")
LIVE, BUILD = "default__m__v1", "default__m__v1__b000000000001"


def _feedback_events(shredder: Shredder, user: str, request_id: str) -> list:
    """What the platform keeps of one question of ``user`` with feedback: the question and the
    feedback as redacted, the answer, and the outputs of the feedback service (dataset example
    sealed)."""
    answer = example(AnswerGenerated).model_copy(
        update={"tenant": TENANT, "request_id": request_id, "event_id": uuid.uuid4(), "answer": f"{user} answer"}
    )
    feedback = FeedbackRedacted(
        producer=PRODUCT, tenant=TENANT, request_id=request_id, corrected_answer=f"{user} correction", user_id=user
    )
    question = QueryRedacted(
        producer=PRODUCT,
        tenant=TENANT,
        request_id=request_id,
        question=f"{user} question, <EMAIL_ADDRESS>?",
        redactions={"EMAIL_ADDRESS": 1},
    )
    return [question, answer, feedback, *record(feedback, answer, PRODUCT, "feedback", shredder)]


def _points(user: str, document_id: str) -> list[ChunkPoint]:
    return [
        ChunkPoint(
            chunk_id=f"{document_id}-{n}",
            document_id=document_id,
            document_version="v1",
            text=f"{user} document chunk {n}",
            vector=[1.0, 0.0, 0.0, float(n)],
            payload={SUBJECT_FIELD: user},
            tenant=TENANT,
        )
        for n in range(3)
    ]


def _request(platform: PlatformSettings, *, signed: bool) -> ErasureRequested:
    request = ErasureRequested(
        producer=Producer(name="gateway", version="test"),
        tenant=TENANT,
        erasure_id=erasure_id(TENANT, SUBJECT, "ticket-1"),
        subject=SUBJECT,
        requested_by=ChangeActor(subject="person:admin", name="admin", kind="person"),
        reason="the user asked",
    )
    return signer_for(platform, "gateway").sign(request) if signed else request


def _privacy_app(kafka: KafkaSettings, platform: PlatformSettings, shredder: Shredder) -> FastStream:
    """The privacy service's erasure part, registered on a broker as its app registers it."""
    broker = make_broker(kafka, "ragops-privacy")
    publisher = EventPublisher(broker, Producer(name="privacy", version="test"), OUTPUTS)
    coordinator = register(
        broker, publisher, ErasureSettings(), kafka=kafka, verifier=verifier_for(platform), shredder=shredder
    )
    app = FastStream(broker)
    app.on_startup(coordinator.start)
    app.after_shutdown(coordinator.stop)
    return app


async def test_an_erasure_leaves_nothing_of_the_subject_and_proves_it(kafka: KafkaSettings, tmp_path: Path) -> None:
    platform = PlatformSettings(data_dir=tmp_path)
    shredder = Shredder(FileKeyStore.under(tmp_path))
    # The vector store as the indexer left it: the subject's document in the live index and in a build.
    retrieval_settings = RetrievalSettings(kafka=kafka, platform=platform)
    vectors = retrieval_settings.open_store()
    for collection in (LIVE, BUILD):
        vectors.ensure_collection(collection, 4)
        vectors.upsert(collection, [*_points(SUBJECT, "about-subject"), *_points(OTHER, "about-other")], "m")
    vectors.close()

    sink_settings = SinkSettings(kafka=kafka, platform=platform, batch_wait_ms=50)
    kept = [*_feedback_events(shredder, SUBJECT, "r-subject"), *_feedback_events(shredder, OTHER, "r-other")]
    publisher_broker = make_broker(kafka, "test-producer")
    publisher = EventPublisher(publisher_broker, PRODUCT, [type(e) for e in kept] + [ErasureRequested])
    async with (
        running(create_sink(sink_settings)),
        running(create_retrieval(retrieval_settings)),
        running(_privacy_app(kafka, platform, shredder)),
        running(FastStream(publisher_broker)),
        watching(kafka, [SubjectErased, MessageDeadLettered]) as seen,
    ):
        await publisher.publish_all(kept)
        probe = ChdbStore(tmp_path / "clickhouse")  # a second session on the sink's path, same process
        for _ in range(600):  # the sink writes every event it is sent (5 per user) and its typed rows
            stored = queries.subject_rows(probe, TENANT, ["r-subject", "r-other"], [])
            if stored["events"] == len(kept) and stored["feedback"] == stored["dataset_examples"] == 2:
                break
            await asyncio.sleep(0.1)
        before = queries.subject_rows(probe, TENANT, ["r-subject"], [])
        assert before["feedback"] == before["dataset_examples"] == 1

        # Not signed: dead-lettered by every store, nothing erased.
        await publisher.publish(_request(platform, signed=False))
        await wait_for(seen, lambda events: sum(isinstance(e, MessageDeadLettered) for e in events) >= 3)
        assert all("unsigned" in e.reason for e in seen if isinstance(e, MessageDeadLettered))
        assert queries.subject_rows(probe, TENANT, ["r-subject"], []) == before

        await publisher.publish(_request(platform, signed=True))
        await wait_for(seen, lambda events: any(isinstance(e, SubjectErased) for e in events), timeout_s=120)

    [erased] = [e for e in seen if isinstance(e, SubjectErased)]
    assert erased.complete is True, erased.stores
    assert erased.stores["keys"].deleted == {"subject_keys": 1}
    assert erased.stores["vectors"].deleted == {LIVE: 3, BUILD: 3}
    clickhouse = erased.stores["clickhouse"].deleted
    assert clickhouse["feedback"] == clickhouse["dataset_examples"] == clickhouse["queries"] == 1
    assert clickhouse["pii_redactions"] == 1
    assert clickhouse["events"] == 5  # question, answer, feedback, its record, the example
    assert all(store.remaining and not any(store.remaining.values()) for store in erased.stores.values())

    # Every table: nothing of the subject, everything of the other user.
    for table in queries.ERASABLE_TABLES:
        scan = f"SELECT count() FROM {table} WHERE position(toString(tuple(*)), {{s:String}}) > 0"
        assert probe.execute(scan, {"s": SUBJECT}).rows == [(0,)], table
    assert queries.subject_rows(probe, TENANT, ["r-other"], [])["feedback"] == 1
    probe.close()
    # Every collection: none of the subject's points.
    vectors = retrieval_settings.open_store()
    for collection in (LIVE, BUILD):
        assert vectors.count_subject(collection, SUBJECT, tenant=TENANT) == 0
        assert vectors.count_subject(collection, OTHER, tenant=TENANT) == 3
    vectors.close()
    # Every topic kept forever, replayed: the subject's dataset example reads as erased.
    examples = [event for event, _ in await read_records(kafka, DatasetExampleAdded, 2)]
    assert all(is_sealed(e.question) and is_sealed(e.reference_answer) for e in examples)
    opened = {e.request_id: (shredder.reveal(e.question), shredder.reveal(e.reference_answer)) for e in examples}
    assert opened["r-subject"] == (None, None)
    assert opened["r-other"][1] == f"{OTHER} correction"

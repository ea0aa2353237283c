"""The durable embedded broker: topics, records and a consumer group's committed offset
survive a ``kill -9`` of the broker, of its object store, or a restart elsewhere on the
same folder (what ``ragops up`` does on every start), and a consumer resumes after its
committed offset."""

import os
import signal
import socket
from pathlib import Path

import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient

from ragops_schemas.topics import TOPICS
from ragops_shared.embedded import EmbeddedKafka, EmbeddedObjectStore, create_topics
from ragops_shared.settings import KafkaSettings, aiokafka_options

pytestmark = pytest.mark.kafka

TOPIC = "durability"
GROUP = "durability-reader"
RECORDS = [f"record-{i}".encode() for i in range(10)]
COMMITTED = 4  # the group has processed the first four records


async def _write(kafka: KafkaSettings) -> None:
    """Create every platform topic and a one-partition topic, produce :data:`RECORDS` to it,
    and commit :data:`COMMITTED` for :data:`GROUP`."""
    await create_topics(kafka, [*TOPICS, TOPIC])
    producer = AIOKafkaProducer(**aiokafka_options(kafka), acks="all")
    await producer.start()
    try:
        for value in RECORDS:
            await producer.send_and_wait(TOPIC, value, partition=0)
    finally:
        await producer.stop()
    consumer = AIOKafkaConsumer(**aiokafka_options(kafka), group_id=GROUP, enable_auto_commit=False)
    await consumer.start()
    try:
        partition = TopicPartition(TOPIC, 0)
        consumer.assign([partition])
        await consumer.commit({partition: COMMITTED})
    finally:
        await consumer.stop()


async def _read(kafka: KafkaSettings, group: str | None) -> list[bytes]:
    """The records of :data:`TOPIC` a consumer of ``group`` (or of none, from the start) gets
    up to the last one produced. (Not up to ``end_offsets``: Tansu's S3 engine answers a
    stale latest offset, see the README.)"""
    consumer = AIOKafkaConsumer(
        **aiokafka_options(kafka), group_id=group, enable_auto_commit=False, auto_offset_reset="earliest"
    )
    await consumer.start()
    try:
        partition = TopicPartition(TOPIC, 0)
        consumer.assign([partition])
        values: list[bytes] = []
        while RECORDS[-1] not in values:
            batch = (await consumer.getmany(partition, timeout_ms=10_000)).get(partition, [])
            assert batch, f"no record after {values[-1:]}"
            values += [record.value for record in batch if record.value is not None]
        return values
    finally:
        await consumer.stop()


def _kill(broker: EmbeddedKafka, names: tuple[str, ...]) -> None:
    for name in names:
        os.kill(broker.pids[name], signal.SIGKILL)
    broker.stop()  # reaps the killed processes, ends any other


@pytest.mark.parametrize("outage", ["kill -9 tansu", "kill -9 tansu and weed", "restart on another port"])
async def test_topics_records_and_committed_offsets_survive_a_broker_restart(tmp_path: Path, outage: str) -> None:
    folder = tmp_path / "broker"
    broker = EmbeddedKafka(log_path=tmp_path / "tansu.log", data_dir=folder).start()
    try:
        await _write(KafkaSettings(bootstrap_servers=broker.bootstrap_servers))
        if outage == "restart on another port":
            broker.stop()
            broker = EmbeddedKafka(log_path=tmp_path / "tansu.log", data_dir=folder).start()
        else:
            _kill(broker, ("tansu",) if outage == "kill -9 tansu" else ("tansu", "weed"))
            broker.start()  # the same port and folder
        kafka = KafkaSettings(bootstrap_servers=broker.bootstrap_servers)

        await create_topics(kafka, [*TOPICS, TOPIC])  # what every start does: a no-op here
        admin = AIOKafkaAdminClient(**aiokafka_options(kafka))
        await admin.start()
        try:
            assert {spec.topic for spec in TOPICS} | {TOPIC} <= set(await admin.list_topics())
        finally:
            await admin.close()
        assert await _read(kafka, group=None) == RECORDS
        assert await _read(kafka, group=GROUP) == RECORDS[COMMITTED:], "resumes after the committed offset"
    finally:
        broker.stop()


def test_an_object_store_that_exits_before_serving_is_started_again_on_fresh_ports(tmp_path: Path) -> None:
    """Its S3 port is taken by someone else between drawing and binding: the first ``weed``
    exits, the second gets another port and serves; with no attempt left, the error carries
    what ``weed`` printed."""
    store = EmbeddedObjectStore(tmp_path / "store", tmp_path / "seaweedfs.log")
    taken = store.s3_port
    with socket.socket() as squatter:
        squatter.bind(("127.0.0.1", taken))
        squatter.listen()
        try:
            store.start()
            assert store.s3_port != taken and store.poll() is None
        finally:
            store.stop()

        again = EmbeddedObjectStore(tmp_path / "again", tmp_path / "again.log")
        again.s3_port = taken
        with pytest.raises(RuntimeError, match=r"weed exited with status \d+ before serving S3 \(1 attempts\): .+"):
            again.start(attempts=1)

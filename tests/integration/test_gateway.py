"""The HTTP gateway against a real broker, with no pipeline behind it: requests are
validated (422 with the field at fault), accepted documents reach their topic, and a
question nobody answers gets a clear 504 instead of a hang."""

import asyncio

import pytest
from aiokafka import AIOKafkaConsumer
from fastapi.testclient import TestClient

from ragops_gateway.app import create_app
from ragops_gateway.settings import GatewaySettings
from ragops_schemas import DocumentSubmitted, Topic
from ragops_schemas.topics import TOPICS
from ragops_shared.embedded import create_topics
from ragops_shared.settings import KafkaSettings

pytestmark = pytest.mark.kafka


@pytest.fixture
def gateway(tansu):
    kafka = KafkaSettings(bootstrap_servers=tansu.bootstrap_servers)
    asyncio.run(create_topics(kafka, TOPICS))
    with TestClient(create_app(GatewaySettings(kafka=kafka))) as client:
        yield client, kafka


async def _read_one(kafka: KafkaSettings, topic: str) -> bytes:
    consumer = AIOKafkaConsumer(
        topic, bootstrap_servers=kafka.bootstrap_servers, auto_offset_reset="earliest", group_id=None
    )
    await consumer.start()
    try:
        record = await asyncio.wait_for(consumer.getone(), 20)
        return record.value
    finally:
        await consumer.stop()


def test_health_and_readiness(gateway) -> None:
    client, _ = gateway
    assert client.get("/health").json() == {"status": "ok"}
    assert client.get("/ready").status_code == 200


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"question": ""}, "question"),
        ({"question": "q", "top_k": 0}, "top_k"),
        ({"question": "q", "colour": "red"}, "colour"),
        ({}, "question"),
    ],
)
def test_invalid_queries_get_422_naming_the_field(gateway, body: dict, field: str) -> None:
    client, _ = gateway
    response = client.post("/v1/queries", json=body)
    assert response.status_code == 422
    assert any(field in error["loc"] for error in response.json()["detail"])


def test_invalid_document_gets_422(gateway) -> None:
    client, _ = gateway
    response = client.post("/v1/documents", json={"content": "x", "content_type": "application/pdf"})
    assert response.status_code == 422
    assert "content_type" in response.json()["detail"][0]["loc"]


@pytest.mark.parametrize(
    ("limits", "content"),
    [
        ({"max_document_bytes": 1024}, "x" * 1025),  # the content limit
        # The event, with its envelope and the record's framing, passes the broker's limit.
        ({"kafka": {"max_message_bytes": 16 * 1024}}, "x" * 20 * 1024),
    ],
)
def test_a_document_too_large_gets_413(tansu, limits: dict, content: str) -> None:
    kafka = KafkaSettings(bootstrap_servers=tansu.bootstrap_servers, **limits.pop("kafka", {}))
    asyncio.run(create_topics(kafka, TOPICS))
    with TestClient(create_app(GatewaySettings(kafka=kafka, **limits))) as client:
        response = client.post("/v1/documents", json={"content": content})
    assert response.status_code == 413 and "the limits are" in response.json()["detail"]


def test_accepted_document_is_on_its_topic(gateway) -> None:
    client, kafka = gateway
    response = client.post(
        "/v1/documents", json={"document_id": "guide.md", "content": "# Guide", "content_type": "text/markdown"}
    )
    assert response.status_code == 202
    event = DocumentSubmitted.model_validate_json(asyncio.run(_read_one(kafka, Topic.DOCUMENT_SUBMITTED)))
    assert (event.document_id, event.content_type, str(event.event_id)) == (
        "guide.md",
        "text/markdown",
        response.json()["event_id"],
    )
    metrics = client.get("/metrics")
    assert metrics.status_code == 200
    assert 'faststream_published_messages_total{app_name="ragops-gateway"' in metrics.text


def test_unanswered_question_times_out_with_a_clear_error(gateway) -> None:
    client, _ = gateway
    response = client.post("/v1/queries", json={"question": "Is anyone there?", "timeout_s": 1})
    assert response.status_code == 504
    assert "no answer for request" in response.json()["detail"] and "within 1 s" in response.json()["detail"]

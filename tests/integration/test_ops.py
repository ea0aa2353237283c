"""Readiness on a real broker: ``GET /ready`` answers 503 while a service is loading or
Kafka does not answer, 200 otherwise (a service's ops routes and the gateway)."""

import asyncio
from pathlib import Path

import httpx
import pytest
from fastapi.testclient import TestClient

from ragops_gateway.app import GatewaySettings, create_app
from ragops_schemas import Topic
from ragops_shared.broker import make_broker
from ragops_shared.embedded import EmbeddedKafka, create_topics
from ragops_shared.service import service_app
from ragops_shared.settings import KafkaSettings, PlatformSettings
from tests.integration.services import running

pytestmark = pytest.mark.kafka


async def test_a_service_is_ready_only_once_loaded_and_while_kafka_answers(
    tansu: EmbeddedKafka, tmp_path: Path
) -> None:
    kafka = KafkaSettings(bootstrap_servers=tansu.bootstrap_servers)
    platform = PlatformSettings(data_dir=tmp_path)
    app = service_app(
        "test-service", "A service with nothing to consume.", make_broker(kafka, "test-service"), platform=platform
    )
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://service") as http:
        loading = await http.get("/ready")
        assert (loading.status_code, loading.json()) == (503, {"status": "loading"})
        assert (await http.get("/health")).status_code == 200
        async with running(app):
            assert (await http.get("/ready")).status_code == 200
            tansu.stop()
            unreachable = await http.get("/ready")
            assert (unreachable.status_code, unreachable.json()) == (503, {"status": "kafka unreachable"})
            assert (await http.get("/health")).status_code == 200, "liveness does not depend on Kafka"


def test_the_gateway_is_ready_only_once_connected_to_kafka(tansu: EmbeddedKafka) -> None:
    kafka = KafkaSettings(bootstrap_servers=tansu.bootstrap_servers)
    asyncio.run(create_topics(kafka, list(Topic)))
    app = create_app(GatewaySettings(kafka=kafka))
    assert TestClient(app).get("/ready").status_code == 503, "not started: its broker is not connected"
    with TestClient(app) as client:  # the lifespan connects to Kafka
        assert client.get("/ready").status_code == 200

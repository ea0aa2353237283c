"""Per-tenant limits at the real gateway, on a real broker: one tenant over its rate gets
429 with Retry-After while another goes on; a tenant's lower size limit gives it 413 for a
document another tenant may send."""

import asyncio
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from prometheus_client import REGISTRY

from ragops_gateway.app import create_app
from ragops_gateway.settings import GatewaySettings, Rate, TenantLimits
from ragops_schemas.topics import TOPICS
from ragops_shared.embedded import create_topics
from ragops_shared.identity import Role
from ragops_shared.settings import KafkaSettings, PlatformSettings
from tests.helpers import bearer

pytestmark = pytest.mark.kafka


def _gateway(tansu, data_dir: Path, tenant_limits: dict[str, TenantLimits]) -> TestClient:
    kafka = KafkaSettings(bootstrap_servers=tansu.bootstrap_servers)
    asyncio.run(create_topics(kafka, TOPICS))
    settings = GatewaySettings(kafka=kafka, platform=PlatformSettings(data_dir=data_dir), tenant_limits=tenant_limits)
    return TestClient(create_app(settings))


def _rate_limited(tenant: str, route: str) -> float:
    return REGISTRY.get_sample_value("ragops_gateway_rate_limited_total", {"tenant": tenant, "route": route}) or 0.0


def test_a_tenant_over_its_rate_gets_429_while_another_goes_on(tansu, tmp_path: Path) -> None:
    # One token in ~17 minutes after a burst of 2: the third request is over, whatever the test's pace.
    limits = {"acme": TenantLimits(documents=Rate(rate=0.001, burst=2))}
    acme, other = bearer(tmp_path, Role.PRODUCER, tenant="acme"), bearer(tmp_path, Role.PRODUCER, tenant="other")
    refused_before = _rate_limited("acme", "documents")
    with _gateway(tansu, tmp_path, limits) as client:
        sent = [client.post("/v1/documents", json={"content": "hello"}, headers=acme) for _ in range(3)]
        others = [client.post("/v1/documents", json={"content": "hello"}, headers=other) for _ in range(3)]
        query = client.post("/v1/queries", json={"question": "q", "timeout_s": 0.1}, headers=acme)
    assert [response.status_code for response in sent] == [202, 202, 429]
    refused = sent[2]
    assert 0 < int(refused.headers["retry-after"]) <= 1000
    assert set(refused.json()) == {"detail", "trace_id"} and "over its rate" in refused.json()["detail"]
    assert [response.status_code for response in others] == [202, 202, 202]
    assert query.status_code == 504  # its queries have a bucket of their own (nobody answers here)
    assert _rate_limited("acme", "documents") == refused_before + 1


def test_a_tenant_with_a_lower_size_limit_gets_413(tansu, tmp_path: Path) -> None:
    limits = {"small": TenantLimits(max_document_bytes=1024)}
    small, other = bearer(tmp_path, Role.PRODUCER, tenant="small"), bearer(tmp_path, Role.PRODUCER)
    document = {"content": "x" * 1025}
    with _gateway(tansu, tmp_path, limits) as client:
        refused = client.post("/v1/documents", json=document, headers=small)
        accepted = client.post("/v1/documents", json=document, headers=other)
    assert refused.status_code == 413 and "the limit is 1024 bytes of content" in refused.json()["detail"]
    assert accepted.status_code == 202

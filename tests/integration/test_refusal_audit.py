"""Every service audits the calls its HTTP port refuses, not only the gateway: a real light
service (the feedback service) on a real broker publishes an ``auth.refused``
``AuditRecorded`` for each 401 and 403 on its ``/metrics``; and a refusal whose entry the
broker does not take is still answered, the entry logged whole instead."""

from pathlib import Path

import httpx
import pytest
from structlog.testing import capture_logs

from ragops_feedback.app import create_app
from ragops_feedback.settings import FeedbackSettings
from ragops_schemas.audit import AuditRecorded
from ragops_shared.identity import Role
from ragops_shared.settings import AuthSettings, KafkaSettings, PlatformSettings
from tests.helpers import bearer
from tests.integration.services import read_records, running

pytestmark = pytest.mark.kafka

SERVICE_TENANT, KEY_TENANT = "platform-ops", "acme"


async def test_a_service_audits_each_refused_call_with_its_actor_and_tenant(
    kafka: KafkaSettings, tmp_path: Path
) -> None:
    platform = PlatformSettings(data_dir=tmp_path, tenant=SERVICE_TENANT)
    producer_only = bearer(tmp_path, Role.PRODUCER, tenant=KEY_TENANT)
    app = create_app(FeedbackSettings(kafka=kafka, platform=platform))
    async with running(app), httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://x") as http:
        assert (await http.get("/metrics")).status_code == 401
        assert (await http.get("/metrics", headers=producer_only)).status_code == 403

    # Keyed by tenant: the two entries may sit on different partitions, in any order.
    entries = {entry.reason[:3]: entry for entry, _ in await read_records(kafka, AuditRecorded, 2)}
    anonymous, forbidden = entries["401"], entries["403"]
    for entry in (anonymous, forbidden):
        assert (entry.action, entry.outcome, entry.target) == ("auth.refused", "refused", "GET /metrics")
        assert entry.producer.name == "feedback"
    assert (anonymous.actor.kind, anonymous.tenant) == ("anonymous", SERVICE_TENANT)
    assert (forbidden.actor.kind, forbidden.tenant) == ("api_key", KEY_TENANT)
    assert forbidden.actor.id.startswith("key:")


async def test_a_refusal_the_broker_does_not_take_is_answered_and_logged_whole(tmp_path: Path) -> None:
    """The service's broker never started (nothing listens there): the caller still gets its
    401 at once, and the log keeps the whole entry."""
    settings = FeedbackSettings(
        kafka=KafkaSettings(bootstrap_servers="127.0.0.1:1"),
        platform=PlatformSettings(data_dir=tmp_path, auth=AuthSettings(refusal_audit_timeout_s=1)),
    )
    app = create_app(settings)
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://x") as http:
        with capture_logs() as logs:
            assert (await http.get("/metrics")).status_code == 401
    [failed] = [line for line in logs if line["event"] == "audit_publish_failed"]
    entry = AuditRecorded.model_validate(failed["entry"])
    assert (entry.action, entry.target, entry.actor.kind) == ("auth.refused", "GET /metrics", "anonymous")

"""Human review end to end on a real broker and chDB: the gateway's routes (queue, label,
agreement) read ClickHouse through the sink's ``/sql`` with the platform key; another tenant's
reviewer neither sees nor labels this tenant's answers; the privacy service redacts an e-mail
address planted in a correction, and the feedback service turns the label into a dataset
example."""

import asyncio
import socket
import threading
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
import uvicorn
from fastapi.testclient import TestClient
from pydantic import SecretStr

from ragops_analytics import queries
from ragops_analytics.client import AnalyticsSettings
from ragops_feedback.app import create_app as create_feedback
from ragops_feedback.settings import FeedbackSettings
from ragops_gateway.app import create_app as create_gateway
from ragops_gateway.reviews import queue_token
from ragops_gateway.settings import GatewaySettings
from ragops_privacy.app import create_app as create_privacy
from ragops_privacy.settings import PrivacySettings
from ragops_schemas import AnswerEvaluated, AnswerGenerated, DatasetExampleAdded, Event, QueryRedacted, Topic, utc_now
from ragops_schemas.review import AnswerReviewed
from ragops_shared.identity import ApiKeyStore, Role
from ragops_shared.settings import KafkaSettings, PlatformSettings
from ragops_shared.shredding import FileKeyStore, Shredder, is_sealed
from ragops_sink.app import Writer, create_app as create_sink
from ragops_sink.rows import events_to_arrow, to_row
from ragops_sink.settings import SinkSettings
from tests.helpers import example, record_of
from tests.integration.services import produce_raw, running, wait_for, watching

pytestmark = pytest.mark.kafka
ADDRESS = "jane.doe@example.com"


def _store(writer: Writer, events: list[Event]) -> None:
    rows = [to_row(record_of(event, offset), utc_now()) for offset, event in enumerate(events)]
    queries.insert_events(writer.store, events_to_arrow(rows))


def _answer(tenant: str, request_id: str) -> AnswerGenerated:
    return example(AnswerGenerated).model_copy(
        update={"tenant": tenant, "request_id": request_id, "event_id": uuid.uuid4(), "occurred_at": utc_now()}
    )


@pytest.fixture
def sink(tmp_path: Path) -> Iterator[tuple[Writer, str]]:
    """The sink's store (migrated chDB) and its HTTP routes on a local port (no consumer)."""
    writer = Writer(SinkSettings(platform=PlatformSettings(data_dir=tmp_path)))
    writer.open()
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen(16)
    server = uvicorn.Server(uvicorn.Config(create_sink(writer.settings, writer), lifespan="off", log_config=None))
    serving = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    serving.start()
    try:
        yield writer, f"http://127.0.0.1:{sock.getsockname()[1]}/sql"
    finally:
        server.should_exit = True
        serving.join()
        sock.close()
        writer.close()


async def test_a_review_round_trip_is_tenant_bound_redacted_and_becomes_an_example(
    kafka: KafkaSettings, sink: tuple[Writer, str], tmp_path: Path
) -> None:
    writer, sql_url = sink
    platform = PlatformSettings(data_dir=tmp_path, tenant="acme")
    keys = ApiKeyStore(tmp_path / "auth" / "api-keys.json")
    _, platform_key = keys.create("gateway", "acme", [Role.PLATFORM])

    def bearer(tenant: str, role: Role) -> dict[str, str]:
        return {"authorization": f"Bearer {keys.create(f'{tenant}-{role}', tenant, [role])[1]}"}

    rita, globex, analyst = bearer("acme", Role.REVIEWER), bearer("globex", Role.REVIEWER), bearer("acme", Role.ANALYST)
    # A platform-role reviewer still reviews its own tenant's answers only (it can label no other).
    staff = {"authorization": f"Bearer {keys.create('staff', 'globex', [Role.REVIEWER, Role.PLATFORM])[1]}"}
    ours, theirs = _answer("acme", "r-acme"), _answer("globex", "r-globex")
    # Who asked r-acme (as the privacy service stores it): the review's example is theirs to erase.
    asked = example(QueryRedacted).model_copy(
        update={"tenant": "acme", "request_id": "r-acme", "event_id": uuid.uuid4(), "user_id": "user-7"}
    )
    _store(writer, [asked, ours, theirs])
    await produce_raw(kafka, Topic.ANSWER_GENERATED, [(ours.key, ours.model_dump_json().encode())])
    settings = GatewaySettings(
        kafka=kafka, platform=platform, analytics=AnalyticsSettings(sql_url=sql_url, api_key=SecretStr(platform_key))
    )
    label = {"correct": False, "grounded": True, "corrected_answer": f"France. Ask {ADDRESS}"}

    async with (
        watching(kafka, [AnswerReviewed, DatasetExampleAdded]) as seen,
        running(create_privacy(PrivacySettings(kafka=kafka, platform=platform))),
        running(create_feedback(FeedbackSettings(kafka=kafka, platform=platform))),
    ):
        with TestClient(create_gateway(settings)) as gateway:
            queue = (await asyncio.to_thread(gateway.get, "/v1/reviews/queue?limit=5", headers=rita)).json()
            other_queue = (await asyncio.to_thread(gateway.get, "/v1/reviews/queue", headers=globex)).json()
            staff_queue = (await asyncio.to_thread(gateway.get, "/v1/reviews/queue", headers=staff)).json()
            fields = ("request_id", "answer_event_id", "sampled_as", "token")
            label |= {name: queue[0][name] for name in fields}
            # The server says which stratum an answer came from: no token, or another stratum
            # than the token's, is refused (422); so is this tenant's token from another tenant.
            untokened = {name: value for name, value in label.items() if name != "token"}
            no_token = await asyncio.to_thread(gateway.post, "/v1/reviews", json=untokened, headers=rita)
            restratified = label | {"sampled_as": "low_score"}
            claimed = await asyncio.to_thread(gateway.post, "/v1/reviews", json=restratified, headers=rita)
            borrowed = await asyncio.to_thread(gateway.post, "/v1/reviews", json=label, headers=globex)
            # Another tenant's reviewer with a valid token of its own still cannot label this
            # tenant's answer (404, as for an unknown one).
            globex_token = queue_token(settings.form_key(), "globex", "r-acme", str(ours.event_id), "random")
            refused = await asyncio.to_thread(
                gateway.post, "/v1/reviews", json=label | {"token": globex_token}, headers=globex
            )
            accepted = await asyncio.to_thread(gateway.post, "/v1/reviews", json=label, headers=rita)
            await wait_for(seen, lambda events: len(events) >= 2)
            reviewed = next(event for event in seen if isinstance(event, AnswerReviewed))
            scored = example(AnswerEvaluated).model_copy(
                update={"tenant": "acme", "request_id": "r-acme", "event_id": uuid.uuid4()}
            )
            _store(writer, [reviewed, scored])  # as the sink's consumer would
            after = (await asyncio.to_thread(gateway.get, "/v1/reviews/queue", headers=rita)).json()
            agreement = await asyncio.to_thread(gateway.get, "/v1/reviews/agreement", headers=analyst)

    assert [(item["request_id"], item["sampled_as"]) for item in queue] == [("r-acme", "random")]
    assert queue[0]["answer"] == ours.answer and queue[0]["question"] == ours.question
    assert [item["request_id"] for item in other_queue] == ["r-globex"]
    assert [item["request_id"] for item in staff_queue] == ["r-globex"]
    assert (no_token.status_code, claimed.status_code, borrowed.status_code) == (422, 422, 422)
    assert refused.status_code == 404
    assert accepted.status_code == 202, accepted.text
    # Redacted by the privacy service; the reviewer is the caller's key, the tenant its credential's.
    assert reviewed.corrected_answer == "France. Ask <EMAIL_ADDRESS>" and reviewed.redactions == {"EMAIL_ADDRESS": 1}
    assert reviewed.tenant == "acme" and reviewed.reviewer.startswith("key:")
    assert reviewed.event_id != uuid.UUID(accepted.json()["event_id"])  # derived from the submission's
    [made] = [event for event in seen if isinstance(event, DatasetExampleAdded)]
    assert (made.source, made.request_id) == ("review", "r-acme")
    # Sealed for the asker, as the asker's own feedback example would be; erasing the asker
    # (the erasure coordinator forgets their key) leaves it unreadable.
    shredder = Shredder(FileKeyStore.under(tmp_path))
    assert is_sealed(made.question) and is_sealed(made.reference_answer)
    assert shredder.open(made.reference_answer) == "France. Ask <EMAIL_ADDRESS>"
    assert shredder.open(made.question) == ours.question
    shredder.forget("acme", "user-7")
    assert shredder.open(made.question) is None and shredder.open(made.reference_answer) is None
    assert made.feedback_event_id == str(reviewed.event_id)
    assert after == []  # reviewed: out of the queue
    assert agreement.status_code == 200
    by_metric = {row["metric"]: row for row in agreement.json()}
    assert by_metric["faithfulness"]["label"] == "grounded" and by_metric["faithfulness"]["n"] == 1
    assert by_metric["faithfulness"]["spearman_rho"] is None  # one label: undefined

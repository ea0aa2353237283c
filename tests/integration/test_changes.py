"""Four-eyes changes through the real gateway on a real broker: a requested retirement changes
nothing; its requester cannot approve it, nor a key its requester minted; another tenant cannot
see, request or decide changes (only the platform's tenant does); a different approver's
approval publishes ``ChangeApproved`` and a ``VersionRetired`` signed with the gateway's key,
which a registry reader verifies and applies. A forged approval (unknown key) is dead-lettered
by the gateway's book and the change stays pending; forged or unsigned retirements are
dead-lettered by registry readers and never applied."""

import asyncio
import json
import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
import uvicorn
from aiokafka import TopicPartition
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from fastapi.testclient import TestClient
from typer.testing import CliRunner, Result

from ragops.cli import app
from ragops.credentials import ADMIN_ROLES
from ragops_gateway.app import create_app
from ragops_gateway.changes import CHANGE_READERS
from ragops_gateway.settings import GatewaySettings
from ragops_schemas import MessageDeadLettered, Producer, Topic, VersionPromoted, VersionRetired
from ragops_schemas.changes import ChangeActor, ChangeApproved, ChangeRequested, RetireChange
from ragops_schemas.lifecycle import VersionRef
from ragops_schemas.topics import DEFAULT_PARTITIONS, TOPICS
from ragops_shared.broker import EventPublisher, make_broker
from ragops_shared.embedded import EmbeddedKafka, create_topics
from ragops_shared.identity import ApiKeyStore, Role
from ragops_shared.registry_view import REGISTRY_READERS, RegistryView
from ragops_shared.settings import AuthSettings, KafkaSettings, PlatformSettings
from ragops_shared.signing import Signer, signer_for, verifier_for
from ragops_shared.watch import end_offsets
from ragops_trainer.context import promotion_request
from tests.helpers import PRODUCER
from tests.integration.services import read_records, wait_for, watching

pytestmark = pytest.mark.kafka

PLATFORM = PlatformSettings().tenant  # "default": the only tenant whose people request and decide changes
RETIRE = {"change": {"kind": "retire", "version": {"kind": "prompt", "name": "rag-answer", "version": "1"}}}


class Gateway:
    def __init__(self, client: TestClient, kafka: KafkaSettings, platform: PlatformSettings, keys: dict[str, str]):
        self.client, self.kafka, self.platform, self.keys = client, kafka, platform, keys

    def call(self, who: str | None, method: str, path: str, body: dict[str, Any] | None = None) -> Any:
        headers = {"authorization": f"Bearer {self.keys[who]}"} if who else {}
        return self.client.request(method, path, json=body, headers=headers)


def configured(tansu: EmbeddedKafka, tmp_path: Path) -> tuple[GatewaySettings, dict[str, str]]:
    """Gateway settings on a fresh broker, and the API keys of five people (in an ApiKeyStore
    in ``tmp_path``): alice (operator, approver), bob (approver), dave (operator) and admin
    (every role but platform, like the embedded admin key) of the platform's tenant, carol
    (operator, approver) of tenant globex."""
    kafka = KafkaSettings(bootstrap_servers=tansu.bootstrap_servers)
    asyncio.run(create_topics(kafka, TOPICS))
    store = ApiKeyStore(tmp_path / "auth" / "api-keys.json")
    people: dict[str, tuple[str, list[Role]]] = {
        "alice": (PLATFORM, [Role.OPERATOR, Role.APPROVER]),
        "bob": (PLATFORM, [Role.APPROVER]),
        "dave": (PLATFORM, [Role.OPERATOR]),
        "admin": (PLATFORM, list(ADMIN_ROLES)),
        "carol": ("globex", [Role.OPERATOR, Role.APPROVER]),
    }
    keys = {name: store.create(name, tenant, roles)[1] for name, (tenant, roles) in people.items()}
    platform = PlatformSettings(data_dir=tmp_path, auth=AuthSettings(api_keys_file=store.path))
    return GatewaySettings(kafka=kafka, platform=platform), keys


@pytest.fixture
def gateway(tansu: EmbeddedKafka, tmp_path: Path) -> Iterator[Gateway]:
    settings, keys = configured(tansu, tmp_path)
    with TestClient(create_app(settings)) as client:
        yield Gateway(client, settings.kafka, settings.platform, keys)


def published(kafka: KafkaSettings, topic: Topic) -> int:
    """Records on ``topic`` so far (its partitions' high watermarks)."""
    [spec] = [spec for spec in TOPICS if spec.topic == topic]
    count = spec.partitions or DEFAULT_PARTITIONS
    partitions = [TopicPartition(topic.value, number) for number in range(count)]
    return sum(asyncio.run(end_offsets(kafka, partitions)).values())


def test_a_change_takes_effect_only_once_someone_else_approves_it(gateway: Gateway) -> None:
    assert gateway.call(None, "POST", "/v1/changes", {**RETIRE, "reason": "x"}).status_code == 401
    assert gateway.call("bob", "POST", "/v1/changes", {**RETIRE, "reason": "x"}).status_code == 403, "operators ask"
    requested = gateway.call("alice", "POST", "/v1/changes", {**RETIRE, "reason": "leaks the context"})
    assert requested.status_code == 202, requested.text
    change = requested.json()["change_id"]
    assert requested.json()["status"] == "pending"
    assert published(gateway.kafka, Topic.VERSION_RETIRED) == 0, "a request applies nothing"

    listed = gateway.call("bob", "GET", "/v1/changes").json()
    assert [(c["change_id"], c["requested_by"]["name"]) for c in listed] == [(change, "alice")]
    assert gateway.call("carol", "GET", "/v1/changes").json() == [], "another tenant's changes are not listed"
    elsewhere = gateway.call("carol", "POST", "/v1/changes", {**RETIRE, "reason": "x"})
    assert elsewhere.status_code == 403 and "platform's tenant" in elsewhere.json()["detail"]
    assert gateway.call("dave", "POST", f"/v1/changes/{change}/approve", {"reason": "ok"}).status_code == 403

    own = gateway.call("alice", "POST", f"/v1/changes/{change}/approve", {"reason": "mine"})
    assert own.status_code == 403 and "someone other than who requested it" in own.json()["detail"]
    other_tenant = gateway.call("carol", "POST", f"/v1/changes/{change}/approve", {"reason": "ok"})
    unknown = gateway.call("bob", "POST", "/v1/changes/chg-00000000000000000000/approve", {"reason": "ok"})
    assert other_tenant.status_code == 403 and "platform's tenant" in other_tenant.json()["detail"]
    assert (unknown.status_code, unknown.json()["detail"]) == (404, "not found"), "alike: nothing reveals it exists"
    assert published(gateway.kafka, Topic.VERSION_RETIRED) == 0

    approved = gateway.call("bob", "POST", f"/v1/changes/{change}/approve", {"reason": "checked"})
    assert approved.status_code == 200, approved.text
    assert (approved.json()["status"], approved.json()["decided_by"]["name"]) == ("approved", "bob")
    again = gateway.call("alice", "POST", f"/v1/changes/{change}/reject", {"reason": "changed my mind"})
    assert again.status_code == 403
    assert gateway.call("bob", "POST", f"/v1/changes/{change}/reject", {"reason": "no"}).status_code == 409

    [(approval, _)] = asyncio.run(read_records(gateway.kafka, ChangeApproved, 1))
    [(retired, _)] = asyncio.run(read_records(gateway.kafka, VersionRetired, 1))
    gateway_key = signer_for(gateway.platform, "gateway").key_id
    assert approval.change_id == change and approval.decided_by.subject.startswith("key:")
    assert (retired.kind, retired.name, retired.version, retired.tenant) == ("prompt", "rag-answer", "1", PLATFORM)
    assert retired.signature is not None and retired.signature.key_id == gateway_key
    assert "approved by bob" in retired.reason

    async def folded() -> RegistryView:
        view = RegistryView(gateway.kafka, client_id="test-registry", verifier=verifier_for(gateway.platform))
        await view.start()
        await view.stop()
        return view

    registry = asyncio.run(folded()).registry
    assert registry.is_retired("prompt", "rag-answer", "1"), "a registry reader verified and applied it"


def test_a_key_an_admin_mints_never_approves_the_admins_change(gateway: Gateway) -> None:
    requested = gateway.call("admin", "POST", "/v1/changes", {**RETIRE, "reason": "leaks the context"})
    assert requested.status_code == 202, requested.text
    change, admin = requested.json()["change_id"], requested.json()["requested_by"]
    assert admin["owner"] == admin["subject"], "a key made with `ragops keys create` answers for itself"
    own = gateway.call("admin", "POST", f"/v1/changes/{change}/approve", {"reason": "mine"})
    assert own.status_code == 403, "the admin key alone holds approver, and still is one pair of eyes"

    minted = gateway.call("admin", "POST", "/v1/admin/keys", {"name": "second-pair", "roles": ["approver"]})
    assert minted.status_code == 201, minted.text
    assert minted.json()["key"]["owner"] == admin["owner"]
    gateway.keys["minted"] = minted.json()["api_key"]
    chosen = {"name": "x", "roles": ["approver"], "owner": "person:someone-else"}
    assert gateway.call("admin", "POST", "/v1/admin/keys", chosen).status_code == 422, "never chosen in a body"
    by_minted = gateway.call("minted", "POST", f"/v1/changes/{change}/approve", {"reason": "looks fine to me"})
    assert by_minted.status_code == 403 and "someone other than who requested it" in by_minted.json()["detail"]
    assert published(gateway.kafka, Topic.VERSION_RETIRED) == 0

    approved = gateway.call("bob", "POST", f"/v1/changes/{change}/approve", {"reason": "checked"})
    assert approved.status_code == 200, approved.text
    [(approval, _)] = asyncio.run(read_records(gateway.kafka, ChangeApproved, 1))
    assert approval.decided_by.owner == approval.decided_by.subject != admin["owner"]


def test_forged_approvals_and_retirements_are_dead_lettered_and_never_applied(gateway: Gateway) -> None:
    requested = gateway.call("alice", "POST", "/v1/changes", {**RETIRE, "reason": "leaks the context"})
    change = requested.json()["change_id"]
    forger = Signer(Ed25519PrivateKey.generate())
    bob = ChangeActor(subject="key:0000000000000000", name="bob", kind="api_key")
    forged_approval = forger.sign(
        ChangeApproved(producer=PRODUCER, tenant=PLATFORM, change_id=change, decided_by=bob, reason="forged")
    )
    retire = {"producer": PRODUCER, "kind": "prompt", "name": "rag-answer", "reason": "forged"}
    unsigned = VersionRetired(**retire, version="1")  # type: ignore[arg-type]
    # The operator key may no longer retire: a person's retirement needs a second person.
    by_operator = signer_for(gateway.platform, "operator").sign(VersionRetired(**retire, version="2"))  # type: ignore[arg-type]
    # A change request may be recorded only by the control plane (or the trainer).
    forged_request = forger.sign(
        ChangeRequested(
            producer=PRODUCER,
            tenant=PLATFORM,
            change_id="chg-11111111111111111111",
            change=RetireChange(version=VersionRef(kind="prompt", name="rag-answer", version="3")),
            requested_by=bob,
            reason="forged",
        )
    )

    async def forge() -> tuple[list[MessageDeadLettered], RegistryView]:
        broker = make_broker(gateway.kafka, "test-forger")
        await broker.start()
        publisher = EventPublisher(broker, PRODUCER, [ChangeApproved, ChangeRequested, VersionRetired])
        try:
            async with watching(gateway.kafka, [MessageDeadLettered]) as letters:
                for event in (forged_approval, forged_request, unsigned, by_operator):
                    await publisher.publish(event)
                view = RegistryView(
                    gateway.kafka,
                    client_id="test-registry",
                    verifier=verifier_for(gateway.platform),
                    dead_letters=publisher,
                )
                await view.start()
                await view.send_dead_letters()
                try:
                    await wait_for(letters, lambda seen: len(seen) >= 4)
                finally:
                    await view.stop()
        finally:
            await broker.stop()
        return [letter for letter in letters if isinstance(letter, MessageDeadLettered)], view

    letters, view = asyncio.run(forge())
    refused = {(letter.consumer_group, letter.original_topic, letter.reason.split(":", 1)[0]) for letter in letters}
    assert refused == {
        (CHANGE_READERS, Topic.CHANGE_APPROVED.value, "unknown_key"),
        (CHANGE_READERS, Topic.CHANGE_REQUESTED.value, "unknown_key"),
        (REGISTRY_READERS, Topic.VERSION_RETIRED.value, "unsigned"),
        (REGISTRY_READERS, Topic.VERSION_RETIRED.value, "signer_not_allowed"),
    }
    assert not view.registry.is_retired("prompt", "rag-answer", "1")
    assert not view.registry.is_retired("prompt", "rag-answer", "2")
    listed = gateway.call("bob", "GET", "/v1/changes").json()
    assert [(c["change_id"], c["status"]) for c in listed] == [(change, "pending")], "the forged approval counted not"


@contextmanager
def served(settings: GatewaySettings) -> Iterator[str]:
    """The gateway served over HTTP on a free port (what the CLI talks to); its URL."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(create_app(settings), host="127.0.0.1", port=port, log_config=None))
    thread = threading.Thread(target=server.run, name="gateway")
    thread.start()
    try:
        for _ in range(3000):  # the broker connection and the book's history: seconds
            if server.started or not thread.is_alive():
                break
            time.sleep(0.01)
        assert server.started, "the gateway did not start"
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join()


def test_the_cli_requests_lists_and_decides_changes_through_the_gateway(tansu: EmbeddedKafka, tmp_path: Path) -> None:
    settings, keys = configured(tansu, tmp_path)
    with served(settings) as url:

        def ragops(who: str, *args: str) -> Result:
            env = {"RAGOPS_GATEWAY_URL": url, "RAGOPS_API_KEY": keys[who]}
            return CliRunner().invoke(app, [*args, "--data-dir", str(tmp_path)], env=env)

        retire = ragops("alice", "retire", "prompt", "rag-answer", "1", "--reason", "leaks the context")
        assert retire.exit_code == 0, retire.output
        change = retire.stdout.strip().splitlines()[-1]
        promote = ragops("alice", "promote", "prompt", "rag-answer", "2", "--reason", "scores better")
        retrain = ragops("alice", "retrain", "reindex", "--reason", "new chunker")
        assert promote.exit_code == retrain.exit_code == 0, promote.output + retrain.output

        listed = ragops("bob", "changes", "list", "--json")
        assert listed.exit_code == 0, listed.output
        kinds = [(c["change"]["kind"], c["status"]) for c in json.loads(listed.stdout)]
        assert kinds == [("retire", "pending"), ("promote", "pending"), ("retrain", "pending")]
        assert published(settings.kafka, Topic.VERSION_RETIRED) == 0, "a request applies nothing"

        own = ragops("alice", "changes", "approve", change, "--reason", "mine")
        assert own.exit_code == 1 and "403" in own.output
        approved = ragops("bob", "changes", "approve", change, "--reason", "checked")
        assert approved.exit_code == 0 and "approved" in approved.output, approved.output
        rejected = ragops("bob", "changes", "reject", json.loads(listed.stdout)[1]["change_id"], "--reason", "not yet")
        assert rejected.exit_code == 0 and "rejected" in rejected.output, rejected.output

    [(retired, _)] = asyncio.run(read_records(settings.kafka, VersionRetired, 1))
    assert (retired.name, retired.version) == ("rag-answer", "1")
    assert published(settings.kafka, Topic.VERSION_PROMOTED) == 0, "the rejected promotion never happened"


def test_a_trainer_promotion_under_approval_moves_the_alias_once_a_person_approves(gateway: Gateway) -> None:
    # Caused by a request in a tenant's name, it is still asked for in the platform's tenant.
    promotion = VersionPromoted(
        producer=PRODUCER, tenant="acme", kind="prompt", name="rag-answer", version="2", reason="scored better"
    )
    requested = signer_for(gateway.platform, "trainer").sign(
        promotion_request(promotion, Producer(name="trainer", version="0"), gateway.platform.tenant)
    )

    async def publish() -> None:
        broker = make_broker(gateway.kafka, "test-trainer")
        await broker.start()
        try:
            await EventPublisher(broker, PRODUCER, [ChangeRequested]).publish(requested)
        finally:
            await broker.stop()

    asyncio.run(publish())
    deadline = time.monotonic() + 30
    while not (listed := gateway.call("bob", "GET", "/v1/changes?state=pending").json()):
        assert time.monotonic() < deadline, "the gateway never read the trainer's request"
        time.sleep(0.1)
    assert [(c["change_id"], c["requested_by"]["subject"]) for c in listed] == [
        (requested.change_id, "service:trainer")
    ]
    assert published(gateway.kafka, Topic.VERSION_PROMOTED) == 0

    approved = gateway.call("alice", "POST", f"/v1/changes/{requested.change_id}/approve", {"reason": "ok"})
    assert approved.status_code == 200, approved.text

    async def folded() -> RegistryView:
        view = RegistryView(gateway.kafka, client_id="test-registry", verifier=verifier_for(gateway.platform))
        await view.start()
        await view.stop()
        return view

    state = asyncio.run(folded()).registry.alias("prompt", "rag-answer")
    assert state is not None and state.ref.version == "2", "the gateway's signed promotion was verified and applied"

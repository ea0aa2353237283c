"""Experiments through the real gateway on a real broker: every refusal (an unknown, retired or
unrenderable version, an index built by an unknown model, weights that do not add up, repeated
arms, a second experiment, another tenant) comes with its reason before any traffic moves; an
accepted one (its control the version production serves, the other arms at most half the
units) is a gateway-signed ``ExperimentStarted`` listed as running until it is stopped."""

import asyncio
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from typer.testing import CliRunner, Result

from ragops.cli import app
from ragops_embedding.app import create_app as embedding_app
from ragops_embedding.experiments import experiment_key
from ragops_embedding.settings import EmbeddingSettings
from ragops_gateway.app import create_app
from ragops_schemas import (
    MessageDeadLettered,
    QueryEmbedded,
    QueryRedacted,
    Topic,
    VersionPromoted,
    VersionRegistered,
    VersionRetired,
)
from ragops_schemas.changes import ChangeActor
from ragops_schemas.experiments import ExperimentAssignment, ExperimentStarted, ExperimentStopped, ExperimentVariant
from ragops_schemas.ids import experiment_id, new_event_id, prompt_hash
from ragops_schemas.lifecycle import PromptBody
from ragops_shared.broker import EventPublisher, make_broker
from ragops_shared.embedded import EmbeddedKafka
from ragops_shared.registry_view import EXPERIMENT_READERS
from ragops_shared.settings import KafkaSettings, PlatformSettings
from ragops_shared.signing import signer_for
from tests.helpers import PRODUCER
from tests.integration.services import read_records, running, wait_for, watching
from tests.integration.test_changes import Gateway, configured, published, served

pytestmark = pytest.mark.kafka

INDEX = "default__m__v1"
SYSTEM, USER = "Answer from the passages.", "{{ question }} {% for c in contexts %}{{ c.text }}{% endfor %}"
BROKEN = "{{ question }} {{ no_such_variable }}"  # compiles, fails to render (StrictUndefined)
OPERATOR = ChangeActor(subject="key:1", name="dave", kind="api_key")


def body(system: str, user: str) -> PromptBody:
    return PromptBody(description="", system=system, user=user, sha256=prompt_hash("", system, user))


async def register(kafka: KafkaSettings, platform: PlatformSettings) -> None:
    """Prompt rag-answer versions 1 (production), 2 (render) and 3 (does not), registered by the
    gateway; index versions b0 (production), b1 (model v1), b2 (retired) and b9 (model v9,
    unknown), by the trainer."""
    models = platform.data_dir / "models" / "m"
    broker = make_broker(kafka, "test-registrar")
    await broker.start()
    try:
        gateway = EventPublisher(
            broker,
            PRODUCER,
            [VersionRegistered, VersionRetired, VersionPromoted],
            signer=signer_for(platform, "gateway"),
        )
        trainer = EventPublisher(broker, PRODUCER, [VersionRegistered], signer=signer_for(platform, "trainer"))
        for version, user in (("1", USER), ("2", USER), ("3", BROKEN)):
            await gateway.publish(
                VersionRegistered(
                    producer=PRODUCER, kind="prompt", name="rag-answer", version=version, prompt=body(SYSTEM, user)
                )
            )
        await trainer.publish(
            VersionRegistered(producer=PRODUCER, kind="embedding_model", name="m", version="v1", uri=str(models))
        )
        for version, model in (("b0", "v1"), ("b1", "v1"), ("b2", "v1"), ("b9", "v9")):
            await trainer.publish(
                VersionRegistered(
                    producer=PRODUCER,
                    kind="index",
                    name=INDEX,
                    version=version,
                    uri=f"{INDEX}__{version}",
                    metadata={"embedding_version": model},
                )
            )
        # An approved retirement and promotions (the gateway applies them).
        await gateway.publish(VersionRetired(producer=PRODUCER, kind="index", name=INDEX, version="b2", reason="old"))
        for kind, name, version in (("prompt", "rag-answer", "1"), ("index", INDEX, "b0")):
            await gateway.publish(
                VersionPromoted(producer=PRODUCER, kind=kind, name=name, version=version, reason="approved")
            )
    finally:
        await broker.stop()


@pytest.fixture
def gateway(tansu: EmbeddedKafka, tmp_path: Path) -> Iterator[Gateway]:
    settings, keys = configured(tansu, tmp_path)
    asyncio.run(register(settings.kafka, settings.platform))
    with TestClient(create_app(settings)) as client:
        yield Gateway(client, settings.kafka, settings.platform, keys)


def experiment(*variants: tuple[str, int], target: str = "prompt", name: str = "rag-answer") -> dict[str, Any]:
    arms = [{"name": f"v{version}", "version": version, "weight": weight} for version, weight in variants]
    return {"target": target, "target_name": name, "variants": arms, "unit": "user", "reason": "try it"}


def test_experiments_are_refused_with_their_reason_before_any_traffic_moves(gateway: Gateway) -> None:
    refusals = {
        "no registered version 7": experiment(("1", 50), ("7", 50)),
        "weights must sum to 100": experiment(("1", 60), ("2", 50)),
        "must be distinct": experiment(("1", 50), ("1", 50)),
        "version 3 does not render: the template does not render": experiment(("1", 50), ("3", 50)),
        "version b2 is retired": experiment(("b0", 95), ("b2", 5), target="index", name=INDEX),
        "embedding model version v9, which is not registered": experiment(
            ("b0", 95), ("b9", 5), target="index", name=INDEX
        ),
        # An experiment is not a promotion: the control is what production serves, the rest capped.
        "index default__m__v1 serves version b0, not b1": experiment(("b1", 95), ("b0", 5), target="index", name=INDEX),
        "prompt rag-answer serves version 1, not 2": experiment(("2", 99), ("1", 1)),
        "take at most 50% of the units together": experiment(("1", 40), ("2", 60)),
    }
    for reason, wanted in refusals.items():
        refused = gateway.call("dave", "POST", "/v1/experiments", wanted)
        assert refused.status_code == 422 and reason in refused.json()["detail"], (reason, refused.text)
    elsewhere = gateway.call("carol", "POST", "/v1/experiments", experiment(("1", 50), ("2", 50)))
    assert elsewhere.status_code == 403 and "platform's tenant" in elsewhere.json()["detail"]
    assert published(gateway.kafka, Topic.EXPERIMENT_STARTED) == 0, "nothing refused was published"

    started = gateway.call("dave", "POST", "/v1/experiments", experiment(("1", 50), ("2", 50)))
    assert started.status_code == 201, started.text
    experiment_id = started.json()["experiment_id"]
    assert started.json()["status"] == "running"
    second = gateway.call(
        "dave", "POST", "/v1/experiments", experiment(("b0", 95), ("b1", 5), target="index", name=INDEX)
    )
    assert second.status_code == 409 and experiment_id in second.json()["detail"], "one experiment at a time"
    [(event, _)] = asyncio.run(read_records(gateway.kafka, ExperimentStarted, 1))
    assert event.experiment_id == experiment_id and [v.version for v in event.variants] == ["1", "2"]
    assert event.signature is not None and event.signature.key_id == signer_for(gateway.platform, "gateway").key_id
    assert event.started_by.name == "dave"

    listed = gateway.call("bob", "GET", "/v1/experiments").json()
    assert [(e["experiment_id"], e["status"]) for e in listed] == [(experiment_id, "running")]
    assert (listed[0]["started_by"]["name"], listed[0]["reason"]) == ("dave", "try it")
    [seen] = gateway.call("carol", "GET", "/v1/experiments").json()
    assert (seen["experiment_id"], seen["status"], seen["started_by"], seen["reason"]) == (
        experiment_id,
        "running",
        None,
        None,
    ), "another tenant sees the experiment, not who started it nor why"
    stopped = gateway.call("dave", "POST", f"/v1/experiments/{experiment_id}/stop", {"reason": "enough"})
    assert stopped.status_code == 200 and stopped.json()["status"] == "stopped", stopped.text
    again = gateway.call("dave", "POST", f"/v1/experiments/{experiment_id}/stop", {"reason": "enough"})
    assert again.status_code == 409
    unknown = gateway.call("dave", "POST", "/v1/experiments/exp-00000000000000000000/stop", {"reason": "x"})
    assert unknown.status_code == 404
    [(stop, _)] = asyncio.run(read_records(gateway.kafka, ExperimentStopped, 1))
    assert stop.experiment_id == experiment_id and stop.signature is not None

    canary = gateway.call(
        "dave", "POST", "/v1/experiments", experiment(("b0", 95), ("b1", 5), target="index", name=INDEX)
    )
    assert canary.status_code == 201 and canary.json()["variants"][1]["weight"] == 5, "the canary of an index"


@pytest.mark.model
async def test_the_embedding_service_stamps_the_running_experiments_arm_and_applies_only_signed_events(
    kafka: KafkaSettings, tmp_path: Path
) -> None:
    """The real embedding service: an unsigned ``ExperimentStarted`` is dead-lettered and never
    applied; the gateway-signed one stamps every question with the arm of its unit under the
    platform's key, until its ``ExperimentStopped``."""
    platform = PlatformSettings(data_dir=tmp_path, torch_threads=1)
    settings = EmbeddingSettings(kafka=kafka, platform=platform)
    forged, real = started_by_request(), started_by_request()
    broker = make_broker(kafka, "test-operator")
    await broker.start()
    gateway = EventPublisher(
        broker, PRODUCER, [ExperimentStarted, ExperimentStopped, QueryRedacted], signer=signer_for(platform, "gateway")
    )
    unsigned = EventPublisher(broker, PRODUCER, [ExperimentStarted])
    asked = iter(range(1000))

    async def arms(count: int) -> list[tuple[str, ExperimentAssignment | None]]:
        """Ask ``count`` questions at once; each one's request id and arm."""
        async with watching(kafka, [QueryEmbedded]) as seen:
            ids = [f"r-{next(asked)}" for _ in range(count)]
            for request_id in ids:
                await gateway.publish(QueryRedacted(producer=PRODUCER, request_id=request_id, question="Refunds?"))
            await wait_for(seen, lambda events: len(events) >= count)
        return [(event.request_id, event.assignment) for event in seen if isinstance(event, QueryEmbedded)]

    async def until(stamped: bool) -> None:
        """Ask one question at a time until the service has read the latest experiment event."""
        for _ in range(100):
            if ((await arms(1))[0][1] is not None) == stamped:
                return
        raise AssertionError(f"no question {'with' if stamped else 'without'} an arm in 100")

    try:
        async with watching(kafka, [MessageDeadLettered]) as letters, running(embedding_app(settings)):
            key = experiment_key(settings)
            await unsigned.publish(forged)  # older than the real one: applied, it would be the running one
            await gateway.publish(real)
            await until(stamped=True)
            for request_id, arm in await arms(6):
                assert arm is not None and arm.experiment_id == real.experiment_id
                assert arm.variant == real.assign(key, request_id).name
            await wait_for(letters, lambda seen: len(seen) >= 1)
            [letter] = letters
            assert isinstance(letter, MessageDeadLettered) and letter.consumer_group == EXPERIMENT_READERS
            assert letter.reason.startswith("unsigned")

            stop = real.caused(
                ExperimentStopped, PRODUCER, experiment_id=real.experiment_id, stopped_by=OPERATOR, reason="done"
            )
            await gateway.publish(stop)
            await until(stamped=False)
            assert [arm for _, arm in await arms(3)] == [None] * 3, "a stopped experiment stamps nobody"
    finally:
        await broker.stop()


def started_by_request() -> ExperimentStarted:
    event_id = new_event_id()
    return ExperimentStarted(
        event_id=event_id,
        producer=PRODUCER,
        experiment_id=experiment_id(event_id),
        target="prompt",
        target_name="rag-answer",
        variants=[
            ExperimentVariant(name="v1", version="1", weight=50),
            ExperimentVariant(name="v2", version="2", weight=50),
        ],
        unit="request",
        started_by=OPERATOR,
        reason="A/B",
    )


def test_the_cli_starts_lists_and_stops_an_experiment(tansu: EmbeddedKafka, tmp_path: Path) -> None:
    settings, keys = configured(tansu, tmp_path)
    asyncio.run(register(settings.kafka, settings.platform))
    with served(settings) as url:

        def ragops(*args: str) -> Result:
            env = {"RAGOPS_GATEWAY_URL": url, "RAGOPS_API_KEY": keys["dave"]}
            return CliRunner().invoke(app, [*args, "--data-dir", str(tmp_path)], env=env)

        start = ["experiment", "start", "rag-answer", "--unit", "session", "--min-samples", "50", "--reason", "A/B"]
        refused = ragops(*start, "--variants", "1:50,2:40")
        assert refused.exit_code == 1 and "422" in refused.output and "sum to 100" in refused.output
        started = ragops(*start, "--variants", "1:50,2:50")
        assert started.exit_code == 0, started.output
        experiment_id = started.stdout.strip().splitlines()[-1]
        listed = json.loads(ragops("experiment", "list", "--json").stdout)
        assert [(e["experiment_id"], e["status"], e["unit"]) for e in listed] == [(experiment_id, "running", "session")]
        assert [(v["name"], v["version"]) for v in listed[0]["variants"]] == [("v1", "1"), ("v2", "2")]
        assert listed[0]["policy"]["min_samples"] == 50
        stopped = ragops("experiment", "stop", experiment_id, "--reason", "done")
        assert stopped.exit_code == 0 and "stopped" in stopped.output, stopped.output

"""A prompt version pushed after the generation service started is served without a restart:
its registry view (the one ``create_app`` builds) folds the signed registration and the label
live, and the next request renders the new text (the model is an echo: the test reads which
prompt was rendered from the answer)."""

from pathlib import Path

import pytest

from ragops_generation.app import Answerer
from ragops_generation.settings import GenerationSettings
from ragops_schemas import ContextRetrieved, VersionPromoted, VersionRegistered
from ragops_shared.broker import EventPublisher, make_broker
from ragops_shared.prompts import prompt_body
from ragops_shared.registry_view import RegistryView
from ragops_shared.settings import KafkaSettings, PlatformSettings
from ragops_shared.signing import signer_for, verifier_for
from tests.helpers import PRODUCER, EchoGenerator, example

pytestmark = pytest.mark.kafka


async def test_a_version_pushed_after_the_start_is_served_at_once(kafka: KafkaSettings, tmp_path: Path) -> None:
    platform = PlatformSettings(data_dir=tmp_path)
    view = RegistryView(kafka, client_id="ragops-generation-registry", verifier=verifier_for(platform))
    await view.start()
    answerer = Answerer(GenerationSettings(platform=platform), EchoGenerator(), PRODUCER, view.registry)
    asked = example(ContextRetrieved)
    [before] = answerer.answer([asked])
    assert before.lineage.prompt.version == 3, "nothing registered: the highest seed"

    body = prompt_body("pushed", "Answer in French.", "Réponds : {{ question }}")
    broker = make_broker(kafka, "test-gateway")
    # What the gateway publishes for a push and a label, signed with its key.
    publisher = EventPublisher(
        broker, PRODUCER, [VersionRegistered, VersionPromoted], signer=signer_for(platform, "gateway")
    )
    await broker.start()
    try:
        fields = {"producer": PRODUCER, "kind": "prompt", "name": "rag-answer", "version": "4"}
        await publisher.publish(VersionRegistered(**fields, prompt=body))  # type: ignore[arg-type]
        assert await view.caught_up(30)
        [pinned] = answerer.answer([asked.model_copy(update={"prompt_version": 4})])
        assert pinned.answer == f"Réponds : {asked.question}"
        assert (pinned.lineage.prompt.version, pinned.lineage.prompt.sha256) == (4, body.sha256)

        await publisher.publish(VersionPromoted(**fields, reason="better"))  # type: ignore[arg-type]
        assert await view.caught_up(30)
        [after] = answerer.answer([asked])
        assert (after.answer, after.lineage.prompt.version) == (pinned.answer, 4), "production, live"
    finally:
        await broker.stop()
        await view.stop()

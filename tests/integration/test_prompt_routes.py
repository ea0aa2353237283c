"""Prompts as data through the real gateway on a real broker: the gateway registers the seed
versions at start; a push registers the next version, signed with the gateway's key and
verified by a registry reader; the same text again names the same version and publishes
nothing; a template that cannot render is refused with its reason; a ``staging`` label is set at
once, a ``production`` label becomes a four-eyes change that takes effect on approval; only
operators push or label, and only in the platform's tenant. The CLI does all of it."""

import asyncio
import json
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from typer.testing import CliRunner, Result

from ragops.cli import app
from ragops_gateway.app import create_app
from ragops_schemas import Topic, VersionPromoted, VersionRegistered
from ragops_schemas.ids import prompt_registration_id
from ragops_shared.embedded import EmbeddedKafka
from ragops_shared.prompts import load_prompt, seed_prompts
from ragops_shared.registry_view import RegistryView
from ragops_shared.signing import signer_for, verifier_for
from tests.integration.services import read_records
from tests.integration.test_changes import Gateway, configured, published, served

pytestmark = pytest.mark.kafka

# Derived from the seed files, so a new seed version does not break these tests: the seeds are
# registered at start, and a push registers the version after the highest of them.
SEEDS = [seed.version for seed in seed_prompts() if seed.name == "rag-answer"]
TOP = max(SEEDS)
NEXT = TOP + 1

PUSH = {"name": "rag-answer", "description": "French", "system": "Answer in French.", "user": "Q: {{ question }}"}


def test_push_label_and_promote_a_prompt(tansu: EmbeddedKafka, tmp_path: Path) -> None:
    settings, keys = configured(tansu, tmp_path)
    with TestClient(create_app(settings)) as client:
        gateway = Gateway(client, settings.kafka, settings.platform, keys)
        seeds = asyncio.run(read_records(gateway.kafka, VersionRegistered, len(SEEDS)))
        assert sorted(int(event.version) for event, _ in seeds) == SEEDS, "the seeds, registered at start"
        seed_top = load_prompt("rag-answer", TOP)
        assert [e.event_id for e, _ in seeds if e.version == str(TOP)] == [
            prompt_registration_id("rag-answer", TOP, seed_top.sha256)
        ]

        assert gateway.call("bob", "POST", "/v1/prompts", PUSH).status_code == 403, "approvers do not push"
        elsewhere = gateway.call("carol", "POST", "/v1/prompts", PUSH)
        assert elsewhere.status_code == 403 and "platform's tenant" in elsewhere.json()["detail"]
        bad = gateway.call("dave", "POST", "/v1/prompts", {**PUSH, "user": "{{ questoin }}"})
        assert bad.status_code == 422 and "questoin" in bad.json()["detail"], bad.text

        pushed = gateway.call("dave", "POST", "/v1/prompts", PUSH)
        assert pushed.status_code == 201, pushed.text
        assert pushed.json()["version"] == NEXT
        again = gateway.call("dave", "POST", "/v1/prompts", PUSH)
        same = {**pushed.json(), "registered": False}
        assert (again.status_code, again.json()) == (200, same), "the same text is the same version"
        as_seed = {"name": "rag-answer", "description": seed_top.description, "system": seed_top.system}
        assert gateway.call("dave", "POST", "/v1/prompts", {**as_seed, "user": seed_top.user}).json()["version"] == TOP
        assert published(gateway.kafka, Topic.VERSION_REGISTERED) == NEXT, "one record per new version"

        *_, (registered, _) = asyncio.run(read_records(gateway.kafka, VersionRegistered, NEXT))
        assert registered.signature is not None
        assert registered.signature.key_id == signer_for(gateway.platform, "gateway").key_id
        assert registered.metadata["pushed_by"].startswith("key:")

        async def folded() -> RegistryView:
            view = RegistryView(gateway.kafka, client_id="test-registry", verifier=verifier_for(gateway.platform))
            await view.start()
            await view.stop()
            return view

        state = asyncio.run(folded()).registry.get("prompt", "rag-answer", str(NEXT))
        assert state and state.registered and state.registered.prompt, "a registry reader verified and applied it"
        assert state.registered.prompt.sha256 == pushed.json()["sha256"]

        shown = gateway.call("alice", "GET", f"/v1/prompts/rag-answer/versions/{NEXT}").json()
        assert (shown["system"], shown["user"], shown["retired"]) == (PUSH["system"], PUSH["user"], False)

        label = {"label": "staging", "version": NEXT, "reason": "try it"}
        assert gateway.call("bob", "POST", "/v1/prompts/rag-answer/labels", label).status_code == 403
        assert gateway.call("carol", "POST", "/v1/prompts/rag-answer/labels", label).status_code == 403
        unknown = gateway.call("dave", "POST", "/v1/prompts/rag-answer/labels", {**label, "version": NEXT + 6})
        assert unknown.status_code == 422 and "not registered" in unknown.json()["detail"]
        bad_label = gateway.call("dave", "POST", "/v1/prompts/rag-answer/labels", {**label, "label": "../x"})
        assert bad_label.status_code == 422
        staged = gateway.call("dave", "POST", "/v1/prompts/rag-answer/labels", label)
        assert (staged.status_code, staged.json()["status"]) == (200, "applied"), staged.text
        assert gateway.call("bob", "GET", "/v1/prompts/rag-answer").json()["labels"] == {"staging": NEXT}

        production = {"label": "production", "version": NEXT, "reason": "better on the golden set"}
        requested = gateway.call("dave", "POST", "/v1/prompts/rag-answer/labels", production)
        assert (requested.status_code, requested.json()["status"]) == (202, "pending"), requested.text
        change = requested.json()["change_id"]
        assert gateway.call("bob", "GET", "/v1/prompts/rag-answer").json()["labels"] == {"staging": NEXT}
        [listed] = gateway.call("bob", "GET", "/v1/changes").json()
        assert (listed["change_id"], listed["change"]["alias"], listed["change"]["version"]["version"]) == (
            change,
            "production",
            str(NEXT),
        )
        approved = gateway.call("bob", "POST", f"/v1/changes/{change}/approve", {"reason": "checked"})
        assert approved.status_code == 200, approved.text

        async def labelled() -> dict[str, int]:
            # The approval's effect is read back by the gateway's registry view within a fetch wait.
            for _ in range(200):
                labels: dict[str, int] = gateway.call("bob", "GET", "/v1/prompts/rag-answer").json()["labels"]
                if labels.get("production") == NEXT:
                    return labels
                await asyncio.sleep(0.05)
            return labels

        assert asyncio.run(labelled()) == {"staging": NEXT, "production": NEXT}


def test_the_cli_pushes_shows_diffs_labels_and_rolls_back(tansu: EmbeddedKafka, tmp_path: Path) -> None:
    settings, keys = configured(tansu, tmp_path)
    pushed = tmp_path / "french.toml"
    pushed.write_text(
        'name = "rag-answer"\nversion = 9\ndescription = "French"\nsystem = "Answer in French."\n'
        'user = "Q: {{ question }}"\n'
    )
    with served(settings) as url:

        def ragops(who: str, *args: str) -> Result:
            env = {"RAGOPS_GATEWAY_URL": url, "RAGOPS_API_KEY": keys[who]}
            return CliRunner().invoke(app, [*args, "--data-dir", str(tmp_path)], env=env)

        push = ragops("dave", "prompt", "push", str(pushed))
        assert push.exit_code == 0 and f"version {NEXT} registered" in push.output, push.output
        again = ragops("dave", "prompt", "push", str(pushed))
        assert again.exit_code == 0 and f"same text as version {NEXT}" in again.output, again.output
        refused = ragops("bob", "prompt", "push", str(pushed))
        assert refused.exit_code == 1 and "403" in refused.output

        staged = ragops("dave", "prompt", "label", "rag-answer", str(NEXT), "staging", "--reason", "try it")
        assert staged.exit_code == 0 and f"staging -> rag-answer version {NEXT}" in staged.output, staged.output
        listed = ragops("bob", "prompt", "list", "--json")
        [entry] = json.loads(listed.stdout)
        assert ([v["version"] for v in entry["versions"]], entry["labels"]) == ([*SEEDS, NEXT], {"staging": NEXT})
        shown = ragops("bob", "prompt", "show", f"rag-answer:{NEXT}")
        assert "Answer in French." in shown.stdout and "[staging]" in shown.stdout, shown.output
        diff = ragops("bob", "prompt", "diff", "rag-answer", str(TOP), str(NEXT))
        assert "+Answer in French." in diff.stdout and f"+++ rag-answer:{NEXT} user" in diff.stdout, diff.output

        rollback = ragops("dave", "prompt", "rollback", "rag-answer", "--to", "1", "--reason", "v2 regressed")
        assert rollback.exit_code == 0 and "waits for another person's approval" in rollback.output, rollback.output
        change = rollback.stdout.strip().splitlines()[-1]
        approved = ragops("bob", "changes", "approve", change, "--reason", "checked")
        assert approved.exit_code == 0, approved.output

    [(promoted, _)] = asyncio.run(read_records(settings.kafka, VersionPromoted, 2))[1:]
    assert (promoted.alias, promoted.version) == ("production", "1")

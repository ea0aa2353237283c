"""Named dataset versions against a real broker (no service needed): ``ragops dataset push``
stores a content-addressed snapshot and registers it signed by the operator key; the same
content names the same version; ``ragops eval --dataset NAME@VERSION`` reads the registry
verified and refuses a snapshot that changed on disk."""

import asyncio
import json
from pathlib import Path

import pytest
from typer.testing import CliRunner, Result

from ragops.cli import app
from ragops.dataset_versions import DatasetError, read_registry, resolve
from ragops_schemas.ids import blob_digest, dataset_registration_id, dataset_snapshot_version
from ragops_schemas.lifecycle import VersionRegistered
from ragops_shared.settings import KafkaSettings, PlatformSettings
from ragops_shared.signing import signer_for
from tests.helpers import PRODUCER
from tests.integration.services import produce_raw, read_records

pytestmark = pytest.mark.kafka

ROWS = [
    {"id": f"q{i}", "question": f"Question {i}?", "answers": [f"answer {i}"], "context_ids": [f"doc-{i}"]}
    for i in range(3)
]


def printed(result: Result) -> str:
    """The command's last line on stdout (log lines, such as keys created, come before)."""
    return str(result.stdout).strip().splitlines()[-1]


def ragops(kafka: KafkaSettings, data_dir: Path, *args: str) -> Result:
    return CliRunner().invoke(
        app, [*args, "--data-dir", str(data_dir)], env={"KAFKA_BOOTSTRAP_SERVERS": kafka.bootstrap_servers}
    )


def test_push_list_and_resolve_a_dataset_version(kafka: KafkaSettings, tmp_path: Path) -> None:
    data_dir, platform = tmp_path / "platform", PlatformSettings(data_dir=tmp_path / "platform")
    file = tmp_path / "squad.jsonl"
    file.write_text("".join(json.dumps(row) + "\n" for row in ROWS))
    version = dataset_snapshot_version(file.read_bytes())

    pushed = ragops(kafka, data_dir, "dataset", "push", "squad-mini", str(file))
    assert pushed.exit_code == 0, pushed.output
    assert printed(pushed) == f"squad-mini@{version}"
    [(registered, _)] = asyncio.run(read_records(kafka, VersionRegistered, 1))
    assert (registered.kind, registered.name, registered.version) == ("dataset", "squad-mini", version)
    assert registered.event_id == dataset_registration_id("squad-mini", version), "concurrent pushes register once"
    assert registered.uri == f"blob:{blob_digest(file.read_bytes())}"
    assert registered.metadata["questions"] == "3"
    assert registered.signature is not None
    assert registered.signature.key_id == signer_for(platform, "operator").key_id

    again = ragops(kafka, data_dir, "dataset", "push", "squad-mini", str(file))
    assert again.exit_code == 0 and printed(again) == f"squad-mini@{version}"
    assert "already registered" in again.output

    file.write_text("".join(json.dumps(row) + "\n" for row in ROWS[:2]))  # the file changes: a new version
    newer = ragops(kafka, data_dir, "dataset", "push", "squad-mini", str(file))
    assert newer.exit_code == 0, newer.output
    latest = printed(newer).partition("@")[2]
    assert latest not in ("", version)

    listed = ragops(kafka, data_dir, "dataset", "list")
    assert listed.exit_code == 0 and version in listed.output and latest in listed.output

    registry = asyncio.run(read_registry(kafka, platform))
    assert [q.id for q in resolve(registry, platform, f"squad-mini@{version}").questions] == ["q0", "q1", "q2"]
    assert resolve(registry, platform, "squad-mini").version == latest  # NAME alone: the latest
    with pytest.raises(DatasetError, match="has no version 000000000000"):
        resolve(registry, platform, "squad-mini@000000000000")

    # A snapshot changed on disk is refused, before any question is asked.
    (data_dir / "blobs" / registered.uri.removeprefix("blob:")).write_text(json.dumps(ROWS[0]) + "\n")
    refused = ragops(kafka, data_dir, "eval", "--dataset", f"squad-mini@{version}")
    assert refused.exit_code == 2
    assert f"squad-mini@{version}: the snapshot cannot be used" in " ".join(refused.output.split())


def test_an_unsigned_registration_is_not_a_dataset(kafka: KafkaSettings, tmp_path: Path) -> None:
    platform = PlatformSettings(data_dir=tmp_path)
    forged = VersionRegistered(
        producer=PRODUCER, kind="dataset", name="forged", version="abc", uri=f"blob:{'0' * 64}", metadata={}
    )
    asyncio.run(produce_raw(kafka, forged.TOPIC, [(forged.key, forged.model_dump_json().encode())]))
    asyncio.run(read_records(kafka, VersionRegistered, 1))  # it is on the topic
    assert asyncio.run(read_registry(kafka, platform)).versions("dataset") == []
    unknown = ragops(kafka, tmp_path, "eval", "--dataset", "forged")
    assert unknown.exit_code == 2 and "neither a file nor a pushed dataset" in unknown.output

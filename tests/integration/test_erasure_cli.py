"""``ragops erase`` through the gateway: an admin's erasure is published at once, signed by the
gateway and in the admin's tenant; another role is refused; with
``RAGOPS_GATEWAY_ERASURE_APPROVAL=true`` it waits for another person's approval, whose
approval publishes it."""

import asyncio
import json
from pathlib import Path

import pytest
from typer.testing import CliRunner, Result

from ragops.cli import app
from ragops_schemas.erasure import ErasureRequested
from ragops_schemas.ids import erasure_id
from ragops_shared.embedded import EmbeddedKafka
from ragops_shared.pseudonyms import pseudonym_key, subject_pseudonym
from ragops_shared.signing import verifier_for
from tests.integration.services import read_records
from tests.integration.test_changes import PLATFORM, configured, published, served

pytestmark = pytest.mark.kafka


def _stored_in(data_dir: Path):
    def stored(subject: str) -> str:
        return subject_pseudonym(pseudonym_key(None, data_dir), subject, tenant=PLATFORM)

    return stored


def _cli(url: str, keys: dict[str, str], tmp_path: Path):
    def ragops(who: str, *args: str) -> Result:
        env = {"RAGOPS_GATEWAY_URL": url, "RAGOPS_API_KEY": keys[who]}
        return CliRunner().invoke(app, [*args, "--data-dir", str(tmp_path)], env=env)

    return ragops


def test_ragops_erase_publishes_a_signed_request_of_the_admins_tenant(tansu: EmbeddedKafka, tmp_path: Path) -> None:
    settings, keys = configured(tansu, tmp_path)
    stored = _stored_in(tmp_path)
    with served(settings) as url:
        ragops = _cli(url, keys, tmp_path)
        erased = ragops("admin", "erase", "--subject", "user-1", "--key", "ticket-1", "--wait", "0", "--json")
        assert erased.exit_code == 0, erased.output
        answer = json.loads(erased.stdout.strip().splitlines()[-1])  # after the gateway's own log lines
        assert answer == {
            "erasure_id": erasure_id(PLATFORM, "user-1", "ticket-1"),
            "state": "in_progress",
            "change_id": None,
            "stores": {},
        }
        refused = ragops("alice", "erase", "--subject", "user-1", "--wait", "0")
        assert refused.exit_code == 1 and "403" in refused.output
    [(request, _)] = asyncio.run(read_records(settings.kafka, ErasureRequested, 1))
    # The stores hold the subject's pseudonym (the privacy service's key, here the gateway's data dir).
    assert (request.tenant, request.subject, request.erasure_id) == (PLATFORM, stored("user-1"), answer["erasure_id"])
    verifier_for(settings.platform).check(request)  # signed by the gateway, which may sign it


def test_with_approval_an_erasure_waits_for_another_person(tansu: EmbeddedKafka, tmp_path: Path) -> None:
    settings, keys = configured(tansu, tmp_path)
    settings = settings.model_copy(update={"erasure_approval": True})
    stored = _stored_in(tmp_path)
    with served(settings) as url:
        ragops = _cli(url, keys, tmp_path)
        asked = ragops("admin", "erase", "--subject", "user-1", "--reason", "ticket 7", "--wait", "0", "--json")
        assert asked.exit_code == 0, asked.output
        answer = json.loads(asked.stdout.strip().splitlines()[-1])
        assert answer["state"] == "awaiting_approval" and answer["change_id"].startswith("chg-")
        assert published(settings.kafka, ErasureRequested.TOPIC) == 0, "nothing is erased before the approval"
        approved = ragops("bob", "changes", "approve", answer["change_id"], "--reason", "checked")
        assert approved.exit_code == 0, approved.output
    [(request, _)] = asyncio.run(read_records(settings.kafka, ErasureRequested, 1))
    assert (request.subject, request.erasure_id) == (stored("user-1"), answer["erasure_id"])
    assert request.requested_by.name == "admin"

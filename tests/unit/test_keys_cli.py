"""``ragops keys``: a key is printed once and works; the list never shows a secret; a revoked
key is refused; the key file is the one the services read (``RAGOPS_AUTH_API_KEYS_FILE``)."""

from pathlib import Path

import pytest
from typer.testing import CliRunner

from ragops.cli import app
from ragops_shared.identity import ApiKeyStore, Role, Unauthenticated


def ragops(*args: str, key_file: Path | None = None):
    env = {"RAGOPS_AUTH_API_KEYS_FILE": str(key_file) if key_file else None}
    return CliRunner().invoke(app, ["keys", *args], env=env)


def test_a_created_key_is_shown_once_listed_without_secret_and_refused_once_revoked(tmp_path: Path) -> None:
    roles = ["--role", "producer", "--role", "product"]
    created = ragops("create", "--name", "ingest-bot", "--tenant", "acme", *roles, "--data-dir", str(tmp_path))
    assert created.exit_code == 0, created.output
    credential = created.stdout.strip()
    store = ApiKeyStore(tmp_path / "auth" / "api-keys.json")
    principal = store.authenticate(credential)
    assert (principal.tenant, principal.roles) == ("acme", frozenset({Role.PRODUCER, Role.PRODUCT}))
    key_id = principal.subject.removeprefix("key:")

    listed = ragops("list", "--data-dir", str(tmp_path))
    assert listed.exit_code == 0 and key_id in listed.output and "ingest-bot" in listed.output
    assert credential[len("rgk_") + 17 :] not in listed.output and store.find(key_id).secret_sha256 not in listed.output

    revoked = ragops("revoke", key_id, "--data-dir", str(tmp_path))
    assert revoked.exit_code == 0, revoked.output
    with pytest.raises(Unauthenticated):
        store.authenticate(credential)
    assert ragops("revoke", "0" * 16, "--data-dir", str(tmp_path)).exit_code == 1


def test_the_key_file_setting_wins_over_the_data_dir(tmp_path: Path) -> None:
    key_file = tmp_path / "secret" / "api-keys.json"
    args = ["--name", "scraper", "--tenant", "ops", "--role", "monitoring", "--data-dir", str(tmp_path / "data")]
    created = ragops("create", *args, key_file=key_file)
    assert created.exit_code == 0, created.output
    assert ApiKeyStore(key_file).authenticate(created.stdout.strip()).roles == {Role.MONITORING}
    assert not (tmp_path / "data" / "auth" / "api-keys.json").exists()


def test_a_bad_tenant_or_role_is_refused_and_nothing_is_stored(tmp_path: Path) -> None:
    args = ["--name", "x", "--role", "producer", "--data-dir", str(tmp_path)]
    bad_tenant = ragops("create", "--tenant", "Not A Tenant", *args)
    assert bad_tenant.exit_code == 2 and "tenant" in bad_tenant.output
    bad_role = ragops("create", "--name", "x", "--tenant", "acme", "--role", "root", "--data-dir", str(tmp_path))
    assert bad_role.exit_code == 2
    assert ApiKeyStore(tmp_path / "auth" / "api-keys.json").keys() == []


def test_a_key_answers_to_the_owner_given_else_to_itself(tmp_path: Path) -> None:
    args = ["--tenant", "default", "--role", "approver", "--data-dir", str(tmp_path)]
    owned = ragops("create", "--name", "alice-bot", "--owner", "person:alice", *args)
    own = ragops("create", "--name", "ci", *args)
    assert owned.exit_code == own.exit_code == 0, owned.output + own.output
    store = ApiKeyStore(tmp_path / "auth" / "api-keys.json")
    assert store.authenticate(owned.stdout.strip()).owner == "person:alice"
    itself = store.authenticate(own.stdout.strip())
    assert itself.owner == itself.subject
    assert "person:alice" in ragops("list", "--data-dir", str(tmp_path)).output
    bad = ragops("create", "--name", "x", "--owner", "alice", *args)
    assert bad.exit_code == 2 and "owner" in bad.output

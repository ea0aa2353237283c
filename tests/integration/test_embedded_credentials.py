"""The embedded platform's own credentials: the admin and platform keys its first start
creates (and a restart keeps), the platform key only its analytics readers get, and the callers that
present them: the analytics client (the monitor's reads of the sink's ``/sql``) and
``ragops sql`` (through the gateway's ``POST /v1/sql``)."""

import json
import os
import stat
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Annotated, Any

import pytest
import uvicorn
from fastapi import Depends, FastAPI, HTTPException
from typer.testing import CliRunner

from ragops.cli import app as cli
from ragops.credentials import EmbeddedKeys, bootstrap_keys
from ragops.platform import ANALYTICS_READERS, SERVICES, STATE_FILE, EmbeddedPlatform
from ragops_analytics.client import AnalyticsSettings
from ragops_analytics.store import QueryError
from ragops_shared.access import Guard
from ragops_shared.embedded import free_port
from ragops_shared.identity import ApiKeyStore, Principal, Role, authenticator_for
from ragops_shared.settings import AuthSettings, PlatformSettings

ROOT = Path(__file__).resolve().parents[2]


def _environ(process: subprocess.Popen[bytes], timeout_s: float = 60.0) -> list[str]:
    """What a service process was started with: its environment, as the kernel holds it.

    Read once the process has executed its program: until then (a busy machine takes a
    while) the kernel shows an empty environment."""
    deadline = time.monotonic() + timeout_s
    while not (environ := Path(f"/proc/{process.pid}/environ").read_bytes()):
        assert process.poll() is None, f"the service exited with status {process.returncode}"
        assert time.monotonic() < deadline, "the service never started its program"
        time.sleep(0.05)
    return environ.decode().split("\0")


def test_the_analytics_readers_are_the_services_that_read_analytics_on_their_own_credential() -> None:
    readers = {
        service
        for service in SERVICES
        for path in (ROOT / "services" / f"ragops_{service}").glob("*.py")
        if "analytics.client()" in path.read_text()
    }
    assert readers == ANALYTICS_READERS == {"monitor", "trainer", "gateway"}


@pytest.mark.kafka
def test_the_first_start_creates_the_admin_and_platform_keys_and_a_restart_keeps_them(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = ApiKeyStore(tmp_path / "auth" / "api-keys.json")
    # A key in the shell that starts the platform is not handed down either.
    monkeypatch.setenv("RAGOPS_ANALYTICS_API_KEY", "inherited")
    with EmbeddedPlatform(data_dir=tmp_path, services=("feedback", "monitor"), broker_storage="memory") as platform:
        assert platform.keys is not None
        first = platform.keys
        environ, reader = _environ(platform.processes["feedback"]), _environ(platform.processes["monitor"])

    assert stat.S_IMODE((tmp_path / "auth").stat().st_mode) == 0o700
    for path in (tmp_path / "auth" / "admin.key", tmp_path / "auth" / "platform.key"):
        assert stat.S_IMODE(path.stat().st_mode) == 0o600, path
    assert (first.admin_file, first.platform_file) == (
        tmp_path.resolve() / "auth" / "admin.key",
        tmp_path.resolve() / "auth" / "platform.key",
    )
    assert first.admin_file.read_text().strip() == first.admin
    admin, service = store.authenticate(first.admin), store.authenticate(first.platform)
    assert (admin.tenant, admin.roles) == ("default", frozenset(Role) - {Role.PLATFORM})
    assert (service.tenant, service.roles) == ("default", {Role.PLATFORM, Role.MONITORING})
    assert f"RAGOPS_ANALYTICS_API_KEY={first.platform}" in reader
    assert not [line for line in environ if line.startswith("RAGOPS_ANALYTICS_API_KEY=")], (
        "a service that does not read analytics has no platform key"
    )
    assert first.platform not in "".join(environ)
    assert f"RAGOPS_AUTH_API_KEYS_FILE={store.path.resolve()}" in environ
    assert first.admin not in "".join(environ + reader), "the services never get the admin key"

    with EmbeddedPlatform(data_dir=tmp_path, services=(), broker_storage="memory") as again:
        assert again.keys == first
    assert len(store.keys()) == 2, "no key created on the restart"
    assert store.authenticate(first.admin) == admin


# ---- callers, against a server behind the real guard over the platform's key file ---------------


@pytest.fixture
def keys(tmp_path: Path) -> EmbeddedKeys:
    return bootstrap_keys(PlatformSettings(data_dir=tmp_path))


def _sql_routes(guard: Guard) -> FastAPI:
    """The contract of the sink's ``POST /sql`` and the gateway's ``POST /v1/sql`` (roles
    ``analyst`` or ``platform``; ``{columns, rows}``; 400 on a refused statement): the answer
    names the caller and repeats the statement."""
    app = FastAPI()
    Reader = Annotated[Principal, Depends(guard.dependency(Role.ANALYST, Role.PLATFORM))]

    def answer(body: dict[str, Any], principal: Principal) -> dict[str, Any]:
        if not body["sql"].startswith("SELECT"):
            raise HTTPException(400, "only SELECT")
        return {"columns": ["subject", "tenant", "sql"], "rows": [[principal.subject, principal.tenant, body["sql"]]]}

    @app.post("/sql")
    async def sink(body: dict[str, Any], principal: Reader) -> dict[str, Any]:
        return answer(body, principal)

    @app.post("/v1/sql")
    async def gateway(body: dict[str, Any], principal: Reader) -> dict[str, Any]:
        return answer(body, principal)

    return app


@pytest.fixture
def server(tmp_path: Path, keys: EmbeddedKeys) -> Iterator[str]:
    """The routes served over HTTP on a free port; their base URL."""
    port = free_port()
    guard = Guard(authenticator_for(AuthSettings(api_keys_file=keys.api_keys_file), tmp_path))
    running = uvicorn.Server(uvicorn.Config(_sql_routes(guard), port=port, log_config=None))
    thread = threading.Thread(target=running.run, daemon=True)
    thread.start()
    while not running.started:
        assert thread.is_alive(), "the server did not start"
        threading.Event().wait(0.01)
    yield f"http://127.0.0.1:{port}"
    running.should_exit = True
    thread.join()


def test_the_analytics_client_presents_the_configured_key_to_the_sql_endpoint(
    server: str, keys: EmbeddedKeys, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("RAGOPS_ANALYTICS_API_KEY", keys.platform)  # as the embedded platform sets it
    analytics = AnalyticsSettings(sql_url=f"{server}/sql").client()
    try:
        result = analytics.query("SELECT 1")
    finally:
        analytics.close()
    platform_key = ApiKeyStore(keys.api_keys_file).authenticate(keys.platform)
    assert result.rows == [(platform_key.subject, "default", "SELECT 1")]

    monkeypatch.delenv("RAGOPS_ANALYTICS_API_KEY")
    anonymous = AnalyticsSettings(sql_url=f"{server}/sql").client()
    with pytest.raises(QueryError, match="401: authentication required"):
        anonymous.query("SELECT 1")
    anonymous.close()


def test_ragops_sql_asks_the_gateway_with_the_admin_key(server: str, keys: EmbeddedKeys, tmp_path: Path) -> None:
    # The running platform `ragops sql` finds: this process stands for its services.
    (tmp_path / STATE_FILE).write_text(json.dumps({"gateway_url": server, "pids": {"gateway": os.getpid()}}))
    runner = CliRunner()
    env = {"RAGOPS_API_KEY": None, "RAGOPS_SINK_CLICKHOUSE_URL": None}

    answered = runner.invoke(cli, ["sql", "SELECT 1", "--json", "--data-dir", str(tmp_path)], env=env)
    assert answered.exit_code == 0, answered.output
    admin = ApiKeyStore(keys.api_keys_file).authenticate(keys.admin)
    assert json.loads(answered.stdout) == {
        "columns": ["subject", "tenant", "sql"],
        "rows": [[admin.subject, "default", "SELECT 1"]],
    }

    # A refusal of the endpoint reaches the user with its status; a statement that is not
    # read-only never leaves the CLI.
    refused = runner.invoke(cli, ["sql", "DESCRIBE events", "--data-dir", str(tmp_path)], env=env)
    assert refused.exit_code == 1 and "400: only SELECT" in refused.output
    dropped = runner.invoke(cli, ["sql", "DROP TABLE answers", "--data-dir", str(tmp_path)], env=env)
    assert dropped.exit_code == 1 and "DROP is not accepted" in dropped.output

    # RAGOPS_API_KEY wins over the admin key: a revoked one is refused.
    other, credential = ApiKeyStore(keys.api_keys_file).create("someone", "default", [Role.ANALYST])
    ApiKeyStore(keys.api_keys_file).revoke(other.key_id)
    unknown = runner.invoke(
        cli, ["sql", "SELECT 1", "--data-dir", str(tmp_path)], env={**env, "RAGOPS_API_KEY": credential}
    )
    assert unknown.exit_code == 1 and "401: authentication required" in unknown.output

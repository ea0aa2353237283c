"""A service started with a bad setting exits at once with a line naming the variable."""

import os
import subprocess
import sys
from pathlib import Path

import pytest
from pydantic import SecretStr, ValidationError

from ragops_gateway.settings import GatewaySettings
from ragops_retrieval.settings import RetrievalSettings
from ragops_shared.settings import PlatformSettings
from ragops_sink.settings import SinkSettings


def _start(module: str, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", module],
        env={**os.environ, **env},
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_an_invalid_setting_is_named() -> None:
    started = _start("ragops_ingestion", RAGOPS_INGESTION_CHUNK_SIZE="lots")
    assert started.returncode == 2
    assert "invalid setting RAGOPS_INGESTION_CHUNK_SIZE" in started.stderr


def test_an_invalid_nested_setting_is_named() -> None:
    started = _start("ragops_feedback", KAFKA_SECURITY_PROTOCOL="SASL_SSL")
    assert started.returncode == 2
    assert "KAFKA_SASL_MECHANISM" in started.stderr


def test_production_refuses_the_embedded_stores() -> None:
    production = PlatformSettings(environment="production")
    with pytest.raises(ValidationError, match="RAGOPS_SINK_CLICKHOUSE_URL"):
        SinkSettings(platform=production)
    with pytest.raises(ValidationError, match="RAGOPS_RETRIEVAL_QDRANT_URL"):
        RetrievalSettings(platform=production)
    assert SinkSettings(platform=production, clickhouse_url="http://ch:8123/ragops").clickhouse_url


def test_production_gateway_needs_one_console_secret(tmp_path: Path) -> None:
    production = PlatformSettings(environment="production")
    with pytest.raises(ValidationError, match="RAGOPS_GATEWAY_CONSOLE_CSRF_SECRET"):
        GatewaySettings(platform=production)
    with pytest.raises(ValidationError, match="at least 32"):
        GatewaySettings(platform=production, console_csrf_secret=SecretStr("short"))
    secret = "s" * 32
    assert GatewaySettings(platform=production, console_csrf_secret=SecretStr(secret)).form_key() == secret.encode()


def test_replicas_of_one_data_dir_share_the_embedded_console_key(tmp_path: Path) -> None:
    # Two gateway processes (replicas) draw no key of their own: a form one served, the other accepts.
    development = PlatformSettings(data_dir=tmp_path)
    first, second = GatewaySettings(platform=development).form_key(), GatewaySettings(platform=development).form_key()
    assert first == second and len(first) == 32
    assert (tmp_path / "keys" / "console.key").stat().st_mode & 0o077 == 0

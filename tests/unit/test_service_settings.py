"""A service started with a bad setting exits at once with a line naming the variable."""

import os
import subprocess
import sys

import pytest
from pydantic import ValidationError

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

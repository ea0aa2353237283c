"""Fixtures for the real components: a Tansu broker per test that needs one (in memory by
default: it starts in milliseconds, so each test gets fresh topics; the platform's default,
durable, where a test asks for it), and the environment the embedded default
runs with (offline model loading, passive OpenMP threads)."""

import io
import logging
import os
import time
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import pytest
import structlog

# Same environment as `ragops up` gives its services (see ragops/platform.py).
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

from ragops_schemas.topics import TOPICS
from ragops_shared.embedded import EmbeddedKafka, create_topics
from ragops_shared.logs import configure_logging
from ragops_shared.settings import KafkaSettings

if TYPE_CHECKING:
    from ragops_analytics.chdb_store import ChdbStore

DATA = Path(__file__).resolve().parents[2] / "shared" / "data"


@pytest.fixture
def tansu(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[EmbeddedKafka]:
    """A broker with its log in memory (starts in milliseconds), or durable (on disk, through
    SeaweedFS: seconds) for a test parametrized ``indirect`` with ``"durable"``."""
    storage = getattr(request, "param", "memory")
    data_dir = tmp_path / "broker" if storage == "durable" else None
    with EmbeddedKafka(log_path=tmp_path / "tansu.log", data_dir=data_dir) as broker:
        yield broker


@pytest.fixture
async def kafka(tansu: EmbeddedKafka) -> KafkaSettings:
    """Settings of a fresh broker with every platform topic created (3 partitions)."""
    settings = KafkaSettings(bootstrap_servers=tansu.bootstrap_servers)
    await create_topics(settings, TOPICS)
    return settings


@pytest.fixture
def json_lines() -> Iterator[io.StringIO]:
    """The JSON lines every logger writes while the test runs, through the services' own
    logging configuration; the logging set-up before it comes back afterwards."""
    root = logging.getLogger()
    saved = root.handlers[:], root.level, structlog.get_config()
    configure_logging("test")
    # Loggers that cached this configuration would keep writing to the test's stream.
    structlog.configure(cache_logger_on_first_use=False)
    lines = io.StringIO()
    root.handlers[0].setStream(lines)  # type: ignore[attr-defined]
    try:
        yield lines
    finally:
        root.handlers[:], level, config = saved
        root.setLevel(level)
        structlog.configure(**config)


@pytest.fixture
def chdb_store(tmp_path: Path) -> Iterator["ChdbStore"]:
    """A migrated, empty chDB store in the test's folder, with no TTL (tests store rows of fixed
    dates: tests.helpers.KEEP_ROWS); closed after the test."""
    from ragops_analytics.chdb_store import ChdbStore
    from ragops_sink.schema import migrate, set_retention
    from tests.helpers import KEEP_ROWS

    store = ChdbStore(tmp_path / "clickhouse")
    migrate(store)
    set_retention(store, KEEP_ROWS)
    yield store
    store.close()


@pytest.fixture(scope="session")
def data_dir() -> Path:
    """../shared/data: the real corpus and questions (SQuAD v1.1 dev)."""
    if not (DATA / "corpus.jsonl").is_file():
        pytest.fail(f"real data missing: {DATA}/corpus.jsonl (the repo expects ../shared/data beside it)")
    return DATA


@pytest.fixture(scope="session")
def corpus_rows(data_dir: Path) -> list[dict]:
    """The rows of ``corpus.jsonl``: ``{"id", "title", "text"}`` per passage, in file order."""
    from tests.helpers import read_jsonl

    return read_jsonl(data_dir / "corpus.jsonl")


@pytest.fixture
def host_zone_berlin() -> Iterator[None]:
    """The host's time zone set to Europe/Berlin (UTC+1 in January) for one test, then restored:
    code that reads the host zone (``datetime.astimezone`` on a naive time) shows it."""
    before = os.environ.get("TZ")
    os.environ["TZ"] = "Europe/Berlin"
    time.tzset()
    try:
        yield
    finally:
        if before is None:
            del os.environ["TZ"]
        else:
            os.environ["TZ"] = before
        time.tzset()

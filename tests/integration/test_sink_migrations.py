"""Who migrates the sink's ClickHouse: the embedded sink itself, or (in a cluster, where
several sinks share one server) a one-off ``python -m ragops_sink.migrate`` that the sinks
wait for, so that a table rebuild never races a second sink's inserts."""

import os
import subprocess
import sys
import threading
from pathlib import Path

import pytest
from structlog.testing import capture_logs

from ragops_analytics.chdb_store import ChdbStore
from ragops_sink.app import Writer
from ragops_sink.schema import discover_migrations, migrate, migrate_down, pending_migrations
from ragops_sink.settings import SinkSettings

LATEST = [migration.name for migration in discover_migrations()]


def waiting_writer(store: ChdbStore, tmp_path: Path) -> Writer:
    settings = SinkSettings(migrations="require", migrations_poll_s=0.05, platform={"data_dir": tmp_path})
    writer = Writer(settings)
    writer.connect = lambda: store  # type: ignore[method-assign]  # the test's store, to migrate it meanwhile
    return writer


def open_in_thread(writer: Writer) -> tuple[threading.Thread, list[BaseException]]:
    errors: list[BaseException] = []

    def run() -> None:
        try:
            writer.open()
        except BaseException as error:  # noqa: BLE001 - handed back to the test
            errors.append(error)

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return thread, errors


def wait_logged(logs: list[dict[str, object]], event: str, thread: threading.Thread) -> None:
    while not any(entry["event"] == event for entry in logs):
        assert thread.is_alive(), f"open() returned before logging {event}"
        thread.join(0.02)


def test_a_sink_that_requires_migrations_waits_until_they_are_applied(chdb_store: ChdbStore, tmp_path: Path) -> None:
    migrate_down(chdb_store, to=4)
    writer = waiting_writer(chdb_store, tmp_path)
    with capture_logs() as logs:
        thread, errors = open_in_thread(writer)
        wait_logged(logs, "clickhouse_migrations_pending", thread)
        pending = next(entry for entry in logs if entry["event"] == "clickhouse_migrations_pending")
        assert pending["pending"] == LATEST[4:]
        assert pending_migrations(chdb_store)  # it applied nothing itself
        with pytest.raises(RuntimeError, match="open"):
            writer.store  # noqa: B018 - not open while it waits

        assert migrate(chdb_store) == LATEST[4:]  # what the migration Job does
        thread.join(30)
    assert not thread.is_alive() and not errors
    assert writer.store is chdb_store
    assert [entry["migrations_applied"] for entry in logs if entry["event"] == "clickhouse_ready"] == [[]]


def test_closing_a_sink_that_waits_for_migrations_ends_the_wait(chdb_store: ChdbStore, tmp_path: Path) -> None:
    migrate_down(chdb_store, to=5)
    writer = waiting_writer(chdb_store, tmp_path)
    with capture_logs() as logs:
        thread, errors = open_in_thread(writer)
        wait_logged(logs, "clickhouse_migrations_pending", thread)
        writer.close()
        thread.join(30)
    assert not thread.is_alive()
    assert [type(error) for error in errors] == [RuntimeError]


def test_the_migration_command_applies_once_and_then_nothing(tmp_path: Path) -> None:
    env = {**os.environ, "RAGOPS_DATA_DIR": str(tmp_path), "RAGOPS_LOG_FORMAT": "json"}
    env.pop("RAGOPS_SINK_CLICKHOUSE_URL", None)
    runs = [
        subprocess.run(
            [sys.executable, "-m", "ragops_sink.migrate"], env=env, capture_output=True, text=True, timeout=120
        )
        for _ in range(2)
    ]
    assert [run.returncode for run in runs] == [0, 0], runs[-1].stderr
    assert '"clickhouse_ready"' in runs[0].stdout + runs[0].stderr
    first, second = (run.stdout + run.stderr for run in runs)
    assert LATEST[-1] in first and LATEST[-1] not in second
    store = ChdbStore(tmp_path / "clickhouse")
    try:
        assert pending_migrations(store) == []
    finally:
        store.close()


def test_an_unreachable_server_fails_the_migration_command(tmp_path: Path) -> None:
    env = {**os.environ, "RAGOPS_DATA_DIR": str(tmp_path), "RAGOPS_SINK_CLICKHOUSE_URL": "http://127.0.0.1:9/ragops"}
    run = subprocess.run(
        [sys.executable, "-m", "ragops_sink.migrate"], env=env, capture_output=True, text=True, timeout=120
    )
    assert run.returncode == 1
    assert "clickhouse_migration_failed" in run.stdout + run.stderr

"""Retention of the sink's ClickHouse tables (migration 0009 and ``RAGOPS_SINK_RETENTION_DAYS``):
every table that holds content or user ids has a TTL, a row older than its table's TTL is
gone after a merge while a younger one stays, and a changed setting is applied when the sink
starts again. On chDB; the same statements run on a ClickHouse server."""

import uuid
from collections.abc import Iterator
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from ragops_analytics import queries
from ragops_analytics.chdb_store import ChdbStore
from ragops_sink.app import Writer
from ragops_sink.rows import events_to_arrow
from ragops_sink.schema import migrate, set_retention
from ragops_sink.settings import SinkSettings
from tests.helpers import EXAMPLES
from tests.integration.test_clickhouse import row_from_json

# Columns that hold what a person wrote or who they are: a table with one of them must expire.
PERSONAL_COLUMNS = {
    "payload",
    "question",
    "answer",
    "comment",
    "user_id",
    "reference_answer",
    "vector",
    "actor_id",
    "actor_name",
}


@pytest.fixture
def store(tmp_path: Path) -> Iterator[ChdbStore]:
    """A migrated chDB store with the migrations' TTLs (``chdb_store`` has none)."""
    opened = ChdbStore(tmp_path / "clickhouse")
    migrate(opened)
    yield opened
    opened.close()


def ttl_days(store: ChdbStore) -> dict[str, int | None]:
    return {table: queries.table_retention(store, table) for table in queries.RETAINED_TABLES}


def test_migrations_give_every_table_its_default_ttl(store: ChdbStore) -> None:
    assert ttl_days(store) == dict(queries.DEFAULT_RETENTION_DAYS)
    assert set(queries.DEFAULT_RETENTION_DAYS) == queries.RETAINED_TABLES


def test_every_table_with_personal_columns_expires(store: ChdbStore) -> None:
    """A table added later with a question, comment or user id column fails here until it
    has a TTL (a default in DEFAULT_RETENTION_DAYS and the migration that sets it)."""
    columns = store.execute(
        "SELECT table, groupArray(name) FROM system.columns WHERE database = currentDatabase() "
        "AND table IN (SELECT name FROM system.tables WHERE database = currentDatabase() AND engine LIKE '%MergeTree') "
        "GROUP BY table"
    ).rows
    personal = {table for table, names in columns if PERSONAL_COLUMNS & set(names)}
    assert personal >= {"events", "queries", "generations", "feedback", "dataset_examples", "audit_log"}
    assert {table for table in personal if queries.DEFAULT_RETENTION_DAYS.get(table) is None} == set()
    days = ttl_days(store)
    assert {table for table in personal if days[table] is None} == set()


def test_rows_older_than_their_tables_ttl_disappear_on_merge(store: ChdbStore) -> None:
    # A TTL drops expired rows as they are inserted: plant them with no TTL, then set the defaults
    # as the sink does at start (for rows stored before a TTL existed, or before it shrank).
    set_retention(store, dict.fromkeys(queries.RETAINED_TABLES))
    now = datetime.now(UTC)
    recent, expired = now - timedelta(days=1), now - timedelta(days=3000)  # 3000: past every default
    rows = []
    for offset, path in enumerate(sorted(EXAMPLES.glob("*.json"))):
        row = row_from_json(path.read_text(), offset=offset, received_at=now)
        rows.append(replace(row, occurred_at=recent))
        rows.append(replace(row, occurred_at=expired, event_id=uuid.uuid4(), offset=offset + 10_000))
    queries.insert_events(store, events_to_arrow(rows))
    for seq, moment in enumerate((expired, recent), start=1):
        store.execute(
            "INSERT INTO audit_log (tenant, chain, seq, audit_id, occurred_at, recorded_at) "
            "VALUES ('t', 'c', {seq:UInt64}, generateUUIDv4(), {at:DateTime64(3, 'UTC')}, {at:DateTime64(3, 'UTC')})",
            {"seq": seq, "at": moment.replace(tzinfo=None)},
        )
        store.execute(
            "INSERT INTO signed_price_lists (event_id, occurred_at, payload, recorded_at) "
            "VALUES (generateUUIDv4(), {at:DateTime64(3, 'UTC')}, '{}', {at:DateTime64(3, 'UTC')})",
            {"at": moment.replace(tzinfo=None)},
        )

    def stored(table: str) -> dict[str, int]:
        found = store.execute(
            f"SELECT occurred_at < {{cut:DateTime64(3, 'UTC')}} AS old, count() FROM {table} GROUP BY old",
            {"cut": (now - timedelta(days=2)).replace(tzinfo=None)},
        ).rows
        return {"expired" if old else "recent": n for old, n in found}

    before = {table: stored(table) for table in queries.RETAINED_TABLES}
    set_retention(store, dict(queries.DEFAULT_RETENTION_DAYS))
    for table in queries.RETAINED_TABLES:
        store.execute(f"OPTIMIZE TABLE {table} FINAL")
    after = {table: stored(table) for table in queries.RETAINED_TABLES}

    for table, days in queries.DEFAULT_RETENTION_DAYS.items():
        assert before[table].get("expired", 0) > 0, f"{table}: the test planted no expired row"
        assert after[table].get("recent", 0) == before[table]["recent"], table  # inside the TTL: kept
        if days is None:
            assert after[table] == before[table], table
        else:
            assert "expired" not in after[table], table


def test_a_changed_setting_is_applied_when_the_sink_starts_again(tmp_path: Path) -> None:
    def start(days: dict[str, int | None]) -> dict[str, int | None]:
        writer = Writer(SinkSettings(retention_days=days, platform={"data_dir": tmp_path}))
        writer.open()
        try:
            return ttl_days(writer.store)  # type: ignore[arg-type]
        finally:
            writer.close()

    assert start({}) == dict(queries.DEFAULT_RETENTION_DAYS)
    changed = start({"queries": 7, "feedback": None, "retrievals": 400})
    assert changed == {**queries.DEFAULT_RETENTION_DAYS, "queries": 7, "feedback": None, "retrievals": 400}
    assert start({}) == dict(queries.DEFAULT_RETENTION_DAYS)  # back to the defaults


def test_set_retention_is_idempotent_and_checks_its_input(store: ChdbStore) -> None:
    assert set_retention(store, dict(queries.DEFAULT_RETENTION_DAYS)) == []  # as migrated: no ALTER
    assert set_retention(store, {"events": 30}) == ["events"]
    assert set_retention(store, {"events": 30}) == []
    assert set_retention(store, {"events": None}) == ["events"]
    assert set_retention(store, {"events": None}) == []
    assert "TTL" not in store.execute("SHOW CREATE TABLE events").rows[0][0]
    with pytest.raises(ValueError, match="days"):
        set_retention(store, {"events": 0})
    with pytest.raises(ValueError, match="days"):
        set_retention(store, {"events": 40_000})
    with pytest.raises(ValueError, match="model_prices"):
        set_retention(store, {"model_prices": 30})


@pytest.mark.parametrize(
    ("value", "error"),
    [
        ('{"no_such_table": 3}', "no_such_table"),
        ('{"queries": 0}', "days"),
        ('{"queries": 40000}', "days"),  # past 2106: DateTime wraps round and the TTL deletes everything
        ("90", "dict"),
    ],
)
def test_the_setting_refuses_unknown_tables_and_bad_days(
    monkeypatch: pytest.MonkeyPatch, value: str, error: str
) -> None:
    monkeypatch.setenv("RAGOPS_SINK_RETENTION_DAYS", value)
    with pytest.raises(ValueError, match=error):
        SinkSettings()


def test_the_setting_is_json_over_the_defaults(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RAGOPS_SINK_RETENTION_DAYS", '{"queries": 30, "audit_log": null}')
    days = SinkSettings().retention_days
    assert days == {**queries.DEFAULT_RETENTION_DAYS, "queries": 30, "audit_log": None}

"""Analyst SQL on a real chDB: the guard's allow-lists match the engine and the schema, the
review's attacks are refused end to end (through the sink's ``POST /sql`` too), and the
limits stop what the guard lets through."""

import json
import os
import threading
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from structlog.testing import capture_logs

from ragops_analytics import queries
from ragops_analytics.chdb_store import ChdbStore
from ragops_analytics.guard import ReadOnlyViolation
from ragops_analytics.store import QueryError, QueryLimits
from ragops_shared.identity import Role
from ragops_shared.settings import PlatformSettings
from ragops_sink.app import Writer, create_app
from ragops_sink.schema import migrate
from ragops_sink.settings import SinkSettings
from tests.helpers import KEEP_ROWS, bearer

pytestmark = pytest.mark.clickhouse
FUNCTIONS = Path(__file__).resolve().parents[2] / "analytics" / "ragops_analytics" / "sql_functions.tsv"

# system.functions categories whose functions compute on their arguments alone. Left out:
# Other (file, sleep, joinGet, getSetting, hostName, ...), Internal, Introspection, Machine
# Learning (loads models from paths), AI (HTTP calls), Dictionary and Embedded Dictionary
# (dictGet reaches configured sources), Encryption (keys in queries), and anything new.
SAFE_CATEGORIES = (
    "Aggregate Functions", "Arithmetic", "Arrays", "Bit", "Bitmap", "Comparison", "Conditional",
    "Dates and Times", "Distance", "Encoding", "Financial", "Geo", "Geo Polygon", "Hash",
    "IP Address", "JSON", "Logical", "Map", "Mathematical", "Null", "Random Number", "Rounding",
    "String", "String Replacement", "String Search", "String Splitting", "Time Series",
    "Time Window", "Tuple", "Type Conversion", "URL", "UUID",
)  # fmt: skip
# Reviewed functions of "Other" that only compute on their arguments.
PURE_OTHER = (
    "bar", "countDigits", "errorCodeToName", "finalizeAggregation", "formatReadableDecimalSize",
    "formatReadableQuantity", "formatReadableSize", "formatReadableTimeDelta", "identity", "ignore",
    "isConstant", "materialize", "neighbor", "parseTimeDelta", "runningDifference",
    "runningDifferenceStartingWithFirstValue", "toTypeName", "transform", "visibleWidth",
)  # fmt: skip
# Left out of the categories above: the function forms of IN. Their second argument may be a
# bare table name (`globalIn(('x', 1), audit_log)` reads audit_log), which the parser takes
# for a column, so neither the table allow-list nor a tenant's restriction would see it
# (issue 13 review). The `x IN (SELECT ...)` operator stays, checked and restricted.
SET_MEMBERSHIP = tuple(
    f"{name}{suffix}"
    for name in ("in", "notIn", "nullIn", "notNullIn", "globalIn", "globalNotIn", "globalNullIn", "globalNotNullIn")
    for suffix in ("", "IgnoreSet")
)


def engine_function_list(store: ChdbStore) -> str:
    """sql_functions.tsv as the engine's system.functions gives it: ``name<TAB>flags`` (a:
    aggregate, i: case-insensitive), an alias taking its target's category; without
    :data:`SET_MEMBERSHIP` (in any letter case)."""
    excluded = {name.lower() for name in SET_MEMBERSHIP}
    rows = store.execute(
        "SELECT f.name, if(f.alias_to = '', f.categories, t.categories), f.is_aggregate, f.case_insensitive "
        "FROM system.functions AS f LEFT JOIN system.functions AS t ON t.name = f.alias_to ORDER BY f.name"
    ).rows
    lines = [
        f"{name}\t{'a' if aggregate else ''}{'i' if insensitive else ''}"
        for name, category, aggregate, insensitive in rows
        if (category in SAFE_CATEGORIES or name in PURE_OTHER) and name.lower() not in excluded
    ]
    header = (
        "# Functions analyst SQL may call (ragops_analytics.guard): name<TAB>flags (a: aggregate,\n"
        "# i: case-insensitive). Generated from chDB's system.functions by\n"
        "# tests/integration/test_analyst_sql.py (safe categories + reviewed pure functions,\n"
        "# less the function forms of IN, which can name a table);\n"
        "# regenerate with RAGOPS_WRITE_SQL_FUNCTIONS=1 when chDB is upgraded, and review the diff.\n"
    )
    return header + "\n".join(lines) + "\n"


def test_the_function_allow_list_is_the_engines_safe_categories(chdb_store: ChdbStore) -> None:
    expected = engine_function_list(chdb_store)
    if os.environ.get("RAGOPS_WRITE_SQL_FUNCTIONS"):
        FUNCTIONS.write_text(expected, encoding="utf-8")
    assert FUNCTIONS.read_text(encoding="utf-8") == expected, "regenerate with RAGOPS_WRITE_SQL_FUNCTIONS=1"


def test_the_analyst_tables_are_the_migrated_schema(chdb_store: ChdbStore) -> None:
    names = {row[0] for row in chdb_store.execute("SHOW TABLES").rows}
    expected = {name for name in names if not name.endswith("_mv")} - {queries.MIGRATION_LEDGER}
    assert expected == queries.ANALYST_TABLES


# What the security review of issue 13 sent to the sink's /sql, and the like.
ATTACKS = [
    "SELECT file('/etc/passwd')",
    "SELECT file('/proc/self/environ')",
    "SELECT * FROM file('/etc/passwd', 'LineAsString')",
    "SELECT ｆｉｌｅ('/etc/passwd')",
    "SELECT /* x */ `file`('/etc/passwd')",
    "DESCRIBE url('http://127.0.0.1:9/x', 'CSV')",
    "DESCRIBE remote('127.0.0.1:9', system.one)",
    "SELECT count() FROM system.numbers",
    "SELECT * FROM events, numbers(1000000000)",
    "SELECT sleep(3)",
    "SELECT name FROM system.tables",
    "SELECT 1 SETTINGS readonly = 0",
    "WITH x AS (SELECT 1) INSERT INTO events (event_type) SELECT 'x'",
    "SELECT 1; DROP TABLE events",
]


@pytest.fixture
def sink_sql(tmp_path: Path) -> Iterator[httpx.AsyncClient]:
    """The sink's ASGI app (its /sql route, no broker started) on a migrated chDB."""
    settings = SinkSettings(retention_days=KEEP_ROWS, platform=PlatformSettings(data_dir=tmp_path))
    writer = Writer(settings)
    writer.open()
    try:
        transport = httpx.ASGITransport(app=create_app(settings, writer))
        yield httpx.AsyncClient(transport=transport, base_url="http://sink", headers=bearer(tmp_path, Role.ANALYST))
    finally:
        writer.close()


@pytest.mark.parametrize("sql", ATTACKS)
async def test_the_sinks_sql_endpoint_refuses_the_reviews_attacks(sink_sql: httpx.AsyncClient, sql: str) -> None:
    response = await sink_sql.post("/sql", json={"sql": sql})
    assert response.status_code == 400, response.text
    assert "root:" not in response.text and "PATH=" not in response.text
    allowed = await sink_sql.post("/sql", json={"sql": "SELECT count() FROM events FINAL"})
    assert (allowed.status_code, json.loads(allowed.text)["rows"]) == (200, [[0]])


async def test_the_sinks_sql_endpoint_lets_auditors_and_platform_callers_read_the_audit_log(
    sink_sql: httpx.AsyncClient, tmp_path: Path
) -> None:
    audit = {"sql": "SELECT count() FROM audit_log"}
    refused = await sink_sql.post("/sql", json=audit)  # an analyst
    assert refused.status_code == 400 and refused.json()["error"] == "audit_log is readable by auditors only"
    for roles in ([Role.AUDITOR], [Role.PLATFORM], [Role.ANALYST, Role.AUDITOR]):
        answered = await sink_sql.post("/sql", json=audit, headers=bearer(tmp_path, *roles))
        assert (answered.status_code, answered.json()["rows"]) == (200, [[0]]), roles


async def test_the_sinks_sql_endpoint_tells_the_gist_of_an_engine_error_and_logs_the_rest(
    sink_sql: httpx.AsyncClient,
) -> None:
    trace_id = "4bf92f3577b34da6a3ce929d0e0e4736"
    with capture_logs() as logs:
        failed = await sink_sql.post(
            "/sql",
            json={"sql": "SELECT no_such_column FROM events"},  # the analyst's tenant: rewritten
            headers={"traceparent": f"00-{trace_id}-00f067aa0ba902b7-01"},
        )
    assert failed.status_code == 422
    assert failed.json() == {
        "error": "UNKNOWN_IDENTIFIER: Unknown expression identifier `no_such_column`.",
        "trace_id": trace_id,
    }
    [logged] = [entry for entry in logs if entry["event"] == "analyst_sql_failed"]
    assert logged["trace_id"] == trace_id and "__ragops_rows" in logged["error"], "the full error is in the log"


@pytest.fixture
def limited(tmp_path: Path) -> Iterator[ChdbStore]:
    """A migrated chDB with 2,000 price rows and small analyst limits."""
    limits = QueryLimits(max_execution_time_s=2, max_result_rows=1000)
    store = ChdbStore(tmp_path / "clickhouse", limits)
    migrate(store)
    store.execute("INSERT INTO model_prices SELECT toString(number), 0, 0, now() FROM numbers(2000)")
    yield store
    store.close()


CROSS_JOIN = "SELECT count() FROM model_prices AS a, model_prices AS b, model_prices AS c WHERE a.model != c.model"


def test_the_engine_limits_stop_what_the_guard_lets_through(limited: ChdbStore) -> None:
    with pytest.raises(QueryError, match="TIMEOUT_EXCEEDED"):
        limited.query(CROSS_JOIN)  # 8e9 combinations
    with pytest.raises(QueryError, match="TOO_MANY_ROWS"):
        limited.query("SELECT model FROM model_prices")
    with pytest.raises(ReadOnlyViolation):  # and the engine would refuse the change anyway
        limited.query("SELECT 1 SETTINGS max_execution_time = 1000")


def test_an_analyst_query_does_not_hold_up_the_sinks_inserts(limited: ChdbStore) -> None:
    failure: list[Exception] = []

    def analyst() -> None:
        try:
            limited.query(CROSS_JOIN)
        except QueryError as error:
            failure.append(error)

    thread = threading.Thread(target=analyst)
    thread.start()
    # Wait until the engine runs the analyst query (the admin path asks the engine, so on a
    # store with one lock for both sessions this returns only once the query is over).
    running = (
        "SELECT count() FROM system.processes WHERE query LIKE '%model_prices AS c%' AND query NOT LIKE '%processes%'"
    )
    while not limited.execute(running).rows[0][0] and thread.is_alive():
        pass
    limited.execute("INSERT INTO model_prices SELECT 'inserted', 0, 0, now()")
    assert thread.is_alive(), "the insert waited for the analyst query"
    thread.join()
    assert failure and "TIMEOUT_EXCEEDED" in str(failure[0])

"""Which engine errors a writer waits out (outages) and which it isolates (data errors); what an
analyst is told of an engine error."""

import socket

import pytest

from ragops_analytics.client import AnalyticsClient
from ragops_analytics.store import ERROR_LIMIT, DataRejected, StoreUnavailable, public_error, write_error


@pytest.mark.parametrize(
    ("message", "expected"),
    [
        ("Code: 6. DB::Exception: Cannot parse string 'abc' as UInt32. (CANNOT_PARSE_TEXT)", DataRejected),
        ("Code: 376. DB::Exception: Cannot parse uuid zz. (CANNOT_PARSE_UUID)", DataRejected),
        # clickhouse-connect repeats the code inside the server's message.
        (
            "insert into events failed: HTTPDriver received ClickHouse error code 53\n Code: 53. DB::Exception: "
            "Type mismatch. (TYPE_MISMATCH)",
            DataRejected,
        ),
        ("Code: 252. DB::Exception: Too many parts (300). (TOO_MANY_PARTS)", StoreUnavailable),
        ("Code: 241. DB::Exception: Memory limit (total) exceeded. (MEMORY_LIMIT_EXCEEDED)", StoreUnavailable),
        ("Code: 60. DB::Exception: Table default.events does not exist. (UNKNOWN_TABLE)", StoreUnavailable),
        ("Error HTTPConnectionPool(host='ch', port=8123): Max retries exceeded", StoreUnavailable),
        ("the chDB store at /data is closed", StoreUnavailable),
    ],
)
def test_write_error_tells_data_errors_from_outages(message: str, expected: type[Exception]) -> None:
    error = write_error(message)
    assert type(error) is expected and str(error) == message


@pytest.mark.parametrize(
    ("message", "told"),
    [
        # The tenant's rewritten statement echoed back ("In scope ..."), chDB's form.
        (
            "Code: 47. DB::Exception: Unknown expression identifier `nosuch`. In scope SELECT nosuch FROM (SELECT * "
            "FROM events AS __ragops_rows WHERE __ragops_rows.tenant = 'acme') AS events. (UNKNOWN_IDENTIFIER)",
            "UNKNOWN_IDENTIFIER: Unknown expression identifier `nosuch`.",
        ),
        # A server's, through clickhouse-connect: its URL (credentials included), the version, a stack trace.
        (
            "HTTPDriver for http://analyst:pw@ch.internal:8123 received ClickHouse error code 62\n Code: 62. "
            "DB::Exception: Syntax error: failed at position 8 (FROM) (line 1, col 8): FROM (SELECT * FROM events). "
            "Expected one of: ... (SYNTAX_ERROR) (version 24.8.1.1 (official build))\nStack trace:\n0. /usr/bin/x",
            "SYNTAX_ERROR: Syntax error: failed at position 8 (FROM)",
        ),
        (
            "Code: 400. DB::ErrnoException: Cannot stat file /var/lib/ragops/x: , errno: 2 (in file/uri "
            "/var/lib/ragops/x). (CANNOT_STAT)",
            "CANNOT_STAT: Cannot stat file <…>: , errno: 2 (in file/uri <…>).",
        ),
        ("the sink at https://sink.internal:8080/sql failed\nTraceback ...", "the sink at <…> failed"),
        ("", "the statement failed"),
    ],
)
def test_public_error_keeps_the_gist_and_drops_statements_paths_and_addresses(message: str, told: str) -> None:
    assert public_error(message) == told


def test_public_error_is_bounded() -> None:
    told = public_error("Code: 6. DB::Exception: " + "x" * 10_000 + ". (CANNOT_PARSE_TEXT)")
    assert len(told) == ERROR_LIMIT and told.startswith("CANNOT_PARSE_TEXT: xxx") and told.endswith("…")


def test_an_sql_endpoint_that_does_not_answer_is_unavailable_not_a_crash() -> None:
    """The CLI and the monitor read through an SQL endpoint: nothing listening there is an
    outage (StoreUnavailable), which they report, not an httpx error."""
    with socket.socket() as closed:
        closed.bind(("127.0.0.1", 0))
        port = closed.getsockname()[1]  # bound, never listening: connections are refused
        client = AnalyticsClient(sql_url=f"http://127.0.0.1:{port}/v1/sql", api_key="rgk_x")
        with pytest.raises(StoreUnavailable, match="did not answer"):
            client.query("SELECT 1")
        client.close()

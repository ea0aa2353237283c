"""Which engine errors a writer waits out (outages) and which it isolates (data errors)."""

import pytest

from ragops_analytics.store import DataRejected, StoreUnavailable, write_error


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

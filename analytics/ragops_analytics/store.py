"""The interface of a ClickHouse engine as the platform uses it, its result type and errors.

Two paths reach an engine: the admin path (:meth:`AnalyticsStore.execute`,
:meth:`AnalyticsStore.insert`: migrations, retention, prices, the sink's inserts) and the
analyst path (:meth:`Reader.query`), which accepts one allowed read-only statement
(:func:`ragops_analytics.guard.ensure_read_only`, restricted to one tenant's rows for a
tenant's caller) and also runs it with ClickHouse's
``readonly=1`` and the :class:`QueryLimits`. Parameters fill ClickHouse's ``{name:Type}`` placeholders on the engine
side, never by formatting text into the SQL.
"""

import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import pyarrow as pa
from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

__all__ = [
    "ERROR_LIMIT",
    "AnalyticsStore",
    "DataRejected",
    "QueryError",
    "QueryLimits",
    "QueryResult",
    "Reader",
    "StoreUnavailable",
    "open_store",
    "public_error",
    "write_error",
]


@dataclass(frozen=True)
class QueryResult:
    """A query's column names and rows (Python values: ``uuid.UUID``, aware ``datetime``
    for DateTime64 columns with a timezone, ``dict`` for maps, ``list`` for arrays; through
    the sink's ``/sql`` endpoint, UUIDs and datetimes arrive as text)."""

    columns: list[str]
    rows: list[tuple[Any, ...]]


class QueryLimits(BaseSettings):
    """Limits the engine applies to every analyst query (env prefix ``RAGOPS_ANALYST_``), as
    ClickHouse settings beside ``readonly=1``: a query over one of them fails with the
    engine's error (a :class:`QueryError`) instead of running on. Sized so that the README's
    examples, the dashboards and the platform's own queries run; a cross join of two large
    tables does not."""

    model_config = SettingsConfigDict(env_prefix="RAGOPS_ANALYST_", extra="ignore")

    # Below AnalyticsSettings.timeout_s (60 s): the engine stops the query before the
    # client stops waiting for it.
    max_execution_time_s: int = Field(default=30, gt=0, description="Longest run of one query (s).")
    max_memory_bytes: int = Field(default=1 << 30, gt=0, description="Most memory one query may use (bytes).")
    max_rows_to_read: int = Field(default=200_000_000, gt=0, description="Most rows one query may read.")
    max_result_rows: int = Field(default=1_000_000, gt=0, description="Most rows one result may hold.")

    def settings(self) -> dict[str, int | str]:
        """The ClickHouse settings of an analyst query, ``readonly=1`` included."""
        return {
            "readonly": 1,
            "max_execution_time": self.max_execution_time_s,
            "max_memory_usage": self.max_memory_bytes,
            "max_rows_to_read": self.max_rows_to_read,
            "max_result_rows": self.max_result_rows,
            "result_overflow_mode": "throw",
        }


class StoreUnavailable(RuntimeError):
    """The engine or server cannot be reached, is closed, or refused a write or an admin
    statement. Writers retry: the batch has not been stored (or only partly, and a
    replay of the same events de-duplicates)."""


class DataRejected(RuntimeError):
    """The engine refused what a write carried (a value it cannot parse, convert or store,
    ClickHouse error ``code``): the same rows fail again however often they are retried, so
    a writer isolates them instead of waiting. An insert refused by a materialized view may
    already be stored in its source table."""

    def __init__(self, message: str, code: int) -> None:
        super().__init__(message)
        self.code = code


# ClickHouse error codes (``SELECT errorCodeToName(code)``) that say the engine or server
# cannot take writes now, whatever the rows: resources, network, replication, and a schema
# or permission not (yet) in place (a migration running in another replica, an operator's
# fix). Writers wait these out. Every other coded error is the engine's verdict on the
# statement's data.
_OUTAGE_CODES = frozenset(
    {
        16,  # NO_SUCH_COLUMN_IN_TABLE
        60,  # UNKNOWN_TABLE
        81,  # UNKNOWN_DATABASE
        159,  # TIMEOUT_EXCEEDED
        164,  # READONLY
        173,  # CANNOT_ALLOCATE_MEMORY
        202,  # TOO_MANY_SIMULTANEOUS_QUERIES
        203,  # NO_FREE_CONNECTION
        209,  # SOCKET_TIMEOUT
        210,  # NETWORK_ERROR
        218,  # TABLE_IS_DROPPED
        225,  # NO_ZOOKEEPER
        236,  # ABORTED
        241,  # MEMORY_LIMIT_EXCEEDED
        242,  # TABLE_IS_READ_ONLY
        243,  # NOT_ENOUGH_SPACE
        252,  # TOO_MANY_PARTS
        279,  # ALL_CONNECTION_TRIES_FAILED
        285,  # TOO_FEW_LIVE_REPLICAS
        286,  # UNSATISFIED_QUORUM_FOR_PREVIOUS_WRITE
        319,  # UNKNOWN_STATUS_OF_INSERT
        394,  # QUERY_WAS_CANCELLED
        425,  # SYSTEM_ERROR
        439,  # CANNOT_SCHEDULE_TASK
        473,  # DEADLOCK_AVOIDED
        497,  # ACCESS_DENIED
        516,  # AUTHENTICATION_FAILED
        999,  # KEEPER_EXCEPTION
        1000,  # POCO_EXCEPTION
    }
)
_ERROR_CODE = re.compile(r"\bCode: (\d+)\.")


def write_error(message: str) -> StoreUnavailable | DataRejected:
    """The error a failed write or admin statement raises, from the engine's message.

    ``Code: <n>.`` in ``message`` (chDB and clickhouse-connect both carry ClickHouse's text)
    with a code outside the outage codes above -> :class:`DataRejected`; an outage code, or
    no code at all (a connection refused or reset, a closed session) ->
    :class:`StoreUnavailable`."""
    match = _ERROR_CODE.search(message)
    if match is None or int(match.group(1)) in _OUTAGE_CODES:
        return StoreUnavailable(message)
    return DataRejected(message, int(match.group(1)))


class QueryError(RuntimeError):
    """The engine rejected a read-only statement (syntax, unknown table or column, a
    setting changed in read-only mode...). Retrying the same SQL will not help."""


# ClickHouse's error line: "Code: 47. DB::Exception: <what>. (UNKNOWN_IDENTIFIER) (version ...)".
_ENGINE_ERROR = re.compile(r"Code: (\d+)\. DB::\w*Exception: (.*?)(?: \(([A-Z][A-Z0-9_]*)\))?(?: \(version .*\))?$")
# What an engine's message may carry that is not the caller's business: the statement as it
# ran (rewritten for the tenant: "In scope SELECT ...", a syntax error's excerpt), file paths,
# URLs (a server's, credentials included).
_STATEMENT_ECHO = re.compile(r",?\s*(?:In scope |while processing query|\(line \d+, col \d+\)).*$")
_ADDRESS = re.compile(r"[A-Za-z][A-Za-z0-9+.-]*://\S*|(?<![\w.])(?:~|\.\.?)?/[^\s,;:'\"()]+")
ERROR_LIMIT = 300
"""The longest error text :func:`public_error` returns (characters)."""


def public_error(message: str) -> str:
    """What a caller of the analyst path may be told of an engine's (or endpoint's) error
    ``message``: ClickHouse's error name and the first line of its text
    (``UNKNOWN_IDENTIFIER: Unknown expression identifier `x`.``), without the statement it
    echoes, paths or URLs (each becomes ``<…>``), at most :data:`ERROR_LIMIT` characters. A
    message without ClickHouse's error line is reduced the same way from its first line. The
    full message belongs in the operator's log."""
    lines = [line.strip() for line in message.splitlines() if line.strip()]
    engine = next((match for line in lines if (match := _ENGINE_ERROR.search(line))), None)
    if engine is not None:
        code, text, name = engine.groups()
        text = f"{name or f'code {code}'}: {text}"
    else:
        text = lines[0] if lines else "the statement failed"
    text = _ADDRESS.sub("<…>", _STATEMENT_ECHO.sub("", text))
    return text if len(text) <= ERROR_LIMIT else text[: ERROR_LIMIT - 1] + "…"


class Reader(Protocol):
    """Anything that runs read-only SQL: a store, or a client of one in another process."""

    def query(
        self, sql: str, parameters: Mapping[str, Any] | None = None, *, tenant: str | None = None, audit: bool = False
    ) -> QueryResult:
        """Run one allowed read-only statement under the analyst limits; ``parameters`` fill
        ``{name:Type}`` placeholders. With ``tenant`` it sees that tenant's rows only, of the
        tables that have a tenant column (others are refused); ``None`` (platform services):
        every row. ``audit``: the caller may read ``audit_log`` (auditors and platform
        services; :func:`~ragops_analytics.guard.ensure_read_only`). A reader that sends the
        statement to an endpoint which knows the caller (the sink, the gateway) leaves both
        to that endpoint.
        Raises :class:`~ragops_analytics.guard.ReadOnlyViolation`, :class:`QueryError`,
        :class:`StoreUnavailable`."""
        ...


class AnalyticsStore(Reader, Protocol):
    """Where the platform keeps every event for analysts (chDB or a ClickHouse server)."""

    def execute(self, sql: str, parameters: Mapping[str, Any] | None = None) -> QueryResult:
        """Run one statement on the admin (writable) path. Raises :class:`StoreUnavailable`,
        :class:`DataRejected` (see :func:`write_error`)."""
        ...

    def insert(self, table: str, data: pa.Table) -> None:
        """Insert an Arrow table whose column names are ``table``'s, as one batch.
        Raises :class:`StoreUnavailable`, :class:`DataRejected` (see :func:`write_error`)."""
        ...

    def close(self) -> None:
        """Release the engine or connection (idempotent)."""
        ...


def open_store(*, url: str | None, path: Path, limits: QueryLimits | None = None) -> AnalyticsStore:
    """A :class:`~ragops_analytics.server_store.ServerStore` on ``url`` when given, else a
    :class:`~ragops_analytics.chdb_store.ChdbStore` on ``path``; analyst queries run under
    ``limits`` (default: :class:`QueryLimits` from the environment).

    Raises:
        StoreUnavailable: the engine or server cannot be opened.
    """
    # Imported here: each adapter imports this module, and each loads a large client library.
    if url:
        from ragops_analytics.server_store import ServerStore

        return ServerStore(url, limits)
    from ragops_analytics.chdb_store import ChdbStore

    return ChdbStore(path, limits)

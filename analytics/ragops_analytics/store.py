"""The interface of a ClickHouse engine as the platform uses it, its result type and errors.

Two paths reach an engine: the admin path (:meth:`AnalyticsStore.execute`,
:meth:`AnalyticsStore.insert`: migrations, retention, prices, the sink's inserts) and the
analyst path (:meth:`Reader.query`), which accepts one read-only statement
(:func:`ragops_analytics.guard.ensure_read_only`) and also runs it with ClickHouse's
``readonly=1``. Parameters fill ClickHouse's ``{name:Type}`` placeholders on the engine
side, never by formatting text into the SQL.
"""

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import pyarrow as pa

__all__ = ["AnalyticsStore", "QueryError", "QueryResult", "Reader", "StoreUnavailable", "open_store"]


@dataclass(frozen=True)
class QueryResult:
    """A query's column names and rows (Python values: ``uuid.UUID``, aware ``datetime``
    for DateTime64 columns with a timezone, ``dict`` for maps, ``list`` for arrays; through
    the sink's ``/sql`` endpoint, UUIDs and datetimes arrive as text)."""

    columns: list[str]
    rows: list[tuple[Any, ...]]


class StoreUnavailable(RuntimeError):
    """The engine or server cannot be reached, is closed, or refused a write or an admin
    statement. Writers retry: the batch has not been stored (or only partly, and a
    replay of the same events de-duplicates)."""


class QueryError(RuntimeError):
    """The engine rejected a read-only statement (syntax, unknown table or column, a
    setting changed in read-only mode...). Retrying the same SQL will not help."""


class Reader(Protocol):
    """Anything that runs read-only SQL: a store, or a client of one in another process."""

    def query(self, sql: str, parameters: Mapping[str, Any] | None = None) -> QueryResult:
        """Run one read-only statement; ``parameters`` fill ``{name:Type}`` placeholders.
        Raises :class:`~ragops_analytics.guard.ReadOnlyViolation`, :class:`QueryError`,
        :class:`StoreUnavailable`."""
        ...


class AnalyticsStore(Reader, Protocol):
    """Where the platform keeps every event for analysts (chDB or a ClickHouse server)."""

    def execute(self, sql: str, parameters: Mapping[str, Any] | None = None) -> QueryResult:
        """Run one statement on the admin (writable) path. Raises :class:`StoreUnavailable`."""
        ...

    def insert(self, table: str, data: pa.Table) -> None:
        """Insert an Arrow table whose column names are ``table``'s, as one batch.
        Raises :class:`StoreUnavailable`."""
        ...

    def close(self) -> None:
        """Release the engine or connection (idempotent)."""
        ...


def open_store(*, url: str | None, path: Path) -> AnalyticsStore:
    """A :class:`~ragops_analytics.server_store.ServerStore` on ``url`` when given, else a
    :class:`~ragops_analytics.chdb_store.ChdbStore` on ``path``.

    Raises:
        StoreUnavailable: the engine or server cannot be opened.
    """
    # Imported here: each adapter imports this module, and each loads a large client library.
    if url:
        from ragops_analytics.server_store import ServerStore

        return ServerStore(url)
    from ragops_analytics.chdb_store import ChdbStore

    return ChdbStore(path)

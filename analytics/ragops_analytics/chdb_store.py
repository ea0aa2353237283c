"""The embedded engine: chDB on a directory of this process."""

import threading
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import pyarrow as pa

from ragops_analytics.guard import ensure_read_only
from ragops_analytics.store import QueryError, QueryLimits, QueryResult, StoreUnavailable, write_error

__all__ = ["ChdbStore"]


class ChdbStore:
    """The embedded engine (chDB) on a directory, safe to share between threads.

    chDB lets one process own a data directory, and one directory per process at a time:
    opening a second path while this store is open raises StoreUnavailable. Two sessions
    on the directory serve the two paths: a writable one and one opened ``readonly=1`` with
    the analyst ``limits`` (the session's own settings, which ``readonly=1`` then keeps a
    query from changing). Each session has its own lock, since a chDB session is not meant
    to be driven from several threads at once; chDB runs the two sessions' statements
    concurrently, so an analyst query never holds up the sink's inserts (measured: an
    insert takes milliseconds while a 3-second analyst query runs), and analysts wait for
    each other at most ``limits.max_execution_time_s``.

    Inserts hand the Arrow batch to the engine through the ``Python()`` table function,
    which reads the table's buffers in place: no text serialisation, and several times
    faster than JSONEachRow.

    Raises:
        StoreUnavailable: the directory cannot be opened (another process owns it, or
            another directory is open in this process).
    """

    def __init__(self, path: Path, limits: QueryLimits | None = None) -> None:
        from chdb import session

        self.path = Path(path)
        self.limits = limits or QueryLimits()
        self._admin_lock = threading.Lock()
        self._reader_lock = threading.Lock()
        try:
            self.path.mkdir(parents=True, exist_ok=True)
            self._admin = session.Session(str(self.path))
            try:
                self._reader = session.Session(f"{self.path}?{urlencode(self.limits.settings())}")
            except Exception:
                self._admin.close()
                raise
        except Exception as error:
            raise StoreUnavailable(f"cannot open chDB at {self.path}: {error}") from error
        self._closed = False

    def _run(
        self,
        session: Any,
        lock: threading.Lock,
        sql: str,
        parameters: Mapping[str, Any] | None,
        error: Callable[[str], Exception],
    ) -> QueryResult:
        with lock:
            if self._closed:
                raise StoreUnavailable(f"the chDB store at {self.path} is closed")
            try:
                result = session.query(sql, "ArrowTable", params=dict(parameters or {}))
            except Exception as failure:
                raise error(str(failure)) from failure
        return _rows(result)

    def execute(self, sql: str, parameters: Mapping[str, Any] | None = None) -> QueryResult:
        return self._run(self._admin, self._admin_lock, sql, parameters, write_error)

    def query(
        self, sql: str, parameters: Mapping[str, Any] | None = None, *, tenant: str | None = None, audit: bool = False
    ) -> QueryResult:
        statement = ensure_read_only(sql, tenant, audit=audit)
        return self._run(self._reader, self._reader_lock, statement, parameters, QueryError)

    def insert(self, table: str, data: pa.Table) -> None:
        names = ", ".join(f"`{name}`" for name in data.column_names)
        # Python(data) names the local variable `data`: chDB looks it up in the caller's
        # frames, which is why the Arrow table is not passed on under another name.
        statement = f"INSERT INTO {table} ({names}) SELECT {names} FROM Python(data)"
        self._run(self._admin, self._admin_lock, statement, None, write_error)

    def close(self) -> None:
        with self._admin_lock, self._reader_lock:
            if not self._closed:
                self._closed = True
                self._reader.close()
                self._admin.close()


def _rows(table: pa.Table) -> QueryResult:
    """A QueryResult from an Arrow result; maps become dicts, as clickhouse-connect gives them."""
    columns = [column.to_pylist(maps_as_pydicts="strict") for column in table.columns]
    return QueryResult(columns=list(table.column_names), rows=list(zip(*columns, strict=True)))

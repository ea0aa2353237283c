"""A ClickHouse server through clickhouse-connect (HTTP)."""

from collections.abc import Mapping
from typing import Any

import pyarrow as pa

from ragops_analytics.guard import ensure_read_only
from ragops_analytics.store import QueryError, QueryLimits, QueryResult, StoreUnavailable, write_error

__all__ = ["ServerStore"]


class ServerStore:
    """A ClickHouse server through clickhouse-connect (HTTP), safe to share between threads.

    ``url`` is ``http://user:password@host:8123/database`` or, over TLS,
    ``https://user:password@host:8443/database`` (``?ca_cert=<path>`` for a private CA); the
    database must exist.
    One client serves every statement: it keeps a pool of HTTP connections, so a statement
    does not pay a new connection. Parameters travel to the server beside the statement
    (clickhouse-connect sends ``{name:Type}`` placeholders' values as ``param_<name>``), never
    formatted into it. Analyst queries carry ``readonly=1`` and the analyst ``limits`` as
    request settings, so the server refuses writes, DDL and table functions even if
    :func:`~ragops_analytics.guard.ensure_read_only` missed something, and stops a query
    over a limit. In production connect analysts as a dedicated user whose settings
    profile is read-only with these limits and whose grants cover only the platform's
    tables: then no request setting can lift them.

    Raises:
        StoreUnavailable: the server cannot be reached or refuses the credentials.
    """

    def __init__(self, url: str, limits: QueryLimits | None = None) -> None:
        import clickhouse_connect
        from clickhouse_connect.driver.exceptions import ClickHouseError, OperationalError

        self.url = url
        self.limits = limits or QueryLimits()
        # No session id: requests are then independent, so threads can share the client.
        try:
            # clickhouse-connect takes TLS from the port (8443, 443) or `secure`, never from the
            # DSN's scheme: https://…:8123 or an https URL without a port would go out in clear.
            self._client = clickhouse_connect.get_client(
                dsn=url, secure=url.startswith("https://"), tz_mode="schema", autogenerate_session_id=False
            )
        except ClickHouseError as error:
            raise StoreUnavailable(f"cannot connect to ClickHouse: {error}") from error
        # OperationalError: the request did not get through (network, server busy). Any
        # other ClickHouseError is the server's verdict on the statement.
        self._errors = ClickHouseError
        self._transport_errors = OperationalError
        self._closed = False

    def _open_client(self) -> Any:
        # A closed clickhouse-connect client fails with a plain ProgrammingError (read as an
        # analyst's QueryError) or quietly reopens; a closed store is unavailable, as chDB's is.
        if self._closed:
            raise StoreUnavailable("the ClickHouse store is closed")
        return self._client

    def execute(self, sql: str, parameters: Mapping[str, Any] | None = None) -> QueryResult:
        try:
            result = self._open_client().query(sql, parameters=dict(parameters or {}))
        except self._transport_errors as error:
            raise StoreUnavailable(str(error)) from error
        except self._errors as error:
            raise write_error(str(error)) from error
        return _rows(result)

    def query(
        self, sql: str, parameters: Mapping[str, Any] | None = None, *, tenant: str | None = None, audit: bool = False
    ) -> QueryResult:
        statement = ensure_read_only(sql, tenant, audit=audit)
        try:
            result = self._open_client().query(
                statement, parameters=dict(parameters or {}), settings=self.limits.settings()
            )
        except self._transport_errors as error:
            raise StoreUnavailable(str(error)) from error
        except self._errors as error:
            raise QueryError(str(error)) from error
        return _rows(result)

    def insert(self, table: str, data: pa.Table) -> None:
        try:
            self._open_client().insert_arrow(table, data)
        except self._transport_errors as error:
            raise StoreUnavailable(f"insert into {table} failed: {error}") from error
        except self._errors as error:
            raise write_error(f"insert into {table} failed: {error}") from error

    def close(self) -> None:
        self._closed = True
        self._client.close()


def _rows(result: Any) -> QueryResult:
    return QueryResult(columns=list(result.column_names), rows=[tuple(row) for row in result.result_rows])

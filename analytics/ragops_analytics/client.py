"""Read-only SQL from another process than the engine's: against a ClickHouse server directly,
or, on the embedded default, through the sink (chDB lets one process own its files, and the
sink is that process)."""

from collections.abc import Mapping
from typing import Any

import httpx
from pydantic import Field, SecretStr, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from ragops_analytics.guard import ensure_read_only
from ragops_analytics.server_store import ServerStore
from ragops_analytics.store import QueryError, QueryResult, StoreUnavailable

__all__ = ["AnalyticsClient", "AnalyticsSettings"]


class AnalyticsClient:
    """``query(sql, parameters)`` on whichever ClickHouse the platform writes to; a
    :class:`~ragops_analytics.store.Reader`, safe to share between threads.

    Args:
        sql_url: an SQL endpoint speaking ``{"sql", "parameters"}`` -> ``{"columns", "rows"}``:
            the sink's ``/sql`` (embedded default) or the gateway's ``/v1/sql``; or
        clickhouse_url: a ClickHouse server (``http://user:pass@host:8123/db``).
        timeout_s: seconds to wait for the sink's answer.
        api_key: the credential presented to ``sql_url`` as ``Authorization: Bearer <api_key>``
            (the sink allows the ``analyst`` and ``platform`` roles); a server has its own users.

    One connection pool serves every statement (an ``httpx.Client``, or the server store's
    clickhouse-connect client, opened at the first query); :meth:`close` releases it.
    """

    def __init__(
        self,
        *,
        sql_url: str | None = None,
        clickhouse_url: str | None = None,
        timeout_s: float = 60.0,
        api_key: str | None = None,
    ) -> None:
        if (sql_url is None) == (clickhouse_url is None):
            raise ValueError("give exactly one of sql_url (embedded) or clickhouse_url (server)")
        self.sql_url = sql_url
        self.clickhouse_url = clickhouse_url
        self.timeout_s = timeout_s
        headers = {"authorization": f"Bearer {api_key}"} if api_key is not None else None
        self._http = httpx.Client(timeout=timeout_s, headers=headers) if sql_url is not None else None
        self._server: ServerStore | None = None

    def query(
        self, sql: str, parameters: Mapping[str, Any] | None = None, *, tenant: str | None = None, audit: bool = False
    ) -> QueryResult:
        """Run one read-only statement; ``parameters`` (JSON values: text, numbers) fill its
        ``{name:Type}`` placeholders. ``tenant``: only that tenant's rows (on the embedded
        default the sink restricts the statement, to the credential's tenant for a tenant's
        caller whatever is asked, and to ``tenant`` for a platform caller). ``audit``: may read
        ``audit_log`` (a server only: the sink decides that from the credential's roles).

        Raises:
            ReadOnlyViolation: not one read-only statement (checked before sending).
            QueryError: ClickHouse (or the sink) refused the statement, with its message.
            StoreUnavailable: the server (or the SQL endpoint) cannot be reached.
        """
        # Checked here to fail early; which tables the caller may read is decided where the
        # data is: by the sink from the credential's roles, by the server store from `audit`.
        statement = ensure_read_only(sql, audit=True)
        if self.clickhouse_url is not None:
            if self._server is None:
                self._server = ServerStore(self.clickhouse_url)
            return self._server.query(statement, parameters, tenant=tenant, audit=audit)
        assert self._http is not None
        assert self.sql_url is not None
        body: dict[str, Any] = {"sql": statement, "parameters": dict(parameters or {})}
        if tenant is not None:
            body["tenant"] = tenant
        try:
            response = self._http.post(self.sql_url, json=body)
        except httpx.HTTPError as error:
            raise StoreUnavailable(f"{self.sql_url} did not answer: {error}") from None
        if response.status_code != 200:
            # The sink's own refusals say {"error": ...}; a guard's (401, 403) and the
            # gateway's {"detail": ...}; anything else is passed on as text.
            try:
                refused = response.json()
                reason = refused.get("error") or refused.get("detail") or response.text
            except (ValueError, AttributeError):
                reason = response.text
            raise QueryError(f"{response.status_code}: {reason}")
        body = response.json()
        return QueryResult(columns=body["columns"], rows=[tuple(row) for row in body["rows"]])

    def close(self) -> None:
        """Release the connections (idempotent)."""
        if self._http is not None:
            self._http.close()
        if self._server is not None:
            self._server.close()
            self._server = None


class AnalyticsSettings(BaseSettings):
    """Where services that read ClickHouse (monitor, trainer) find it (env prefix
    ``RAGOPS_ANALYTICS_``): the sink's ``/sql`` on the embedded default, else the server."""

    model_config = SettingsConfigDict(env_prefix="RAGOPS_ANALYTICS_", extra="ignore")

    sql_url: str | None = Field(default=None, description="The sink's read-only SQL endpoint (embedded default).")
    clickhouse_url: SecretStr | None = Field(default=None, description="ClickHouse server URL (may hold a password).")
    timeout_s: float = Field(default=60.0, gt=0)
    api_key: SecretStr | None = Field(
        default=None, description="API key presented to the sink's SQL endpoint (a `platform` key for the monitor)."
    )

    @model_validator(mode="after")
    def _one_source(self) -> "AnalyticsSettings":
        if self.sql_url is not None and self.clickhouse_url is not None:
            raise ValueError("set one of RAGOPS_ANALYTICS_SQL_URL or RAGOPS_ANALYTICS_CLICKHOUSE_URL, not both")
        return self

    @property
    def configured(self) -> bool:
        return self.sql_url is not None or self.clickhouse_url is not None

    def client(self) -> AnalyticsClient:
        """Raises ``ValueError`` when neither URL is set."""
        server = self.clickhouse_url.get_secret_value() if self.clickhouse_url else None
        key = self.api_key.get_secret_value() if self.api_key else None
        return AnalyticsClient(sql_url=self.sql_url, clickhouse_url=server, timeout_s=self.timeout_s, api_key=key)

"""Analysts' read-only SQL: against a ClickHouse server directly, or, on the embedded default,
through the sink (chDB lets one process own its files, and the sink is that process)."""

from pathlib import Path

import httpx
from pydantic import Field, SecretStr, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from ragops_shared.clickhouse import QueryResult, ensure_read_only, open_store


class SqlError(RuntimeError):
    """ClickHouse refused the statement (not read-only, syntax, unknown table...)."""


class Analytics:
    """``query(sql)`` on whichever ClickHouse the platform writes to.

    Args:
        sql_url: the sink's ``/sql`` endpoint (embedded default), or
        clickhouse_url: a ClickHouse server (``http://user:pass@host:8123/db``).
    """

    def __init__(self, *, sql_url: str | None = None, clickhouse_url: str | None = None, timeout_s: float = 60.0) -> None:
        if (sql_url is None) == (clickhouse_url is None):
            raise ValueError("give exactly one of sql_url (embedded) or clickhouse_url (server)")
        self.sql_url = sql_url
        self.clickhouse_url = clickhouse_url
        self.timeout_s = timeout_s

    def query(self, sql: str) -> QueryResult:
        """Run one read-only statement. Raises :class:`SqlError` with ClickHouse's message."""
        statement = ensure_read_only(sql)
        if self.clickhouse_url is not None:
            store = open_store(url=self.clickhouse_url, path=Path("."))
            try:
                return store.query(statement)
            except Exception as error:  # noqa: BLE001 - surface the server's message as is
                raise SqlError(str(error)) from error
            finally:
                store.close()
        response = httpx.post(self.sql_url, json={"sql": statement}, timeout=self.timeout_s)
        if response.status_code != 200:
            raise SqlError(response.json().get("error", response.text))
        body = response.json()
        return QueryResult(columns=body["columns"], rows=[tuple(row) for row in body["rows"]])

    def scalar(self, sql: str) -> object:
        """The first column of the first row (None when there is no row)."""
        result = self.query(sql)
        return result.rows[0][0] if result.rows else None


class AnalyticsSettings(BaseSettings):
    """Where services that read ClickHouse (monitor, trainer) find it (env prefix
    ``RAGOPS_ANALYTICS_``): the sink's ``/sql`` on the embedded default, else the server."""

    model_config = SettingsConfigDict(env_prefix="RAGOPS_ANALYTICS_", extra="ignore")

    sql_url: str | None = Field(default=None, description="The sink's read-only SQL endpoint (embedded default).")
    clickhouse_url: SecretStr | None = Field(default=None, description="ClickHouse server URL (may hold a password).")
    timeout_s: float = Field(default=60.0, gt=0)

    @model_validator(mode="after")
    def _one_source(self) -> "AnalyticsSettings":
        if self.sql_url is not None and self.clickhouse_url is not None:
            raise ValueError("set one of RAGOPS_ANALYTICS_SQL_URL or RAGOPS_ANALYTICS_CLICKHOUSE_URL, not both")
        return self

    @property
    def configured(self) -> bool:
        return self.sql_url is not None or self.clickhouse_url is not None

    def client(self) -> Analytics:
        """Raises ``ValueError`` when neither URL is set."""
        server = self.clickhouse_url.get_secret_value() if self.clickhouse_url else None
        return Analytics(sql_url=self.sql_url, clickhouse_url=server, timeout_s=self.timeout_s)

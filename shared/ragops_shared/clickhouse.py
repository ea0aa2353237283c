"""ClickHouse storage of every platform event: embedded chDB or a ClickHouse server.

Both adapters run the same SQL: the numbered migrations in ``ragops_shared/migrations``
(``NNNN_<name>.up.sql`` / ``.down.sql``) create the raw ``events`` table, the typed tables
fed from it by materialized views, and the analyst views. :class:`ChdbStore` runs the
engine in-process on a directory (the embedded default; one process owns a directory, so
analysts reach it through that process); :class:`ServerStore` talks to a server over HTTP
with clickhouse-connect. Everything that does not depend on the engine's client (statement
splitting, migration bookkeeping, the read-only check, the Arrow batch built from rows, the
SQL of retention and prices) lives once, in this module's functions and :class:`_SqlStore`.

Two paths reach the engine: an admin path (migrations, TTL, prices, inserts) and the analyst
path, :meth:`AnalyticsStore.query`, which accepts one read-only statement
(:func:`ensure_read_only`) and also runs it with ClickHouse's ``readonly=1``.
``readonly=1`` rather than ``2``: level 2 still allows table functions such as ``file()``
and ``url()``, which would let an analyst read the host's files or reach its network.
"""

from __future__ import annotations

import re
import threading
import uuid
from abc import ABC, abstractmethod
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, fields
from datetime import UTC, datetime
from importlib import resources
from pathlib import Path
from typing import Any, Protocol

import pyarrow as pa

__all__ = [
    "AnalyticsStore",
    "ChdbStore",
    "EventRow",
    "Migration",
    "QueryError",
    "QueryResult",
    "ReadOnlyViolation",
    "ServerStore",
    "StoreUnavailable",
    "discover_migrations",
    "ensure_read_only",
    "events_to_arrow",
    "open_store",
    "split_statements",
]


@dataclass(frozen=True)
class EventRow:
    """One row of the raw ``events`` table: one Kafka record, valid event or not.

    Datetimes should be timezone-aware; naive ones are taken as UTC. Text fields that do
    not apply are ``""``. A record that is not a valid event has ``event_type="unparsable"``,
    its raw text in ``payload`` and the reason in ``parse_error``; give it a deterministic
    ``event_id`` (e.g. a UUIDv5 of topic/partition/offset) so its replays collapse too.
    """

    event_id: uuid.UUID
    event_type: str
    schema_version: int
    topic: str
    partition: int
    offset: int
    message_key: str
    occurred_at: datetime
    received_at: datetime
    producer: str
    producer_version: str
    tenant: str
    trace_id: str
    request_id: str
    document_id: str
    payload: str
    parse_error: str


@dataclass(frozen=True)
class QueryResult:
    """A query's column names and rows (Python values: ``uuid.UUID``, aware ``datetime``
    for DateTime64 columns with a timezone, ``dict`` for maps, ``list`` for arrays)."""

    columns: list[str]
    rows: list[tuple]


class ReadOnlyViolation(ValueError):
    """The analyst path was given something other than one read-only statement."""


class StoreUnavailable(RuntimeError):
    """The engine or server cannot be reached, is closed, or refused a write or an admin
    statement. Writers retry: the batch has not been stored (or only partly, and a
    replay of the same events de-duplicates)."""


class QueryError(RuntimeError):
    """The engine rejected an analyst's read-only statement (syntax, unknown table or
    column, a setting changed in read-only mode...). Retrying the same SQL will not help."""


class AnalyticsStore(Protocol):
    """Where the platform keeps every event for analysts (chDB or a ClickHouse server)."""

    def migrate(self) -> list[str]:
        """Apply the pending up-migrations in order; return the names applied (``[]`` when
        up to date). Raises :class:`StoreUnavailable`."""
        ...

    def migrate_down(self, to: int = 0) -> list[str]:
        """Revert applied migrations above version ``to``, newest first; return their names.
        For tests and operators: it drops tables and their data."""
        ...

    def insert_events(self, rows: Sequence[EventRow]) -> None:
        """Insert ``rows`` as one columnar batch. Raises :class:`StoreUnavailable`."""
        ...

    def query(self, sql: str, parameters: Mapping[str, Any] | None = None) -> QueryResult:
        """Run one read-only statement. ``parameters`` fill ``{name:Type}`` placeholders.
        Raises :class:`ReadOnlyViolation`, :class:`QueryError`, :class:`StoreUnavailable`."""
        ...

    def set_retention(self, days: int | None) -> None:
        """Keep raw events ``days`` days after ``occurred_at`` (None: forever)."""
        ...

    def set_prices(self, prices: Mapping[str, tuple[float, float]]) -> None:
        """Upsert model -> (input, output) prices in USD per million tokens."""
        ...

    def close(self) -> None:
        """Release the engine or connection (idempotent)."""
        ...


# ----------------------------------------------------------------- read-only analyst SQL

_READ_KEYWORDS = frozenset({"SELECT", "WITH", "SHOW", "DESCRIBE", "DESC", "EXPLAIN", "EXISTS"})
_WORD = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


def _tokens(sql: str) -> Iterator[tuple[str, int, int]]:
    """Yield ``(kind, start, end)`` for the significant tokens of ``sql``: ``word``, ``;``,
    ``quoted`` (a string literal or quoted identifier) or ``other`` (one character),
    skipping whitespace and comments. Raises :class:`ReadOnlyViolation` on an unterminated
    string or comment and on ``$``, which may open a heredoc string (``$tag$...$tag$``)
    whose end this scanner would have to guess: an analyst never needs one."""
    i, n = 0, len(sql)
    while i < n:
        char = sql[i]
        if char.isspace():
            i += 1
        elif sql.startswith("--", i) or char == "#":
            end = sql.find("\n", i)
            i = n if end < 0 else end + 1
        elif sql.startswith("/*", i):
            # Closed by the first "*/" even if ClickHouse nests comments: hiding less text
            # than the engine hides can only make this check refuse, never miss, a statement.
            end = sql.find("*/", i + 2)
            if end < 0:
                raise ReadOnlyViolation("unterminated /* comment")
            i = end + 2
        elif char in "'\"`":
            start, i = i, i + 1
            while True:
                if i >= n:
                    raise ReadOnlyViolation(f"unterminated {char}-quoted text")
                if sql[i] == "\\":
                    i += 2
                elif sql[i] == char:
                    if i + 1 < n and sql[i + 1] == char:  # doubled quote = one literal quote
                        i += 2
                    else:
                        i += 1
                        break
                else:
                    i += 1
            yield "quoted", start, i
        elif char == "$":
            raise ReadOnlyViolation("'$' (heredoc strings) is not accepted in analyst SQL")
        elif match := _WORD.match(sql, i):
            yield "word", i, match.end()
            i = match.end()
        else:
            yield (";" if char == ";" else "other"), i, i + 1
            i += 1


def ensure_read_only(sql: str) -> str:
    """Return ``sql`` as one read-only statement, stripped of surrounding whitespace,
    comments and a trailing ``;``.

    Accepts a single statement whose first keyword (after opening parentheses) is SELECT,
    WITH, SHOW, DESCRIBE, DESC, EXPLAIN or EXISTS. Strings, quoted identifiers and
    comments are skipped while scanning, so ``SELECT ';'`` is one statement and
    ``SELECT 1; DROP TABLE events`` is two. ``INTO OUTFILE`` is refused because the
    client writes that file, and with chDB the client is this process. The engine's
    ``readonly`` setting backs this check up; it is not a substitute, since chDB runs
    several ``;``-separated statements in one call.

    Raises:
        ReadOnlyViolation: empty input, several statements, a write or DDL statement,
            ``INTO OUTFILE``, ``$``, or unterminated quotes/comments.
    """
    first: str | None = None
    start: int | None = None
    last_end = 0
    terminated = False
    for kind, token_start, token_end in _tokens(sql):
        text = sql[token_start:token_end]
        if kind == ";":
            if first is None:
                raise ReadOnlyViolation("empty statement before ';'")
            terminated = True  # trailing semicolons are fine...
            continue
        if terminated:  # ...anything significant after one is a second statement
            raise ReadOnlyViolation("only one statement is accepted")
        if start is None:
            start = token_start
        if first is None:
            if kind == "word":
                first = text.upper()
                if first not in _READ_KEYWORDS:
                    raise ReadOnlyViolation(f"{first} is not a read-only statement (use SELECT, WITH, SHOW, DESCRIBE, EXPLAIN, EXISTS)")
            elif text != "(":
                raise ReadOnlyViolation("a statement must start with a keyword")
        if kind == "word" and text.upper() == "OUTFILE":
            raise ReadOnlyViolation("INTO OUTFILE writes a file and is refused")
        last_end = token_end
    if first is None or start is None:
        raise ReadOnlyViolation("no statement given")
    return sql[start:last_end]


# ------------------------------------------------------------------------- migrations

_MIGRATION_FILE = re.compile(r"^(\d{4})_([a-z0-9_]+)\.up\.sql$")
# A statement ends with ";" at the end of a line, so ";" inside strings or on the same
# line as more SQL never splits (the migrations are ours, so this rule is enough).
_STATEMENT_END = re.compile(r";[ \t]*(?:\r?\n|\Z)")
_COMMENT_LINE = re.compile(r"^\s*(--.*)?$")


def split_statements(sql: str) -> list[str]:
    """Split a migration file into statements at ``;`` ending a line; chunks holding only
    blank lines and ``--`` comments are dropped."""
    chunks = (chunk.strip() for chunk in _STATEMENT_END.split(sql))
    return [chunk for chunk in chunks if not all(_COMMENT_LINE.match(line) for line in chunk.splitlines())]


@dataclass(frozen=True)
class Migration:
    """One numbered schema change: ``version`` 1 is ``0001_<name>``."""

    version: int
    name: str
    up: tuple[str, ...]
    down: tuple[str, ...]


def discover_migrations() -> list[Migration]:
    """The package's migrations in version order.

    Raises:
        RuntimeError: a ``.down.sql`` is missing or two files share a version (a packaging
            mistake that must stop the platform rather than half-apply a schema).
    """
    folder = resources.files("ragops_shared").joinpath("migrations")
    found: dict[int, Migration] = {}
    for entry in folder.iterdir():
        match = _MIGRATION_FILE.match(entry.name)
        if match is None:
            continue
        version, name = int(match.group(1)), entry.name.removesuffix(".up.sql")
        down = folder.joinpath(f"{name}.down.sql")
        if not down.is_file():
            raise RuntimeError(f"migration {name} has no {name}.down.sql")
        if version in found:
            raise RuntimeError(f"migrations {found[version].name} and {name} share version {version}")
        found[version] = Migration(
            version, name, tuple(split_statements(entry.read_text("utf-8"))), tuple(split_statements(down.read_text("utf-8")))
        )
    return [found[version] for version in sorted(found)]


# The ledger is append-only: un-applying a migration adds a row with applied = 0 and the
# latest row per version wins. That avoids ALTER ... DELETE mutations, which run
# asynchronously on a server.
_LEDGER_DDL = """CREATE TABLE IF NOT EXISTS schema_migrations
(
    version UInt32,
    name String,
    applied Bool,
    recorded_at DateTime64(6, 'UTC')
)
ENGINE = ReplacingMergeTree(recorded_at)
ORDER BY version"""
_LEDGER_APPLIED = "SELECT version FROM schema_migrations FINAL WHERE applied ORDER BY version"
_LEDGER_SCHEMA = pa.schema(
    [("version", pa.uint32()), ("name", pa.string()), ("applied", pa.bool_()), ("recorded_at", pa.timestamp("us", tz="UTC"))]
)

# ---------------------------------------------------------------- rows to Arrow columns

_ARROW_TYPES: dict[str, pa.DataType] = {
    # UUIDs travel as text: ClickHouse parses them on insert on every path (Arrow input
    # format, Python() table function) and pyarrow has no portable UUID column type.
    "event_id": pa.string(),
    "schema_version": pa.uint16(),
    "partition": pa.uint32(),
    "offset": pa.uint64(),
    "occurred_at": pa.timestamp("ms", tz="UTC"),
    "received_at": pa.timestamp("ms", tz="UTC"),
}
EVENT_SCHEMA = pa.schema([(field.name, _ARROW_TYPES.get(field.name, pa.string())) for field in fields(EventRow)])


def events_to_arrow(rows: Sequence[EventRow]) -> pa.Table:
    """``rows`` as an Arrow table with the columns of ``events`` (``EVENT_SCHEMA``).

    Raises:
        TypeError / pyarrow.ArrowInvalid: a field of the wrong type (a programming error).
    """
    # One list per column straight from the attributes: the Python-side cost of a batch
    # (about 2 us per row) is of the same order as the engine's, so it is kept minimal.
    columns = {name: [getattr(row, name) for row in rows] for name in EVENT_SCHEMA.names}
    columns["event_id"] = [str(value) for value in columns["event_id"]]
    return pa.table(columns, schema=EVENT_SCHEMA)


def _prices_to_arrow(prices: Mapping[str, tuple[float, float]], now: datetime) -> pa.Table:
    for model, (input_price, output_price) in prices.items():
        if not model or input_price < 0 or output_price < 0:
            raise ValueError(f"invalid price for {model!r}: need a model name and prices >= 0 USD per million tokens")
    return pa.table(
        {
            "model": list(prices),
            "input_usd_per_million": [float(price[0]) for price in prices.values()],
            "output_usd_per_million": [float(price[1]) for price in prices.values()],
            "updated_at": [now] * len(prices),
        },
        schema=pa.schema(
            [
                ("model", pa.string()),
                ("input_usd_per_million", pa.float64()),
                ("output_usd_per_million", pa.float64()),
                ("updated_at", pa.timestamp("ms", tz="UTC")),
            ]
        ),
    )


def _rows(table: pa.Table) -> QueryResult:
    """A QueryResult from an Arrow result; maps become dicts, as clickhouse-connect gives them."""
    columns = [column.to_pylist(maps_as_pydicts="strict") for column in table.columns]
    return QueryResult(columns=list(table.column_names), rows=list(zip(*columns, strict=True)))


# ------------------------------------------------------------------ shared store logic


class _SqlStore(ABC):
    """What both adapters share; each supplies four engine primitives."""

    @abstractmethod
    def _execute(self, sql: str, parameters: Mapping[str, Any] | None = None) -> QueryResult:
        """Run one statement on the admin (writable) path. Raises StoreUnavailable."""

    @abstractmethod
    def _read(self, sql: str, parameters: Mapping[str, Any] | None) -> QueryResult:
        """Run one statement with readonly=1. Raises QueryError or StoreUnavailable."""

    @abstractmethod
    def _insert(self, table: str, data: pa.Table) -> None:
        """Insert an Arrow table whose column names are the table's. Raises StoreUnavailable."""

    @abstractmethod
    def close(self) -> None: ...

    def migrate(self) -> list[str]:
        self._execute(_LEDGER_DDL)
        applied = {row[0] for row in self._execute(_LEDGER_APPLIED).rows}
        done = []
        for migration in discover_migrations():
            if migration.version not in applied:
                # Statements use IF [NOT] EXISTS, so a migration interrupted half-way is
                # simply applied again from its first statement at the next start.
                for statement in migration.up:
                    self._execute(statement)
                self._record(migration, applied=True)
                done.append(migration.name)
        return done

    def migrate_down(self, to: int = 0) -> list[str]:
        self._execute(_LEDGER_DDL)
        applied = {row[0] for row in self._execute(_LEDGER_APPLIED).rows}
        done = []
        for migration in reversed(discover_migrations()):
            if migration.version > to and migration.version in applied:
                for statement in migration.down:
                    self._execute(statement)
                self._record(migration, applied=False)
                done.append(migration.name)
        return done

    def _record(self, migration: Migration, *, applied: bool) -> None:
        row = {"version": [migration.version], "name": [migration.name], "applied": [applied], "recorded_at": [datetime.now(UTC)]}
        self._insert("schema_migrations", pa.table(row, schema=_LEDGER_SCHEMA))

    def insert_events(self, rows: Sequence[EventRow]) -> None:
        if rows:
            self._insert("events", events_to_arrow(rows))

    def query(self, sql: str, parameters: Mapping[str, Any] | None = None) -> QueryResult:
        return self._read(ensure_read_only(sql), parameters)

    def set_retention(self, days: int | None) -> None:
        """Raises ValueError for ``days`` < 1, StoreUnavailable if the ALTER fails.

        A no-op when the table already has this TTL: changing a TTL rewrites the table's
        parts in a background mutation, too costly to repeat at every start."""
        if days is not None and (isinstance(days, bool) or not isinstance(days, int) or days < 1):
            raise ValueError(f"retention must be a whole number of days >= 1 or None, not {days!r}")
        engine = self._execute("SELECT engine_full FROM system.tables WHERE database = currentDatabase() AND name = 'events'").rows
        current = engine[0][0] if engine else ""
        # occurred_at rather than received_at: a replay of old events must not revive them.
        ttl = f"toDateTime(occurred_at) + toIntervalDay({days})" if days is not None else None
        if ttl is not None and f"TTL {ttl}" not in current:
            self._execute(f"ALTER TABLE events MODIFY TTL {ttl}")
        elif ttl is None and " TTL " in current:
            self._execute("ALTER TABLE events REMOVE TTL")

    def set_prices(self, prices: Mapping[str, tuple[float, float]]) -> None:
        """Raises ValueError for an empty model name or a negative price; models not in
        ``prices`` keep theirs. cost_per_request reads the latest price of each model, so
        a price change re-prices past requests too."""
        if prices:
            self._insert("model_prices", _prices_to_arrow(prices, datetime.now(UTC)))


# ------------------------------------------------------------------------------ chDB


class ChdbStore(_SqlStore):
    """The embedded engine (chDB) on a directory, safe to share between threads.

    chDB lets one process own a data directory, and one directory per process at a time:
    opening a second path while this store is open raises StoreUnavailable. Two sessions
    on the directory serve the two paths: a writable one and one opened ``readonly=1``
    for analysts. A lock serialises all calls, since a chDB session is not meant to be
    driven from several threads at once.

    Inserts hand the Arrow batch to the engine through the ``Python()`` table function,
    which reads the table's buffers in place: no text serialisation, and several times
    faster than JSONEachRow.

    Raises:
        StoreUnavailable: the directory cannot be opened (another process owns it, or
            another directory is open in this process).
    """

    def __init__(self, path: Path) -> None:
        from chdb import session  # noqa: PLC0415 - chDB loads a large native engine; only this adapter needs it

        self.path = Path(path)
        self._lock = threading.Lock()
        try:
            self.path.mkdir(parents=True, exist_ok=True)
            self._admin = session.Session(str(self.path))
            try:
                self._reader = session.Session(f"{self.path}?readonly=1")
            except Exception:
                self._admin.close()
                raise
        except Exception as error:
            raise StoreUnavailable(f"cannot open chDB at {self.path}: {error}") from error
        self._closed = False

    def _run(self, session: Any, sql: str, parameters: Mapping[str, Any] | None, error: type[Exception]) -> QueryResult:
        with self._lock:
            if self._closed:
                raise StoreUnavailable(f"the chDB store at {self.path} is closed")
            try:
                result = session.query(sql, "ArrowTable", params=dict(parameters or {}))
            except Exception as failure:
                raise error(str(failure)) from failure
        return _rows(result)

    def _execute(self, sql: str, parameters: Mapping[str, Any] | None = None) -> QueryResult:
        return self._run(self._admin, sql, parameters, StoreUnavailable)

    def _read(self, sql: str, parameters: Mapping[str, Any] | None) -> QueryResult:
        return self._run(self._reader, sql, parameters, QueryError)

    def _insert(self, table: str, data: pa.Table) -> None:
        names = ", ".join(f"`{name}`" for name in data.column_names)
        # Python(data) names the local variable `data`: chDB looks it up in the caller's
        # frames, which is why the Arrow table is not passed on under another name.
        self._run(self._admin, f"INSERT INTO {table} ({names}) SELECT {names} FROM Python(data)", None, StoreUnavailable)

    def close(self) -> None:
        with self._lock:
            if not self._closed:
                self._closed = True
                self._reader.close()
                self._admin.close()


# ---------------------------------------------------------------------------- server


class ServerStore(_SqlStore):
    """A ClickHouse server through clickhouse-connect (HTTP), safe to share between threads.

    ``url`` is ``http[s]://user:password@host:8123/database``; the database must exist.
    Analyst queries carry ``readonly=1`` as a request setting, so the server refuses
    writes, DDL and table functions even if :func:`ensure_read_only` missed something.

    Raises:
        StoreUnavailable: the server cannot be reached or refuses the credentials.
    """

    def __init__(self, url: str) -> None:
        import clickhouse_connect  # noqa: PLC0415 - only this adapter needs the HTTP client
        from clickhouse_connect.driver.exceptions import ClickHouseError, OperationalError  # noqa: PLC0415

        self.url = url
        # No session id: requests are then independent, so threads can share the client.
        try:
            self._client = clickhouse_connect.get_client(dsn=url, tz_mode="schema", autogenerate_session_id=False)
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

    def _execute(self, sql: str, parameters: Mapping[str, Any] | None = None) -> QueryResult:
        try:
            result = self._open_client().query(sql, parameters=dict(parameters or {}))
        except self._errors as error:
            raise StoreUnavailable(str(error)) from error
        return _server_rows(result)

    def _read(self, sql: str, parameters: Mapping[str, Any] | None) -> QueryResult:
        try:
            result = self._open_client().query(sql, parameters=dict(parameters or {}), settings={"readonly": 1})
        except self._transport_errors as error:
            raise StoreUnavailable(str(error)) from error
        except self._errors as error:
            raise QueryError(str(error)) from error
        return _server_rows(result)

    def _insert(self, table: str, data: pa.Table) -> None:
        try:
            self._open_client().insert_arrow(table, data)
        except self._errors as error:
            raise StoreUnavailable(f"insert into {table} failed: {error}") from error

    def close(self) -> None:
        self._closed = True
        self._client.close()


def _server_rows(result: Any) -> QueryResult:
    return QueryResult(columns=list(result.column_names), rows=[tuple(row) for row in result.result_rows])


def open_store(*, url: str | None, path: Path) -> AnalyticsStore:
    """A :class:`ServerStore` on ``url`` when given, else a :class:`ChdbStore` on ``path``.

    Raises:
        StoreUnavailable: the engine or server cannot be opened.
    """
    return ServerStore(url) if url else ChdbStore(path)

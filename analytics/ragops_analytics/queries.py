"""Every statement the platform itself runs on ClickHouse, by name: the only module that names
tables (the analyst views and tables are created by the sink's migrations).

Each function takes a :class:`~ragops_analytics.store.Reader` (a store, or an
:class:`~ragops_analytics.client.AnalyticsClient` in another process) or, for the admin
statements, an :class:`~ragops_analytics.store.AnalyticsStore`, and passes its values as
``{name:Type}`` parameters, never formatted into the SQL. Results come back as Python values
whatever the path: datetimes that cross the sink's ``/sql`` endpoint as text are parsed back
into aware UTC datetimes. Every function raises what the reader raises
(:class:`~ragops_analytics.store.QueryError`, :class:`~ragops_analytics.store.StoreUnavailable`).

Tables read with ``FINAL``: replays of an event are stored twice until ClickHouse merges the
copies, and ``FINAL`` counts them once before that.
"""

import json
import re
import sys
import uuid
from collections import deque
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime
from types import MappingProxyType
from typing import Any, Literal

import pyarrow as pa

from ragops_analytics.store import AnalyticsStore, Reader

# ------------------------------------------------------------------------------ tables

EVENTS = "events"
"""The raw log the sink writes: one row per Kafka record, valid event or not."""
MODEL_PRICES = "model_prices"
AUDIT_LOG = "audit_log"
"""The hash-chained, append-only audit log (``ragops_analytics.audit``)."""
MIGRATION_LEDGER = "schema_migrations"
SIGNED_PRICE_LISTS = "signed_price_lists"
"""The price lists whose signature verified, as their records' values (sink migration 0018): what
the ``prices`` view reads."""
DOCUMENT_QUALITY = "document_quality"
"""The view of ingestion's data-quality findings per document version (sink migration 0011)."""
EXPERIMENT_OBSERVATIONS = "experiment_observations"
"""The view of every measurement of an experiment's answers, one row per (observation, metric)
(sink migration 0014)."""
COUNTED_TABLES = frozenset(
    {
        "events",
        "queries",
        "retrievals",
        "generations",
        "evaluations",
        "feedback",
        "documents",
        "dead_letters",
        "evaluation_runs",
        "dataset_examples",
        "query_vectors",
        "drift",
        "training_steps",
        "versions",
        "pii_redactions",
        "reviews",
    }
)
"""Tables :func:`row_count` accepts (those keyed on the event, read with FINAL)."""
TENANT_COLUMN = "tenant"
COST_TENANT_VIEWS = frozenset({"stage_costs", "cost_per_request", "stage_cost_per_day", "storage_per_day"})
"""The cost views with a tenant column (sink migration 0016)."""
TENANT_TABLES = COUNTED_TABLES | {AUDIT_LOG, DOCUMENT_QUALITY, EXPERIMENT_OBSERVATIONS} | COST_TENANT_VIEWS
"""The analyst tables with a :data:`TENANT_COLUMN` (the tenant of the event each row records, or of
the audit entry): the
only ones a tenant's analyst may read, each restricted to the tenant's rows. The other views and
``model_prices`` have none and are read by platform callers only. A test checks this against
the migrated schema."""
ANALYST_TABLES = (
    COUNTED_TABLES
    | {
        MODEL_PRICES,
        AUDIT_LOG,
        SIGNED_PRICE_LISTS,
        "version_decisions",
        "quality_by_day",
        "quality_by_prompt_version",
        "latency_by_stage",
        "feedback_rates",
        "cost_per_day",
        "prices",
        "price_lists",
        "dead_letters_by_reason",
        DOCUMENT_QUALITY,
        EXPERIMENT_OBSERVATIONS,
    }
    | COST_TENANT_VIEWS
)
"""The tables and views analysts may read (the analyst SQL guard's allow-list): every table and
view of the sink's migrations except the materialized views' triggers (``*_mv``) and the
migration ledger. A test checks this against the migrated schema."""
RETAINED_TABLES = COUNTED_TABLES | {AUDIT_LOG, SIGNED_PRICE_LISTS}
"""The tables with a retention TTL setting (each has ``occurred_at``, which its TTL counts from)."""
DEFAULT_RETENTION_DAYS: Mapping[str, int | None] = MappingProxyType(
    {
        # Content or user ids: a TTL by default (README, "Retention": why each value).
        "events": 90,
        "queries": 90,
        "generations": 90,
        "query_vectors": 90,
        "feedback": 180,
        "dataset_examples": 365,
        # Reviewers' labels with their (redacted) corrections and comments: kept as long as the
        # dataset examples they become (migration 0015).
        "reviews": 365,
        # No text, but keyed by the subject's request and document ids: what kinds of personal
        # data each held. Read with the questions it describes, so kept as long (migration 0013).
        "pii_redactions": 90,
        "dead_letters": 30,
        AUDIT_LOG: 2557,
        # Verified price lists name their publisher: kept as long as the audit log that records them.
        SIGNED_PRICE_LISTS: 2557,
        # Ids, scores and lineage only: kept until an operator sets a TTL.
        "retrievals": None,
        "evaluations": None,
        "documents": None,
        "evaluation_runs": None,
        "drift": None,
        "training_steps": None,
        "versions": None,
    }
)
"""Days each of :data:`RETAINED_TABLES` keeps a row after its ``occurred_at`` (None: forever):
what migrations 0009, 0013 and 0015 set, and the sink's defaults (``RAGOPS_SINK_RETENTION_DAYS``)."""


def _one(reader: Reader, sql: str, parameters: Mapping[str, Any] | None = None) -> tuple[Any, ...]:
    return reader.query(sql, parameters).rows[0]


def _time(value: object) -> datetime:
    """A DateTime64 column's value: a datetime from an engine, text from the sink's ``/sql``."""
    if isinstance(value, datetime):
        return value if value.tzinfo else value.replace(tzinfo=UTC)
    return datetime.fromisoformat(str(value)).replace(tzinfo=UTC)


def _ms(moment: datetime) -> int:
    return int(moment.timestamp() * 1000)


# ------------------------------------------------------------------- the sink (admin path)


def insert_events(store: AnalyticsStore, data: pa.Table) -> None:
    """Insert a batch of ``events`` rows (an Arrow table with its columns); an empty batch
    is a no-op. Raises StoreUnavailable."""
    if data.num_rows:
        store.insert(EVENTS, data)


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
_LEDGER_SCHEMA = pa.schema(
    [
        ("version", pa.uint32()),
        ("name", pa.string()),
        ("applied", pa.bool_()),
        ("recorded_at", pa.timestamp("us", tz="UTC")),
    ]
)


def applied_migrations(store: AnalyticsStore) -> set[int]:
    """Versions of the migrations applied (creating the ledger on first use)."""
    store.execute(_LEDGER_DDL)
    return {
        row[0]
        for row in store.execute("SELECT version FROM schema_migrations FINAL WHERE applied ORDER BY version").rows
    }


def record_migration(store: AnalyticsStore, version: int, name: str, *, applied: bool) -> None:
    """Note in the ledger that migration ``version`` was applied (or reverted) now."""
    row = {"version": [version], "name": [name], "applied": [applied], "recorded_at": [datetime.now(UTC)]}
    store.insert(MIGRATION_LEDGER, pa.table(row, schema=_LEDGER_SCHEMA))


_TTL = re.compile(r"TTL toDateTime\(occurred_at\) \+ toIntervalDay\((\d+)\)")
"""The TTL the platform sets, as ClickHouse prints it in ``system.tables.engine_full``."""


def _engine(store: AnalyticsStore, table: str) -> str:
    if table not in RETAINED_TABLES:
        raise ValueError(f"not a retained table: {table!r}")
    rows = store.execute(
        "SELECT engine_full FROM system.tables WHERE database = currentDatabase() AND name = {table:String}",
        {"table": table},
    ).rows
    return str(rows[0][0]) if rows else ""


def table_retention(store: AnalyticsStore, table: str) -> int | None:
    """The days ``table`` (one of :data:`RETAINED_TABLES`) keeps rows, as its TTL says (None:
    no TTL, or one the platform did not set).

    Raises:
        ValueError: ``table`` is not one of them.
    """
    found = _TTL.search(_engine(store, table))
    return int(found.group(1)) if found else None


def set_table_retention(store: AnalyticsStore, table: str, days: int | None) -> bool:
    """Keep the rows of ``table`` (one of :data:`RETAINED_TABLES`) ``days`` whole days (>= 1,
    checked by the caller) after ``occurred_at``, or forever (None); True when the TTL changed.
    A no-op when ``table`` already has this TTL: changing a TTL rewrites the table's parts
    in a mutation, too costly to repeat at every start.

    Raises:
        ValueError: ``table`` is not one of them.
    """
    engine = _engine(store, table)
    found = _TTL.search(engine)
    if days is not None and (found is None or int(found.group(1)) != days):
        # occurred_at rather than received_at: a replay of old events must not revive them.
        # A TTL is part of the table's definition, not a query parameter; the table is one of
        # RETAINED_TABLES, so formatting its name in is safe.
        store.execute(f"ALTER TABLE {table} MODIFY TTL toDateTime(occurred_at) + toIntervalDay({int(days)})")
        return True
    if days is None and " TTL " in engine:
        store.execute(f"ALTER TABLE {table} REMOVE TTL")
        return True
    return False


def insert_prices(store: AnalyticsStore, prices: Mapping[str, tuple[float, float]]) -> None:
    """Upsert model -> (input, output) USD per million tokens (checked by the caller);
    cost_per_request reads the latest price of each model."""
    now = datetime.now(UTC)
    data = pa.table(
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
    store.insert(MODEL_PRICES, data)


# ---------------------------------------------------------------- erasure of a data subject

ERASABLE_TABLES: dict[str, tuple[str, ...]] = {
    "queries": ("request_id",),
    "retrievals": ("request_id",),
    "generations": ("request_id",),
    "evaluations": ("request_id",),
    "dataset_examples": ("request_id",),
    "query_vectors": ("request_id",),
    "documents": ("document_id",),
    "pii_redactions": ("request_id", "document_id"),
    # The reviews of the subject's answers (a reviewer's correction may quote the answer).
    "reviews": ("request_id",),
    # Last: their rows are how a retried erasure finds the subject's requests and documents
    # again (feedback's user ids once the events have expired).
    "feedback": ("request_id",),
    "events": ("request_id", "document_id", "message_key"),
}
"""The tables that hold a data subject's rows, in the order they are erased, with the columns
that name the subject's requests or documents (``message_key``: the record's key, which for
a dead letter is the key of the record it could not process)."""


def subject_keys(store: AnalyticsStore, tenant: str, subject: str) -> tuple[list[str], list[str]]:
    """The request ids and document ids of ``subject`` in ``tenant`` (admin path): requests
    whose events carry ``user_id`` = subject (questions, feedback) or whose ``feedback`` rows
    do, documents whose events carry ``subject_id`` = subject.

    ``feedback`` is read too because it outlives ``events`` (180 days against 90: README,
    "Retention"): without it, feedback whose events have expired would not be found, and an
    erasure would leave it and report complete. It is the only typed table with the user id;
    none has a document's ``subject_id``, and the tables that name documents (``documents``,
    ``pii_redactions``) hold ids, statuses and counts only."""
    found = store.execute(
        "SELECT request_id, document_id FROM events WHERE tenant = {tenant:String} "
        "AND (request_id != '' AND JSONExtractString(payload, 'user_id') = {subject:String} "
        "OR document_id != '' AND JSONExtractString(payload, 'subject_id') = {subject:String}) "
        "UNION ALL SELECT request_id, '' AS document_id FROM feedback "
        "WHERE tenant = {tenant:String} AND request_id != '' AND user_id = {subject:String}",
        {"tenant": tenant, "subject": subject},
    ).rows
    return sorted({str(r) for r, _ in found if r}), sorted({str(d) for _, d in found if d})


def _subject_condition(table: str) -> str:
    columns = ERASABLE_TABLES[table]
    keys = [f"{column} IN {_listed('requests')}" for column in columns if column in ("request_id", "message_key")]
    keys += [f"{column} IN {_listed('documents')}" for column in columns if column in ("document_id", "message_key")]
    return f"tenant = {{tenant:String}} AND ({' OR '.join(keys)})"


def _subject_parameters(tenant: str, requests: Sequence[str], documents: Sequence[str]) -> dict[str, str]:
    return {"tenant": tenant, "requests": json.dumps(list(requests)), "documents": json.dumps(list(documents))}


def subject_rows(
    store: AnalyticsStore, tenant: str, requests: Sequence[str], documents: Sequence[str]
) -> dict[str, int]:
    """Rows (every stored copy, not FINAL) of each of :data:`ERASABLE_TABLES` that belong to the
    requests ``requests`` or the documents ``documents`` of ``tenant`` (admin path)."""
    parameters = _subject_parameters(tenant, requests, documents)
    return {
        table: int(
            store.execute(f"SELECT count() FROM {table} WHERE {_subject_condition(table)}", parameters).rows[0][0]
        )
        for table in ERASABLE_TABLES
    }


def delete_subject_rows(store: AnalyticsStore, tenant: str, requests: Sequence[str], documents: Sequence[str]) -> None:
    """Delete those rows from each of :data:`ERASABLE_TABLES`, in order, with ClickHouse's
    lightweight ``DELETE FROM`` (rows hidden at once, removed from disk at the next merges)."""
    parameters = _subject_parameters(tenant, requests, documents)
    for table in ERASABLE_TABLES:
        store.execute(f"DELETE FROM {table} WHERE {_subject_condition(table)}", parameters)


# ------------------------------------------------------------------------------ counts


def row_count(reader: Reader, table: str) -> int:
    """Rows of ``table`` (one of :data:`COUNTED_TABLES`), each event once.

    Raises:
        ValueError: ``table`` is not one of them.
    """
    if table not in COUNTED_TABLES:
        raise ValueError(f"not a table of events: {table!r}")
    # The name is one of COUNTED_TABLES, so formatting it in is safe; an {x:Identifier}
    # parameter would hide the table from the analyst SQL guard.
    return int(_one(reader, f"SELECT count() FROM {table} FINAL")[0])


def materialized_views(store: AnalyticsStore) -> int:
    """Materialized views of the current database (each one costs every insert into ``events``);
    on the admin path, since analysts do not read ``system`` tables."""
    return int(
        store.execute(
            "SELECT count() FROM system.tables WHERE database = currentDatabase() AND engine = 'MaterializedView'"
        ).rows[0][0]
    )


def stored_columns(store: AnalyticsStore) -> dict[str, list[tuple[str, str]]]:
    """Every table of the current database that stores rows (materialized views' inner tables
    included, views left out: they store none) -> its columns as ``(name, ClickHouse type)``,
    in table order; on the admin path, since analysts do not read ``system`` tables."""
    rows = store.execute(
        "SELECT table, name, type FROM system.columns WHERE database = currentDatabase() AND table IN "
        "(SELECT name FROM system.tables WHERE database = currentDatabase() AND engine NOT LIKE '%View') "
        "ORDER BY table, position"
    ).rows
    columns: dict[str, list[tuple[str, str]]] = {}
    for table, name, type_ in rows:
        columns.setdefault(str(table), []).append((str(name), str(type_)))
    return columns


_MULTI_SEARCH_NEEDLES = 255
"""Most needles one ``multiSearch*`` call takes (ClickHouse: fewer than 2^8)."""


def _quoted(name: str) -> str:
    """An identifier the engine reported, back-quoted (a name such as ``.inner_id.<uuid>`` needs it)."""
    return "`" + name.replace("\\", "\\\\").replace("`", "\\`") + "`"


def rows_containing(
    store: AnalyticsStore, table: str, columns: Sequence[str], needles: Sequence[str]
) -> list[tuple[str | None, ...]]:
    """The rows of ``table`` (a name :func:`stored_columns` reported) in which the text of one
    of ``columns`` (``toString``: maps, arrays and tuples as ClickHouse writes them) holds one
    of ``needles`` (ASCII case-blind substrings): each row as its columns' texts (None for
    NULL), every copy of a replayed event included (no ``FINAL``: a copy not merged yet is
    still stored). On the admin path; no needles or no columns, no rows."""
    if not needles or not columns:
        return []
    texts = [f"toString({_quoted(column)})" for column in columns]
    groups = [needles[i : i + _MULTI_SEARCH_NEEDLES] for i in range(0, len(needles), _MULTI_SEARCH_NEEDLES)]
    # One search per group over all the columns at once: each search costs its needles' set-up
    # (measured: ~0.1 s per call for 255 needles, whatever the rows), so one per column would
    # make a scan of twenty tables take half a minute. A match across two columns is possible,
    # so the caller confirms each column. One JSON text per group, as _listed does: the same
    # parameter reads alike on chDB and a server.
    joined = "concatWithSeparator('\\n', " + ", ".join(f"ifNull({text}, '')" for text in texts) + ")"
    condition = " OR ".join(
        f"multiSearchAnyCaseInsensitive({joined}, JSONExtract({{needles{i}:String}}, 'Array(String)'))"
        for i in range(len(groups))
    )
    parameters = {f"needles{i}": json.dumps(list(group)) for i, group in enumerate(groups)}
    result = store.execute(f"SELECT {', '.join(texts)} FROM {_quoted(table)} WHERE {condition}", parameters)
    return [tuple(None if value is None else str(value) for value in row) for row in result.rows]


def events_per_topic(reader: Reader) -> dict[str, int]:
    """Events stored per Kafka topic, each event once."""
    return {topic: int(n) for topic, n in reader.query("SELECT topic, count() FROM events FINAL GROUP BY topic").rows}


# ------------------------------------------------------------------------- the monitor

SignalSource = Literal["query_vector", "top_similarity", "no_context", "evaluation_score", "negative_feedback"]

_EVALUATION_RUN_REQUESTS = "(SELECT request_id FROM queries FINAL WHERE run_id != '')"
"""The requests of tagged evaluation runs (``ragops eval``, shadow replays): not production traffic."""

# source -> (table, value expression, row filter); the expressions may hold parameters. Every
# source leaves out the requests of evaluation runs: a shadow replay asks hundreds of questions
# through a candidate at once, and a worse candidate must not read as production drifting.
_SIGNAL_SOURCES: dict[str, tuple[str, str, str]] = {
    # The question vectors (Array(Float32)).
    "query_vector": ("query_vectors", "vector", "1"),
    # The dense similarity of each question's nearest chunk.
    "top_similarity": ("retrievals", "assumeNotNull(top_similarity)", "top_similarity IS NOT NULL"),
    # 1 when that similarity is below {no_context_similarity:Float64}, else 0.
    "no_context": (
        "retrievals",
        "toUInt8(assumeNotNull(top_similarity) < {no_context_similarity:Float64})",
        "top_similarity IS NOT NULL",
    ),
    # The evaluation service's scores of {metric:String}.
    "evaluation_score": ("evaluations", "value", "metric = {metric:String}"),
    # 1 for feedback of negative sentiment, else 0.
    "negative_feedback": ("feedback", "toUInt8(sentiment = 'negative')", "1"),
}


def _window_sql(source: str, condition: str, order: str) -> str:
    table, value, where = _SIGNAL_SOURCES[source]
    return (
        f"SELECT toUnixTimestamp64Milli(occurred_at) AS t, {value} AS v FROM {table} FINAL "
        f"WHERE {where} AND request_id NOT IN {_EVALUATION_RUN_REQUESTS} AND {condition} "
        f"ORDER BY occurred_at {order}, event_id {order} LIMIT {{size:UInt32}}"
    )


_REFERENCE_WINDOWS = {
    source: _window_sql(source, "occurred_at >= fromUnixTimestamp64Milli({since_ms:Int64}, 'UTC')", "ASC")
    for source in _SIGNAL_SOURCES
}
_CURRENT_WINDOWS = {
    source: _window_sql(source, "occurred_at > fromUnixTimestamp64Milli({after_ms:Int64}, 'UTC')", "DESC")
    for source in _SIGNAL_SOURCES
}


def reference_window(
    reader: Reader,
    source: SignalSource,
    parameters: Mapping[str, Any],
    *,
    since_ms: int,
    size: int,
) -> list[tuple[int, Any]]:
    """The first ``size`` observations of ``source`` at or after ``since_ms`` (ms since the
    epoch), as ``(ms since the epoch, value)`` in time order. ``parameters`` fill the
    source's own placeholders (``no_context_similarity``, ``metric``)."""
    return reader.query(_REFERENCE_WINDOWS[source], {**parameters, "since_ms": since_ms, "size": size}).rows


def current_window(
    reader: Reader,
    source: SignalSource,
    parameters: Mapping[str, Any],
    *,
    after_ms: int,
    size: int,
) -> list[tuple[int, Any]]:
    """The latest ``size`` observations of ``source`` strictly after ``after_ms``, as
    ``(ms since the epoch, value)``, newest first."""
    return reader.query(_CURRENT_WINDOWS[source], {**parameters, "after_ms": after_ms, "size": size}).rows


def dataset_examples_since(reader: Reader, moment: datetime) -> int:
    """Dataset examples added strictly after ``moment`` (to ms)."""
    return int(
        _one(
            reader,
            "SELECT count() FROM dataset_examples FINAL "
            "WHERE occurred_at > fromUnixTimestamp64Milli({since_ms:Int64}, 'UTC')",
            {"since_ms": _ms(moment)},
        )[0]
    )


def open_drift_alerts(reader: Reader) -> dict[str, str]:
    """Signal -> event id of its ``drift.detected`` for the signals whose latest drift event
    is a detection (no recovery after it)."""
    rows = reader.query(
        "SELECT signal, argMax(event_type, occurred_at), argMax(toString(event_id), occurred_at) "
        "FROM drift FINAL GROUP BY signal"
    ).rows
    return {signal: event_id for signal, event_type, event_id in rows if event_type == "drift.detected"}


def retraining_requests_by_rule(reader: Reader) -> dict[str, tuple[datetime, list[str]]]:
    """Policy rule -> (when it last requested retraining, the event ids of every alert its
    requests cite as evidence)."""
    rows = reader.query(
        "SELECT rule, max(occurred_at), groupArrayArray(evidence) FROM training_steps FINAL "
        "WHERE event_type = 'retraining.requested' AND rule != '' GROUP BY rule"
    ).rows
    return {rule: (_time(last), list(evidence)) for rule, last, evidence in rows}


def event_payload(reader: Reader, event_id: str) -> str | None:
    """The stored JSON of event ``event_id``, or None if not stored.

    Raises:
        ValueError: ``event_id`` is not a UUID.
    """
    rows = reader.query(
        "SELECT payload FROM events FINAL WHERE event_id = toUUID({event_id:String})",
        {"event_id": str(uuid.UUID(event_id))},
    ).rows
    return str(rows[0][0]) if rows else None


def experiment_observations(reader: Reader, experiment_id: str, metric: str) -> list[tuple[str, float]]:
    """Every observation of ``metric`` on the answers of experiment ``experiment_id``, as
    ``(variant, value)`` in arrival order (the observation's ``occurred_at``, then its event id:
    a stable order, so each analysis sees the earlier looks unchanged). ``metric``:
    ``thumbs_down_rate`` (1 per thumbs-down feedback, 0 per thumbs-up), an evaluation metric by
    its RAGAS/SQuAD name (``faithfulness``, ``f1``...), ``latency_ms`` (the model call's wall
    time the generation service records) or ``cost_usd`` (tokens at the operator's prices; no
    rows for a model without a price). An unknown metric has no rows. Source: the view
    ``experiment_observations`` (sink migration 0014)."""
    rows = reader.query(
        "SELECT variant, value FROM experiment_observations "
        "WHERE experiment_id = {experiment_id:String} AND metric = {metric:String} ORDER BY occurred_at, event_id",
        {"experiment_id": experiment_id, "metric": metric},
    ).rows
    return [(str(variant), float(value)) for variant, value in rows]


def experiment_events(reader: Reader, experiment_id: str) -> list[tuple[str, str]]:
    """``(event_type, stored JSON)`` of every stored event of experiment ``experiment_id`` (its
    start, stop and conclusion), oldest first, as the sink stored them (not verified here)."""
    rows = reader.query(
        "SELECT event_type, payload FROM events FINAL "
        "WHERE event_type IN ('experiment.started', 'experiment.stopped', 'experiment.concluded') "
        "AND JSONExtractString(payload, 'experiment_id') = {experiment_id:String} ORDER BY occurred_at, event_id",
        {"experiment_id": experiment_id},
    ).rows
    return [(str(event_type), str(payload)) for event_type, payload in rows]


# ------------------------------------------------------------------------- shadow replay


@dataclass(frozen=True)
class RetainedQuestion:
    """A production question as the platform kept it (``query.redacted``: personal data
    replaced), with what retrieval needs to ask it again."""

    request_id: str
    question: str
    top_k: int
    filters: dict[str, Any]
    asked_at: datetime


def retained_questions(
    reader: Reader,
    tenant: str,
    *,
    since: datetime | None = None,
    until: datetime | None = None,
    sample: int | None = None,
    seed: int = 0,
    limit: int = 10_000,
) -> list[RetainedQuestion]:
    """The production questions of ``tenant`` asked in [``since``, ``until``) (None: no bound),
    oldest first, at most ``limit``; or with ``sample``, a seeded sample of that many of them
    (the same ``seed`` picks the same ones: ``cityHash64`` of the request id and the seed).
    Questions that carried an evaluation run id (``ragops eval`` runs, shadow replays) are not
    production traffic and are left out; questions with a reference but no run (a product that
    sends one) are kept."""
    order = "cityHash64(request_id, {seed:UInt64}), request_id" if sample is not None else "occurred_at, request_id"
    rows = reader.query(
        "SELECT request_id, JSONExtractString(payload, 'question'), JSONExtractUInt(payload, 'top_k'), "
        "JSONExtractRaw(payload, 'filters'), toUnixTimestamp64Milli(occurred_at) FROM events FINAL "
        "WHERE event_type = 'query.redacted' AND tenant = {tenant:String} "
        "AND occurred_at >= fromUnixTimestamp64Milli({since_ms:Int64}, 'UTC') "
        "AND ({until_ms:Int64} = 0 OR occurred_at < fromUnixTimestamp64Milli({until_ms:Int64}, 'UTC')) "
        "AND JSONExtractString(payload, 'evaluation', 'run_id') = '' "
        f"ORDER BY {order} LIMIT {{limit:UInt32}}",
        {
            "tenant": tenant,
            "since_ms": _ms(since) if since is not None else 0,
            "until_ms": _ms(until) if until is not None else 0,
            "seed": seed,
            "limit": min(limit, sample) if sample is not None else limit,
        },
    ).rows
    return [
        RetainedQuestion(
            request_id=str(request_id),
            question=str(question),
            top_k=int(top_k),
            filters=json.loads(filters) if filters else {},
            asked_at=datetime.fromtimestamp(int(ms) / 1000, UTC),
        )
        for request_id, question, top_k, filters, ms in rows
    ]


# ------------------------------------------------------------------------- the trainer


@dataclass(frozen=True)
class PromptVersionQuality:
    """The evaluation scores of one prompt version's answers."""

    version: str
    mean: float
    answers: int
    last_served: datetime


def prompt_quality(reader: Reader, prompt_name: str, metric: str) -> list[PromptVersionQuality]:
    """Mean ``metric`` of each version of prompt ``prompt_name`` over every answer scored."""
    rows = reader.query(
        "SELECT prompt_version, avg(value), count(), max(occurred_at) FROM evaluations FINAL "
        "WHERE metric = {metric:String} AND prompt_name = {prompt_name:String} GROUP BY prompt_version",
        {"metric": metric, "prompt_name": prompt_name},
    ).rows
    return [PromptVersionQuality(str(version), float(mean), int(n), _time(served)) for version, mean, n, served in rows]


# ------------------------------------------------------------------------ the demos


def document_outcomes(reader: Reader) -> tuple[int, int, int]:
    """(documents indexed, documents rejected, chunks indexed)."""
    indexed, rejected, chunks = _one(
        reader,
        "SELECT countIf(status = 'indexed'), countIf(status = 'rejected'), sumIf(chunk_count, status = 'indexed') "
        "FROM documents FINAL",
    )
    return int(indexed), int(rejected), int(chunks)


def document_states(reader: Reader, tenant: str) -> dict[str, str]:
    """Each document of ``tenant`` -> the status of its latest row in ``documents`` (by
    ``occurred_at``): ``indexed`` or ``unchanged`` (live), ``rejected`` (its latest version
    refused), ``deleted`` (removed from the index: a deletion is its latest fact)."""
    rows = reader.query(
        "SELECT document_id, argMax(status, occurred_at) FROM documents FINAL "
        "WHERE tenant = {tenant:String} GROUP BY document_id",
        {"tenant": tenant},
    ).rows
    return {str(document_id): str(state) for document_id, state in rows}


def ingest_seconds(reader: Reader) -> float | None:
    """Seconds from the first document submitted to the last one indexed (None when none); a
    redacted document keeps its submission's time."""
    seconds = _one(
        reader,
        "SELECT dateDiff('millisecond', minIf(occurred_at, event_type = 'document.redacted'), "
        "maxIf(occurred_at, event_type = 'document.indexed')) / 1000 FROM events FINAL",
    )[0]
    return None if seconds is None else float(seconds)


def run_scores(reader: Reader, run_id: str) -> dict[str, float]:
    """Mean score per metric of evaluation run ``run_id``, by metric name."""
    return {
        metric: float(mean)
        for metric, mean in reader.query(
            "SELECT metric, avg(value) FROM evaluations FINAL WHERE run_id = {run_id:String} "
            "GROUP BY metric ORDER BY metric",
            {"run_id": run_id},
        ).rows
    }


def run_latency(reader: Reader, run_id: str) -> list[tuple[str, float, float, int]]:
    """(stage, p50 ms, p95 ms, requests) of the questions of run ``run_id``, by stage name:
    embedding, retrieval, generation and end_to_end, from the first event of each type per
    request."""
    rows = reader.query(
        """
        WITH stamps AS (
            SELECT request_id,
                   minIf(occurred_at, event_type = 'query.redacted') AS submitted,
                   minIf(occurred_at, event_type = 'query.embedded') AS embedded,
                   minIf(occurred_at, event_type = 'query.context_retrieved') AS retrieved,
                   minIf(occurred_at, event_type = 'query.answer_generated') AS answered
            FROM events FINAL
            WHERE request_id IN (SELECT request_id FROM queries FINAL WHERE run_id = {run_id:String})
            GROUP BY request_id)
        SELECT stage, quantile(0.5)(ms), quantile(0.95)(ms), count() FROM (
            SELECT arrayJoin([('embedding', dateDiff('millisecond', submitted, embedded)),
                              ('retrieval', dateDiff('millisecond', embedded, retrieved)),
                              ('generation', dateDiff('millisecond', retrieved, answered)),
                              ('end_to_end', dateDiff('millisecond', submitted, answered))]) AS pair,
                   pair.1 AS stage, pair.2 AS ms
            FROM stamps)
        GROUP BY stage ORDER BY stage""",
        {"run_id": run_id},
    ).rows
    return [(stage, float(p50), float(p95), int(n)) for stage, p50, p95, n in rows]


def redaction_counts(reader: Reader) -> dict[tuple[str, str], int]:
    """Personal data replaced before anything was kept: values replaced per (kind, entity type),
    kind ``document``, ``query`` or ``feedback`` (the counts only, never the values)."""
    return {
        (kind, entity): int(n)
        for kind, entity, n in reader.query(
            "SELECT kind, entity_type, sum(count) FROM pii_redactions FINAL GROUP BY kind, entity_type "
            "ORDER BY kind, entity_type"
        ).rows
    }


def feedback_counts(reader: Reader) -> tuple[int, int, int, int]:
    """(feedback, thumbs up, thumbs down, with a corrected answer)."""
    n, up, down, corrections = _one(
        reader,
        "SELECT count(), countIf(thumb = 'up'), countIf(thumb = 'down'), countIf(has_correction) FROM feedback FINAL",
    )
    return int(n), int(up), int(down), int(corrections)


def run_generation_usage(reader: Reader, run_id: str) -> tuple[float | None, float | None, float | None]:
    """(mean input tokens, mean output tokens, total cost in USD) of run ``run_id``'s answers
    (None when it has none)."""
    tokens_in, tokens_out, cost = _one(
        reader,
        "SELECT avg(input_tokens), avg(output_tokens), sum(cost_usd) FROM cost_per_request "
        "WHERE request_id IN (SELECT request_id FROM queries FINAL WHERE run_id = {run_id:String})",
        {"run_id": run_id},
    )
    mean_in, mean_out, total_cost = (None if value is None else float(value) for value in (tokens_in, tokens_out, cost))
    return mean_in, mean_out, total_cost


def version_decisions(reader: Reader) -> list[dict[str, Any]]:
    """Every promotion to production and every rejection, oldest first: ``kind``,
    ``version``, ``decision``, ``action``, ``rule``, ``reason``."""
    result = reader.query("SELECT kind, version, decision, action, rule, reason FROM version_decisions")
    return [dict(zip(result.columns, row, strict=True)) for row in result.rows]


# ------------------------------------------------------------------------- the chaos harness


def stored_keys(reader: Reader) -> list[tuple[str, str, str, int, int]]:
    """Every ``events`` row, each once: (topic, event_type, event_id, partition, offset)."""
    rows = reader.query("SELECT topic, event_type, toString(event_id), partition, offset FROM events FINAL").rows
    return [(str(topic), str(kind), str(event_id), int(p), int(o)) for topic, kind, event_id, p, o in rows]


def answer_rows_per_request(reader: Reader) -> dict[str, int]:
    """Request id -> its rows in ``generations`` (each answer event once)."""
    rows = reader.query("SELECT request_id, count() FROM generations FINAL GROUP BY request_id").rows
    return {str(request_id): int(n) for request_id, n in rows}


# ------------------------------------------------------------------------- the audit log

AUDIT_COLUMNS = (
    "tenant",
    "chain",
    "seq",
    "audit_id",
    "occurred_at",
    "recorded_at",
    "actor_kind",
    "actor_id",
    "actor_name",
    "action",
    "target",
    "outcome",
    "before",
    "after",
    "reason",
    "source_topic",
    "source_partition",
    "source_offset",
    "prev_hash",
    "hash",
)
"""The columns of ``audit_log`` in the order the audit readers return them."""
# Ids as text and times as integer milliseconds: the same values from every engine and from
# the sink's /sql (JSON), which is what the hash covers.
_AUDIT_SELECT = "SELECT " + ", ".join(
    {
        "audit_id": "toString(audit_id)",
        "occurred_at": "toUnixTimestamp64Milli(occurred_at)",
        "recorded_at": "toUnixTimestamp64Milli(recorded_at)",
    }.get(column, column)
    for column in AUDIT_COLUMNS
)


def _listed(name: str) -> str:
    """The values of parameter ``name``, a JSON array of strings, as the right side of ``IN``.
    An ``Array(String)`` parameter would need ClickHouse's literal syntax on chDB and a Python
    list on a server: one JSON text reads the same on both."""
    return f"(SELECT arrayJoin(JSONExtract({{{name}:String}}, 'Array(String)')))"


SIGNED_PRICE_LISTS_SCHEMA = pa.schema(
    [
        ("event_id", pa.string()),
        ("occurred_at", pa.timestamp("ms", tz="UTC")),
        ("payload", pa.string()),
        ("recorded_at", pa.timestamp("ms", tz="UTC")),
    ]
)
"""The Arrow columns of a batch of ``signed_price_lists`` rows (the event id as UUID text)."""


def insert_signed_price_lists(store: AnalyticsStore, data: pa.Table) -> None:
    """Insert ``signed_price_lists`` rows (:data:`SIGNED_PRICE_LISTS_SCHEMA`; only lists whose
    signature verified: the caller checks); an empty batch is a no-op. Raises StoreUnavailable."""
    if data.num_rows:
        store.insert(SIGNED_PRICE_LISTS, data)


def insert_audit(store: AnalyticsStore, data: pa.Table) -> None:
    """Append ``audit_log`` rows (an Arrow table with its columns); an empty batch is a no-op."""
    if data.num_rows:
        store.insert(AUDIT_LOG, data)


def audited_ids(store: AnalyticsStore, chains: Sequence[str], ids: Sequence[str]) -> set[str]:
    """Which of ``ids`` (audit ids, UUID text) the chains ``chains`` already hold (admin path)."""
    rows = store.execute(
        f"SELECT DISTINCT toString(audit_id) FROM audit_log WHERE chain IN {_listed('chains')} "
        f"AND toString(audit_id) IN {_listed('ids')}",
        {"chains": json.dumps(list(chains)), "ids": json.dumps(list(ids))},
    ).rows
    return {str(row[0]) for row in rows}


def audit_heads(store: AnalyticsStore, chains: Sequence[str]) -> dict[str, tuple[int, str]]:
    """Chain -> (its last seq, that row's hash) for those of ``chains`` that hold rows (admin path)."""
    rows = store.execute(
        f"SELECT chain, max(seq), argMax(hash, seq) FROM audit_log WHERE chain IN {_listed('chains')} GROUP BY chain",
        {"chains": json.dumps(list(chains))},
    ).rows
    return {str(chain): (int(seq), str(digest)) for chain, seq, digest in rows}


def audit_chain_page(
    reader: Reader, *, tenant: str | None, after_chain: str, after_seq: int, size: int
) -> list[tuple[Any, ...]]:
    """The next ``size`` rows (:data:`AUDIT_COLUMNS`) in (chain, seq) order after
    (``after_chain``, ``after_seq``), of ``tenant``'s chains (None: every tenant's)."""
    return reader.query(
        f"{_AUDIT_SELECT} FROM audit_log "
        "WHERE ({tenant:String} = '' OR tenant = {tenant:String}) "
        "AND (chain, seq) > ({after_chain:String}, {after_seq:UInt64}) "
        "ORDER BY chain, seq LIMIT {size:UInt32}",
        {"tenant": tenant or "", "after_chain": after_chain, "after_seq": after_seq, "size": size},
        audit=True,
    ).rows


def audit_entries(
    reader: Reader, *, since: datetime | None, actor: str | None, action: str | None, tenant: str | None, limit: int
) -> list[tuple[Any, ...]]:
    """The newest ``limit`` rows (:data:`AUDIT_COLUMNS`) that occurred at or after ``since``,
    of actor ``actor`` (its id or its name), action ``action`` and tenant ``tenant`` (None: any),
    newest first."""
    return reader.query(
        f"{_AUDIT_SELECT} FROM audit_log "
        "WHERE occurred_at >= fromUnixTimestamp64Milli({since_ms:Int64}, 'UTC') "
        "AND ({actor:String} = '' OR actor_id = {actor:String} OR actor_name = {actor:String}) "
        "AND ({action:String} = '' OR action = {action:String}) "
        "AND ({tenant:String} = '' OR tenant = {tenant:String}) "
        "ORDER BY occurred_at DESC, chain DESC, seq DESC LIMIT {limit:UInt32}",
        {
            "since_ms": _ms(since) if since is not None else 0,
            "actor": actor or "",
            "action": action or "",
            "tenant": tenant or "",
            "limit": limit,
        },
        audit=True,
    ).rows


# ---- console: the gateway's server-rendered pages (ragops_gateway.console)
#
# Every function takes ``tenant``: the caller's tenant (its rows only) or None for a platform
# caller (every row). Only tables with a tenant column are read (the analyst views have none).

# The question as kept: the privacy service's redacted copy (sink migration 0008; the
# submitted intake topic is not sunk).
_STAGE_EVENTS = {
    "query.redacted": "submitted",
    "query.embedded": "embedded",
    "query.context_retrieved": "retrieved",
    "query.answer_generated": "generated",
}
CONSOLE_STAGES = (("embedding", 0, 1), ("retrieval", 1, 2), ("generation", 2, 3), ("end_to_end", 0, 3))
"""(stage, from, to): a stage's latency is the time between the earliest event of type
``from`` and of type ``to`` of one request, indices into the query events in pipeline order
(the ``latency_by_stage`` view's definition, per tenant)."""


def _series(rows: Sequence[tuple[Any, ...]]) -> dict[str, list[tuple[datetime, float]]]:
    """``(name, day, value)`` rows -> name -> [(midnight UTC of the day, value)] in day order."""
    series: dict[str, list[tuple[datetime, float]]] = {}
    for name, day, value in rows:
        moment = datetime.fromisoformat(str(day)).replace(tzinfo=UTC)
        series.setdefault(str(name), []).append((moment, float(value)))
    return series


def console_quality_by_day(
    reader: Reader, since: datetime, tenant: str | None
) -> dict[str, list[tuple[datetime, float]]]:
    """Mean evaluation score per metric and day since ``since``: metric -> [(day, mean)]."""
    return _series(
        reader.query(
            "SELECT metric, toString(toDate(occurred_at)) AS day, avg(value) FROM evaluations FINAL "
            "WHERE occurred_at >= fromUnixTimestamp64Milli({since_ms:Int64}, 'UTC') AND run_id = '' "
            "GROUP BY metric, day ORDER BY metric, day",
            {"since_ms": _ms(since)},
            tenant=tenant,
        ).rows
    )


def console_feedback_by_day(
    reader: Reader, since: datetime, tenant: str | None
) -> dict[str, list[tuple[datetime, float]]]:
    """Share of thumbs up and down among the feedback of each day since ``since``:
    ``thumbs_up_rate``/``thumbs_down_rate`` -> [(day, share in [0, 1])]."""
    rows = reader.query(
        "SELECT toString(toDate(occurred_at)) AS day, avg(thumb = 'up'), avg(thumb = 'down') FROM feedback FINAL "
        "WHERE occurred_at >= fromUnixTimestamp64Milli({since_ms:Int64}, 'UTC') GROUP BY day ORDER BY day",
        {"since_ms": _ms(since)},
        tenant=tenant,
    ).rows
    return _series(
        [("thumbs_up_rate", day, up) for day, up, _ in rows]
        + [("thumbs_down_rate", day, down) for day, _, down in rows]
    )


def _stage_times_sql(condition: str) -> str:
    """Per request: the earliest time of each query event, as milliseconds columns (NULL: not reached)."""
    columns = ", ".join(
        f"minOrNullIf(occurred_at, event_type = '{event_type}') AS {name}" for event_type, name in _STAGE_EVENTS.items()
    )
    types = ", ".join(f"'{event_type}'" for event_type in _STAGE_EVENTS)
    return (
        f"SELECT request_id, {columns} FROM events "
        f"WHERE request_id != '' AND event_type IN ({types}) AND {condition} GROUP BY request_id"
    )


def console_latency_by_day(
    reader: Reader, since: datetime, tenant: str | None
) -> dict[str, list[tuple[datetime, float]]]:
    """Median latency (ms) per stage (:data:`CONSOLE_STAGES`) and day since ``since``: stage -> [(day, p50 ms)]."""
    names = list(_STAGE_EVENTS.values())
    pairs = ", ".join(
        f"('{stage}', dateDiff('millisecond', {names[start]}, {names[end]}))" for stage, start, end in CONSOLE_STAGES
    )
    since_condition = "occurred_at >= fromUnixTimestamp64Milli({since_ms:Int64}, 'UTC')"
    return _series(
        reader.query(
            f"SELECT stage_ms.1 AS stage, toString(toDate(ifNull(submitted, generated))) AS day, "
            f"quantile(0.5)(assumeNotNull(stage_ms.2)) FROM ({_stage_times_sql(since_condition)}) "
            f"ARRAY JOIN [{pairs}] AS stage_ms WHERE stage_ms.2 IS NOT NULL GROUP BY stage, day ORDER BY stage, day",
            {"since_ms": _ms(since)},
            tenant=tenant,
        ).rows
    )


@dataclass(frozen=True)
class ConsoleRequest:
    """One answered (or asked) question as the requests page lists it."""

    request_id: str
    tenant: str
    asked_at: datetime
    question: str
    prompt_name: str
    prompt_version: int
    scores: dict[str, float]
    thumb: str | None


def console_requests(
    reader: Reader,
    tenant: str | None,
    *,
    since: datetime,
    until: datetime,
    prompt_version: int | None = None,
    metric: str | None = None,
    min_score: float | None = None,
    max_score: float | None = None,
    feedback: Literal["up", "down", "none"] | None = None,
    limit: int = 50,
    offset: int = 0,
) -> list[ConsoleRequest]:
    """The questions asked in [``since``, ``until``), newest first, ``limit`` from ``offset``:
    of ``prompt_version`` (the generation's, when given), whose ``metric`` score lies in
    [``min_score``, ``max_score``] (either bound optional; a request without that score is left
    out when a bound is given), with a thumb ``feedback`` (``none``: no thumb)."""
    result = reader.query(
        "SELECT q.request_id, q.asked_by, q.asked_at, q.asked, g.served_prompt, g.served_version, s.metric_scores, "
        "f.last_thumb "
        "FROM (SELECT request_id, any(tenant) AS asked_by, min(occurred_at) AS asked_at, any(question) AS asked "
        "      FROM queries FINAL WHERE run_id = '' "
        "      AND occurred_at >= fromUnixTimestamp64Milli({since_ms:Int64}, 'UTC') "
        "      AND occurred_at < fromUnixTimestamp64Milli({until_ms:Int64}, 'UTC') GROUP BY request_id) AS q "
        "LEFT JOIN (SELECT request_id, any(prompt_name) AS served_prompt, any(prompt_version) AS served_version "
        "      FROM generations FINAL GROUP BY request_id) AS g ON g.request_id = q.request_id "
        "LEFT JOIN (SELECT request_id, CAST(groupArray((metric, value)), 'Map(String, Float64)') AS metric_scores "
        "      FROM evaluations FINAL WHERE run_id = '' GROUP BY request_id) AS s ON s.request_id = q.request_id "
        "LEFT JOIN (SELECT request_id, argMax(thumb, occurred_at) AS last_thumb FROM feedback FINAL "
        "      WHERE thumb != '' GROUP BY request_id) AS f ON f.request_id = q.request_id "
        "WHERE ({version:Int64} < 0 OR g.served_version = {version:Int64}) "
        "AND ({metric:String} = '' OR ("
        "     mapContains(s.metric_scores, {metric:String}) "
        "     AND s.metric_scores[{metric:String}] >= {min_score:Float64} "
        "     AND s.metric_scores[{metric:String}] <= {max_score:Float64})) "
        "AND ({feedback:String} = '' OR ({feedback:String} = 'none' AND f.last_thumb = '') "
        "     OR f.last_thumb = {feedback:String}) "
        "ORDER BY q.asked_at DESC, q.request_id LIMIT {limit:UInt32} OFFSET {offset:UInt32}",
        {
            "since_ms": _ms(since),
            "until_ms": _ms(until),
            "version": -1 if prompt_version is None else prompt_version,
            # No bound, no condition on the metric; an open bound is the widest double (JSON has no inf).
            "metric": (metric or "") if min_score is not None or max_score is not None else "",
            "min_score": -sys.float_info.max if min_score is None else min_score,
            "max_score": sys.float_info.max if max_score is None else max_score,
            "feedback": feedback or "",
            "limit": limit,
            "offset": offset,
        },
        tenant=tenant,
    )
    return [
        ConsoleRequest(
            request_id=str(request_id),
            tenant=str(row_tenant),
            asked_at=_time(asked_at),
            question=str(question),
            prompt_name=str(prompt_name or ""),
            prompt_version=int(prompt_version or 0),
            scores={str(name): float(value) for name, value in dict(scores or {}).items()},
            thumb=str(thumb or "") or None,
        )
        for request_id, row_tenant, asked_at, question, prompt_name, prompt_version, scores, thumb in result.rows
    ]


@dataclass(frozen=True)
class ConsoleRequestDetail:
    """What the console shows of one request: the payloads of its query events (question,
    contexts with their document versions and scores, prompt and variant, answer), its
    scores, feedback and per-stage latency (ms, :data:`CONSOLE_STAGES`; absent: not reached)."""

    request_id: str
    tenant: str
    payloads: dict[str, dict[str, Any]]
    scores: dict[str, float]
    feedback: list[dict[str, Any]]
    latency_ms: dict[str, float]


def console_request(reader: Reader, request_id: str, tenant: str | None) -> ConsoleRequestDetail | None:
    """One request of ``tenant`` (None: any tenant), or None when none is stored."""
    found = reader.query(
        "SELECT event_type, any(tenant), argMin(payload, occurred_at) FROM events "
        "WHERE request_id = {request_id:String} AND event_type IN "
        "('query.redacted', 'query.context_retrieved', 'query.answer_generated') GROUP BY event_type",
        {"request_id": request_id},
        tenant=tenant,
    ).rows
    if not found:
        return None
    scores = reader.query(
        "SELECT metric, avg(value) FROM evaluations FINAL WHERE request_id = {request_id:String} AND run_id = '' "
        "GROUP BY metric ORDER BY metric",
        {"request_id": request_id},
        tenant=tenant,
    ).rows
    feedback = reader.query(
        "SELECT occurred_at, thumb, rating, comment FROM feedback FINAL WHERE request_id = {request_id:String} "
        "ORDER BY occurred_at",
        {"request_id": request_id},
        tenant=tenant,
    )
    names = list(_STAGE_EVENTS.values())
    [times] = reader.query(
        _stage_times_sql("request_id = {request_id:String}"), {"request_id": request_id}, tenant=tenant
    ).rows or [(request_id, *([None] * len(names)))]
    moments = dict(zip(names, (None if value is None else _time(value) for value in times[1:]), strict=True))
    latency = {
        stage: (end - start).total_seconds() * 1000
        for stage, first, last in CONSOLE_STAGES
        if (start := moments[names[first]]) is not None and (end := moments[names[last]]) is not None
    }
    return ConsoleRequestDetail(
        request_id=request_id,
        tenant=str(found[0][1]),
        payloads={str(event_type): json.loads(payload) for event_type, _, payload in found},
        scores={str(metric): float(value) for metric, value in scores},
        feedback=[dict(zip(feedback.columns, row, strict=True)) for row in feedback.rows],
        latency_ms=latency,
    )


def _dicts(
    reader: Reader, sql: str, tenant: str | None, parameters: Mapping[str, Any] | None = None
) -> list[dict[str, Any]]:
    result = reader.query(sql, parameters, tenant=tenant)
    return [dict(zip(result.columns, row, strict=True)) for row in result.rows]


def console_drift(reader: Reader, tenant: str | None, limit: int = 100) -> list[dict[str, Any]]:
    """The newest ``limit`` drift alerts and recoveries: event_type, occurred_at, signal, test,
    statistic, threshold, threshold_on, p_value, the reference and current windows (start, end, size)."""
    return _dicts(
        reader,
        "SELECT event_type, occurred_at, alert_id, signal, test, statistic, threshold, threshold_on, p_value, "
        "reference_start, reference_end, reference_size, current_start, current_end, current_size "
        "FROM drift FINAL ORDER BY occurred_at DESC LIMIT {limit:UInt32}",
        tenant,
        {"limit": limit},
    )


def console_training_steps(reader: Reader, tenant: str | None, limit: int = 100) -> list[dict[str, Any]]:
    """The newest ``limit`` retraining requests and what the trainer did with each: event_type,
    occurred_at, request_event_id, rule, reason, evidence, action, candidate and live versions,
    metric, candidate_value, live_value, questions, decision, timed_out."""
    return _dicts(
        reader,
        "SELECT event_type, occurred_at, request_event_id, rule, reason, evidence, action, candidate_version, "
        "live_version, metric, candidate_value, live_value, questions, decision, timed_out "
        "FROM training_steps FINAL ORDER BY occurred_at DESC LIMIT {limit:UInt32}",
        tenant,
        {"limit": limit},
    )


def console_versions(reader: Reader, tenant: str | None, limit: int = 200) -> list[dict[str, Any]]:
    """The newest ``limit`` registry events: event_type, occurred_at, kind, name, version, alias,
    previous_version, parent_version, reason, metrics."""
    return _dicts(
        reader,
        "SELECT event_type, occurred_at, kind, name, version, alias, previous_version, parent_version, reason, metrics "
        "FROM versions FINAL ORDER BY occurred_at DESC LIMIT {limit:UInt32}",
        tenant,
        {"limit": limit},
    )


def console_dead_letters(
    reader: Reader, tenant: str | None, limit: int = 50
) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """(count per original_topic, error_type and reason, most first; the newest ``limit`` dead
    letters: occurred_at, producer, original_topic, consumer_group, error_type, reason)."""
    by_reason = _dicts(
        reader,
        "SELECT original_topic, error_type, reason, count() AS n FROM dead_letters FINAL "
        "GROUP BY original_topic, error_type, reason ORDER BY n DESC, original_topic LIMIT {limit:UInt32}",
        tenant,
        {"limit": limit},
    )
    latest = _dicts(
        reader,
        "SELECT occurred_at, producer, original_topic, consumer_group, error_type, reason FROM dead_letters FINAL "
        "ORDER BY occurred_at DESC LIMIT {limit:UInt32}",
        tenant,
        {"limit": limit},
    )
    return by_reason, latest


def console_experiment_ids(reader: Reader, tenant: str | None, limit: int = 20) -> list[str]:
    """The ids of the newest ``limit`` experiments started, newest first."""
    rows = reader.query(
        "SELECT JSONExtractString(payload, 'experiment_id') AS experiment_id, max(occurred_at) AS started_at "
        "FROM events WHERE event_type = 'experiment.started' GROUP BY experiment_id "
        "ORDER BY started_at DESC LIMIT {limit:UInt32}",
        {"limit": limit},
        tenant=tenant,
    ).rows
    return [str(experiment_id) for experiment_id, _ in rows]


# ---- cli: one request's events (`ragops trace`, GET /v1/answers/{request_id})


@dataclass(frozen=True)
class RequestEventRow:
    """One stored event of a request, as ``ragops trace`` and the gateway's answers route read it.

    ``producer``: the producing service's name; ``span_id`` and ``parent_span_id`` from the
    event's envelope (``parent_span_id`` None for a trace's first event and for events stored
    before the envelope carried it); ``payload``: the event's JSON as stored, parsed."""

    event_id: str
    event_type: str
    occurred_at: datetime
    producer: str
    span_id: str
    parent_span_id: str | None
    payload: dict[str, Any]


def request_events(reader: Reader, request_id: str, *, tenant: str | None = None) -> list[RequestEventRow]:
    """Every stored event of request ``request_id`` (the ``events`` table, each once), oldest
    first (``occurred_at``, then event id). ``tenant``: only that tenant's events (None: what the
    reader lets its caller see; a tenant's caller of the sink sees its own tenant's only)."""
    rows = reader.query(
        "SELECT toString(event_id), event_type, occurred_at, producer, "
        "JSONExtractString(payload, 'span_id'), JSONExtractString(payload, 'parent_span_id'), payload "
        "FROM events FINAL WHERE request_id = {request_id:String} AND event_type != 'unparsable' "
        "ORDER BY occurred_at, event_id",
        {"request_id": request_id},
        tenant=tenant,
    ).rows
    return [
        RequestEventRow(
            event_id=str(event_id),
            event_type=str(event_type),
            occurred_at=_time(occurred_at),
            producer=str(producer),
            span_id=str(span_id),
            parent_span_id=str(parent) or None,
            payload=json.loads(str(payload)),
        )
        for event_id, event_type, occurred_at, producer, span_id, parent, payload in rows
    ]


def request_outcome(reader: Reader, request_id: str, *, tenant: str) -> tuple[str, dict[str, Any]] | None:
    """The stored outcome of question ``request_id`` of ``tenant``, as (event type, payload):
    its ``query.answer_generated`` or else the oldest ``message.dead_lettered`` of one of its
    records on the question's path (keyed by the request id, from a ``ragops.query.*`` topic);
    None when neither is stored (yet). One row read: how the gateway finds the outcome of a
    retried request that came while no one waited (``ragops_gateway.app``)."""
    rows = reader.query(
        "SELECT event_type, payload FROM events FINAL "
        "WHERE (event_type = 'query.answer_generated' AND request_id = {request_id:String}) "
        "OR (event_type = 'message.dead_lettered' "
        "AND JSONExtractString(payload, 'original_key') = {request_id:String} "
        "AND startsWith(JSONExtractString(payload, 'original_topic'), 'ragops.query.')) "
        "ORDER BY event_type = 'query.answer_generated' DESC, occurred_at, event_id LIMIT 1",
        {"request_id": request_id},
        tenant=tenant,
    ).rows
    return (str(rows[0][0]), json.loads(str(rows[0][1]))) if rows else None


# ---- report: the stakeholder report (ragops.report)
# Each reads the rows that occurred in [since, until) (ms), production traffic only where
# evaluation runs are tagged (``run_id``): replays and `ragops eval` are not what users saw.

_WINDOW = (
    "occurred_at >= fromUnixTimestamp64Milli({since_ms:Int64}, 'UTC') "
    "AND occurred_at < fromUnixTimestamp64Milli({until_ms:Int64}, 'UTC')"
)


def _window(since: datetime, until: datetime) -> dict[str, int]:
    return {"since_ms": _ms(since), "until_ms": _ms(until)}


def quality_by_day_between(reader: Reader, since: datetime, until: datetime) -> list[tuple[date, str, int, float]]:
    """(UTC day, metric, evaluations, mean score) of production answers, by day then metric."""
    rows = reader.query(
        "SELECT toDate(occurred_at) AS day, metric, count(), avg(value) FROM evaluations FINAL "
        f"WHERE run_id = '' AND {_WINDOW} GROUP BY day, metric ORDER BY day, metric",
        _window(since, until),
    ).rows
    return [(_day(day), str(metric), int(n), float(mean)) for day, metric, n, mean in rows]


def quality_by_prompt_between(
    reader: Reader, since: datetime, until: datetime
) -> list[tuple[str, int, str, int, float]]:
    """(prompt name, prompt version, metric, evaluations, mean score) of production answers."""
    rows = reader.query(
        "SELECT prompt_name, prompt_version, metric, count(), avg(value) FROM evaluations FINAL "
        f"WHERE run_id = '' AND {_WINDOW} GROUP BY prompt_name, prompt_version, metric "
        "ORDER BY prompt_name, prompt_version, metric",
        _window(since, until),
    ).rows
    return [(str(name), int(version), str(metric), int(n), float(mean)) for name, version, metric, n, mean in rows]


def feedback_by_prompt_between(
    reader: Reader, since: datetime, until: datetime
) -> list[tuple[str, int, int, float, float, float]]:
    """(prompt name, prompt version, feedback, thumbs-up rate, thumbs-down rate, correction
    rate); rates are shares of every feedback row (as the ``feedback_rates`` view)."""
    rows = reader.query(
        "SELECT prompt_name, prompt_version, count(), avg(thumb = 'up'), avg(thumb = 'down'), avg(has_correction) "
        f"FROM feedback FINAL WHERE {_WINDOW} "
        "GROUP BY prompt_name, prompt_version ORDER BY prompt_name, prompt_version",
        _window(since, until),
    ).rows
    return [(str(p), int(v), int(n), float(up), float(down), float(c)) for p, v, n, up, down, c in rows]


def feedback_by_day_between(reader: Reader, since: datetime, until: datetime) -> list[tuple[date, int, float]]:
    """(UTC day, feedback, thumbs-down rate) by day."""
    rows = reader.query(
        "SELECT toDate(occurred_at) AS day, count(), avg(thumb = 'down') FROM feedback FINAL "
        f"WHERE {_WINDOW} GROUP BY day ORDER BY day",
        _window(since, until),
    ).rows
    return [(_day(day), int(n), float(down)) for day, n, down in rows]


@dataclass(frozen=True)
class DriftRow:
    """One ``drift.detected`` or ``drift.recovered``: the test, its statistic and threshold."""

    occurred_at: datetime
    event_type: str
    signal: str
    test: str
    statistic: float
    threshold: float
    p_value: float | None
    reference_size: int
    current_size: int


def drift_between(reader: Reader, since: datetime, until: datetime) -> list[DriftRow]:
    """Every drift alert and recovery in the window, oldest first."""
    rows = reader.query(
        "SELECT occurred_at, event_type, signal, test, statistic, threshold, p_value, reference_size, current_size "
        f"FROM drift FINAL WHERE {_WINDOW} ORDER BY occurred_at, event_id",
        _window(since, until),
    ).rows
    return [
        DriftRow(
            _time(at),
            str(kind),
            str(signal),
            str(test),
            float(s),
            float(t),
            None if p is None else float(p),
            int(r),
            int(c),
        )
        for at, kind, signal, test, s, t, p, r, c in rows
    ]


@dataclass(frozen=True)
class VersionChange:
    """A version promoted to production, rejected or retired, and why: the registry's reason,
    and for promotions and rejections the retraining request's rule and reason (empty when
    none caused it) and the metrics that decided it."""

    occurred_at: datetime
    change: Literal["promoted", "rejected", "retired"]
    kind: str
    name: str
    version: str
    reason: str
    rule: str
    request_reason: str
    metrics: dict[str, float]


def version_changes_between(reader: Reader, since: datetime, until: datetime) -> list[VersionChange]:
    """Promotions to production and rejections (the ``version_decisions`` view) and
    retirements (``versions``) in the window, oldest first."""
    window = _window(since, until)
    decided = reader.query(
        "SELECT decided_at, decision, kind, name, version, reason, rule, request_reason, metrics "
        "FROM version_decisions WHERE decided_at >= fromUnixTimestamp64Milli({since_ms:Int64}, 'UTC') "
        "AND decided_at < fromUnixTimestamp64Milli({until_ms:Int64}, 'UTC')",
        window,
    ).rows
    retired = reader.query(
        "SELECT occurred_at, 'retired', kind, name, version, reason, '', '', map() FROM versions FINAL "
        f"WHERE event_type = 'registry.version_retired' AND {_WINDOW}",
        window,
    ).rows
    changes = [
        VersionChange(
            _time(at),
            change,
            str(kind),
            str(name),
            str(version),
            str(reason),
            str(rule or ""),
            str(request_reason or ""),
            {str(k): float(v) for k, v in dict(metrics or {}).items()},
        )
        for at, change, kind, name, version, reason, rule, request_reason, metrics in [*decided, *retired]
    ]
    return sorted(changes, key=lambda change: change.occurred_at)


def change_decisions_between(reader: Reader, since: datetime, until: datetime) -> list[tuple[datetime, str, str, str]]:
    """(when, ``change.approved``/``change.rejected``, change id, the decider's reason) of every
    four-eyes decision in the window, oldest first (as stored; the registry applied only the
    verified ones)."""
    rows = reader.query(
        "SELECT occurred_at, event_type, JSONExtractString(payload, 'change_id'), JSONExtractString(payload, 'reason') "
        f"FROM events FINAL WHERE event_type IN ('change.approved', 'change.rejected') AND {_WINDOW} "
        "ORDER BY occurred_at, event_id",
        _window(since, until),
    ).rows
    return [(_time(at), str(kind), str(change), str(reason)) for at, kind, change, reason in rows]


def experiment_events_between(reader: Reader, since: datetime, until: datetime) -> list[tuple[str, str]]:
    """``(event_type, stored JSON)`` of every experiment start, stop and conclusion in the
    window, oldest first (not verified here)."""
    rows = reader.query(
        "SELECT event_type, payload FROM events FINAL "
        "WHERE event_type IN ('experiment.started', 'experiment.stopped', 'experiment.concluded') "
        f"AND {_WINDOW} ORDER BY occurred_at, event_id",
        _window(since, until),
    ).rows
    return [(str(event_type), str(payload)) for event_type, payload in rows]


def answer_cost_by_day(reader: Reader, since: datetime, until: datetime) -> list[tuple[date, str, int, float]]:
    """(UTC day, model, answers, USD) of the answers in the window (the ``cost_per_request``
    view: every stage's compute and the tokens, at the prices in effect)."""
    rows = reader.query(
        "SELECT toDate(occurred_at) AS day, model, count(), sum(cost_usd) FROM cost_per_request "
        f"WHERE {_WINDOW} GROUP BY day, model ORDER BY day, model",
        _window(since, until),
    ).rows
    return [(_day(day), str(model), int(n), float(usd)) for day, model, n, usd in rows]


# ---- cost: the cost of every stage, price lists and spend (sink migration 0016)

TOKENS_STAGE = "tokens"
"""The ``by_stage`` key of a request's token bill (its model's token prices), beside the stages'
compute (keyed by the producing service's name)."""


@dataclass(frozen=True)
class RequestCost:
    """What one request cost in USD: ``usd`` is the sum of ``by_stage`` (stage -> usd: each
    service's compute, priced by the list in effect when its event occurred, and
    :data:`TOKENS_STAGE`, the tokens priced for the answer's model)."""

    request_id: str
    usd: float
    by_stage: dict[str, float]


def _day(value: object) -> date:
    """A Date column's value: a date from an engine, ``YYYY-MM-DD`` text from the sink's ``/sql``."""
    if isinstance(value, datetime):
        return value.date()
    if isinstance(value, date):
        return value
    return date.fromisoformat(str(value)[:10])


def request_costs(reader: Reader, request_ids: Sequence[str], tenant: str | None) -> dict[str, RequestCost]:
    """request_id -> :class:`RequestCost` of each of ``request_ids`` that has a priced stage or
    an answer (of tenant ``tenant``; None: any). Views ``stage_costs`` and ``cost_per_request``."""
    if not request_ids:
        return {}
    parameters = {"ids": json.dumps(list(request_ids)), "tenant": tenant or ""}
    stages: dict[str, dict[str, float]] = {}
    for request_id, stage, usd in reader.query(
        "SELECT request_id, stage, sum(usd) FROM stage_costs "
        f"WHERE request_id IN {_listed('ids')} AND ({{tenant:String}} = '' OR tenant = {{tenant:String}}) "
        "GROUP BY request_id, stage",
        parameters,
    ).rows:
        stages.setdefault(str(request_id), {})[str(stage)] = float(usd)
    for request_id, token_usd in reader.query(
        "SELECT request_id, sum(token_usd) FROM cost_per_request "
        f"WHERE request_id IN {_listed('ids')} AND ({{tenant:String}} = '' OR tenant = {{tenant:String}}) "
        "GROUP BY request_id",
        parameters,
    ).rows:
        stages.setdefault(str(request_id), {})[TOKENS_STAGE] = float(token_usd)
    return {
        request_id: RequestCost(request_id, sum(by_stage.values()), by_stage) for request_id, by_stage in stages.items()
    }


def cost_by_day(reader: Reader, since: datetime, tenant: str | None) -> list[tuple[date, str, float]]:
    """(day, stage, usd) from ``since`` on (of tenant ``tenant``; None: every tenant), oldest
    first: each stage's compute, and :data:`TOKENS_STAGE` for the token bill."""
    parameters = {"since_ms": _ms(since), "tenant": tenant or ""}
    where = (
        "WHERE occurred_at >= fromUnixTimestamp64Milli({since_ms:Int64}, 'UTC') "
        "AND ({tenant:String} = '' OR tenant = {tenant:String}) "
    )
    rows = reader.query(
        f"SELECT toDate(occurred_at) AS day, stage, sum(usd) FROM stage_costs {where}GROUP BY day, stage "
        f"UNION ALL SELECT toDate(occurred_at) AS day, '{TOKENS_STAGE}' AS stage, sum(token_usd) "
        f"FROM cost_per_request {where}GROUP BY day",
        parameters,
    ).rows
    return sorted((_day(day), str(stage), float(usd)) for day, stage, usd in rows)


def tenant_spend(reader: Reader, since: datetime) -> dict[str, float]:
    """tenant -> USD spent from ``since`` on (every stage's compute and the token bill)."""
    parameters = {"since_ms": _ms(since)}
    since_sql = "occurred_at >= fromUnixTimestamp64Milli({since_ms:Int64}, 'UTC')"
    rows = reader.query(
        "SELECT tenant, sum(usd) FROM "
        f"(SELECT tenant, usd FROM stage_costs WHERE {since_sql} "
        f"UNION ALL SELECT tenant, token_usd AS usd FROM cost_per_request WHERE {since_sql}) "
        "GROUP BY tenant",
        parameters,
    ).rows
    return {str(tenant): float(usd) for tenant, usd in rows}


@dataclass(frozen=True)
class PriceListRow:
    """One verified price list as the ``prices`` view holds it: ``prices`` is (unit, resource,
    usd) sorted by unit and resource."""

    price_list_id: str
    effective_from: datetime
    published_at: datetime
    published_by: str
    reason: str
    prices: list[tuple[str, str, float]]


def price_lists(reader: Reader) -> list[PriceListRow]:
    """Every signed price list, newest ``effective_from`` first (view ``prices``)."""
    rows = reader.query(
        "SELECT price_list_id, effective_from, published_at, published_by, reason, "
        # Three arrays, not an array of tuples: tuples reach a client of the sink's /sql as
        # objects keyed by element name, arrays of scalars alike on every path.
        "groupArray(unit), groupArray(resource), groupArray(usd) FROM prices "
        "GROUP BY price_list_id, effective_from, published_at, published_by, reason "
        "ORDER BY effective_from DESC, published_at DESC"
    ).rows
    return [
        PriceListRow(
            str(list_id),
            _time(start),
            _time(published),
            str(by),
            str(why),
            sorted(
                (str(unit), str(resource), float(usd))
                for unit, resource, usd in zip(units, resources, usds, strict=True)
            ),
        )
        for list_id, start, published, by, why, units, resources, usds in rows
    ]


@dataclass(frozen=True)
class StageUsage:
    """What one stage used over a window: ``unit_seconds`` is the sum of seconds x units (core-
    or GPU-seconds) of its ``events`` events on ``device``, for answers (``scope`` "answer":
    events with a request id) or documents ("document": events with a document id and none)."""

    stage: str
    device: str
    scope: Literal["answer", "document"]
    events: int
    unit_seconds: float


@dataclass(frozen=True)
class CostMeasurements:
    """What this installation measured from ``since`` on, for ``ragops tco``: answers (and the
    span of their times), documents processed, each stage's usage, mean tokens per answer and
    the stored payload bytes (``storage_per_day``) over ``storage_days`` days."""

    since: datetime
    answers: int
    first_answer: datetime | None
    last_answer: datetime | None
    documents: int
    stages: list[StageUsage]
    mean_input_tokens: float
    mean_output_tokens: float
    stored_bytes: int
    storage_days: int


def cost_measurements(reader: Reader, since: datetime) -> CostMeasurements:
    """:class:`CostMeasurements` of every tenant from ``since`` on (views ``stage_costs``,
    ``storage_per_day``; table ``generations``)."""
    parameters = {"since_ms": _ms(since)}
    since_sql = "occurred_at >= fromUnixTimestamp64Milli({since_ms:Int64}, 'UTC')"
    answers, first, last, tokens_in, tokens_out = _one(
        reader,
        f"SELECT count(), min(occurred_at), max(occurred_at), avg(input_tokens), avg(output_tokens) "
        f"FROM generations FINAL WHERE {since_sql}",
        parameters,
    )
    stages = [
        StageUsage(str(stage), str(device), "answer" if scope == 1 else "document", int(n), float(seconds))
        for stage, device, scope, n, seconds in reader.query(
            "SELECT stage, device, request_id != '' AS scope, count(), sum(seconds * units) FROM stage_costs "
            f"WHERE {since_sql} AND (request_id != '' OR document_id != '') "
            "GROUP BY stage, device, scope ORDER BY stage, device, scope",
            parameters,
        ).rows
    ]
    (documents,) = _one(
        reader,
        f"SELECT uniqExact(document_id) FROM stage_costs WHERE {since_sql} AND request_id = '' AND document_id != ''",
        parameters,
    )
    stored, days = _one(
        reader,
        "SELECT sum(payload_bytes), uniqExact(day) FROM storage_per_day WHERE day >= toDate("
        "fromUnixTimestamp64Milli({since_ms:Int64}, 'UTC'))",
        parameters,
    )
    count = int(answers)
    return CostMeasurements(
        since=since,
        answers=count,
        first_answer=_time(first) if count else None,
        last_answer=_time(last) if count else None,
        documents=int(documents),
        stages=stages,
        mean_input_tokens=float(tokens_in) if count else 0.0,
        mean_output_tokens=float(tokens_out) if count else 0.0,
        stored_bytes=int(stored or 0),
        storage_days=int(days),
    )


# ---- review: human review queue and labels

ReviewStratum = Literal["random", "low_score", "negative_feedback"]
"""Why an answer is in the review queue (``ragops_schemas.review.SampledAs``)."""
REVIEW_STRATA: tuple[ReviewStratum, ...] = ("random", "low_score", "negative_feedback")


@dataclass(frozen=True)
class ReviewItem:
    """An answer waiting for a reviewer: the question, the answer and the chunks put into its
    prompt (``RetrievedChunk`` dicts: chunk_id, document_id, document_version, text, score...),
    its evaluation scores (metric -> value, the latest of each), the latest thumb given on it
    (``up``/``down``, None without one) and the stratum it was sampled from."""

    request_id: str
    answer_event_id: str
    occurred_at: datetime
    question: str
    answer: str
    contexts: list[dict[str, Any]]
    scores: dict[str, float]
    thumb: str | None
    sampled_as: ReviewStratum


@dataclass(frozen=True)
class ReviewLabel:
    """A reviewer's latest label of one answer (``reviews``, migration 0015); the correction and
    comment as the privacy service redacted them, None when not given."""

    request_id: str
    answer_event_id: str
    reviewer: str
    correct: bool
    grounded: bool
    sampled_as: ReviewStratum
    occurred_at: datetime
    corrected_answer: str | None
    comment: str | None


_TENANT_FILTER = "({tenant:String} = '' OR tenant = {tenant:String})"

# The answers of production traffic (evaluation runs and shadow replays left out, as the
# monitor leaves them out) that nobody in the tenant has reviewed yet, the latest per request.
_REVIEW_CANDIDATES = (
    "(SELECT request_id, max(occurred_at) AS occurred_at FROM generations FINAL "
    f"WHERE {_TENANT_FILTER} AND run_id = '' AND request_id NOT IN {_EVALUATION_RUN_REQUESTS} "
    f"AND request_id NOT IN (SELECT request_id FROM reviews FINAL WHERE {_TENANT_FILTER}) "
    "GROUP BY request_id)"
)
# Up to {limit} request ids of each stratum, each stratum in its own order:
#   * random: a pseudo-random but repeatable order, by a hash of the request id (the same
#     queue for every reviewer until labels take answers out of it);
#   * low_score: by the mean of the answer's reference-free evaluation scores (faithfulness,
#     answer_relevancy, context_relevance), lowest first;
#   * negative_feedback: answers with a thumbs-down or a rating of 2 or less, newest first.
_REVIEW_STRATA_SQL = (
    "SELECT 'random' AS stratum, request_id FROM "
    f"(SELECT request_id FROM {_REVIEW_CANDIDATES} ORDER BY cityHash64(request_id), request_id "
    "LIMIT {limit:UInt32}) "
    "UNION ALL SELECT 'low_score' AS stratum, request_id FROM "
    f"(SELECT c.request_id AS request_id FROM {_REVIEW_CANDIDATES} AS c INNER JOIN "
    "(SELECT request_id, avg(value) AS score FROM evaluations FINAL "
    f"WHERE {_TENANT_FILTER} AND NOT reference_based GROUP BY request_id) AS s "
    "ON c.request_id = s.request_id ORDER BY s.score, c.request_id LIMIT {limit:UInt32}) "
    "UNION ALL SELECT 'negative_feedback' AS stratum, request_id FROM "
    f"(SELECT request_id FROM {_REVIEW_CANDIDATES} WHERE request_id IN "
    f"(SELECT request_id FROM feedback FINAL WHERE {_TENANT_FILTER} AND (thumb = 'down' OR rating <= 2)) "
    "ORDER BY occurred_at DESC, request_id LIMIT {limit:UInt32})"
)


def mix_strata(strata: Mapping[ReviewStratum, Sequence[str]], limit: int) -> list[tuple[str, ReviewStratum]]:
    """Interleave the strata's request ids round-robin (random, low_score, negative_feedback,
    random, ...), each in its own order, an id already taken from an earlier stratum skipped,
    until ``limit`` ids: no stratum crowds the others out of a short queue. Returns
    ``(request_id, stratum)`` pairs."""
    pending = {stratum: deque(strata.get(stratum, ())) for stratum in REVIEW_STRATA}
    mixed: list[tuple[str, ReviewStratum]] = []
    taken: set[str] = set()
    while len(mixed) < limit and any(pending.values()):
        for stratum in REVIEW_STRATA:
            queue = pending[stratum]
            while queue and queue[0] in taken:
                queue.popleft()
            if queue and len(mixed) < limit:
                request_id = queue.popleft()
                taken.add(request_id)
                mixed.append((request_id, stratum))
    return mixed


def evaluation_scores(reader: Reader, request_ids: Sequence[str], tenant: str | None) -> dict[str, dict[str, float]]:
    """request_id -> metric -> the latest score of that metric (``evaluations``), for the
    requests ``request_ids`` of ``tenant`` (None: any tenant's); requests without a score are
    left out."""
    rows = reader.query(
        "SELECT request_id, metric, argMax(value, (occurred_at, event_id)) FROM evaluations FINAL "
        f"WHERE {_TENANT_FILTER} AND request_id IN {_listed('requests')} GROUP BY request_id, metric",
        {"tenant": tenant or "", "requests": json.dumps(list(request_ids))},
    ).rows
    scores: dict[str, dict[str, float]] = {}
    for request_id, metric, value in rows:
        scores.setdefault(str(request_id), {})[str(metric)] = float(value)
    return scores


def review_queue(reader: Reader, tenant: str | None, limit: int) -> list[ReviewItem]:
    """Up to ``limit`` answers of ``tenant`` (None: every tenant's) for reviewers, sampled from
    three strata (:data:`REVIEW_STRATA`: a repeatable pseudo-random sample, the lowest mean
    reference-free evaluation score, negative feedback) and mixed by :func:`mix_strata`.
    Answers already reviewed, and the requests of evaluation runs and shadow replays, are left
    out. The question, answer and contexts come from the stored ``query.answer_generated``
    event (``events``: an answer whose event has expired is left out)."""
    parameters = {"tenant": tenant or "", "limit": limit}
    strata: dict[ReviewStratum, list[str]] = {stratum: [] for stratum in REVIEW_STRATA}
    for stratum, request_id in reader.query(_REVIEW_STRATA_SQL, parameters).rows:
        strata[stratum].append(str(request_id))
    mixed = mix_strata(strata, limit)
    if not mixed:
        return []
    ids = [request_id for request_id, _ in mixed]
    answers = {
        str(request_id): (str(event_id), _time(occurred_at), json.loads(payload))
        for request_id, event_id, occurred_at, payload in reader.query(
            "SELECT request_id, toString(event_id), occurred_at, payload FROM events FINAL "
            f"WHERE {_TENANT_FILTER} AND event_type = 'query.answer_generated' "
            f"AND request_id IN {_listed('requests')} "
            "ORDER BY occurred_at DESC, event_id DESC LIMIT 1 BY request_id",
            {"tenant": tenant or "", "requests": json.dumps(ids)},
        ).rows
    }
    thumbs = {
        str(request_id): str(thumb)
        for request_id, thumb in reader.query(
            "SELECT request_id, argMax(thumb, (occurred_at, event_id)) FROM feedback FINAL "
            f"WHERE {_TENANT_FILTER} AND thumb IN ('up', 'down') AND request_id IN {_listed('requests')} "
            "GROUP BY request_id",
            {"tenant": tenant or "", "requests": json.dumps(ids)},
        ).rows
    }
    scores = evaluation_scores(reader, ids, tenant)
    return [
        ReviewItem(
            request_id=request_id,
            answer_event_id=answers[request_id][0],
            occurred_at=answers[request_id][1],
            question=str(answers[request_id][2].get("question", "")),
            answer=str(answers[request_id][2].get("answer", "")),
            contexts=list(answers[request_id][2].get("contexts", [])),
            scores=scores.get(request_id, {}),
            thumb=thumbs.get(request_id),
            sampled_as=stratum,
        )
        for request_id, stratum in mixed
        if request_id in answers
    ]


def review_labels(reader: Reader, tenant: str | None) -> list[ReviewLabel]:
    """Every reviewer's latest label of each answer of ``tenant`` (None: every tenant's): a
    reviewer who labels an answer again replaces the earlier label. Ordered by request, then
    reviewer."""
    latest = ", ".join(
        f"argMax({column}, (occurred_at, event_id))"
        for column in (
            "answer_event_id",
            "correct",
            "grounded",
            "sampled_as",
            "occurred_at",
            "corrected_answer",
            "comment",
        )
    )
    rows = reader.query(
        f"SELECT request_id, reviewer, {latest} FROM reviews FINAL "
        f"WHERE {_TENANT_FILTER} GROUP BY request_id, reviewer ORDER BY request_id, reviewer",
        {"tenant": tenant or ""},
    ).rows
    labels = []
    for request_id, reviewer, answer_event_id, correct, grounded, sampled_as, occurred_at, corrected, comment in rows:
        labels.append(
            ReviewLabel(
                request_id=str(request_id),
                answer_event_id=str(answer_event_id),
                reviewer=str(reviewer),
                correct=correct in (True, 1, "true"),
                grounded=grounded in (True, 1, "true"),
                sampled_as=sampled_as,
                occurred_at=_time(occurred_at),
                corrected_answer=str(corrected) or None,
                comment=str(comment) or None,
            )
        )
    return labels


def answer_exists(reader: Reader, tenant: str, request_id: str, answer_event_id: str) -> bool:
    """Whether ``tenant`` has the answer ``answer_event_id`` (an ``AnswerGenerated`` event id)
    of request ``request_id`` (``generations``): what a reviewer of the tenant may label."""
    return bool(
        _one(
            reader,
            "SELECT count() > 0 FROM generations FINAL WHERE tenant = {tenant:String} "
            "AND request_id = {request:String} AND toString(event_id) = {answer:String}",
            {"tenant": tenant, "request": request_id, "answer": answer_event_id},
        )[0]
    )


def asker_of(reader: Reader, tenant: str, request_id: str) -> str | None:
    """The ``user_id`` (as stored: pseudonymized where configured) of whoever asked request
    ``request_id`` of ``tenant``, from its ``QueryRedacted`` in ``events``; None when the
    question came without one, or its event is no longer kept (``events`` and ``generations``
    keep 90 days by default: a reviewable answer's question is there)."""
    found = reader.query(
        "SELECT JSONExtractString(payload, 'user_id') FROM events WHERE tenant = {tenant:String} "
        "AND request_id = {request:String} AND event_type = 'query.redacted' "
        "ORDER BY occurred_at LIMIT 1",
        {"tenant": tenant, "request": request_id},
    ).rows
    return (str(found[0][0]) or None) if found else None


# ---- cite: citations of an evaluation run's answers


@dataclass(frozen=True)
class AnswerCitations:
    """One answer of an evaluation run as the citation figures read it (from its
    ``AnswerGenerated`` payload in ``events``)."""

    answer: str
    finish_reasons: list[str]
    cited_documents: list[str]
    reference_context_ids: list[str]


def run_answer_citations(reader: Reader, run_id: str) -> list[AnswerCitations]:
    """Each ``AnswerGenerated`` of evaluation run ``run_id``: its answer text, finish reasons,
    the document ids of its citations (in citation order) and the question's gold context ids."""
    rows = reader.query(
        "SELECT JSONExtractString(payload, 'answer'), "
        "JSONExtract(payload, 'generation', 'gen_ai.response.finish_reasons', 'Array(String)'), "
        "arrayMap(c -> JSONExtractString(c, 'document_id'), JSONExtractArrayRaw(payload, 'citations')), "
        "JSONExtract(payload, 'evaluation', 'reference_context_ids', 'Array(String)') "
        "FROM events FINAL WHERE event_type = 'query.answer_generated' "
        "AND JSONExtractString(payload, 'evaluation', 'run_id') = {run_id:String} ORDER BY request_id",
        {"run_id": run_id},
    ).rows
    return [AnswerCitations(str(a), list(f), list(c), list(r)) for a, f, c, r in rows]


# ---- abstain: the abstention check's rate


@dataclass(frozen=True)
class AbstentionRate:
    """Answers of a tenant since a time (``generations``, production and evaluation runs alike)."""

    tenant: str
    answers: int
    abstained: int  # finish reason ``abstained``: the check judged the context does not hold the answer

    @property
    def rate(self) -> float | None:
        """``abstained / answers``; None when there is no answer."""
        return self.abstained / self.answers if self.answers else None


def abstention_rates(reader: Reader, since: datetime, tenant: str | None = None) -> list[AbstentionRate]:
    """Per tenant (``tenant`` only when given), the answers generated since ``since`` and how many
    the abstention check replaced with "the documents do not say" (finish reason ``abstained``);
    answers without context (``no_context``) count as answers, not abstentions."""
    rows = reader.query(
        "SELECT tenant, count() AS answers, countIf(finish_reason = 'abstained') AS abstained "
        "FROM generations FINAL "
        "WHERE occurred_at >= fromUnixTimestamp64Milli({since_ms:Int64}, 'UTC') "
        "AND ({tenant:String} = '' OR tenant = {tenant:String}) GROUP BY tenant ORDER BY tenant",
        {"since_ms": _ms(since), "tenant": tenant or ""},
    ).rows
    return [AbstentionRate(str(name), int(answers), int(abstained)) for name, answers, abstained in rows]

"""Analyst SQL for a tenant on a real chDB: whatever the statement's shape (joins, subqueries,
common table expressions, unions, FINAL, a ``WITH`` alias named ``tenant``), a tenant's query
reads its own tenant's rows only; tables without a tenant column are refused to it; through
the sink's ``POST /sql`` a tenant's caller is restricted to its credential's tenant."""

import uuid
from collections.abc import Iterator, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest

from ragops_analytics import queries
from ragops_analytics.chdb_store import ChdbStore
from ragops_analytics.guard import ReadOnlyViolation, ensure_read_only
from ragops_schemas import AnswerGenerated, DocumentIndexed, Event, FeedbackRecorded, QueryRedacted
from ragops_shared.identity import Role
from ragops_shared.settings import PlatformSettings
from ragops_sink.app import Writer, create_app
from ragops_sink.rows import events_to_arrow, to_row
from ragops_sink.settings import SinkSettings
from tests.helpers import KEEP_ROWS, bearer, example, record_of

pytestmark = pytest.mark.clickhouse
TENANTS = ("acme", "globex")


def _events() -> list[Event]:
    """Each tenant's question, answer, feedback and document, under the same request and document ids."""
    return [
        example(kind).model_copy(update={"tenant": tenant, "event_id": uuid.uuid4()})
        for tenant in TENANTS
        for kind in (QueryRedacted, AnswerGenerated, FeedbackRecorded, DocumentIndexed)
    ]


def _save(store: ChdbStore, events: Sequence[Event]) -> None:
    rows = [to_row(record_of(event, offset), datetime.now(UTC)) for offset, event in enumerate(events)]
    queries.insert_events(store, events_to_arrow(rows))


@pytest.fixture
def shared(chdb_store: ChdbStore) -> ChdbStore:
    _save(chdb_store, _events())
    return chdb_store


# Each returns the tenant column of every row it reached, as one array per result row.
REACHING = [
    "SELECT groupArray(tenant) FROM events",
    "SELECT groupArray(tenant) FROM events FINAL",
    "SELECT [q.tenant, g.tenant] FROM queries AS q JOIN generations AS g ON g.request_id = q.request_id",
    "SELECT [q.tenant, f.tenant] FROM queries AS q FINAL LEFT JOIN feedback AS f FINAL USING (request_id)",
    "SELECT groupArray(tenant) FROM documents WHERE document_id IN (SELECT document_id FROM documents)",
    "SELECT (SELECT groupArray(tenant) FROM feedback)",
    "SELECT groupArray(tenant) FROM (SELECT tenant FROM events) AS inner_rows",
    "WITH everything AS (SELECT * FROM events) SELECT groupArray(tenant) FROM everything",
    "WITH (SELECT groupArray(tenant) FROM queries) AS seen SELECT seen",
    "SELECT groupArray(tenant) FROM events UNION ALL SELECT groupArray(tenant) FROM documents",
    "WITH 'globex' AS tenant SELECT groupArray(events.tenant) FROM events",
    "SELECT groupArray(e.tenant) FROM events AS e, events AS e2 WHERE e.event_id = e2.event_id",
]


@pytest.mark.parametrize("sql", REACHING)
def test_a_tenants_query_reaches_its_own_rows_only(shared: ChdbStore, sql: str) -> None:
    def reached(tenant: str | None) -> set[Any]:
        return {value for row in shared.query(sql, tenant=tenant).rows for value in row[0]}

    assert reached(None) == set(TENANTS), "the platform reads every tenant's rows"
    assert reached("globex") == {"globex"}
    assert reached("acme") == {"acme"}
    assert reached("initech") <= {None, ""}


def test_a_tenants_counts_are_its_own(shared: ChdbStore) -> None:
    count = "SELECT count() FROM events FINAL"
    assert shared.query(count).rows == [(8,)]
    assert shared.query(count, tenant="globex").rows == [(4,)]
    assert shared.query(count, tenant="initech").rows == [(0,)]


def test_describe_shows_a_tenant_the_columns_of_its_tables(shared: ChdbStore) -> None:
    assert shared.query("DESCRIBE events", tenant="globex").rows == shared.query("DESCRIBE events").rows
    with pytest.raises(ReadOnlyViolation, match="no tenant column"):
        shared.query("DESCRIBE TABLE cost_per_day", tenant="globex")


@pytest.mark.parametrize(
    ("sql", "refusal"),
    [
        ("SELECT * FROM cost_per_day", "no tenant column"),
        ("SELECT * FROM model_prices", "no tenant column"),
        ("SELECT count() FROM events WHERE request_id IN (SELECT request_id FROM feedback_rates)", "no tenant column"),
        ("WITH events AS (SELECT 1 AS x) SELECT * FROM events", "may not be named events"),
        ("SELECT count() FROM events AS __ragops_rows", "reserved"),
        ("WITH 'globex' AS `__ragops_rows.tenant` SELECT count() FROM events", "reserved"),
        # Names the rewrite never sees: a function form of IN's set, a parameter substituted as a name.
        ("SELECT globalIn(tenant, documents) FROM events", r"globalIn\(\) is not allowed"),
        ("SELECT count() FROM events WHERE event_type IN {t:Identifier}", "placeholder"),
        ("SELECT count() FROM audit_log", "auditors only"),
    ],
)
def test_what_a_tenant_may_not_read_is_refused(shared: ChdbStore, sql: str, refusal: str) -> None:
    with pytest.raises(ReadOnlyViolation, match=refusal):
        shared.query(sql, tenant="globex")


def test_an_invalid_tenant_name_is_refused() -> None:
    with pytest.raises(ValueError, match="invalid tenant"):
        ensure_read_only("SELECT 1", tenant="x' OR 1 = 1 --")


@pytest.fixture
def sink(tmp_path: Path) -> Iterator[tuple[Path, Any]]:
    settings = SinkSettings(retention_days=KEEP_ROWS, platform=PlatformSettings(data_dir=tmp_path))
    writer = Writer(settings)
    writer.open()
    try:
        _save(writer.store, _events())  # type: ignore[arg-type]
        yield tmp_path, create_app(settings, writer)
    finally:
        writer.close()


async def test_the_sinks_sql_endpoint_restricts_a_tenants_caller_to_its_tenant(sink: tuple[Path, Any]) -> None:
    data_dir, app = sink
    reach = {"sql": "SELECT groupArray(tenant) FROM events"}

    async def reached(headers: dict[str, str], body: dict) -> list[str]:
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://sink", headers=headers) as client:
            response = await client.post("/sql", json=body)
        assert response.status_code == 200, response.text
        return sorted(set(response.json()["rows"][0][0]))

    analyst = bearer(data_dir, Role.ANALYST, tenant="globex")
    assert await reached(analyst, reach) == ["globex"]
    assert await reached(analyst, reach | {"tenant": "acme"}) == ["globex"], "a tenant's caller cannot ask for another"
    platform = bearer(data_dir, Role.PLATFORM)
    assert await reached(platform, reach) == ["acme", "globex"]
    assert await reached(platform, reach | {"tenant": "acme"}) == ["acme"]


def test_the_tenant_tables_are_the_analyst_tables_with_a_tenant_column(chdb_store: ChdbStore) -> None:
    columns = "SELECT table FROM system.columns WHERE database = currentDatabase() AND name = 'tenant'"
    with_tenant = {row[0] for row in chdb_store.execute(columns).rows}
    assert with_tenant & queries.ANALYST_TABLES == queries.TENANT_TABLES

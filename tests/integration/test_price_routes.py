"""Price lists through the real gateway on a real broker: only operators of the platform's
tenant publish; the list is signed by the gateway, its id derived from its content and date;
once the sink stored it (the raw event and its audit entry, which verifies the signature) the
gateway lists it from ClickHouse, without who and why for another tenant's caller."""

import asyncio
import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from pydantic import SecretStr
from typer.testing import CliRunner, Result

from ragops.cli import app
from ragops_analytics.client import AnalyticsSettings
from ragops_analytics.server_store import ServerStore
from ragops_gateway.app import create_app
from ragops_schemas import AnswerGenerated, ContextRetrieved
from ragops_schemas.cost import Price, PricesPublished
from ragops_schemas.envelope import ComputeUsage
from ragops_schemas.ids import new_event_id, price_list_id
from ragops_shared.budgets import Budget, month_start, next_month
from ragops_shared.embedded import EmbeddedKafka
from ragops_shared.signing import verifier_for
from ragops_sink.schema import migrate
from tests.helpers import GATEWAY_SIGNER, VERIFIER, example, record_of, store_as_sink
from tests.integration.services import read_records
from tests.integration.test_changes import Gateway, configured, served

pytestmark = [pytest.mark.kafka, pytest.mark.clickhouse]

DEFAULT_PRICES = Path(__file__).resolve().parents[2] / "deploy" / "prices" / "default.toml"
LIST: dict[str, Any] = {
    "effective_from": "2099-12-01T00:00:00Z",
    "prices": [{"unit": "cpu_core_hour", "usd": 0.05}, {"unit": "gpu_hour", "usd": 3.0}],
    "reason": "cloud list prices",
}


def test_operators_of_the_platform_publish_prices_and_everyone_reads_the_signed_lists(
    tansu: EmbeddedKafka, tmp_path: Path
) -> None:
    settings, keys = configured(tansu, tmp_path)
    dsn = f"chdb://{tmp_path / 'clickhouse'}"
    store = ServerStore(dsn)
    migrate(store)
    settings = settings.model_copy(update={"analytics": AnalyticsSettings(clickhouse_url=SecretStr(dsn))})
    with TestClient(create_app(settings)) as client:
        gateway = Gateway(client, settings.kafka, settings.platform, keys)
        elsewhere = gateway.call("carol", "POST", "/v1/prices", LIST)
        assert elsewhere.status_code == 403 and "platform's tenant" in elsewhere.json()["detail"]
        assert gateway.call("bob", "POST", "/v1/prices", LIST).status_code == 403, "approvers do not publish"
        twice = gateway.call("dave", "POST", "/v1/prices", {**LIST, "prices": [LIST["prices"][0]] * 2})
        assert twice.status_code == 422
        backdated = gateway.call("dave", "POST", "/v1/prices", {**LIST, "effective_from": "2026-01-01T00:00:00Z"})
        assert backdated.status_code == 422 and "never re-prices" in backdated.json()["detail"]

        published = gateway.call("dave", "POST", "/v1/prices", LIST)
        assert published.status_code == 201, published.text
        expected_id = price_list_id(
            [{"unit": p["unit"], "resource": "*", "usd": p["usd"]} for p in LIST["prices"]],
            datetime(2099, 12, 1, tzinfo=UTC),
        )
        assert published.json()["price_list_id"] == expected_id

        [(event, _)] = asyncio.run(read_records(settings.kafka, PricesPublished, 1))
        assert verifier_for(settings.platform).signer(event) == "gateway"
        # What the sink's two subscribers store of it.
        record = record_of(event, 0)
        store_as_sink(store, [record], verifier_for(settings.platform), datetime.now(UTC))

        listed = gateway.call("bob", "GET", "/v1/prices")
        assert listed.status_code == 200, listed.text
        [one] = listed.json()
        assert (one["price_list_id"], one["reason"], one["published_by"]) == (expected_id, "cloud list prices", "dave")
        assert {(p["unit"], p["usd"]) for p in one["prices"]} == {("cpu_core_hour", 0.05), ("gpu_hour", 3.0)}
        [theirs] = gateway.call("carol", "GET", "/v1/prices").json()
        assert (theirs["price_list_id"], theirs["reason"], theirs["published_by"]) == (expected_id, None, None)
    store.close()


def test_the_cli_publishes_lists_and_prices_the_scenarios(
    tansu: EmbeddedKafka, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    settings, keys = configured(tansu, tmp_path)
    dsn = f"chdb://{tmp_path / 'clickhouse'}"
    store = ServerStore(dsn)
    migrate(store)
    settings = settings.model_copy(update={"analytics": AnalyticsSettings(clickhouse_url=SecretStr(dsn))})
    # The CLI reads the measurements from the same ClickHouse (a server in a cluster).
    monkeypatch.setenv("RAGOPS_SINK_CLICKHOUSE_URL", dsn)
    with served(settings) as url:

        def ragops(*args: str) -> Result:
            env = {"RAGOPS_GATEWAY_URL": url, "RAGOPS_API_KEY": keys["dave"]}
            return CliRunner().invoke(app, [*args, "--data-dir", str(tmp_path)], env=env)

        published = ragops("prices", "publish", str(DEFAULT_PRICES))
        assert published.exit_code == 0, published.output
        [(event, _)] = asyncio.run(read_records(settings.kafka, PricesPublished, 1))
        assert published.stdout.strip().splitlines()[-1] == event.price_list_id
        assert ragops("tco").exit_code == 1, "no list stored yet"
        now = datetime.now(UTC)
        answer = example(AnswerGenerated).model_copy(
            update={
                "event_id": new_event_id(),
                "occurred_at": now,
                "compute": ComputeUsage(device="cpu", seconds=36.0, units=2),
            }
        )
        records = [record_of(event, 0), record_of(answer, 1)]
        store_as_sink(store, records, verifier_for(settings.platform), now)

        assert ragops("prices", "list").exit_code == 0
        [listed] = json.loads(ragops("prices", "list", "--json").stdout)
        assert listed["price_list_id"] == event.price_list_id and len(listed["prices"]) == 5
        shown = ragops("tco", "--answers-per-day", "1000", "--format", "json")
        assert shown.exit_code == 0, shown.output
        result = json.loads(shown.stdout)
        assert (result["price_list_id"], result["hosted_model"]) == (event.price_list_id, "gpt-4o-mini")
        cpu = result["scenarios"][0]
        # 36 s x 2 cores an answer x 1000 a day = 20 core-hours x 0.0504 USD (deploy/prices/default.toml).
        assert cpu["compute_usd_per_day"] == pytest.approx(20 * 0.0504)
        assert result["measured"]["stages"]["generation/cpu/answer"]["events"] == 1
        table = ragops("tco")
        assert table.exit_code == 0 and "GPU speed-up generation" in table.stdout, table.output
    store.close()


def test_a_tenant_over_a_refuse_budget_gets_429_until_the_month_ends(tansu: EmbeddedKafka, tmp_path: Path) -> None:
    settings, keys = configured(tansu, tmp_path)
    dsn = f"chdb://{tmp_path / 'clickhouse'}"
    store = ServerStore(dsn)
    migrate(store)
    # This month: a signed list at 3.6 USD per core-hour and 1,000 core-seconds of the platform
    # tenant's retrieval = 1 USD spent, against a budget of 0.5 USD.
    now = datetime.now(UTC)
    prices = GATEWAY_SIGNER.sign(
        example(PricesPublished).model_copy(
            update={
                "event_id": new_event_id(), "occurred_at": now, "effective_from": month_start(now),
                "prices": [Price(unit="cpu_core_hour", usd=3.6)], "signature": None,
            }
        )
    )  # fmt: skip
    retrieval = example(ContextRetrieved).model_copy(
        update={
            "event_id": new_event_id(), "tenant": settings.platform.tenant, "occurred_at": now,
            "compute": ComputeUsage(device="cpu", seconds=1000.0, units=1),
        }
    )  # fmt: skip
    records = [record_of(prices, 0), record_of(retrieval, 1)]
    store_as_sink(store, records, VERIFIER, now)
    budgets = {settings.platform.tenant: Budget(usd_per_month=0.5, action="refuse")}
    settings = settings.model_copy(
        update={
            "analytics": AnalyticsSettings(clickhouse_url=SecretStr(dsn)),
            "platform": settings.platform.model_copy(update={"budgets": budgets}),
        }
    )
    with TestClient(create_app(settings)) as client:
        gateway = Gateway(client, settings.kafka, settings.platform, keys)
        refused = gateway.call("admin", "POST", "/v1/queries", {"question": "anyone?", "timeout_s": 0.2})
        assert refused.status_code == 429, refused.text
        assert "monthly budget of 0.5 USD" in refused.json()["detail"] and "1.00 USD" in refused.json()["detail"]
        assert int(refused.headers["retry-after"]) == pytest.approx((next_month(now) - now).total_seconds(), abs=120)
    store.close()

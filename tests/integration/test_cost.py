"""The cost views of sink migration 0016 and their queries, on chDB: each stage's compute priced
at the list in effect when its event occurred (signed lists only), the token bill, spend per
tenant and per day."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from ragops_analytics import queries
from ragops_analytics.chdb_store import ChdbStore
from ragops_schemas import AnswerGenerated, ContextRetrieved, Event
from ragops_schemas.changes import ChangeActor
from ragops_schemas.cost import Price, PricesPublished
from ragops_schemas.envelope import ComputeUsage
from ragops_schemas.ids import new_event_id, price_list_id, refused_audit_id
from tests.helpers import GATEWAY_SIGNER, VERIFIER, example, record_of, store_as_sink

pytestmark = pytest.mark.clickhouse

T0 = datetime(2026, 12, 1, tzinfo=UTC)
OPERATOR = ChangeActor(subject="person:olga", name="olga", kind="person")


def price_list(effective_from: datetime, prices: list[Price], *, signed: bool = True) -> PricesPublished:
    event = example(PricesPublished).model_copy(
        update={
            "event_id": new_event_id(),
            "price_list_id": price_list_id([p.model_dump() for p in prices], effective_from),
            "effective_from": effective_from,
            "occurred_at": effective_from,
            "prices": prices,
            "published_by": OPERATOR,
            "signature": None,
        }
    )
    return GATEWAY_SIGNER.sign(event) if signed else event


def store_events(store: ChdbStore, events: list[Event]) -> None:
    """What the sink's two subscribers do with these events: the raw rows and the audit log."""
    store_as_sink(store, [record_of(event, offset) for offset, event in enumerate(events)], VERIFIER, datetime.now(UTC))


def stage(event_type: type[Event], request_id: str, tenant: str, at: datetime, compute: ComputeUsage) -> Event:
    return example(event_type).model_copy(
        update={
            "event_id": new_event_id(),
            "request_id": request_id,
            "tenant": tenant,
            "occurred_at": at,
            "compute": compute,
        }
    )


def test_every_stage_is_priced_at_the_list_in_effect(chdb_store: ChdbStore) -> None:
    first = price_list(
        T0,
        [
            Price(unit="cpu_core_hour", usd=0.036),
            Price(unit="gpu_hour", usd=3.6),
            Price(unit="input_tokens_million", resource="SmolLM2-135M-Instruct", usd=1.0),
            Price(unit="output_tokens_million", resource="SmolLM2-135M-Instruct", usd=2.0),
        ],
    )
    later = price_list(T0 + timedelta(days=2), [Price(unit="cpu_core_hour", usd=0.072)])
    forged = price_list(T0 + timedelta(days=1), [Price(unit="cpu_core_hour", usd=1000.0)], signed=False)
    day1, day3 = T0 + timedelta(hours=1), T0 + timedelta(days=2, hours=1)
    events: list[Event] = [
        first,
        later,
        forged,
        # r1 on day 1: retrieval 100 s x 2 cores on CPU, generation 10 s x 1 GPU, 312 in / 3 out tokens.
        stage(ContextRetrieved, "r1", "acme", day1, ComputeUsage(device="cpu", seconds=100.0, units=2)),
        stage(AnswerGenerated, "r1", "acme", day1, ComputeUsage(device="cuda", seconds=10.0, units=1)),
        # r2 on day 3 (the later list: no GPU and no token prices any more): 50 s x 1 core.
        stage(ContextRetrieved, "r2", "other", day3, ComputeUsage(device="cpu", seconds=50.0, units=1)),
    ]
    store_events(chdb_store, events)

    costs = queries.request_costs(chdb_store, ["r1", "r2", "missing"], None)
    # By hand: 100*2/3600*0.036 = 0.002; 10*1/3600*3.6 = 0.01; (312*1 + 3*2)/1e6 = 0.000318.
    r1 = costs["r1"]
    assert r1.by_stage == pytest.approx({"retrieval": 0.002, "generation": 0.01, "tokens": 0.000318})
    assert r1.usd == pytest.approx(0.012318)
    # 50*1/3600*0.072 = 0.001: the later list, and the unsigned list priced nothing.
    assert costs["r2"].by_stage == pytest.approx({"retrieval": 0.001})
    assert set(costs) == {"r1", "r2"}
    assert queries.request_costs(chdb_store, ["r1", "r2"], "other").keys() == {"r2"}

    row = chdb_store.query("SELECT compute_usd, token_usd, cost_usd FROM cost_per_request").rows
    assert row == [pytest.approx((0.012, 0.000318, 0.012318))]  # every stage of the request, and its tokens
    assert queries.tenant_spend(chdb_store, T0) == pytest.approx({"acme": 0.012318, "other": 0.001})
    assert queries.tenant_spend(chdb_store, T0 + timedelta(days=2)) == pytest.approx({"other": 0.001})
    by_day = queries.cost_by_day(chdb_store, T0, "acme")
    assert [(day, stage) for day, stage, _ in by_day] == [
        (day1.date(), s) for s in ("generation", "retrieval", "tokens")
    ]
    assert [usd for _, _, usd in by_day] == pytest.approx([0.01, 0.002, 0.000318])
    listed = chdb_store.query("SELECT DISTINCT price_list_id FROM prices ORDER BY price_list_id").rows
    assert sorted(r[0] for r in listed) == sorted([first.price_list_id, later.price_list_id])
    stored = chdb_store.query("SELECT sum(events), sum(payload_bytes) FROM storage_per_day").rows[0]
    assert stored[0] == len(events) and stored[1] > 0


def test_a_record_reusing_a_signed_lists_id_prices_nothing(chdb_store: ChdbStore) -> None:
    """Security review (issue 16): someone who can produce to the prices topic, without the
    signing key, re-sends a signed list's event id and occurred_at with prices of their own.
    ``events`` keeps their record (the latest of the id); the signed list still prices, and
    their record is audited as refused, not skipped as a redelivery of the signed one."""
    genuine = price_list(T0, [Price(unit="cpu_core_hour", usd=0.036)])
    evil = [Price(unit="cpu_core_hour", usd=1000.0)]
    forged = genuine.model_copy(
        update={"prices": evil, "price_list_id": price_list_id([p.model_dump() for p in evil], T0)}
    )
    hour = stage(ContextRetrieved, "r1", "acme", T0 + timedelta(hours=1), ComputeUsage(device="cpu", seconds=3600.0))
    store_events(chdb_store, [genuine])
    store_events(chdb_store, [genuine])  # redelivered: one entry
    store_events(chdb_store, [forged, hour])

    assert queries.request_costs(chdb_store, ["r1"], None)["r1"].usd == pytest.approx(0.036)
    assert chdb_store.query("SELECT DISTINCT price_list_id FROM prices").rows == [(genuine.price_list_id,)]
    audited = chdb_store.query(
        "SELECT toString(audit_id), target, outcome FROM audit_log ORDER BY seq", audit=True
    ).rows
    assert audited == [
        (str(genuine.event_id), genuine.price_list_id, "signed"),
        (str(refused_audit_id(forged.event_id, forged.signed_bytes())), forged.price_list_id, "bad_signature"),
    ]

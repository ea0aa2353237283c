"""The gateway's price-list core (ragops_gateway.prices.price_list): who may publish and from when."""

from datetime import UTC, datetime, timedelta

import pytest

from ragops_gateway.prices import PriceListRefused, PricesIn, price_list
from ragops_schemas.cost import PricesPublished
from ragops_shared.identity import Principal, Role
from tests.helpers import PRODUCER

NOW = datetime(2026, 12, 5, 12, tzinfo=UTC)
SKEW = timedelta(seconds=300)
OPERATOR = Principal(
    subject="key:0a1b2c3d4e5f6071", tenant="default", roles=frozenset({Role.OPERATOR}), kind="api_key",
    name="ops", owner="person:olga",
)  # fmt: skip


def body(effective_from: datetime | None) -> PricesIn:
    return PricesIn.model_validate(
        {"effective_from": effective_from, "prices": [{"unit": "cpu_core_hour", "usd": 0.05}], "reason": "list prices"}
    )


def publish(effective_from: datetime | None) -> PricesPublished:
    return price_list(OPERATOR, body(effective_from), PRODUCER, platform_tenant="default", now=NOW, clock_skew=SKEW)


def test_a_backdated_list_is_refused_so_no_one_reprices_the_past() -> None:
    with pytest.raises(PriceListRefused) as refused:
        publish(NOW - timedelta(days=1))
    assert refused.value.status_code == 422
    assert "300 s before now" in str(refused.value) and "never re-prices" in str(refused.value)
    # Within the clock skew, now (the default) and later are accepted.
    assert publish(NOW - SKEW).effective_from == NOW - SKEW
    assert publish(None).effective_from == NOW
    assert publish(NOW + timedelta(days=30)).effective_from == NOW + timedelta(days=30)

"""The gateway's token buckets on a fake clock, and the settings of per-tenant limits."""

import pytest
from pydantic import ValidationError

from ragops_gateway.limits import TokenBuckets
from ragops_gateway.settings import GatewaySettings, Rate, RouteClass, TenantLimits


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


TWO_A_SECOND = Rate(rate=2.0, burst=3)


def _buckets(clock: FakeClock, rate: Rate = TWO_A_SECOND) -> TokenBuckets:
    return TokenBuckets(lambda tenant, route: rate, clock)


def test_a_burst_passes_then_the_next_request_waits_for_a_token() -> None:
    clock = FakeClock()
    buckets = _buckets(clock)
    assert [buckets.take("a", "documents") for _ in range(3)] == [0, 0, 0]
    assert buckets.take("a", "documents") == 1  # 0.5 s to a token at 2/s: rounded up
    clock.now += 0.5
    assert buckets.take("a", "documents") == 0
    assert buckets.take("a", "documents") == 1


def test_retry_after_is_whole_seconds_rounded_up() -> None:
    clock = FakeClock()
    buckets = _buckets(clock, Rate(rate=0.4, burst=1))
    assert buckets.take("a", "queries") == 0
    assert buckets.take("a", "queries") == 3  # 2.5 s
    clock.now += 2.0
    assert buckets.take("a", "queries") == 1  # 0.5 s


def test_the_bucket_refills_up_to_its_burst_only() -> None:
    clock = FakeClock()
    buckets = _buckets(clock)
    for _ in range(3):
        buckets.take("a", "documents")
    clock.now += 3600
    assert [buckets.take("a", "documents") for _ in range(4)] == [0, 0, 0, 1]


def test_tenants_and_routes_have_buckets_of_their_own() -> None:
    clock = FakeClock()
    buckets = _buckets(clock)
    for _ in range(3):
        buckets.take("a", "documents")
    assert buckets.take("a", "documents") > 0
    assert buckets.take("b", "documents") == 0
    assert buckets.take("a", "queries") == 0


def test_each_bucket_has_its_tenants_rate() -> None:
    clock = FakeClock()
    rates = {"slow": Rate(rate=1.0, burst=1)}
    buckets = TokenBuckets(lambda tenant, route: rates.get(tenant, Rate(rate=1.0, burst=5)), clock)
    assert [buckets.take("slow", "feedback") for _ in range(2)] == [0, 1]
    assert [buckets.take("other", "feedback") for _ in range(5)] == [0] * 5


def test_idle_buckets_are_dropped() -> None:
    clock = FakeClock()
    buckets = _buckets(clock)
    routes: tuple[RouteClass, ...] = ("documents", "queries", "feedback")
    for tenant in range(1000):
        for route in routes:
            buckets.take(f"t{tenant}", route)
    assert len(buckets) == 3000
    clock.now += 1.0  # 2 tokens back of the 1 taken: every bucket full again
    buckets.take("t0", "documents")
    assert len(buckets) == 1


def test_a_bucket_still_refilling_is_kept() -> None:
    clock = FakeClock()
    buckets = _buckets(clock)
    for _ in range(3):
        buckets.take("a", "documents")
    clock.now += 1.0  # 2 of 3 tokens back
    buckets.take("b", "documents")
    assert len(buckets) == 2
    assert [buckets.take("a", "documents") for _ in range(3)] == [0, 0, 1]


def test_a_tenant_override_falls_back_to_the_defaults() -> None:
    settings = GatewaySettings(
        rate=Rate(rate=5.0, burst=10),
        max_document_bytes=4096,
        tenant_limits={"small": TenantLimits(documents=Rate(rate=1.0, burst=2), max_document_bytes=1024)},
    )
    assert settings.rate_of("small", "documents") == Rate(rate=1.0, burst=2)
    assert settings.rate_of("small", "queries") == settings.rate_of("other", "documents") == Rate(rate=5.0, burst=10)
    assert (settings.max_document_bytes_of("small"), settings.max_document_bytes_of("other")) == (1024, 4096)


def test_tenant_limits_are_read_from_json(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RAGOPS_GATEWAY_RATE", '{"rate": 0.5, "burst": 2}')
    monkeypatch.setenv("RAGOPS_GATEWAY_TENANT_LIMITS", '{"acme": {"queries": {"rate": 3, "burst": 4}}}')
    settings = GatewaySettings()
    assert settings.rate_of("acme", "queries") == Rate(rate=3.0, burst=4)
    assert settings.rate_of("acme", "feedback") == Rate(rate=0.5, burst=2)


def test_a_size_override_cannot_raise_the_global_limit() -> None:
    with pytest.raises(ValidationError, match="RAGOPS_GATEWAY_MAX_DOCUMENT_BYTES"):
        GatewaySettings(max_document_bytes=1024, tenant_limits={"big": TenantLimits(max_document_bytes=1025)})


@pytest.mark.parametrize("rate", [{"rate": 0, "burst": 1}, {"rate": 1, "burst": 0}, {"rate": 1}])
def test_a_rate_needs_a_positive_rate_and_burst(rate: dict) -> None:
    with pytest.raises(ValidationError):
        Rate.model_validate(rate)


def test_reads_have_their_own_default_rate_and_override() -> None:
    settings = GatewaySettings(
        rate=TWO_A_SECOND,
        read_rate=Rate(rate=0.5, burst=4),
        tenant_limits={"small": TenantLimits(reads=Rate(rate=0.1, burst=1))},
    )
    assert settings.rate_of("any", "reads") == Rate(rate=0.5, burst=4)
    assert settings.rate_of("any", "queries") == TWO_A_SECOND
    assert settings.rate_of("small", "reads") == Rate(rate=0.1, burst=1)

"""Per-tenant request rates at the gateway: one token bucket per (tenant, route class).

The buckets live in this process's memory: each replica limits on its own, so with N
replicas a tenant gets up to N times its configured rate (a limiter shared by the replicas,
in Redis or the like, is future work)."""

import math
import time
from collections import OrderedDict
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime

import structlog
from prometheus_client import Counter

from ragops_gateway.settings import Rate, RouteClass
from ragops_shared.budgets import Budget, next_month, over_budget

RATE_LIMITED = Counter(
    "ragops_gateway_rate_limited_total",
    "Requests refused with 429 because their tenant was over its rate for the route.",
    ["tenant", "route"],
)

log = structlog.get_logger(__name__)

BUDGET_REFUSED = Counter(
    "ragops_gateway_budget_refused_total",
    "Questions refused with 429 because their tenant reached its monthly budget (action refuse).",
    ["tenant"],
)


def budget_refusal(
    budgets: Mapping[str, Budget], spend: Mapping[str, float], tenant: str, now: datetime
) -> tuple[str, int] | None:
    """(the reason, seconds until the month ends: ``Retry-After``) when ``tenant`` must be
    refused a question: its month-to-date ``spend`` reached a budget whose action is ``refuse``
    (:func:`ragops_shared.budgets.over_budget`); None otherwise."""
    budget = over_budget(budgets, spend, tenant)
    if budget is None or budget.action != "refuse":
        return None
    ends = next_month(now)
    reason = (
        f"tenant {tenant} reached its monthly budget of {budget.usd_per_month:g} USD "
        f"(spent {spend.get(tenant, 0.0):.2f} USD this month); questions are refused until {ends.isoformat()}"
    )
    return reason, max(1, math.ceil((ends - now).total_seconds()))


@dataclass
class _Bucket:
    tokens: float
    at: float  # clock reading when ``tokens`` was last computed


class TokenBuckets:
    """Token buckets keyed by (tenant, route class), as :meth:`take` meets them.

    A bucket holds at most ``burst`` tokens and gains ``rate`` tokens a second; a request
    takes one. A bucket full again is the same as a new one, so it is dropped: memory holds
    only the keys used within the last ``burst / rate`` seconds (their longest refill).

    Args:
        limit_of: the :class:`~ragops_gateway.settings.Rate` of a (tenant, route class).
        clock: seconds, monotonic (injectable for tests).
    """

    def __init__(
        self, limit_of: Callable[[str, RouteClass], Rate], clock: Callable[[], float] = time.monotonic
    ) -> None:
        self._limit_of = limit_of
        self._clock = clock
        # Least recently used first: the first buckets are the first to fill up again.
        self._buckets: OrderedDict[tuple[str, RouteClass], _Bucket] = OrderedDict()

    def __len__(self) -> int:
        """How many buckets are held (full ones are dropped)."""
        return len(self._buckets)

    def take(self, tenant: str, route: RouteClass) -> int:
        """Take a token for one request of ``tenant`` to ``route``.

        Returns:
            0 when the request may go ahead; else the whole seconds (at least 1) until a token
            is there again, for a ``Retry-After`` header (nothing was taken; the refusal is
            counted in :data:`RATE_LIMITED` and logged).
        """
        now = self._clock()
        self._drop_full(now)
        limit = self._limit_of(tenant, route)
        bucket = self._buckets.pop((tenant, route), None) or _Bucket(tokens=limit.burst, at=now)
        bucket.tokens = min(limit.burst, bucket.tokens + (now - bucket.at) * limit.rate)
        bucket.at = now
        self._buckets[tenant, route] = bucket
        if bucket.tokens >= 1:
            bucket.tokens -= 1
            return 0
        retry_after = max(1, math.ceil((1 - bucket.tokens) / limit.rate))
        RATE_LIMITED.labels(tenant=tenant, route=route).inc()
        log.info("rate_limited", tenant=tenant, route=route, retry_after_s=retry_after)
        return retry_after

    def _drop_full(self, now: float) -> None:
        """Drop the least recently used buckets that are full again, up to the first that is not."""
        while self._buckets:
            (tenant, route), bucket = next(iter(self._buckets.items()))
            limit = self._limit_of(tenant, route)
            if bucket.tokens + (now - bucket.at) * limit.rate < limit.burst:
                return
            del self._buckets[tenant, route]

"""Month-to-date spend per tenant, refreshed in the background for the budget decisions
(:mod:`ragops_shared.budgets`): the request path reads :attr:`SpendWatch.spend`, a plain dict,
and never waits on ClickHouse."""

import asyncio
from collections.abc import Callable
from datetime import UTC, datetime

import structlog

from ragops_analytics import queries
from ragops_analytics.store import QueryError, Reader, StoreUnavailable
from ragops_shared.budgets import month_start

log = structlog.get_logger(__name__)


class SpendWatch:
    """``spend``: tenant -> USD since the month began (UTC), as of the last refresh.

    Args:
        reader: opens a reader (a new one per refresh, closed after it when it has ``close``).
        interval_s: seconds between refreshes.
        clock: now (UTC), for tests.
    """

    def __init__(
        self, reader: Callable[[], Reader], interval_s: float, clock: Callable[[], datetime] | None = None
    ) -> None:
        self.reader = reader
        self.interval_s = interval_s
        self.clock = clock or (lambda: datetime.now(UTC))
        self.spend: dict[str, float] = {}
        self.refreshed_at: datetime | None = None

    def refresh(self) -> None:
        """Read the month's spend (blocking: call it in a thread). An unavailable or failing
        analytics store keeps the last figures (logged): budgets must not stop the platform."""
        now = self.clock()
        reader = self.reader()
        try:
            self.spend = queries.tenant_spend(reader, month_start(now))
            self.refreshed_at = now
        except (QueryError, StoreUnavailable) as error:
            log.warning("tenant_spend_unreadable", error=str(error)[:200])
        finally:
            close = getattr(reader, "close", None)
            if close is not None:
                close()

    async def run(self) -> None:
        """Refresh every ``interval_s`` seconds (the first after one interval: the owner
        refreshes once at start) until cancelled, off the event loop."""
        while True:
            await asyncio.sleep(self.interval_s)
            await asyncio.to_thread(self.refresh)

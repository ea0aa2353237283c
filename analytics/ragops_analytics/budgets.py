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
from ragops_shared.logs import error_summary

log = structlog.get_logger(__name__)


class SpendWatch:
    """:attr:`spend`: tenant -> USD since the month began (UTC), as of the last refresh.

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
        self._spend: dict[str, float] = {}
        self.refreshed_at: datetime | None = None

    @property
    def spend(self) -> dict[str, float]:
        """tenant -> USD spent this UTC month, as of the last refresh; empty (nothing spent)
        before the first refresh and once the month has turned since the last one: last month's
        spend must not refuse a tenant into the new month while a refresh fails."""
        if self.refreshed_at is None or month_start(self.clock()) != month_start(self.refreshed_at):
            return {}
        return self._spend

    def refresh(self) -> None:
        """Read the month's spend (blocking: call it in a thread). An unavailable or failing
        analytics store keeps the last figures (logged): budgets must not stop the platform."""
        now = self.clock()
        reader = self.reader()
        try:
            self._spend = queries.tenant_spend(reader, month_start(now))
            self.refreshed_at = now
        except (QueryError, StoreUnavailable) as error:
            log.warning("tenant_spend_unreadable", error=str(error)[:200])
        finally:
            close = getattr(reader, "close", None)
            if close is not None:
                close()

    async def run(self) -> None:
        """Refresh every ``interval_s`` seconds (the first after one interval: the owner
        refreshes once at start) until cancelled, off the event loop. A refresh that fails in
        any way is logged and tried again one interval later: a task that ended would freeze
        the figures for good."""
        while True:
            await asyncio.sleep(self.interval_s)
            try:
                await asyncio.to_thread(self.refresh)
            except Exception as error:  # noqa: BLE001 - any failure: the next interval tries again
                log.error("tenant_spend_refresh_failed", error=error_summary(error))

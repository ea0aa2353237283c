"""Budget decisions as plain functions: who is over budget, the gateway's refusal with the
seconds until the month ends, and generation serving a tenant over a degrade budget more cheaply."""

import asyncio
import threading
from datetime import UTC, datetime

from ragops_analytics.budgets import SpendWatch
from ragops_analytics.store import QueryResult
from ragops_gateway.limits import budget_refusal
from ragops_generation.app import Answerer
from ragops_generation.settings import GenerationSettings
from ragops_schemas import ContextRetrieved
from ragops_schemas.ids import new_event_id
from ragops_shared.budgets import Budget, month_start, next_month, over_budget
from tests.helpers import PRODUCER, EchoGenerator, example

BUDGETS = {"acme": Budget(usd_per_month=100, action="refuse"), "globex": Budget(usd_per_month=10, action="degrade")}


def test_a_tenant_is_over_budget_from_the_budget_on() -> None:
    assert over_budget(BUDGETS, {"acme": 99.99}, "acme") is None
    assert over_budget(BUDGETS, {"acme": 100.0}, "acme") == BUDGETS["acme"]
    assert over_budget(BUDGETS, {}, "globex") is None, "no spend recorded is 0 spent"
    assert over_budget(BUDGETS, {"initech": 1e9}, "initech") is None, "no budget, no limit"


def test_months_in_utc() -> None:
    assert month_start(datetime(2026, 12, 5, 13, tzinfo=UTC)) == datetime(2026, 12, 1, tzinfo=UTC)
    assert next_month(datetime(2026, 12, 31, 23, 59, tzinfo=UTC)) == datetime(2027, 1, 1, tzinfo=UTC)
    assert next_month(datetime(2026, 2, 1, tzinfo=UTC)) == datetime(2026, 3, 1, tzinfo=UTC)


def test_only_a_refuse_budget_refuses_until_the_month_ends() -> None:
    now = datetime(2026, 12, 31, 23, 0, tzinfo=UTC)
    reason, retry_after = budget_refusal(BUDGETS, {"acme": 120.5}, "acme", now) or ("", 0)
    assert retry_after == 3600 and "120.50 USD" in reason and "2027-01-01" in reason
    assert budget_refusal(BUDGETS, {"globex": 50}, "globex", now) is None, "degrade: served (more cheaply)"
    assert budget_refusal(BUDGETS, {"acme": 50}, "acme", now) is None


def test_a_tenant_over_a_degrade_budget_gets_fewer_chunks_and_the_answer_says_so() -> None:
    settings = GenerationSettings(context_chunks=3, degraded_context_chunks=1)
    answerer = Answerer(settings, EchoGenerator(), PRODUCER, degraded=lambda tenant: tenant == "globex")
    retrieved = example(ContextRetrieved)
    chunks = [retrieved.contexts[0].model_copy(update={"chunk_id": f"c{i}"}) for i in range(3)]
    served, cheaper = answerer.answer(
        [
            retrieved.model_copy(update={"tenant": "acme", "contexts": chunks}),
            retrieved.model_copy(update={"event_id": new_event_id(), "tenant": "globex", "contexts": chunks}),
        ]
    )
    assert (len(served.lineage.chunk_ids), served.generation.degraded_by_budget) == (3, False)
    assert (cheaper.lineage.chunk_ids, cheaper.generation.degraded_by_budget) == (["c0"], True)
    assert '"degraded_by_budget":true' in cheaper.model_dump_json(by_alias=True)  # in the sink's payload


class Spent:
    """A reader whose ``tenant_spend`` query answers ``rows``; ``closed`` is set when closed."""

    def __init__(self, rows: list[tuple[str, float]]) -> None:
        self.rows = rows
        self.closed = threading.Event()

    def query(self, sql: str, parameters: object = None, **_: object) -> QueryResult:
        return QueryResult(["tenant", "usd"], self.rows)

    def close(self) -> None:
        self.closed.set()


async def test_the_spend_watch_goes_on_after_any_failed_refresh() -> None:
    answering = Spent([("acme", 120.5)])
    readers = iter([RuntimeError("not a store error"), answering])

    def reader() -> Spent:
        found = next(readers)
        if isinstance(found, Exception):
            raise found
        return found

    watch = SpendWatch(reader, interval_s=0.01)
    running = asyncio.create_task(watch.run())
    try:
        assert await asyncio.to_thread(answering.closed.wait, 30), "the watch stopped at the first failure"
    finally:
        running.cancel()
    assert watch.spend == {"acme": 120.5}


def test_last_months_spend_is_dropped_when_the_month_turns_before_a_refresh() -> None:
    now = [datetime(2026, 12, 31, 23, 59, tzinfo=UTC)]
    watch = SpendWatch(lambda: Spent([("acme", 120.5)]), interval_s=60, clock=lambda: now[0])
    watch.refresh()
    assert watch.spend == {"acme": 120.5}
    now[0] = datetime(2027, 1, 1, 0, 1, tzinfo=UTC)  # the next refresh has not happened (or failed)
    assert watch.spend == {}, "a tenant over last month's budget is not refused into the new month"

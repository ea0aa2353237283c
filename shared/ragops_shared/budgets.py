"""Monthly budgets per tenant (``RAGOPS_BUDGETS``) and the decision a service makes with them.

A budget is USD per calendar month (UTC) and what happens once a tenant's month-to-date spend
(every stage's compute and the token bill: ``ragops_analytics.queries.tenant_spend``) reaches
it: ``refuse`` (the gateway answers new questions 429 until the month ends) or ``degrade``
(generation serves it more cheaply). Spend is read in the background
(``ragops_analytics.budgets.SpendWatch``), so the decision never waits on ClickHouse: it lags
the spend by the refresh interval, and a tenant can overshoot by what it spends meanwhile.
"""

from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field


class Budget(BaseModel):
    """USD a tenant may spend per calendar month (UTC), and what happens at the budget."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    usd_per_month: float = Field(gt=0, description="US dollars per calendar month (UTC).")
    action: Literal["refuse", "degrade"] = Field(
        description="refuse: the gateway answers new questions 429; degrade: generation serves cheaper."
    )


def month_start(now: datetime) -> datetime:
    """The first instant (UTC) of ``now``'s calendar month."""
    now = now.astimezone(UTC)
    return datetime(now.year, now.month, 1, tzinfo=UTC)


def next_month(now: datetime) -> datetime:
    """The first instant (UTC) of the calendar month after ``now``'s."""
    start = month_start(now)
    return start.replace(year=start.year + 1, month=1) if start.month == 12 else start.replace(month=start.month + 1)


def over_budget(budgets: Mapping[str, Budget], spend: Mapping[str, float], tenant: str) -> Budget | None:
    """``tenant``'s budget when its month-to-date ``spend`` (USD) reached it; None when it has no
    budget or is under it (a tenant with no spend recorded has spent 0)."""
    budget = budgets.get(tenant)
    if budget is None or spend.get(tenant, 0.0) < budget.usd_per_month:
        return None
    return budget

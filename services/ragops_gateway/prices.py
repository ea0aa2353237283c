"""Price lists at the gateway: an operator publishes what compute, tokens and storage cost, from
a date; the cost views price every stage at the list in effect when its event occurred.

The plain-function core: :func:`price_list` builds the signed-to-be ``PricesPublished`` (its
``price_list_id`` from ``ragops_schemas.ids.price_list_id``: the same list and date published
twice is one list). The adapter :func:`add_price_routes` (the HTTP API):

- ``POST /v1/prices`` (operator): ``{"effective_from"?: UTC datetime (default now), "prices":
  [{"unit", "resource"?, "usd"}], "reason"}`` -> 201 :class:`PriceListOut`; 403 outside the
  platform's tenant (prices apply platform-wide), 422 a list naming a (unit, resource) twice or
  backdated: an ``effective_from`` more than ``prices_clock_skew_s`` (default 300 s) before now
  would re-price stored costs and month-to-date spend (so budgets) on one operator's word.
- ``GET /v1/prices`` (operator, approver, auditor, analyst): every list, newest
  ``effective_from`` first, from ClickHouse's ``prices`` view. Read there, not from the topic:
  that view holds only the lists whose signature the sink's audit subscriber verified (the same
  lists the cost views price with), so what the API shows is what costs are computed with, and
  no gateway replica keeps a consumer of its own. A list shows once the sink stored it (seconds
  on the embedded default); 503 while analytics cannot answer. A caller outside the platform's
  tenant gets the lists without who published them and why.
"""

import asyncio
from collections.abc import Awaitable, Callable
from datetime import datetime, timedelta
from typing import Annotated

import structlog
from fastapi import Depends, FastAPI, HTTPException, Request, status
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from ragops_analytics import queries
from ragops_analytics.store import QueryError, Reader as AnalyticsReader, StoreUnavailable
from ragops_gateway.changes import ControlPlane, actor
from ragops_schemas import Producer
from ragops_schemas.changes import Reason
from ragops_schemas.cost import Price, PricesPublished
from ragops_schemas.envelope import UtcMillis, utc_now
from ragops_schemas.ids import new_event_id, price_list_id
from ragops_shared.identity import Principal

log = structlog.get_logger(__name__)


class PricesIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    effective_from: UtcMillis | None = Field(default=None, description="When the prices apply (UTC); default now.")
    prices: list[Price] = Field(min_length=1, max_length=1000)
    reason: Reason


class PriceListOut(BaseModel):
    price_list_id: str
    effective_from: datetime
    prices: list[Price]
    published_by: str | None = Field(description="Who published it; None for callers outside the platform's tenant.")
    reason: str | None = Field(description="Why; None for callers outside the platform's tenant.")


class PriceListRefused(Exception):
    """A list that must not be published: ``status_code`` 403 or 422, ``str()`` why."""

    def __init__(self, status_code: int, detail: str) -> None:
        self.status_code = status_code
        super().__init__(detail)


def price_list(
    principal: Principal,
    body: PricesIn,
    producer: Producer,
    *,
    platform_tenant: str,
    now: datetime,
    clock_skew: timedelta,
) -> PricesPublished:
    """The ``PricesPublished`` an operator's ``body`` publishes (unsigned: the control plane's
    publisher signs it), in effect from ``body.effective_from`` or ``now``.

    Raises:
        PriceListRefused: 403 ``principal`` is not of ``platform_tenant``; 422 a (unit, resource)
            named twice, or ``body.effective_from`` before ``now - clock_skew`` (backdated).
    """
    if principal.tenant != platform_tenant:
        raise PriceListRefused(403, f"prices are published in the platform's tenant ({platform_tenant})")
    effective_from = body.effective_from or now
    if effective_from < now - clock_skew:
        raise PriceListRefused(
            422,
            f"effective_from {effective_from.isoformat()} is more than {clock_skew.total_seconds():g} s before now: "
            "a price list applies from now on and never re-prices what already happened",
        )
    try:
        return PricesPublished(
            event_id=new_event_id(),
            producer=producer,
            tenant=principal.tenant,
            price_list_id=price_list_id([price.model_dump() for price in body.prices], effective_from),
            effective_from=effective_from,
            prices=body.prices,
            published_by=actor(principal),
            reason=body.reason,
        )
    except ValidationError as invalid:
        raise PriceListRefused(422, invalid.errors()[0]["msg"]) from None


def add_price_routes(
    app: FastAPI,
    caller: Callable[[str, str], Callable[[Request], Awaitable[Principal]]],
    plane: ControlPlane,
    reader: AnalyticsReader | None,
) -> None:
    """Add the price routes (see the module's docstring) to ``app``, each behind the guard
    ``caller`` gives for its method and path; ``plane`` publishes (signed by the gateway);
    ``reader`` is the gateway's own reader of ClickHouse (None: not configured, 503)."""
    platform = plane.settings.platform.tenant
    clock_skew = timedelta(seconds=plane.settings.prices_clock_skew_s)
    Operator = Annotated[Principal, Depends(caller("POST", "/v1/prices"))]
    Reader = Annotated[Principal, Depends(caller("GET", "/v1/prices"))]

    @app.post("/v1/prices", status_code=status.HTTP_201_CREATED, tags=["cost"])
    async def publish(body: PricesIn, principal: Operator) -> PriceListOut:
        """Publish a price list, in effect from ``effective_from`` (default now)."""
        try:
            event = price_list(
                principal, body, plane.producer, platform_tenant=platform, now=utc_now(), clock_skew=clock_skew
            )
        except PriceListRefused as refused:
            raise HTTPException(refused.status_code, str(refused)) from None
        await plane.publish(event)
        log.info("prices_published", price_list_id=event.price_list_id, by=principal.subject)
        return PriceListOut(
            price_list_id=event.price_list_id,
            effective_from=event.effective_from,
            prices=event.prices,
            published_by=event.published_by.name,
            reason=event.reason,
        )

    @app.get("/v1/prices", tags=["cost"])
    async def list_prices(principal: Reader) -> list[PriceListOut]:
        """Every signed price list, newest ``effective_from`` first."""
        if reader is None:
            raise HTTPException(status.HTTP_503_SERVICE_UNAVAILABLE, "analytics is not configured here")
        try:
            lists = await asyncio.to_thread(queries.price_lists, reader)
        except (QueryError, StoreUnavailable) as error:
            log.error("prices_unreadable", error=repr(error))
            raise HTTPException(status.HTTP_503_SERVICE_UNAVAILABLE, "analytics cannot answer now") from None
        inside = principal.tenant == platform
        return [
            PriceListOut(
                price_list_id=row.price_list_id,
                effective_from=row.effective_from,
                prices=[Price(unit=unit, resource=resource, usd=usd) for unit, resource, usd in row.prices],  # type: ignore[arg-type]
                published_by=row.published_by if inside else None,
                reason=row.reason if inside else None,
            )
            for row in lists
        ]

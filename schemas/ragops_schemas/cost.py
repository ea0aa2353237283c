"""Prices (schema version 1): what compute, tokens and storage cost, as versioned facts.

An operator publishes a price list (``POST /v1/prices``; the gateway signs it): every price the
platform uses to cost a stage, each in USD per unit, in effect from ``effective_from``. The cost
views price each event at the list in effect when the event occurred (a later list never
re-prices the past), so a price change is an event with a date, not an edit. The sink keeps
every list (the ``prices`` table); the latest list whose ``effective_from`` is at or before an
event's time is the one that prices it.

Units: ``cpu_core_hour`` and ``gpu_hour`` price :class:`~ragops_schemas.envelope.ComputeUsage`
(``seconds x units / 3600``); ``input_tokens_million`` and ``output_tokens_million`` price a
model's tokens (``model`` names the ``gen_ai.request.model``; an API backend's bill, and the
way hosted scenarios are costed); ``storage_gib_month`` prices stored bytes (ClickHouse,
vectors, topics).
"""

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from ragops_schemas.changes import ChangeActor, Reason
from ragops_schemas.envelope import SignedEvent, UtcMillis
from ragops_schemas.topics import Topic

PriceUnit = Literal["cpu_core_hour", "gpu_hour", "input_tokens_million", "output_tokens_million", "storage_gib_month"]


class Price(BaseModel):
    """One price: USD per ``unit`` of ``resource``."""

    model_config = ConfigDict(frozen=True, extra="ignore")

    unit: PriceUnit
    resource: str = Field(
        default="*",
        min_length=1,
        max_length=256,
        description="What it prices: a model name (gen_ai.request.model) for token units, a GPU kind "
        '(e.g. "H100") for gpu_hour, or "*" for every resource of the unit. The most specific entry wins.',
    )
    usd: float = Field(ge=0, le=1e6, description="US dollars per unit.")


class PricesPublished(SignedEvent):
    """A price list, in effect from ``effective_from`` until a later list's (signed by the
    gateway: an operator published it)."""

    TOPIC = Topic.PRICES_PUBLISHED
    event_type: Literal["cost.prices_published"] = "cost.prices_published"
    price_list_id: str = Field(
        pattern=r"^prices-[0-9a-f]{20}$",
        description="ragops_schemas.ids.derived id of the list's content and effective_from: "
        "publishing the same list twice is one list.",
        examples=["prices-0c9d2e1f4a5b6c7d8e9f"],
    )
    effective_from: UtcMillis = Field(description="When these prices start to apply (UTC).")
    prices: list[Price] = Field(min_length=1, max_length=1000)
    published_by: ChangeActor
    reason: Reason

    @model_validator(mode="after")
    def _one_price_each(self) -> "PricesPublished":
        seen = [(price.unit, price.resource) for price in self.prices]
        if len(set(seen)) != len(seen):
            raise ValueError("a price list names each (unit, resource) once")
        return self

    @property
    def key(self) -> bytes:
        return self.price_list_id.encode()


COST_EVENT_TYPES: tuple[type[SignedEvent], ...] = (PricesPublished,)

__all__ = ["COST_EVENT_TYPES", "Price", "PriceUnit", "PricesPublished"]

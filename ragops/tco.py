"""``ragops tco``: what running this platform would cost per day in three scenarios, from the
throughput this installation measured and the price list in effect.

Every figure is derived from two inputs and a few stated assumptions, all printed:

- measured (:func:`ragops_analytics.queries.cost_measurements`): each stage's core- or
  GPU-seconds per answer and per document (the ``compute`` the services put on their events),
  mean tokens per answer, stored payload bytes per day, with their sample sizes;
- priced (:func:`ragops_analytics.queries.price_lists`): the newest signed list in effect now.

Scenarios (:func:`total_cost`):

- ``embedded CPU``: every stage as measured here (CPU core-seconds at ``cpu_core_hour``).
- ``GPU node``: the model stages (:data:`GPU_SPEEDUPS`: embedding, generation) on one GPU, their
  core-seconds divided by the stage's speed-up factor and priced at ``gpu_hour`` per busy
  second (a GPU shared or rented by the second; a dedicated node costs 24 x ``gpu_hour`` a day
  whatever the volume: printed as a note); the other stages on CPU as measured.
- ``hosted API``: generation by a hosted model (its token prices), every other stage as measured.

Storage in every scenario: the measured payload bytes per day scaled to the volume, kept for
the retention of ``events`` (:data:`ragops_analytics.queries.DEFAULT_RETENTION_DAYS`), priced at
``storage_gib_month`` (steady state: bytes per day x retention days, per month / 30).
"""

import tomllib
from dataclasses import asdict, dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from ragops_analytics.queries import CostMeasurements, PriceListRow

GIB = 1024**3
DAYS_PER_MONTH = 30


@dataclass(frozen=True)
class Speedup:
    """How many times more work one GPU-second does than one CPU core-second for ``stage``."""

    stage: str
    factor: float
    source: str


GPU_SPEEDUPS: tuple[Speedup, ...] = (
    Speedup(
        "generation",
        3012 / 32.7,
        "/work/shared/DESIGN.md section 4: SmolLM2-135M shape, H200 bf16 batch 64 3,012 tokens/s vs "
        "CPU 1 thread batch 8 32.7 tokens/s",
    ),
    Speedup(
        "embedding",
        2150 / (14.8 / 2),
        "/work/shared/DESIGN.md section 4: all-MiniLM-L6-v2 on H200 bounded by one host's fast tokenizer, "
        "2,150 chunks/s, vs CPU 14.8 chunks/s on 2 threads",
    ),
)
"""The default speed-ups (measured shapes, not this installation's GPU: override them)."""


@dataclass(frozen=True)
class Scenario:
    """One scenario's cost per day in USD, split by what is paid for."""

    name: str
    compute_usd_per_day: float
    token_usd_per_day: float
    storage_usd_per_day: float
    usd_per_day: float
    usd_per_month: float
    usd_per_answer: float
    notes: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class Tco:
    """The scenarios and every assumption they rest on (see the module's docstring)."""

    answers_per_day: float
    answers_per_day_source: str
    documents_per_day: float
    price_list_id: str
    prices: dict[str, float]
    measured: dict[str, Any]
    speedups: list[Speedup]
    hosted_model: str
    retention_days: int
    scenarios: list[Scenario]

    def as_json(self) -> dict[str, Any]:
        return asdict(self)


def _price(prices: PriceListRow, unit: str, resource: str = "*") -> float:
    """USD per ``unit`` of ``resource`` in the list (the resource's own entry, else ``*``; 0 when
    the list has neither: a unit it does not price costs nothing under it)."""
    entries = {(u, r): usd for u, r, usd in prices.prices}
    return entries.get((unit, resource), entries.get((unit, "*"), 0.0))


def measured_rate(measured: CostMeasurements) -> tuple[float, float]:
    """(answers per day, documents per day) measured: counts over the span from the first to the
    last answer, at least one day (a short run is not extrapolated to a day's volume)."""
    if measured.first_answer is None or measured.last_answer is None:
        return 0.0, float(measured.documents)
    span_days = max((measured.last_answer - measured.first_answer).total_seconds() / 86400, 1.0)
    return measured.answers / span_days, measured.documents / span_days


def total_cost(
    measured: CostMeasurements,
    prices: PriceListRow,
    *,
    answers_per_day: float | None,
    documents_per_day: float | None,
    speedups: tuple[Speedup, ...] = GPU_SPEEDUPS,
    hosted_model: str,
    retention_days: int,
) -> Tco:
    """The three scenarios at ``answers_per_day`` (None: the measured rate) and
    ``documents_per_day`` (None: measured), priced at ``prices``.

    Raises:
        ValueError: no answer was measured (nothing to scale from).
    """
    if measured.answers == 0:
        raise ValueError("no answers measured in the window: ask some questions first (ragops ask, make demo)")
    rate, document_rate = measured_rate(measured)
    answers = rate if answers_per_day is None else answers_per_day
    documents = document_rate if documents_per_day is None else documents_per_day
    cpu, gpu = _price(prices, "cpu_core_hour"), _price(prices, "gpu_hour")
    token_in = _price(prices, "input_tokens_million", hosted_model)
    token_out = _price(prices, "output_tokens_million", hosted_model)
    storage_price = _price(prices, "storage_gib_month")
    factors = {speedup.stage: speedup.factor for speedup in speedups}

    # Unit-seconds per day of each (stage, device) at the asked volume.
    per_day: dict[tuple[str, str], float] = {}
    per_answer: dict[str, dict[str, float]] = {}
    for usage in measured.stages:
        count = measured.answers if usage.scope == "answer" else max(measured.documents, 1)
        volume = answers if usage.scope == "answer" else documents
        key = (usage.stage, usage.device)
        per_day[key] = per_day.get(key, 0.0) + usage.unit_seconds / count * volume
        per_answer.setdefault(f"{usage.stage}/{usage.device}/{usage.scope}", {}).update(
            {"unit_seconds_each": usage.unit_seconds / count, "events": usage.events}
        )

    def compute(seconds: dict[tuple[str, str], float]) -> float:
        return sum(s / 3600 * (gpu if device == "cuda" else cpu) for (_, device), s in seconds.items())

    bytes_per_day = measured.stored_bytes / max(measured.storage_days, 1) * (answers / rate if rate else 1.0)
    storage = bytes_per_day * retention_days / GIB * storage_price / DAYS_PER_MONTH

    on_gpu: dict[tuple[str, str], float] = {}
    for (stage, device), seconds in per_day.items():
        moved = device == "cpu" and stage in factors
        key = (stage, "cuda" if moved else device)
        on_gpu[key] = on_gpu.get(key, 0.0) + (seconds / factors[stage] if moved else seconds)
    hosted = {key: seconds for key, seconds in per_day.items() if key[0] != "generation"}
    tokens = answers * (measured.mean_input_tokens * token_in + measured.mean_output_tokens * token_out) / 1e6

    def scenario(name: str, compute_usd: float, token_usd: float, notes: list[str]) -> Scenario:
        day = compute_usd + token_usd + storage
        return Scenario(
            name, compute_usd, token_usd, storage, day, day * DAYS_PER_MONTH, day / answers if answers else 0.0, notes
        )

    scenarios = [
        scenario("embedded CPU", compute(per_day), 0.0, ["every stage as measured on this installation"]),
        scenario(
            "GPU node",
            compute(on_gpu),
            0.0,
            [
                f"{', '.join(sorted(factors))} on one GPU, billed per busy second",
                f"a dedicated GPU node costs {24 * gpu:.2f} USD/day at any volume",
            ],
        ),
        scenario(
            "hosted API",
            compute(hosted),
            tokens,
            [f"generation by {hosted_model} at its token prices; the other stages as measured"],
        ),
    ]
    return Tco(
        answers_per_day=answers,
        answers_per_day_source="measured" if answers_per_day is None else "given",
        documents_per_day=documents,
        price_list_id=prices.price_list_id,
        prices={
            "cpu_core_hour": cpu,
            "gpu_hour": gpu,
            "storage_gib_month": storage_price,
            f"input_tokens_million {hosted_model}": token_in,
            f"output_tokens_million {hosted_model}": token_out,
        },
        measured={
            "since": measured.since.isoformat(),
            "answers": measured.answers,
            "answers_per_day": rate,
            "documents": measured.documents,
            "documents_per_day": document_rate,
            "stages": per_answer,
            "mean_input_tokens": measured.mean_input_tokens,
            "mean_output_tokens": measured.mean_output_tokens,
            "stored_bytes": measured.stored_bytes,
            "storage_days": measured.storage_days,
            "stored_bytes_per_day_at_volume": bytes_per_day,
        },
        speedups=list(speedups),
        hosted_model=hosted_model,
        retention_days=retention_days,
        scenarios=scenarios,
    )


def in_effect(lists: list[PriceListRow], now: datetime) -> PriceListRow | None:
    """The list in effect at ``now``: the newest whose ``effective_from`` is not after it
    (``lists`` newest first, as :func:`~ragops_analytics.queries.price_lists` returns them)."""
    return next((one for one in lists if one.effective_from <= now), None)


def price_list_body(path: Path, reason: str | None = None) -> dict[str, object]:
    """The ``POST /v1/prices`` body of the TOML price list in ``path`` (``deploy/prices/default.toml``
    shows the format): its ``prices``, ``reason`` (``reason`` overrides it) and, when the file
    gives one, ``effective_from``.

    Raises:
        OSError: the file cannot be read.
        tomllib.TOMLDecodeError: it is not TOML.
    """
    listed = tomllib.loads(path.read_text(encoding="utf-8"))
    body: dict[str, object] = {"prices": listed.get("prices", []), "reason": reason or listed.get("reason", "")}
    if "effective_from" in listed:
        body["effective_from"] = str(listed["effective_from"])
    return body

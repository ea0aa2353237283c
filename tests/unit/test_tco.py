"""`ragops tco`'s arithmetic on fixed inputs; the expected figures are worked out by hand in
the comments."""

from datetime import UTC, datetime

import pytest

from ragops.tco import GIB, Speedup, in_effect, total_cost
from ragops_analytics.queries import CostMeasurements, PriceListRow, StageUsage

T0 = datetime(2026, 12, 1, tzinfo=UTC)
MEASURED = CostMeasurements(
    since=T0,
    answers=10,
    first_answer=T0,
    last_answer=datetime(2026, 12, 3, tzinfo=UTC),  # 2 days: 5 answers and 2 documents a day
    documents=4,
    stages=[
        StageUsage("generation", "cpu", "answer", 10, 3600.0),  # 360 core-seconds an answer
        StageUsage("retrieval", "cpu", "answer", 10, 36.0),  # 3.6 an answer
        StageUsage("embedding", "cpu", "document", 4, 720.0),  # 180 a document
    ],
    mean_input_tokens=300.0,
    mean_output_tokens=50.0,
    stored_bytes=2 * GIB,
    storage_days=2,  # 1 GiB a day at 5 answers a day
)
PRICES = PriceListRow(
    "prices-00000000000000000000",
    T0,
    T0,
    "olga",
    "test",
    [
        ("cpu_core_hour", "*", 0.1),
        ("gpu_hour", "*", 3.6),
        ("input_tokens_million", "hosted", 1.0),
        ("output_tokens_million", "hosted", 2.0),
        ("storage_gib_month", "*", 0.3),
    ],
)
SPEEDUPS = (Speedup("generation", 10.0, "test"), Speedup("embedding", 100.0, "test"))


def test_three_scenarios_by_hand() -> None:
    tco = total_cost(
        MEASURED, PRICES, answers_per_day=10, documents_per_day=None, speedups=SPEEDUPS, hosted_model="hosted",
        retention_days=30,
    )  # fmt: skip
    assert (tco.answers_per_day, tco.documents_per_day, tco.measured["answers_per_day"]) == (10, 2.0, 5.0)
    cpu, gpu, hosted = tco.scenarios
    # Storage: 1 GiB/day x (10/5) = 2 GiB/day, kept 30 days = 60 GiB x 0.3 USD/GiB-month / 30 = 0.6 USD/day.
    assert [s.storage_usd_per_day for s in tco.scenarios] == pytest.approx([0.6] * 3)
    # CPU: generation 3600 s + retrieval 36 s + embedding 360 s a day = 1.11 core-hours x 0.1 = 0.111.
    assert cpu.compute_usd_per_day == pytest.approx(0.111)
    assert (cpu.usd_per_day, cpu.usd_per_answer, cpu.usd_per_month) == pytest.approx((0.711, 0.0711, 21.33))
    # GPU: generation 3600/10 = 360 GPU-s = 0.36, embedding 360/100 = 3.6 GPU-s = 0.0036, retrieval 0.001.
    assert gpu.compute_usd_per_day == pytest.approx(0.3646)
    assert "86.40 USD/day" in gpu.notes[1]  # 24 h x 3.6
    # Hosted: retrieval 0.001 + embedding 0.01; tokens 10 x (300 x 1 + 50 x 2) / 1e6 = 0.004.
    assert (hosted.compute_usd_per_day, hosted.token_usd_per_day) == pytest.approx((0.011, 0.004))
    assert hosted.usd_per_day == pytest.approx(0.615)


def test_the_measured_rate_is_the_default_and_an_empty_window_is_refused() -> None:
    tco = total_cost(
        MEASURED, PRICES, answers_per_day=None, documents_per_day=None, hosted_model="hosted", retention_days=30
    )
    assert (tco.answers_per_day, tco.answers_per_day_source) == (5.0, "measured")
    assert tco.scenarios[0].storage_usd_per_day == pytest.approx(0.3)  # 1 GiB/day x 30 d x 0.3 / 30
    empty = CostMeasurements(T0, 0, None, None, 0, [], 0.0, 0.0, 0, 0)
    with pytest.raises(ValueError, match="no answers"):
        total_cost(empty, PRICES, answers_per_day=None, documents_per_day=None, hosted_model="x", retention_days=1)


def test_the_list_in_effect_is_the_newest_not_in_the_future() -> None:
    later = PriceListRow("prices-11111111111111111111", datetime(2027, 1, 1, tzinfo=UTC), T0, "olga", "t", [])
    assert in_effect([later, PRICES], datetime(2026, 12, 5, tzinfo=UTC)) is PRICES
    assert in_effect([later, PRICES], datetime(2027, 1, 2, tzinfo=UTC)) is later
    assert in_effect([later], T0) is None

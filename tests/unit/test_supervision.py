"""The supervisor's restart policy on an injected clock: backoff, its reset, the sliding budget."""

import random

import pytest

from ragops.supervision import Backoff, RestartBudget, RestartPolicy, SupervisorSettings


def test_backoff_grows_by_its_factor_up_to_the_cap() -> None:
    backoff = Backoff(initial_s=0.5, factor=2, cap_s=5)
    assert [backoff.delay(n) for n in range(6)] == [0.5, 1, 2, 4, 5, 5]
    assert backoff.delay(10_000) == 5, "a long crash loop stays at the cap (no float overflow)"


def test_jitter_spreads_delays_within_its_fraction() -> None:
    backoff = Backoff(initial_s=10, factor=2, cap_s=100, jitter=0.1)
    assert backoff.delay(0, draw=0.0) == pytest.approx(9)
    assert backoff.delay(0, draw=0.5) == pytest.approx(10)
    assert backoff.delay(0, draw=0.999999) == pytest.approx(11, abs=1e-4)


def test_the_budget_slides_with_time() -> None:
    budget = RestartBudget(max_restarts=2, window_s=60)
    for now in (0, 10):
        assert budget.allows(now)
        budget.record(now)
    assert not budget.allows(59.9), "a third restart within 60 s"
    assert budget.allows(60), "the first restart left the window"
    assert budget.used(70) == 0


def policy(reset_after_s: float, budget_restarts: int, budget_window_s: float) -> RestartPolicy:
    settings = SupervisorSettings(
        backoff_initial_s=1,
        backoff_factor=2,
        backoff_cap_s=8,
        backoff_jitter=0,
        reset_after_s=reset_after_s,
        budget_restarts=budget_restarts,
        budget_window_s=budget_window_s,
    )
    return RestartPolicy.from_settings(settings, rng=random.Random(0))


def test_consecutive_crashes_wait_longer_and_a_long_run_resets_the_backoff() -> None:
    child = policy(reset_after_s=30, budget_restarts=100, budget_window_s=600)
    now, delays = 0.0, []
    for _ in range(5):
        child.started(now)
        delay = child.exited(now + 1, 1)  # crashes one second after each start
        assert delay is not None
        delays.append(delay)
        now += 1 + delay
    assert delays == [1, 2, 4, 8, 8]
    child.started(now)
    assert child.exited(now + 30, 1) == 1, "it ran 30 s: the next restart is quick again"


def test_the_exit_beyond_the_window_budget_is_final_but_spread_exits_are_not() -> None:
    child = policy(reset_after_s=1000, budget_restarts=3, budget_window_s=100)
    for now in (0, 10, 20):
        child.started(now)
        assert child.exited(now + 1, 137) is not None
    child.started(30)
    assert child.exited(31, 1) is None, "a fourth exit within 100 s"
    assert list(child.exit_codes) == [137, 137, 137, 1]

    spread = policy(reset_after_s=1000, budget_restarts=3, budget_window_s=100)
    for now in range(0, 1000, 40):  # an exit every 40 s: never more than 3 in 100 s
        spread.started(now)
        assert spread.exited(now + 1, 1) is not None


def test_settings_come_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RAGOPS_SUPERVISOR_BUDGET_RESTARTS", "7")
    monkeypatch.setenv("RAGOPS_SUPERVISOR_BACKOFF_CAP_S", "12.5")
    settings = SupervisorSettings()
    assert (settings.budget_restarts, settings.backoff_cap_s) == (7, 12.5)

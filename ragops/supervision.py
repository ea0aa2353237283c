"""Restart policy of the embedded platform's supervisor, as plain objects with an injected
clock (every method takes ``now``, seconds on a monotonic clock), so the policy is tested
without processes or sleeping.

A child that exits is started again after an exponential backoff (``initial * factor**n``,
capped, with jitter), where ``n`` counts its consecutive short-lived runs: a run that lasted
``reset_after_s`` starts the count again. Each child may be restarted at most
``budget_restarts`` times within any ``budget_window_s`` (a sliding window, not the life of
the platform); the exit beyond that is final and stops the platform."""

import os
import random
import shutil
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict


class SupervisorSettings(BaseSettings):
    """How ``ragops up`` (and every :class:`~ragops.platform.EmbeddedPlatform`) restarts the
    broker and the services (env prefix ``RAGOPS_SUPERVISOR_``)."""

    model_config = SettingsConfigDict(env_prefix="RAGOPS_SUPERVISOR_", extra="ignore")

    backoff_initial_s: float = Field(default=0.5, ge=0, description="Delay before the first restart.")
    backoff_factor: float = Field(default=2.0, ge=1, description="Each consecutive restart waits this much longer.")
    backoff_cap_s: float = Field(default=30.0, ge=0, description="Longest delay before a restart.")
    backoff_jitter: float = Field(
        default=0.1, ge=0, le=1, description="Delays vary by up to this fraction, so children do not restart in step."
    )
    reset_after_s: float = Field(
        default=60.0, ge=0, description="A run at least this long resets the backoff to its initial delay."
    )
    budget_restarts: int = Field(default=5, ge=0, description="Restarts allowed per child within the window.")
    budget_window_s: float = Field(default=300.0, gt=0, description="The sliding window of the restart budget.")
    reconnect_grace_s: float = Field(
        default=60.0,
        gt=0,
        description="After a broker restart, a service whose consumer groups have no member this long is restarted.",
    )
    poll_interval_s: float = Field(default=0.2, gt=0, description="How often `ragops up` looks at its children.")
    log_max_bytes: int = Field(
        default=20 * 1024 * 1024,
        gt=0,
        description="A service's log (<data_dir>/logs/<service>.log) past this size is moved to <service>.log.1 "
        "(replacing the previous one): each service keeps at most about twice this on disk.",
    )


@dataclass(frozen=True)
class Backoff:
    """Exponential backoff: ``delay(n)`` for the ``n``-th consecutive restart (0-based) is
    ``min(cap_s, initial_s * factor**n)`` scaled by ``1 + jitter * (2 * draw - 1)`` where
    ``draw`` is uniform in [0, 1); seconds."""

    initial_s: float
    factor: float
    cap_s: float
    jitter: float = 0.0

    def delay(self, attempt: int, draw: float = 0.5) -> float:
        try:
            base = min(self.cap_s, self.initial_s * self.factor**attempt)
        except OverflowError:  # a long crash loop: factor**attempt is past any float
            base = self.cap_s
        return base * (1 + self.jitter * (2 * draw - 1))


@dataclass
class RestartBudget:
    """At most ``max_restarts`` restarts within any ``window_s`` seconds."""

    max_restarts: int
    window_s: float
    _times: deque[float] = field(default_factory=deque, repr=False)

    def used(self, now: float) -> int:
        """Restarts recorded within the window ending at ``now``."""
        while self._times and self._times[0] <= now - self.window_s:
            self._times.popleft()
        return len(self._times)

    def allows(self, now: float) -> bool:
        return self.used(now) < self.max_restarts

    def record(self, now: float) -> None:
        self._times.append(now)


@dataclass
class RestartPolicy:
    """The restart decisions for one child (a service or the broker).

    Call :meth:`started` when its process starts and :meth:`exited` when it is found dead;
    :meth:`exited` returns the delay before the next start, or ``None`` when the budget is
    spent (:attr:`exit_codes` then tells what happened)."""

    backoff: Backoff
    budget: RestartBudget
    reset_after_s: float
    rng: random.Random = field(default_factory=random.Random, repr=False)
    exit_codes: deque[int | None] = field(default_factory=lambda: deque(maxlen=5))
    # Consecutive runs shorter than reset_after_s: the backoff exponent.
    failures: int = 0
    started_at: float | None = None

    @classmethod
    def from_settings(cls, settings: SupervisorSettings, rng: random.Random | None = None) -> "RestartPolicy":
        return cls(
            backoff=Backoff(
                settings.backoff_initial_s, settings.backoff_factor, settings.backoff_cap_s, settings.backoff_jitter
            ),
            budget=RestartBudget(settings.budget_restarts, settings.budget_window_s),
            reset_after_s=settings.reset_after_s,
            rng=rng or random.Random(),
        )

    def started(self, now: float) -> None:
        self.started_at = now

    def exited(self, now: float, code: int | None) -> float | None:
        """Record an exit at ``now`` with status ``code`` (``None``: not a process exit, such
        as a service that did not reconnect). Returns seconds to wait before the restart,
        or ``None`` if the restart budget of the window is spent."""
        self.exit_codes.append(code)
        if self.started_at is not None and now - self.started_at >= self.reset_after_s:
            self.failures = 0
        self.started_at = None
        if not self.budget.allows(now):
            return None
        self.budget.record(now)
        delay = self.backoff.delay(self.failures, self.rng.random())
        self.failures += 1
        return delay


def bound_log(path: Path, max_bytes: int) -> bool:
    """Rotate ``path`` if it is longer than ``max_bytes``: its content moves to ``<path>.1``
    (replacing it) and ``path`` is truncated in place (logrotate's ``copytruncate``: the service
    keeps its open descriptor, which appends, so its next line starts the new file; lines written
    between the copy and the truncation are lost). Returns whether it rotated; a missing file
    does not."""
    try:
        if path.stat().st_size <= max_bytes:
            return False
    except FileNotFoundError:
        return False
    shutil.copyfile(path, path.with_name(path.name + ".1"))
    os.truncate(path, 0)
    return True

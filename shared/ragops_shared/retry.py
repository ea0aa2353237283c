"""How a consumer retries without spinning: a bounded exponential backoff, which errors are
transient (worth retrying in place), and bisection of a failing batch down to the records
that fail."""

import errno
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import TypeVar

import httpx
from aiokafka.errors import KafkaConnectionError, KafkaTimeoutError, NodeNotReadyError, RequestTimedOutError

T = TypeVar("T")

# Errors of the network or of a dependency that is briefly away: the same call may succeed
# a moment later. TimeoutError and ConnectionError (resets, refusals) are OSErrors too.
TRANSIENT_ERRORS: tuple[type[BaseException], ...] = (
    TimeoutError,
    ConnectionError,
    httpx.TransportError,
    KafkaConnectionError,
    KafkaTimeoutError,
    RequestTimedOutError,
    NodeNotReadyError,
)
# Other OSErrors are transient only for these causes: a missing file or a denied permission
# stays missing or denied.
_TRANSIENT_ERRNOS = frozenset(
    {errno.ETIMEDOUT, errno.EHOSTUNREACH, errno.ENETUNREACH, errno.ENETDOWN, errno.EAGAIN, errno.EPIPE}
)


def is_transient(error: BaseException) -> bool:
    """Whether ``error`` is a timeout or a connection failure (:data:`TRANSIENT_ERRORS`, or an
    ``OSError`` with a network errno) rather than a fault of the record or the code."""
    return isinstance(error, TRANSIENT_ERRORS) or (isinstance(error, OSError) and error.errno in _TRANSIENT_ERRNOS)


@dataclass(frozen=True)
class Backoff:
    """A bounded exponential backoff: ``attempts`` tries in all, the n-th retry after
    ``min(initial_s * multiplier**(n-1), max_s)`` seconds."""

    attempts: int = 4
    initial_s: float = 0.5
    multiplier: float = 2.0
    max_s: float = 10.0

    def __post_init__(self) -> None:
        if self.attempts < 1 or self.initial_s < 0 or self.multiplier < 1 or self.max_s < 0:
            raise ValueError(f"invalid backoff {self}: attempts >= 1, delays >= 0, multiplier >= 1")

    def delays(self) -> list[float]:
        """Seconds to wait before each retry (``attempts - 1`` of them)."""
        return [min(self.initial_s * self.multiplier**n, self.max_s) for n in range(self.attempts - 1)]


async def bisect(
    items: Sequence[T],
    error: Exception,
    attempt: Callable[[Sequence[T]], Awaitable[object]],
    give_up: Callable[[T, Exception], Awaitable[object]],
) -> int:
    """Find the items of a batch that failed with ``error``: each half is tried with
    ``attempt`` and split again while it fails, down to single items, which go to
    ``give_up`` with their own error. Halves run in order (partition order is kept).

    Terminates: every call is on a strictly smaller slice, so a batch of n items with k
    failing ones costs at most ``2·k·log2(n)`` attempts, whatever ``attempt`` does. Returns
    the number of attempts made."""
    if len(items) == 1:
        await give_up(items[0], error)
        return 0
    calls = 0
    middle = len(items) // 2
    for half in (items[:middle], items[middle:]):
        calls += 1
        try:
            await attempt(half)
        except Exception as failure:  # noqa: BLE001 - narrowed down by splitting again
            calls += await bisect(half, failure, attempt, give_up)
    return calls

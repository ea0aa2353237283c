"""The pure parts of poison-record handling: the backoff schedule, what counts as transient,
bisection (it finds the failing items and always ends), dead-letter sizing and consumer
progress (age and attempts across redeliveries)."""

import base64
import errno
import json
import math
import uuid
from collections.abc import Sequence

import httpx
import pytest
from aiokafka import ConsumerRecord
from aiokafka.errors import KafkaConnectionError

from ragops_schemas import MessageDeadLettered, Producer
from ragops_shared.dead_letters import (
    REFERENCE_PREFIX_BYTES,
    REFERENCE_REASON_CHARS,
    dead_letter_for,
    header_problem,
    headers_summary,
)
from ragops_shared.ops import ConsumerProgress
from ragops_shared.retry import Backoff, bisect, is_transient

PRODUCER = Producer(name="test", version="0")
MiB = 1024 * 1024


def _record(value: bytes, headers: Sequence[tuple[str, bytes | None]] = (), offset: int = 7) -> ConsumerRecord:
    return ConsumerRecord("t", 1, offset, 0, 0, b"key", value, None, 3, len(value), list(headers))


def test_the_backoff_doubles_up_to_its_cap_and_stops() -> None:
    assert Backoff(attempts=6, initial_s=0.5, max_s=3.0).delays() == [0.5, 1.0, 2.0, 3.0, 3.0]
    assert Backoff(attempts=1).delays() == []
    with pytest.raises(ValueError, match="attempts >= 1"):
        Backoff(attempts=0)


@pytest.mark.parametrize(
    ("error", "transient"),
    [
        (TimeoutError(), True),
        (ConnectionResetError(), True),
        (OSError(errno.EHOSTUNREACH, "no route to host"), True),
        (httpx.ReadTimeout("slow"), True),
        (httpx.ConnectError("refused"), True),
        (KafkaConnectionError(), True),
        (FileNotFoundError(errno.ENOENT, "gone"), False),
        (ValueError("bad input"), False),
        (RuntimeError("bug"), False),
    ],
)
def test_only_timeouts_and_connection_failures_are_transient(error: BaseException, transient: bool) -> None:
    assert is_transient(error) is transient


@pytest.mark.parametrize(("size", "failing"), [(1, {0}), (8, {3}), (8, {0, 7}), (13, {2, 3, 11}), (32, set(range(32)))])
async def test_bisection_finds_exactly_the_failing_items_in_bounded_attempts(size: int, failing: set[int]) -> None:
    items = list(range(size))
    passed: list[int] = []
    given_up: list[int] = []

    async def attempt(batch: Sequence[int]) -> None:
        if failing & set(batch):
            raise RuntimeError(f"fails: {sorted(failing & set(batch))}")
        passed.extend(batch)

    async def give_up(item: int, error: Exception) -> None:
        assert str(item) in str(error), "each item is given up with the error of its own attempt"
        given_up.append(item)

    calls = await bisect(items, RuntimeError(f"fails: {sorted(failing)}"), attempt, give_up)
    assert given_up == sorted(failing)
    assert sorted(passed) == sorted(set(items) - failing) and len(passed) == size - len(failing), "each good one once"
    assert passed == sorted(passed), "in order"
    assert calls <= 2 * size - 2 and calls <= 2 * len(failing) * max(1, math.ceil(math.log2(size)))


async def test_bisection_ends_even_when_every_attempt_fails() -> None:
    given_up: list[int] = []

    async def attempt(batch: Sequence[int]) -> None:
        raise RuntimeError("always")

    async def give_up(item: int, error: Exception) -> None:
        given_up.append(item)

    assert await bisect(list(range(100)), RuntimeError("always"), attempt, give_up) == 198
    assert given_up == list(range(100))


def _letter(record: ConsumerRecord, reason: str = "broken", max_bytes: int = 16 * MiB) -> MessageDeadLettered:
    return dead_letter_for(
        record,
        event_id=uuid.uuid4(),
        producer=PRODUCER,
        consumer_group="g",
        error_type="processing",
        reason=reason,
        max_bytes=max_bytes,
    )


def test_a_dead_letter_that_fits_carries_the_whole_value() -> None:
    letter = _letter(_record(b'{"not": "valid"}', [("traceparent", b"00-abc")]))
    assert not letter.truncated and base64.b64decode(letter.original_value_b64) == b'{"not": "valid"}'
    assert (letter.original_size, letter.original_headers) == (16, {"traceparent": "00-abc"})


def test_a_dead_letter_too_large_for_the_broker_is_a_reference_that_fits() -> None:
    # 15 MiB base64-encoded is 20 MiB: above the 16 MiB limit (issue 12, item 1).
    value = b"x" * (15 * MiB)
    letter = _letter(_record(value), reason="r" * 100_000)
    assert letter.truncated and letter.original_size == len(value)
    assert base64.b64decode(letter.original_value_b64) == value[:REFERENCE_PREFIX_BYTES]
    assert len(letter.reason) < REFERENCE_REASON_CHARS + 100 and letter.reason.endswith("<100000 characters>")
    assert (letter.original_topic, letter.partition, letter.offset) == ("t", 1, 7)
    assert len(letter.model_dump_json()) < 100 * 1024


def test_the_size_limit_counts_the_base64_growth() -> None:
    value = b"y" * 900_000  # fits under 1 MB raw, not once base64-encoded (1.2 MB)
    assert _letter(_record(value), max_bytes=1_000_000).truncated
    assert not _letter(_record(value), max_bytes=1_300_000).truncated


def test_unreadable_headers_are_named_and_summarised_never_decoded_blindly() -> None:
    record = _record(b"{}", [("ok", b"fine"), ("bad", b"\xff\xfe"), ("null", None), ("long", b"z" * 1000)])
    assert header_problem(record) is not None and header_problem(record).startswith("invalid header 'bad'")
    assert header_problem(_record(b"{}", [("ok", b"fine"), ("null", None)])) is None
    summary = headers_summary(record)
    assert summary["bad"] == "<2 bytes, not UTF-8>" and summary["null"] == "<null>" and summary["ok"] == "fine"
    assert summary["long"].endswith("<1000 bytes>") and len(summary["long"]) < 300
    json.dumps(summary)


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_a_redelivered_batch_keeps_ageing_and_counts_its_attempts() -> None:
    clock = Clock()
    progress = ConsumerProgress("g", "t", stuck_after_s=300, clock=clock)
    assert (progress.age_s(), progress.attempts, progress.stuck()) == (0.0, 0, False)
    batch = [("t", 0, 5), ("t", 0, 6), ("t", 1, 9)]
    progress.started(batch)
    clock.now += 200
    progress.started(batch)  # nacked and fetched again: the same first offsets
    progress.retried()
    clock.now += 200
    assert (progress.age_s(), progress.attempts, progress.stuck()) == (400.0, 3, True)
    progress.finished()
    assert (progress.age_s(), progress.attempts, progress.stuck()) == (0.0, 0, False)


def test_a_new_batch_starts_fresh() -> None:
    clock = Clock()
    progress = ConsumerProgress("g", "t", stuck_after_s=300, clock=clock)
    progress.started([("t", 0, 5)])
    progress.finished()
    clock.now += 1000
    progress.started([("t", 0, 6)])
    clock.now += 10
    assert (progress.age_s(), progress.attempts) == (10.0, 1)
    assert progress.report() == {
        "group": "g",
        "topic": "t",
        "oldest_unprocessed_age_s": 10.0,
        "batch_attempts": 1,
        "stuck_after_s": 300,
        "stuck": False,
    }

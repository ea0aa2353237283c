"""The platform supervisor with real processes: a service killed again and again is restarted
after growing delays until its window budget is spent, and a broker killed with ``kill -9``
is restarted (with its topics) while the service keeps consuming without a restart.

The first test moves the supervisor's clock by hand, so no delay is waited for."""

import asyncio
import os
import signal
import time
import uuid
from pathlib import Path

import pytest

from ragops.platform import BROKER, EmbeddedPlatform, PlatformError
from ragops.supervision import SupervisorSettings
from ragops_schemas import AnswerGenerated, FeedbackRecorded, FeedbackSubmitted, MessageDeadLettered, Producer, utc_now
from tests.helpers import example
from tests.integration.services import produce_raw, wait_for, watching

pytestmark = pytest.mark.kafka
PRODUCER = Producer(name="product", version="1")


class Clock:
    """A monotonic clock that only moves when the test says so."""

    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_a_crashing_service_is_restarted_with_growing_delays_until_its_window_budget_is_spent(tmp_path: Path) -> None:
    clock = Clock()
    supervisor = SupervisorSettings(
        backoff_initial_s=1,
        backoff_factor=2,
        backoff_cap_s=60,
        backoff_jitter=0,
        reset_after_s=1000,
        budget_restarts=2,
        budget_window_s=100,
    )
    with EmbeddedPlatform(
        data_dir=tmp_path, services=("privacy", "feedback"), supervisor=supervisor, clock=clock
    ) as platform:

        def kill_feedback() -> None:
            process = platform.processes["feedback"]
            process.kill()
            process.wait()

        delays = []
        for restart in range(1, 5):
            if restart == 3:
                clock.now += 100  # the first two restarts leave the budget's window
            kill_feedback()
            [gone] = platform.supervise()
            assert (gone.name, gone.code) == ("feedback", -signal.SIGKILL)
            delays.append(gone.delay_s)
            assert platform.supervise() == [] and platform.restarts.get("feedback", 0) == restart - 1, "not yet due"
            clock.now += gone.delay_s
            platform.supervise()
            assert platform.restarts["feedback"] == restart and platform.processes["feedback"].poll() is None
        assert delays == [1, 2, 4, 8], "each consecutive crash waits twice as long"

        kill_feedback()  # a third exit within 100 s
        with pytest.raises(PlatformError, match=r"feedback exited.*restart budget.*-9, -9.*feedback\.log"):
            platform.supervise()
        with pytest.raises(PlatformError, match="restart budget"):
            platform.check()


def _answer(request_id: str, text: str) -> AnswerGenerated:
    return example(AnswerGenerated).model_copy(
        update={"event_id": uuid.uuid4(), "request_id": request_id, "answer": text, "occurred_at": utc_now()}
    )


async def _feedback_on(platform: EmbeddedPlatform, answer: AnswerGenerated) -> FeedbackRecorded:
    """Publish ``answer`` and a feedback on it; the feedback service's verdict on it."""
    feedback = FeedbackSubmitted(producer=PRODUCER, request_id=answer.request_id, thumb="up")
    async with watching(platform.kafka_settings, [FeedbackRecorded, MessageDeadLettered]) as seen:
        await produce_raw(platform.kafka_settings, answer.TOPIC, [(answer.key, answer.model_dump_json().encode())])
        await produce_raw(
            platform.kafka_settings, feedback.TOPIC, [(feedback.key, feedback.model_dump_json().encode())]
        )
        [verdict] = await wait_for(seen, lambda events: len(events) >= 1, timeout_s=90)
    assert isinstance(verdict, FeedbackRecorded), verdict
    return verdict


async def _supervising(platform: EmbeddedPlatform) -> None:
    while True:
        await asyncio.to_thread(platform.supervise)
        await asyncio.sleep(platform.supervisor.poll_interval_s)


@pytest.mark.parametrize("storage", ["memory", "durable"])
def test_a_killed_broker_is_restarted_with_its_topics_and_the_services_go_on(tmp_path: Path, storage: str) -> None:
    """After ``kill -9`` the broker comes back. Durable: with its log, and the service reads
    on without a restart of its own (its consumer group rejoins, its reader without a group
    reads on). Memory: without topics, which the supervisor recreates, and with every service
    restarted at once, so nothing published to the new log is missed."""
    supervisor = SupervisorSettings(backoff_initial_s=0, backoff_jitter=0)
    with EmbeddedPlatform(
        data_dir=tmp_path, services=("privacy", "feedback"), supervisor=supervisor, broker_storage=storage
    ) as platform:
        platform.wait_ready(timeout_s=120)
        request_id = f"req-{uuid.uuid4()}"
        before = asyncio.run(_feedback_on(platform, _answer(request_id, "before")))
        assert before.answer == "before"

        assert platform.kafka is not None and platform.kafka.pid is not None
        os.kill(platform.kafka.pid, signal.SIGKILL)
        exits = []
        while platform.restarts.get(BROKER, 0) == 0:
            exits += platform.supervise()  # notices the death, then restarts the broker and its topics
        restarted_with_broker = [("privacy", None), ("feedback", None)] if storage == "memory" else []
        assert [(gone.name, gone.code) for gone in exits] == [(BROKER, -signal.SIGKILL), *restarted_with_broker]

        async def after_restart() -> FeedbackRecorded:
            supervising = asyncio.create_task(_supervising(platform))
            try:
                # A new request id: the service cannot have its answer before reading on
                # after the restart (an answer to the old one could be linked from memory).
                return await _feedback_on(platform, _answer(f"{request_id}-after", "after"))
            finally:
                supervising.cancel()

        after = asyncio.run(after_restart())
        assert after.answer == "after", "the service read the answer published after the broker restart"
        if storage == "memory":
            assert platform.restarts == {BROKER: 1, "privacy": 1, "feedback": 1}
        else:
            assert platform.restarts == {BROKER: 1}, "the service was not restarted"
        platform.check()


def test_a_killed_object_store_of_the_durable_broker_is_restarted_and_nothing_is_lost(tmp_path: Path) -> None:
    """The durable broker's log lives in SeaweedFS: after ``kill -9`` of ``weed`` the
    supervisor sees it (as the broker's exit) and starts it again on the same folder and
    port, then the broker after it; the service goes on with the log it had."""
    supervisor = SupervisorSettings(backoff_initial_s=0, backoff_jitter=0)
    with EmbeddedPlatform(
        data_dir=tmp_path, services=("privacy", "feedback"), supervisor=supervisor, broker_storage="durable"
    ) as platform:
        platform.wait_ready(timeout_s=120)
        request_id = f"req-{uuid.uuid4()}"
        assert asyncio.run(_feedback_on(platform, _answer(request_id, "before"))).answer == "before"

        assert platform.kafka is not None
        pids = platform.kafka.pids
        os.kill(pids["weed"], signal.SIGKILL)
        exits = []
        deadline = time.monotonic() + 120
        while platform.restarts.get(BROKER, 0) == 0:
            assert time.monotonic() < deadline, "the supervisor never noticed the object store's death"
            exits += platform.supervise()
            time.sleep(0.05)
        assert [(gone.name, gone.code) for gone in exits] == [(BROKER, -signal.SIGKILL)]
        assert platform.kafka.pids["weed"] != pids["weed"], "the object store was started again"
        assert platform.kafka.pids["tansu"] != pids["tansu"], "the broker was started again after its store"

        async def after_restart() -> FeedbackRecorded:
            supervising = asyncio.create_task(_supervising(platform))
            try:
                return await _feedback_on(platform, _answer(f"{request_id}-after", "after"))
            finally:
                supervising.cancel()

        assert asyncio.run(after_restart()).answer == "after"
        assert platform.restarts == {BROKER: 1}, "no service was restarted"
        platform.check()

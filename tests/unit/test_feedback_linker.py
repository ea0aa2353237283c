"""The feedback service's linking rule while its table of answers is being rebuilt after a
start: a request whose answer has not been read yet is waited for, not refused."""

import pytest

from ragops_feedback.app import AnswerLog, FeedbackLinker
from ragops_feedback.settings import FeedbackSettings
from ragops_schemas import AnswerGenerated, FeedbackRecorded, FeedbackRedacted, Producer, utc_now
from ragops_shared.broker import EventRejected
from tests.helpers import example

PRODUCT = Producer(name="product", version="1")
SETTINGS = FeedbackSettings(unknown_wait_s=5, replay_wait_s=240)


class Replay:
    """Stands in for the watcher of the answer topic after a start: reading its history takes
    ``takes_s`` seconds, after which ``history`` is in the answer table."""

    def __init__(self, answers: AnswerLog, history: list[AnswerGenerated], takes_s: float) -> None:
        self.answers, self.history, self.takes_s = answers, history, takes_s
        self.read_to_end = False

    async def caught_up(self, timeout_s: float) -> bool:
        if not self.read_to_end and timeout_s >= self.takes_s:
            for answer in self.history:
                self.answers.add(answer)
            self.read_to_end = True
        return self.read_to_end


def _linker(history: list[AnswerGenerated], takes_s: float) -> FeedbackLinker:
    answers = AnswerLog(max_answers=10)
    return FeedbackLinker(SETTINGS, answers, Replay(answers, history, takes_s), PRODUCT)  # type: ignore[arg-type]


def _feedback(request_id: str) -> FeedbackRedacted:
    return FeedbackRedacted(producer=PRODUCT, request_id=request_id, thumb="up", occurred_at=utc_now())


async def test_feedback_on_an_answer_not_read_yet_waits_for_the_replay() -> None:
    answer = example(AnswerGenerated)
    # The replay outlasts the wait for an answer in flight, not the wait for a replay.
    [recorded, *_] = await _linker([answer], takes_s=30).link([_feedback(answer.request_id)])
    assert isinstance(recorded, FeedbackRecorded) and recorded.answer_event_id == str(answer.event_id)


async def test_once_the_history_is_read_an_unknown_request_is_refused() -> None:
    linker = _linker([example(AnswerGenerated)], takes_s=30)
    with pytest.raises(EventRejected, match="unknown request_id 'never-asked'"):
        await linker.link([_feedback("never-asked")])


async def test_a_replay_longer_than_its_bound_is_an_error_not_a_refusal() -> None:
    answer = example(AnswerGenerated)
    with pytest.raises(TimeoutError, match="not read from the topic's start within 240 s"):
        await _linker([answer], takes_s=600).link([_feedback(answer.request_id)])

"""How a retried request (``Idempotency-Key``) waits: for its outcome on the bus, or for the one
ClickHouse stored while no one waited, whichever comes first (``ragops_gateway.app._first_of``)."""

import asyncio

import pytest

from ragops_gateway import app
from ragops_schemas import AnswerGenerated, Event
from tests.helpers import example


class _Store:
    """A lookup that finds ``outcome`` from its ``finds_at``-th call on (never, with None)."""

    def __init__(self, outcome: Event | None, finds_at: int | None) -> None:
        self.outcome, self.finds_at, self.calls = outcome, finds_at, 0

    async def __call__(self) -> Event | None:
        self.calls += 1
        return self.outcome if self.finds_at is not None and self.calls >= self.finds_at else None


@pytest.fixture(autouse=True)
def _quick_polls(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(app, "STORED_OUTCOME_FIRST_WAIT_S", 0.01)
    monkeypatch.setattr(app, "STORED_OUTCOME_MAX_WAIT_S", 0.04)


async def test_the_stored_outcome_answers_when_the_bus_does_not_and_the_reply_stays_pending() -> None:
    answer = example(AnswerGenerated)
    reply: asyncio.Future[Event] = asyncio.get_running_loop().create_future()
    store = _Store(answer, finds_at=3)
    assert await asyncio.wait_for(app._first_of(reply, store), 5) is answer
    assert store.calls == 3 and not reply.done()  # the caller forgets its wait, never cancels it


async def test_the_bus_answers_first_and_the_polling_stops() -> None:
    answer = example(AnswerGenerated)
    reply: asyncio.Future[Event] = asyncio.get_running_loop().create_future()
    store = _Store(None, finds_at=None)
    asyncio.get_running_loop().call_later(0.05, reply.set_result, answer)
    assert await asyncio.wait_for(app._first_of(reply, store), 5) is answer
    calls = store.calls
    await asyncio.sleep(0.1)
    assert 1 <= calls == store.calls, "no poll after the reply"


async def test_the_polls_back_off_and_a_timeout_stops_them() -> None:
    reply: asyncio.Future[Event] = asyncio.get_running_loop().create_future()
    store = _Store(None, finds_at=None)
    with pytest.raises(TimeoutError):
        await asyncio.wait_for(app._first_of(reply, store), 0.3)
    calls = store.calls
    await asyncio.sleep(0.1)
    # Waits of 0.01, 0.02, 0.04, 0.04 ... s: about 9 polls in 0.3 s, not the 30 of a fixed 0.01 s.
    assert 3 <= calls <= 12 and store.calls == calls and not reply.cancelled()


async def test_without_a_lookup_it_is_the_reply() -> None:
    answer = example(AnswerGenerated)
    reply: asyncio.Future[Event] = asyncio.get_running_loop().create_future()
    reply.set_result(answer)
    assert await app._first_of(reply, None) is answer

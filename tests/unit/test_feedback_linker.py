"""The feedback service's linking rule while its table of answers is being rebuilt after a
start: a request whose answer has not been read yet is waited for, not refused. And the
dataset examples of a user's feedback: sealed with the user's key, unreadable once forgotten."""

from pathlib import Path

import pytest

from ragops_feedback.app import AnswerLog, FeedbackLinker, record
from ragops_feedback.settings import FeedbackSettings
from ragops_schemas import AnswerGenerated, DatasetExampleAdded, FeedbackRecorded, FeedbackRedacted, Producer, utc_now
from ragops_schemas.ids import derived_event_id, example_id, subject_key_id
from ragops_schemas.review import AnswerReviewed
from ragops_shared.broker import EventRejected
from ragops_shared.shredding import FileKeyStore, KeyStoreUnavailable, Shredder, is_sealed
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


def _linker(history: list[AnswerGenerated], takes_s: float, shredder: Shredder | None = None) -> FeedbackLinker:
    answers = AnswerLog(max_answers=10)
    replay = Replay(answers, history, takes_s)
    # No sealing needed: feedback without a user id is kept as it is.
    shredder = shredder or Shredder(FileKeyStore(Path("/nonexistent/keys")))
    return FeedbackLinker(SETTINGS, answers, replay, PRODUCT, shredder)  # type: ignore[arg-type]


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


def _correction(answer: AnswerGenerated, user_id: str | None) -> FeedbackRedacted:
    return FeedbackRedacted(
        producer=PRODUCT, request_id=answer.request_id, corrected_answer="Normandy, France", user_id=user_id
    )


def test_a_users_dataset_example_is_sealed_and_reads_as_erased_once_forgotten(tmp_path: Path) -> None:
    shredder = Shredder(FileKeyStore.under(tmp_path))
    answer = example(AnswerGenerated)
    [_, added] = record(_correction(answer, "user-7"), answer, PRODUCT, "feedback", shredder)
    assert isinstance(added, DatasetExampleAdded)
    assert is_sealed(added.question) and is_sealed(added.reference_answer)
    assert answer.question not in added.model_dump_json() and "Normandy" not in added.model_dump_json()
    assert (shredder.open(added.question), shredder.open(added.reference_answer)) == (
        answer.question,
        "Normandy, France",
    )
    # The id is of the plain texts: the same example sent twice is still one.
    assert added.example_id == example_id("feedback", answer.question, "Normandy, France")
    shredder.forget(answer.tenant, "user-7")
    assert shredder.open(added.question) is None and shredder.open(added.reference_answer) is None


def test_an_example_without_a_user_is_kept_as_it_is(tmp_path: Path) -> None:
    answer = example(AnswerGenerated)
    [_, added] = record(_correction(answer, None), answer, PRODUCT, "feedback", Shredder(FileKeyStore.under(tmp_path)))
    assert isinstance(added, DatasetExampleAdded)
    assert (added.question, added.reference_answer) == (answer.question, "Normandy, France")


async def test_a_key_store_that_is_unavailable_fails_the_feedback_never_writes_plaintext(tmp_path: Path) -> None:
    (tmp_path / "file").write_text("")
    answer = example(AnswerGenerated)
    linker = _linker([answer], takes_s=0, shredder=Shredder(FileKeyStore(tmp_path / "file" / "keys")))
    with pytest.raises(KeyStoreUnavailable):
        await linker.link([_correction(answer, "user-7").model_copy(update={"occurred_at": utc_now()})])


def _review(answer: AnswerGenerated, **label: object) -> AnswerReviewed:
    return example(AnswerReviewed).model_copy(
        update={
            "tenant": answer.tenant,
            "request_id": answer.request_id,
            "answer_event_id": str(answer.event_id),
            "occurred_at": utc_now(),
            "corrected_answer": None,
            **label,
        }
    )


async def test_a_review_becomes_an_example_of_its_correction_or_of_the_answer_found_good() -> None:
    answer = example(AnswerGenerated)
    linker = _linker([answer], takes_s=0)
    corrected = _review(answer, correct=False, grounded=True, corrected_answer="France")
    good = _review(answer, correct=True, grounded=True)
    wrong = _review(answer, correct=False, grounded=True)
    ungrounded = _review(answer, correct=True, grounded=False)

    [from_correction] = await linker.review([corrected])
    [from_answer] = await linker.review([good])

    assert isinstance(from_correction, DatasetExampleAdded) and isinstance(from_answer, DatasetExampleAdded)
    assert (from_correction.reference_answer, from_correction.source) == ("France", "review")
    assert from_correction.question == answer.question and from_correction.dataset == SETTINGS.dataset
    assert from_correction.example_id == example_id(SETTINGS.dataset, answer.question, "France")
    assert from_correction.feedback_event_id == str(corrected.event_id)
    assert from_correction.event_id == derived_event_id("DatasetExampleAdded", corrected.event_id)
    assert from_answer.reference_answer == "France"  # the answer "France [1]" without its citation marker
    # Found wrong, or not grounded, without a correction: no reference to learn from.
    assert await linker.review([wrong, ungrounded]) == []


async def test_a_review_example_is_sealed_for_the_asker_and_reads_as_erased_once_the_asker_is_forgotten(
    tmp_path: Path,
) -> None:
    # The question is the asker's, not the reviewer's: the gateway names the asker's key.
    shredder = Shredder(FileKeyStore.under(tmp_path))
    answer = example(AnswerGenerated)
    linker = _linker([answer], takes_s=0, shredder=shredder)
    corrected = _review(
        answer,
        correct=False,
        grounded=True,
        corrected_answer="France",
        asker_key_id=subject_key_id(answer.tenant, "user-7"),
    )

    [added] = await linker.review([corrected])

    assert isinstance(added, DatasetExampleAdded)
    assert is_sealed(added.question) and is_sealed(added.reference_answer)
    assert answer.question not in added.model_dump_json()
    assert (shredder.open(added.question), shredder.open(added.reference_answer)) == (answer.question, "France")
    assert added.example_id == example_id(SETTINGS.dataset, answer.question, "France")
    # Erasing the asker (as the erasure coordinator does) erases the review's example too.
    shredder.forget(answer.tenant, "user-7")
    assert shredder.open(added.question) is None and shredder.open(added.reference_answer) is None


async def test_a_review_of_an_unknown_request_or_of_another_answer_is_refused() -> None:
    answer = example(AnswerGenerated)
    linker = _linker([answer], takes_s=0)
    unknown = _review(answer, correct=True, grounded=True, request_id="never-asked")
    with pytest.raises(EventRejected, match="unknown request_id 'never-asked'"):
        await linker.review([unknown])
    # Another tenant's request is unknown to this tenant, with the same words.
    elsewhere = _review(answer, correct=True, grounded=True, tenant="globex")
    with pytest.raises(EventRejected, match="unknown request_id"):
        await linker.review([elsewhere])
    with pytest.raises(EventRejected, match="is not the answer of request"):
        await linker.review([_review(answer, correct=True, grounded=True, answer_event_id="another")])


def test_a_liked_or_approved_answer_becomes_a_reference_without_its_citation_markers(tmp_path: Path) -> None:
    from ragops_feedback.app import reviewed

    shredder = Shredder(FileKeyStore.under(tmp_path))
    answer = example(AnswerGenerated).model_copy(update={"answer": "France [1]"})
    [_, liked] = record(_feedback(answer.request_id), answer, PRODUCT, "feedback", shredder)
    review = example(AnswerReviewed).model_copy(
        update={"answer_event_id": str(answer.event_id), "correct": True, "grounded": True, "corrected_answer": None}
    )
    [approved] = reviewed(review, answer, PRODUCT, "reviews", shredder)
    assert isinstance(liked, DatasetExampleAdded) and isinstance(approved, DatasetExampleAdded)
    assert liked.reference_answer == approved.reference_answer == "France"

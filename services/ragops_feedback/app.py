"""The feedback service: consumes ``FeedbackRedacted`` (products' feedback, its personal data
replaced by the privacy service), validates it, links it
to the answer it is about (and that answer's lineage) and publishes ``FeedbackRecorded``.
A correction, or an answer the user liked, becomes a ``DatasetExampleAdded`` for later
evaluation and retraining; so does a reviewer's label (``AnswerReviewed``, human review: its
correction, or the answer found correct and grounded), in the same dataset
(``RAGOPS_FEEDBACK_DATASET``: the sets the trainer and evaluations already read) with
``source="review"``, and refused like feedback when its request is unknown. Its topic is kept
forever, so when the feedback names its user
(``user_id``) the example's question and reference answer are sealed with that user's key
(:mod:`ragops_shared.shredding`), and a review's with the key of whoever asked the question
(``asker_key_id``, set by the gateway from the request's ``user_id``): erasing the user deletes
the key and the example reads as erased in every replay. A key store that cannot be reached
fails the feedback (retried, then dead-lettered), never lets the text out in the clear.

Refused (dead-lettered with ``error_type="rejected"`` and the reason): feedback for a
request id the platform never answered for the feedback's tenant (another tenant's request id
is refused exactly like an unknown one, with the same reason, so it reveals nothing), and
feedback stamped in the future. A duplicate
event id is accepted once (the subscriber skips an id it handled; its outputs have ids
derived from it, so a replay after a restart de-duplicates downstream too).

The service knows the answers by reading ``AnswerGenerated`` from the beginning of the topic
(a table keyed by tenant and request id, rebuilt at start), so it needs no database of its own: after a
restart, feedback on an answer given before it is linked as soon as the topic has been read
again. Until then a request id not read yet is never refused as unknown: the feedback waits
for the replay (``replay_wait_s``), and is dead-lettered as a processing error, replayable,
if the replay takes longer."""

import asyncio
from collections import OrderedDict
from collections.abc import Callable, Sequence
from datetime import timedelta
from typing import Literal

import structlog
from faststream.asgi import AsgiFastStream

from ragops_feedback.settings import FeedbackSettings
from ragops_feedback.spec import FEEDBACK_GROUP, REVIEWS_GROUP, SPEC
from ragops_schemas import (
    AnswerGenerated,
    DatasetExampleAdded,
    Event,
    FeedbackRecorded,
    FeedbackRedacted,
    Producer,
    utc_now,
)
from ragops_schemas.envelope import RequestEvent
from ragops_schemas.ids import example_id
from ragops_schemas.review import AnswerReviewed
from ragops_shared.broker import EventPublisher, EventRejected, EventSubscriber, make_broker
from ragops_shared.citations import strip_markers
from ragops_shared.service import producer_for, run_service, service_app
from ragops_shared.shredding import FileKeyStore, Shredder
from ragops_shared.watch import EventWatcher

SERVICE = SPEC.name
log = structlog.get_logger(__name__)
ExampleSource = Literal["correction", "positive_feedback", "review"]
"""``DatasetExampleAdded.source``."""


def sentiment(feedback: FeedbackRedacted) -> str:
    """positive/negative/neutral: the thumb if given, else the rating (>= 4 positive,
    <= 2 negative), else a correction counts as negative and a comment alone as neutral."""
    if feedback.thumb is not None:
        return "positive" if feedback.thumb == "up" else "negative"
    if feedback.rating is not None:
        return "positive" if feedback.rating >= 4 else "negative" if feedback.rating <= 2 else "neutral"
    return "negative" if feedback.corrected_answer else "neutral"


class AnswerLog:
    """The latest ``AnswerGenerated`` per (tenant, request id), bounded (least recently added
    dropped): a tenant's feedback finds its own tenant's answers only."""

    def __init__(self, max_answers: int) -> None:
        self.max_answers = max_answers
        self._answers: OrderedDict[tuple[str, str], AnswerGenerated] = OrderedDict()

    def add(self, event: Event) -> None:
        if isinstance(event, AnswerGenerated):
            key = (event.tenant, event.request_id)
            self._answers[key] = event
            self._answers.move_to_end(key)
            while len(self._answers) > self.max_answers:
                self._answers.popitem(last=False)

    def get(self, tenant: str, request_id: str) -> AnswerGenerated | None:
        return self._answers.get((tenant, request_id))


def record(
    feedback: FeedbackRedacted, answer: AnswerGenerated, producer: Producer, dataset: str, shredder: Shredder
) -> list[Event]:
    """``FeedbackRecorded``, plus a ``DatasetExampleAdded`` for a correction or a liked answer,
    its question and reference answer sealed for the feedback's ``user_id`` when it has one (its
    ``example_id`` is of the plain texts, so the same example twice is still one). Blocking
    (the key store): run it in a thread. Raises
    :class:`~ragops_shared.shredding.KeyStoreUnavailable`."""
    mood = sentiment(feedback)
    recorded = feedback.caused(
        FeedbackRecorded,
        producer,
        request_id=feedback.request_id,
        feedback_event_id=str(feedback.event_id),
        thumb=feedback.thumb,
        rating=feedback.rating,
        comment=feedback.comment,
        corrected_answer=feedback.corrected_answer,
        user_id=feedback.user_id,
        sentiment=mood,
        question=answer.question,
        answer=answer.answer,
        answer_event_id=str(answer.event_id),
        lineage=answer.lineage,
    )
    said = strip_markers(answer.answer)  # a reference answer is compared word for word: no [n] markers
    reference = feedback.corrected_answer or (said if mood == "positive" and said.strip() else None)
    if reference is None:
        return [recorded]

    def kept(text: str) -> str:
        return text if feedback.user_id is None else shredder.seal(text, feedback.tenant, feedback.user_id)

    source: ExampleSource = "correction" if feedback.corrected_answer else "positive_feedback"
    return [recorded, example_of(feedback, answer, reference, source, producer, dataset, kept)]


def example_of(
    cause: RequestEvent,
    answer: AnswerGenerated,
    reference: str,
    source: ExampleSource,
    producer: Producer,
    dataset: str,
    kept: Callable[[str], str] = str,
) -> DatasetExampleAdded:
    """The ``DatasetExampleAdded`` of ``answer``'s question with ``reference`` as its reference
    answer, caused by ``cause`` (a feedback or a review: its id derives the example's event id
    and is its ``feedback_event_id``); ``kept`` seals the texts (identity by default). The
    ``example_id`` is of the plain texts, so the same example twice is still one."""
    return cause.caused(
        DatasetExampleAdded,
        producer,
        dataset=dataset,
        example_id=example_id(dataset, answer.question, reference),
        question=kept(answer.question),
        reference_answer=kept(reference),
        reference_context_ids=list(dict.fromkeys(context.document_id for context in answer.contexts)),
        source=source,
        request_id=cause.request_id,
        feedback_event_id=str(cause.event_id),
    )


def reviewed(
    review: AnswerReviewed, answer: AnswerGenerated, producer: Producer, dataset: str, shredder: Shredder
) -> list[Event]:
    """The dataset example a reviewer's label makes (``source="review"``): the reviewer's
    correction as the reference answer, else the answer itself when the reviewer found it
    correct and grounded; nothing for an answer found wrong or ungrounded without a correction
    (the label itself is kept by the sink, ``reviews``). The question is the asker's: when the
    request had a user id, the question and reference answer are sealed with the asker's key
    (the review's ``asker_key_id``, which the gateway set), as a user's feedback example is, so
    erasing the asker erases the example. Blocking (the key store): run it in a thread.

    Raises:
        EventRejected: the review names another answer than the request's.
        KeyStoreUnavailable: the asker's key cannot be read or created."""
    if review.answer_event_id != str(answer.event_id):
        raise EventRejected(
            f"answer_event_id {review.answer_event_id!r} is not the answer of request {review.request_id!r}"
        )
    said = strip_markers(answer.answer)  # a reference answer is compared word for word: no [n] markers
    reference = review.corrected_answer or (said if review.correct and review.grounded and said.strip() else None)
    if reference is None:
        return []
    asker = review.asker_key_id

    def kept(text: str) -> str:
        return text if asker is None else shredder.seal_for(text, asker)

    return [example_of(review, answer, reference, "review", producer, dataset, kept)]


class FeedbackLinker:
    """Validates feedback against the answers read so far and links it to them."""

    def __init__(
        self,
        settings: FeedbackSettings,
        answers: AnswerLog,
        watcher: EventWatcher,
        producer: Producer,
        shredder: Shredder,
    ) -> None:
        self.settings = settings
        self.answers = answers
        self.watcher = watcher
        self.producer = producer
        self.shredder = shredder

    async def link(self, events: Sequence[FeedbackRedacted]) -> list[Event]:
        """Outputs for a batch. Raises :class:`EventRejected` for a refused feedback and
        ``TimeoutError`` when the answers could not be read in time (see :meth:`_wait_for_answer`)."""
        outputs: list[Event] = []
        for feedback in events:
            answer = await self._answer_of(feedback)
            outputs += await asyncio.to_thread(
                record, feedback, answer, self.producer, self.settings.dataset, self.shredder
            )
        return outputs

    async def review(self, events: Sequence[AnswerReviewed]) -> list[Event]:
        """The dataset examples of a batch of reviews (:func:`reviewed`), refused like feedback."""
        outputs: list[Event] = []
        for review in events:
            answer = await self._answer_of(review)
            outputs += await asyncio.to_thread(
                reviewed, review, answer, self.producer, self.settings.dataset, self.shredder
            )
        return outputs

    async def _answer_of(self, event: RequestEvent) -> AnswerGenerated:
        if event.occurred_at > utc_now() + timedelta(seconds=self.settings.max_clock_skew_s):
            raise EventRejected(f"occurred_at {event.occurred_at.isoformat()} is in the future")
        return self.answers.get(event.tenant, event.request_id) or await self._wait_for_answer(event)

    async def _wait_for_answer(self, feedback: RequestEvent) -> AnswerGenerated:
        """The answer of the feedback's tenant and request id once every answer published so
        far has been read; waits up to
        ``replay_wait_s`` while the topic's history is still being read (after a start), else
        up to ``unknown_wait_s`` (an answer still in flight).

        Raises :class:`EventRejected` when it is not there once read, ``TimeoutError`` when
        the history could not be read in time (not the feedback's fault: not a rejection)."""
        replaying = not self.watcher.read_to_end
        wait_s = self.settings.replay_wait_s if replaying else self.settings.unknown_wait_s
        caught_up = await self.watcher.caught_up(wait_s)
        answer = self.answers.get(feedback.tenant, feedback.request_id)
        if answer is not None:
            return answer
        if replaying and not caught_up:
            raise TimeoutError(f"the answers were not read from the topic's start within {wait_s:g} s")
        # The same words whether the id is unknown or another tenant's: nothing is revealed.
        raise EventRejected(f"unknown request_id {feedback.request_id!r}: no answer was generated for it")


def create_app(settings: FeedbackSettings | None = None) -> AsgiFastStream:
    settings = settings or FeedbackSettings()
    broker = make_broker(settings.kafka, f"ragops-{SERVICE}")
    producer = producer_for(SERVICE)
    publisher = EventPublisher(broker, producer, [FeedbackRecorded, DatasetExampleAdded])
    answers = AnswerLog(settings.max_answers)
    watcher = EventWatcher(
        settings.kafka, [AnswerGenerated], client_id=f"ragops-{SERVICE}-answers", from_beginning=True
    )
    watcher.listen(answers.add)
    # Production: a KMS- or Vault-backed SubjectKeyStore; the file store needs a volume shared
    # with the privacy service (which forgets keys) and the trainer (which opens them).
    shredder = Shredder(FileKeyStore.under(settings.platform.data_dir))
    linker = FeedbackLinker(settings, answers, watcher, producer, shredder)
    submitted = EventSubscriber(
        broker,
        publisher,
        FeedbackRedacted,
        kafka=settings.kafka,
        group_id=FEEDBACK_GROUP,
        max_records=settings.batch_records,
    )

    reviews = EventSubscriber(
        broker,
        publisher,
        AnswerReviewed,
        kafka=settings.kafka,
        group_id=REVIEWS_GROUP,
        max_records=settings.batch_records,
    )

    @submitted
    async def on_feedback_redacted(events: list[FeedbackRedacted]) -> None:
        await submitted.run(events, linker.link)

    @reviews
    async def on_answer_reviewed(events: list[AnswerReviewed]) -> None:
        await reviews.run(events, linker.review)

    app = service_app(SERVICE, __doc__ or "", broker, platform=settings.platform)

    @app.on_startup
    async def read_answers() -> None:
        await watcher.start()
        # Within the startup probe's budget (120 s); feedback that arrives while a longer
        # history is still being read waits for it (FeedbackLinker), never refused meanwhile.
        if not await watcher.caught_up(timeout_s=60):
            log.warning("answers_still_replaying", waited_s=60)

    @app.after_shutdown
    async def stop_reading() -> None:
        await watcher.stop()

    return app


def main() -> None:
    run_service(SERVICE, FeedbackSettings, create_app)

"""A producer service's view of the platform: publish documents and questions to Kafka and
wait for the events that answer them. Used by the CLI, the demo and the end-to-end tests."""

import asyncio
from collections import defaultdict
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from types import TracebackType
from typing import TypedDict, TypeVar, Unpack, cast

from aiokafka.errors import KafkaConnectionError

from ragops_schemas import (
    AnswerEvaluated,
    AnswerGenerated,
    ContextRetrieved,
    DocumentIndexed,
    DocumentRejected,
    DocumentSubmitted,
    EvaluationComparisonCompleted,
    EvaluationRunCompleted,
    Event,
    FeedbackRecorded,
    FeedbackSubmitted,
    MessageDeadLettered,
    QueryEmbedded,
    QuerySubmitted,
    utc_now,
)
from ragops_schemas.events import ContentType, EvaluationContext, Filters, MetadataValue
from ragops_schemas.ids import new_request_id
from ragops_schemas.lifecycle import VersionRegistered
from ragops_shared.blobs import check_in, open_blob_store
from ragops_shared.broker import EventPublisher, make_broker
from ragops_shared.service import producer_for
from ragops_shared.settings import KafkaSettings, PlatformSettings
from ragops_shared.watch import EventWatcher

E = TypeVar("E", bound=Event)
DOCUMENT_OUTCOMES = (DocumentIndexed, DocumentRejected, MessageDeadLettered)
QUERY_OUTCOMES = (AnswerGenerated, MessageDeadLettered)
# Waiting for the evaluation of the answer instead of the answer itself (offline runs).
EVALUATED_OUTCOMES = (AnswerEvaluated, MessageDeadLettered)
FEEDBACK_OUTCOMES = (FeedbackRecorded, MessageDeadLettered)
QueryOutcome = AnswerGenerated | AnswerEvaluated | MessageDeadLettered
# What a client publishes and watches: the Kafka user of the CLI (``ragops-operator``,
# k8s/dependencies/kafka-users.yaml) may write and read exactly these topics (and the dead letters,
# and the registry topics ``ragops dataset`` and ``ragops eval`` read through a RegistryView).
# One control event: a dataset version (``ragops dataset push``), signed by the operator key;
# retraining, retirements and promotions are four-eyes changes at the gateway.
PUBLISHES: tuple[type[Event], ...] = (
    DocumentSubmitted,
    QuerySubmitted,
    FeedbackSubmitted,
    EvaluationRunCompleted,
    EvaluationComparisonCompleted,
    VersionRegistered,
)
WATCHES: tuple[type[Event], ...] = (
    DocumentIndexed,
    DocumentRejected,
    QueryEmbedded,
    ContextRetrieved,
    AnswerGenerated,
    AnswerEvaluated,
    FeedbackRecorded,
    MessageDeadLettered,
)


class QueryOptions(TypedDict, total=False):
    """The optional fields of :class:`QuerySubmitted` a caller may set (the schema's defaults apply otherwise)."""

    top_k: int
    filters: Filters
    prompt_name: str | None
    prompt_version: int | None
    evaluation: EvaluationContext | None
    user_id: str | None


class DocumentOptions(TypedDict, total=False):
    """The optional fields of :class:`DocumentSubmitted` a caller may set (the schema's defaults apply otherwise)."""

    content_type: ContentType
    title: str | None
    source: str | None
    metadata: dict[str, MetadataValue]
    subject_id: str | None


class RequestTimeoutError(TimeoutError):
    """No outcome arrived for a document or question within the timeout."""


class PlatformUnreachableError(ConnectionError):
    """The Kafka cluster could not be reached."""


@dataclass
class QueryTrace:
    """Every event of one request that flowed through the topics, in order."""

    submitted: QuerySubmitted
    events: list[Event] = field(default_factory=list)
    outcome: QueryOutcome | None = None

    def first(self, event_type: type[Event]) -> Event | None:
        return next((event for event in self.events if isinstance(event, event_type)), None)

    @property
    def answer(self) -> AnswerGenerated | None:
        found = self.first(AnswerGenerated)
        return found if isinstance(found, AnswerGenerated) else None


class PlatformClient:
    """``async with PlatformClient(kafka) as client:`` then :meth:`ingest` / :meth:`ask`."""

    def __init__(
        self,
        kafka: KafkaSettings,
        name: str = "cli",
        platform: PlatformSettings | None = None,
    ) -> None:
        """``platform``: where content above its ``inline_content_bytes`` is left (its blob
        store, the one ingestion reads); default: ``RAGOPS_*`` from the environment."""
        self.kafka = kafka
        platform = platform or PlatformSettings()
        self._blobs = open_blob_store(platform)
        self._inline_content_bytes = platform.inline_content_bytes
        self.producer = producer_for(name)
        self._broker = make_broker(kafka, f"ragops-{name}")
        self._publisher = EventPublisher(self._broker, self.producer, PUBLISHES)
        self._watcher = EventWatcher(kafka, WATCHES, client_id=f"ragops-{name}-watcher")
        # The query events of requests in flight, for stage latencies from their timestamps.
        self._by_key: dict[bytes, list[Event]] = defaultdict(list)
        self._watcher.listen(self._record)

    def _record(self, event: Event) -> None:
        if isinstance(event, (QueryEmbedded, ContextRetrieved, AnswerGenerated, AnswerEvaluated)):
            self._by_key[event.key].append(event)

    async def __aenter__(self) -> "PlatformClient":
        """Connect. Raises :class:`PlatformUnreachableError` when Kafka does not answer."""
        try:
            await self._broker.start()
            await self._watcher.start()
        except KafkaConnectionError as error:
            await self._broker.stop()
            raise PlatformUnreachableError(
                f"Kafka at {self.kafka.bootstrap_servers} is not reachable: {error}"
            ) from None
        return self

    async def __aexit__(self, *exc: tuple[type[BaseException], BaseException, TracebackType]) -> None:
        await self._watcher.stop()
        await self._broker.stop()

    def question(self, text: str, **fields: Unpack[QueryOptions]) -> QuerySubmitted:
        return QuerySubmitted(producer=self.producer, request_id=new_request_id(), question=text, **fields)

    def document(self, document_id: str, content: str, **fields: Unpack[DocumentOptions]) -> DocumentSubmitted:
        return DocumentSubmitted(producer=self.producer, document_id=document_id, content=content, **fields)

    def expect(self, key: str, event_types: tuple[type[Event], ...]) -> "asyncio.Future[Event]":
        """A future for the first event keyed ``key`` of ``event_types`` (register before producing)."""
        return self._watcher.expect(key, event_types)

    async def _request(self, event: E, outcomes: tuple[type[Event], ...], timeout_s: float) -> tuple[E, Event]:
        """Publish ``event`` stamped with the publish time (the moment it is submitted, which
        latency is measured from) and wait for its outcome. Returns (published, outcome)."""
        event = event.model_copy(update={"occurred_at": utc_now()})
        key = event.key.decode()
        outcome = self._watcher.expect(key, outcomes, trace_id=event.trace_id)
        await self._publisher.publish(event)
        try:
            return event, await asyncio.wait_for(outcome, timeout_s)
        except TimeoutError:
            self._watcher.forget(key, outcome)
            raise RequestTimeoutError(f"no outcome for {event.event_type} {key} within {timeout_s:g} s") from None

    async def ingest(
        self,
        documents: Sequence[DocumentSubmitted],
        *,
        timeout_s: float = 600.0,
        concurrency: int = 64,
        on_done: Callable[[Event], None] = lambda _: None,
    ) -> list[tuple[DocumentSubmitted, Event]]:
        """Submit documents and wait for each one's outcome (``DocumentIndexed``,
        ``DocumentRejected`` or ``MessageDeadLettered``), at most ``concurrency`` in flight.
        Content too large to travel in its event is left in the blob store and sent by
        reference (:func:`~ragops_shared.blobs.check_in`). Returns (the event as published,
        its outcome) per document, in input order.

        Raises ``RequestTimeoutError`` when one takes longer than ``timeout_s``;
        :class:`~ragops_shared.blobs.ContentTooLarge` (before anything is sent) when a
        document is too large to travel inline and no blob store is configured."""
        outgoing = await asyncio.to_thread(
            lambda: [check_in(document, self._blobs, self._inline_content_bytes) for document in documents]
        )
        return await self._gather(outgoing, DOCUMENT_OUTCOMES, timeout_s, concurrency, on_done)

    async def ask(
        self,
        questions: Sequence[QuerySubmitted],
        *,
        timeout_s: float = 300.0,
        concurrency: int = 8,
        on_done: Callable[[Event], None] = lambda _: None,
        until_evaluated: bool = False,
    ) -> list[QueryTrace]:
        """Submit questions (at most ``concurrency`` in flight) and return each request's trace:
        every event of the request seen on the topics and its outcome (``AnswerGenerated``, or
        with ``until_evaluated`` its ``AnswerEvaluated``; or ``MessageDeadLettered``).
        Raises ``RequestTimeoutError`` after ``timeout_s`` for one."""
        outcomes = EVALUATED_OUTCOMES if until_evaluated else QUERY_OUTCOMES
        results = await self._gather(questions, outcomes, timeout_s, concurrency, on_done)
        # The watcher resolves each request with an event of one of `outcomes` only.
        return [
            QueryTrace(
                submitted=published,
                events=list(self._by_key.pop(published.key, [])),
                outcome=cast(QueryOutcome, outcome),
            )
            for published, outcome in results
        ]

    async def send_feedback(
        self,
        feedback: Sequence[FeedbackSubmitted],
        *,
        timeout_s: float = 60.0,
        concurrency: int = 64,
    ) -> list[Event]:
        """Submit feedback and wait for each one's ``FeedbackRecorded`` (or its dead letter)."""
        return [
            outcome
            for _, outcome in await self._gather(feedback, FEEDBACK_OUTCOMES, timeout_s, concurrency, lambda _: None)
        ]

    async def publish(self, event: Event) -> None:
        """Publish an event that nothing answers (e.g. ``EvaluationRunCompleted``)."""
        await self._publisher.publish(event)

    async def _gather(
        self,
        requests: Sequence[E],
        outcomes: tuple[type[Event], ...],
        timeout_s: float,
        concurrency: int,
        on_done: Callable[[Event], None],
    ) -> list[tuple[E, Event]]:
        slots = asyncio.Semaphore(concurrency)

        async def one(request: E) -> tuple[E, Event]:
            async with slots:
                result = await self._request(request, outcomes, timeout_s)
            on_done(result[1])
            return result

        return list(await asyncio.gather(*(one(request) for request in requests)))

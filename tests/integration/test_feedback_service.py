"""The feedback service on a real broker: each kind of bad feedback has its defined outcome."""

import json
import uuid
from datetime import timedelta

import pytest

from ragops_feedback.app import create_app
from ragops_feedback.settings import FeedbackSettings
from ragops_schemas import (
    AnswerGenerated,
    DatasetExampleAdded,
    FeedbackRecorded,
    FeedbackRedacted,
    MessageDeadLettered,
    Producer,
    Topic,
    utc_now,
)
from ragops_shared.citations import strip_markers
from tests.helpers import example
from tests.integration.services import produce_raw, running, wait_for, watching

pytestmark = pytest.mark.kafka
PRODUCER = Producer(name="product", version="1")


async def test_feedback_outcomes(kafka) -> None:
    answer = example(AnswerGenerated)
    answer = answer.model_copy(update={"occurred_at": utc_now()})
    good = FeedbackRedacted(producer=PRODUCER, request_id=answer.request_id, thumb="down", corrected_answer="France")
    liked = FeedbackRedacted(producer=PRODUCER, request_id=answer.request_id, rating=5)
    unknown = FeedbackRedacted(producer=PRODUCER, request_id="no-such-request", thumb="up")
    future = FeedbackRedacted(
        producer=PRODUCER, request_id=answer.request_id, thumb="up", occurred_at=utc_now() + timedelta(hours=1)
    )
    out_of_range = json.loads(liked.model_dump_json()) | {"rating": 9, "event_id": str(uuid.uuid4())}
    not_utf8 = (
        liked.model_dump_json()
        .replace('"rating":5', '"rating":5,"comment":"caf__"')
        .encode()
        .replace(b"__", b"\xe9\xff")
    )

    async with watching(kafka, [FeedbackRecorded, DatasetExampleAdded, MessageDeadLettered]) as seen:
        await produce_raw(kafka, Topic.ANSWER_GENERATED, [(answer.key, answer.model_dump_json().encode())])
        await produce_raw(
            kafka,
            Topic.FEEDBACK_REDACTED,
            [
                (good.key, good.model_dump_json().encode()),
                (good.key, good.model_dump_json().encode()),  # the same event delivered twice
                (liked.key, liked.model_dump_json().encode()),
                (unknown.key, unknown.model_dump_json().encode()),
                (future.key, future.model_dump_json().encode()),
                (b"range", json.dumps(out_of_range).encode()),
                (b"utf8", not_utf8),
            ],
        )
        async with running(create_app(FeedbackSettings(kafka=kafka, unknown_wait_s=1))):
            await wait_for(seen, lambda events: len(events) >= 2 + 2 + 4)

    recorded = [e for e in seen if isinstance(e, FeedbackRecorded)]
    assert sorted(e.feedback_event_id for e in recorded) == sorted([str(good.event_id), str(liked.event_id)]), (
        "the duplicate is recorded once"
    )
    correction = next(e for e in recorded if e.feedback_event_id == str(good.event_id))
    assert (
        correction.sentiment == "negative"
        and correction.lineage == answer.lineage
        and correction.answer == answer.answer
    )
    examples = {e.source: e for e in seen if isinstance(e, DatasetExampleAdded)}
    assert examples["correction"].reference_answer == "France" and examples["correction"].reference_context_ids == [
        "Normans-p000"
    ]
    # The example answer carries citation markers ("France [1]"); a reference answer is kept without them.
    assert examples["positive_feedback"].reference_answer == strip_markers(answer.answer) != answer.answer

    letters = {e.original_key: e for e in seen if isinstance(e, MessageDeadLettered)}
    assert (
        letters["no-such-request"].error_type == "rejected"
        and "unknown request_id" in letters["no-such-request"].reason
    )
    assert letters["range"].error_type == "schema_validation" and "rating" in letters["range"].reason
    assert letters["utf8"].error_type == "schema_validation"
    assert any(letter.error_type == "rejected" and "future" in letter.reason for letter in letters.values())


async def test_feedback_on_an_answer_given_before_a_restart_is_recorded(kafka) -> None:
    answer = example(AnswerGenerated).model_copy(update={"occurred_at": utc_now()})
    before = FeedbackRedacted(producer=PRODUCER, request_id=answer.request_id, thumb="up")
    after = FeedbackRedacted(producer=PRODUCER, request_id=answer.request_id, rating=2, comment="outdated")
    settings = FeedbackSettings(kafka=kafka, unknown_wait_s=0)

    async with watching(kafka, [FeedbackRecorded, MessageDeadLettered]) as seen:
        await produce_raw(kafka, Topic.ANSWER_GENERATED, [(answer.key, answer.model_dump_json().encode())])
        async with running(create_app(settings)):
            await produce_raw(kafka, Topic.FEEDBACK_REDACTED, [(before.key, before.model_dump_json().encode())])
            await wait_for(seen, lambda events: len(events) >= 1)
        # A new process: its table of answers is rebuilt from the topic, the group resumes.
        async with running(create_app(settings)):
            await produce_raw(kafka, Topic.FEEDBACK_REDACTED, [(after.key, after.model_dump_json().encode())])
            await wait_for(seen, lambda events: len(events) >= 2)

    assert [(type(e).__name__, getattr(e, "feedback_event_id", None)) for e in seen] == [
        ("FeedbackRecorded", str(before.event_id)),
        ("FeedbackRecorded", str(after.event_id)),
    ]


async def test_feedback_links_only_to_an_answer_of_its_own_tenant(kafka) -> None:
    """Feedback naming another tenant's request id is dead-lettered exactly like feedback on a
    request id nobody asked (same error type, same reason): it reveals nothing; two tenants'
    answers under the same request id are two answers."""
    base = example(AnswerGenerated).model_copy(update={"occurred_at": utc_now()})
    acme = base.model_copy(update={"tenant": "acme", "request_id": "acme-only", "event_id": uuid.uuid4()})
    acme_shared = base.model_copy(update={"tenant": "acme", "request_id": "shared", "event_id": uuid.uuid4()})
    globex_shared = base.model_copy(
        update={"tenant": "globex", "request_id": "shared", "event_id": uuid.uuid4(), "answer": "Globex's answer"}
    )
    prying = FeedbackRedacted(producer=PRODUCER, tenant="globex", request_id="acme-only", thumb="down")
    unknown = FeedbackRedacted(producer=PRODUCER, tenant="globex", request_id="never-asked", thumb="down")
    own = FeedbackRedacted(producer=PRODUCER, tenant="globex", request_id="shared", thumb="up")

    async with watching(kafka, [FeedbackRecorded, MessageDeadLettered]) as seen:
        answers = [acme, acme_shared, globex_shared]
        await produce_raw(kafka, Topic.ANSWER_GENERATED, [(a.key, a.model_dump_json().encode()) for a in answers])
        feedback = [prying, unknown, own]
        await produce_raw(kafka, Topic.FEEDBACK_REDACTED, [(f.key, f.model_dump_json().encode()) for f in feedback])
        async with running(create_app(FeedbackSettings(kafka=kafka, unknown_wait_s=1))):
            await wait_for(seen, lambda events: len(events) >= 3)

    [recorded] = [e for e in seen if isinstance(e, FeedbackRecorded)]
    assert recorded.feedback_event_id == str(own.event_id)
    assert (recorded.tenant, recorded.answer_event_id, recorded.answer) == (
        "globex",
        str(globex_shared.event_id),
        "Globex's answer",
    )
    letters = {e.original_key: e for e in seen if isinstance(e, MessageDeadLettered)}
    assert set(letters) == {"acme-only", "never-asked"}
    assert letters["acme-only"].error_type == letters["never-asked"].error_type == "rejected"
    assert letters["acme-only"].reason.replace("acme-only", "X") == letters["never-asked"].reason.replace(
        "never-asked", "X"
    )

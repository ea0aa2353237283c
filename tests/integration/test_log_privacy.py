"""No personal data in the logs: an e-mail address planted in a question, in a record that
fails validation, in an exception's message and in a dead letter's reason reaches the
dead letter (a quarantine with its own retention) but no line of the services' JSON logs
(``configure_logging``, captured whole, tracebacks included)."""

import asyncio
import json
import logging
from collections.abc import Sequence
from dataclasses import replace
from typing import Any

import pytest
import structlog
from faststream import FastStream
from pydantic import ValidationError

from ragops_schemas import Event, MessageDeadLettered, QuerySubmitted, Topic
from ragops_shared.broker import EventPublisher, EventSubscriber, dead_letter, make_broker, validation_reason
from ragops_shared.logs import error_summary, validation_summary
from ragops_shared.retry import Backoff
from ragops_sink.audit import audit_entries
from ragops_sink.settings import SinkSettings
from tests.helpers import PRODUCER, record_of
from tests.integration.services import produce_raw, read_records, running

EMAIL = "jane.doe.planted@example.com"
log = structlog.get_logger("test")


def logged(lines: Any) -> list[dict]:
    return [json.loads(line) for line in lines.getvalue().splitlines()]


def a_failure() -> ValueError:
    """An exception that quotes the value it failed on, raised from another (so a traceback
    and a chained cause exist)."""
    try:
        try:
            raise KeyError(EMAIL)
        except KeyError as cause:
            raise ValueError(f"no answer for {EMAIL!r}") from cause
    except ValueError as error:
        return error


def test_exceptions_are_logged_by_type_and_frames_without_messages(json_lines) -> None:
    log.error("structlog_failure", exc_info=a_failure())
    try:
        raise a_failure()
    except ValueError:
        logging.getLogger("some.library").exception("library_failure")  # a stdlib record, as FastStream's
    lines = logged(json_lines)
    assert [line["event"] for line in lines] == ["structlog_failure", "library_failure"]
    for line in lines:
        assert "KeyError" in line["exception"] and "ValueError" in line["exception"]
        assert "a_failure" in line["exception"], "the frames stay"
    assert EMAIL not in json_lines.getvalue()


def test_access_lines_that_quote_paths_are_not_logged(json_lines) -> None:
    logging.getLogger("uvicorn.access").info(
        '%s - "%s %s HTTP/1.1" %d', "10.0.0.1", "DELETE", f"/v1/subjects/{EMAIL}", 202
    )
    logging.getLogger("uvicorn.error").warning("still logged")
    assert [line["event"] for line in logged(json_lines)] == ["still logged"]


def test_validation_reasons_name_fields_not_values() -> None:
    with pytest.raises(ValidationError) as caught:
        SinkSettings(retention_days={EMAIL: 3})  # a validator whose message quotes the input
    assert EMAIL in str(caught.value)  # pydantic's own text would leak it
    assert EMAIL not in validation_summary(caught.value)
    assert EMAIL not in error_summary(caught.value)
    assert "retention_days: value_error" in validation_reason(caught.value)
    with pytest.raises(ValidationError) as caught:
        QuerySubmitted.model_validate({"producer": PRODUCER, "request_id": "r-1", "question": "q", "top_k": EMAIL})
    assert "top_k: Input should be a valid integer" in validation_reason(caught.value)
    assert EMAIL not in validation_reason(caught.value)


class FailingPublisher:
    """A publisher whose broker refuses every record: the dead letter is parked."""

    producer = PRODUCER

    async def publish(self, event: Event) -> None:
        raise ConnectionError("broker down")


async def test_a_parked_dead_letter_is_logged_without_its_content(json_lines) -> None:
    question = QuerySubmitted(producer=PRODUCER, request_id="r-1", question=f"mail me at {EMAIL}")
    await dead_letter(
        FailingPublisher(),  # type: ignore[arg-type]
        record_of(question, offset=7),
        "processing",
        f"ValueError: cannot answer {EMAIL}",
        consumer_group="g",
        max_bytes=1_000_000,
        retry=Backoff(attempts=2, initial_s=0),
    )
    lines = logged(json_lines)
    [parked] = [line for line in lines if line["event"] == "dead_letter_parked"]
    assert (parked["dead_letter"]["original_topic"], parked["dead_letter"]["offset"]) == (question.TOPIC.value, 7)
    assert EMAIL not in json_lines.getvalue()


def test_an_unparsable_audit_record_is_logged_without_its_content(json_lines) -> None:
    record = record_of(QuerySubmitted(producer=PRODUCER, request_id="r-1", question="q"), offset=3)
    record = replace(record, topic=Topic.AUDIT_RECORDED.value, value=json.dumps({"actor": EMAIL}).encode())
    assert audit_entries([record], verifier=None) == []  # type: ignore[arg-type]  # never reached
    [line] = [line for line in logged(json_lines) if line["event"] == "audit_record_unparsable"]
    assert line["error"].startswith("ValidationError")
    assert EMAIL not in json_lines.getvalue()


@pytest.mark.kafka
async def test_a_failing_handler_logs_no_personal_data(kafka, json_lines) -> None:
    """A question with an e-mail that the handler fails on (its exception quotes it), and a
    record that fails validation with the e-mail in a field: both dead-lettered, neither
    value in the logs, while the dead letters keep their reasons."""
    broker = make_broker(kafka, "test-service")
    subscriber = EventSubscriber(
        broker, EventPublisher(broker, PRODUCER, []), QuerySubmitted, kafka=kafka, group_id="test-privacy"
    )
    done = asyncio.Event()

    async def process(events: Sequence[QuerySubmitted]) -> list[Event]:
        raise ValueError(f"cannot answer {events[0].question!r}")

    @subscriber
    async def handle(events: list[QuerySubmitted]) -> None:
        await subscriber.run(events, process)
        done.set()

    question = QuerySubmitted(producer=PRODUCER, request_id="r-mail", question=f"Write to {EMAIL}")
    invalid = {**json.loads(question.model_dump_json()), "top_k": EMAIL}
    await produce_raw(
        kafka,
        Topic.QUERY_SUBMITTED,
        [(b"k", json.dumps(invalid).encode()), (b"k", question.model_dump_json().encode())],
    )
    async with running(FastStream(broker)):
        await asyncio.wait_for(done.wait(), 60)

    lines = logged(json_lines)
    dead = [line for line in lines if line["event"] == "dead_lettering_record"]
    assert sorted(line["error_type"] for line in dead) == ["processing", "schema_validation"]
    [failed] = [line for line in lines if line["event"] == "processing_failed"]
    assert failed["exception"].endswith("ValueError")
    assert EMAIL not in json_lines.getvalue()
    # The quarantine keeps the reason (it keeps the record's bytes anyway).
    letters = [letter for letter, _ in await read_records(kafka, MessageDeadLettered, 2)]
    assert any(EMAIL in letter.reason for letter in letters)

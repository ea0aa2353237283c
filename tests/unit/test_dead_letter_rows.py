"""The sink keeps through a dead letter nothing it does not keep from the dead record's topic:
a dead letter of an intake topic (``TopicSpec.sink`` False; its raw text is for the privacy
service only) is stored without its copy of the value and without its reason."""

import uuid
from datetime import UTC, datetime

from ragops_schemas import Event, MessageDeadLettered, QueryRedacted, QuerySubmitted
from ragops_shared.dead_letters import dead_letter_for
from ragops_sink import rows
from tests.helpers import PRODUCER, record_of

EMAIL = "jane.doe.planted@example.com"
NOW = datetime(2026, 12, 5, tzinfo=UTC)


def letter_record(kind: type[Event]) -> tuple[MessageDeadLettered, bytes]:
    question = kind(producer=PRODUCER, request_id="r-1", question=f"mail {EMAIL}")
    letter = dead_letter_for(
        record_of(question, offset=3),
        event_id=uuid.uuid4(),
        producer=PRODUCER,
        consumer_group="g",
        error_type="processing",
        reason=f"ValueError: cannot answer {EMAIL}",
        max_bytes=1_000_000,
    )
    return letter, record_of(letter, offset=0).value


def test_a_dead_letter_of_a_kept_topic_is_stored_as_produced() -> None:
    letter, raw = letter_record(QueryRedacted)
    assert rows.to_row(record_of(letter, offset=0), NOW).payload == raw.decode()


def test_a_dead_letter_of_an_unkept_topic_loses_its_copy_and_reason() -> None:
    letter, _ = letter_record(QuerySubmitted)  # an intake topic
    row = rows.to_row(record_of(letter, offset=0), NOW)
    stored = MessageDeadLettered.model_validate_json(row.payload)
    assert (stored.original_value_b64, stored.reason) == ("", rows.WITHHELD)
    assert (
        stored.model_copy(update={"original_value_b64": letter.original_value_b64, "reason": letter.reason}) == letter
    )
    assert EMAIL not in row.payload and row.event_type == "message.dead_lettered"

"""Building a dead letter for a consumed record: its headers checked and summarised, and its
size kept under the broker's message size (a record near the limit, base64-encoded, is a
third larger: its dead letter becomes a reference to the record instead of a copy)."""

import base64
import uuid

from aiokafka import ConsumerRecord

from ragops_schemas import MessageDeadLettered, Producer
from ragops_schemas.events import DeadLetterErrorType

REFERENCE_PREFIX_BYTES = 64 * 1024
"""Bytes of the original value a reference dead letter still carries (base64)."""
REFERENCE_REASON_CHARS = 4096
"""A reference's reason is cut to this many characters (an exception may quote the whole record)."""
HEADER_SUMMARY_CHARS = 256
# Room left under the size limit for what the producer adds around the JSON value: record
# and batch framing, the key and the traceparent/event_type headers (measured: < 200 bytes).
FRAMING_BYTES = 1024


def header_problem(record: ConsumerRecord) -> str | None:
    """Why the record's headers cannot be read (the first value that is not UTF-8), or None."""
    for name, value in record.headers:
        if value is None:  # a null header value is valid Kafka
            continue
        try:
            value.decode()
        except UnicodeDecodeError as error:
            return (
                f"invalid header {name!r}: value of {len(value)} bytes is not UTF-8 ({error.reason} at {error.start})"
            )
    return None


def headers_summary(record: ConsumerRecord) -> dict[str, str]:
    """The record's headers as ``{name: text}``: UTF-8 values cut to 256 characters, others
    as ``<N bytes, not UTF-8>``, null ones as ``<null>``. A repeated name keeps its last value."""
    summary: dict[str, str] = {}
    for name, value in record.headers:
        if value is None:
            summary[name] = "<null>"
            continue
        try:
            text = value.decode()
        except UnicodeDecodeError:
            text = f"<{len(value)} bytes, not UTF-8>"
        summary[name] = (
            text if len(text) <= HEADER_SUMMARY_CHARS else f"{text[:HEADER_SUMMARY_CHARS]}… <{len(value)} bytes>"
        )
    return summary


def dead_letter_for(
    record: ConsumerRecord,
    *,
    event_id: uuid.UUID,
    producer: Producer,
    consumer_group: str | None,
    error_type: DeadLetterErrorType,
    reason: str,
    attempts: int = 1,
    max_bytes: int,
    keep_value: bool = True,
) -> MessageDeadLettered:
    """The dead letter of ``record``: a full copy of its value when the letter's JSON fits in
    ``max_bytes`` (less room for framing), else :func:`reference_letter`. ``event_id`` is the
    letter's idempotency key (derived from the record's position and the consumer group).
    ``keep_value=False``: always a reference with none of the value's bytes (a record of
    personal data not yet redacted, which the kept dead-letter topic must not copy)."""
    value = record.value or b""
    letter = MessageDeadLettered(
        event_id=event_id,
        producer=producer,
        original_topic=record.topic,
        partition=record.partition,
        offset=record.offset,
        original_key=record.key.decode(errors="replace") if record.key is not None else None,
        original_value_b64=base64.b64encode(value).decode(),
        consumer_group=consumer_group,
        error_type=error_type,
        reason=reason,
        attempts=attempts,
        original_size=len(value),
        original_headers=headers_summary(record),
    )
    if not keep_value:
        return reference_letter(letter, value, prefix_bytes=0)
    return letter if fits(letter, max_bytes) else reference_letter(letter, value)


def reference_letter(
    letter: MessageDeadLettered, value: bytes, *, prefix_bytes: int = REFERENCE_PREFIX_BYTES
) -> MessageDeadLettered:
    """``letter`` as a reference to its record: the value cut to its first ``prefix_bytes``,
    the reason to :data:`REFERENCE_REASON_CHARS` characters, ``truncated`` set; topic,
    partition, offset and size say where the whole record is."""
    reason = letter.reason
    if len(reason) > REFERENCE_REASON_CHARS:
        reason = f"{reason[:REFERENCE_REASON_CHARS]}… <{len(letter.reason)} characters>"
    return letter.model_copy(
        update={
            "original_value_b64": base64.b64encode(value[:prefix_bytes]).decode(),
            "reason": reason,
            "truncated": True,
            "original_size": len(value),
        }
    )


def fits(letter: MessageDeadLettered, max_bytes: int) -> bool:
    """Whether the letter, serialised and framed, stays within ``max_bytes``."""
    return len(letter.model_dump_json()) + len(letter.key) + FRAMING_BYTES <= max_bytes

"""Structured logging for every service: one JSON object per line on stderr (structlog),
including the records of libraries that log through the standard ``logging`` module
(FastStream, aiokafka, uvicorn).

Every line logged while an event is handled carries that event's ids (:func:`event_context`),
so a search by ``trace_id`` shows one request across every service, and one by
``request_id`` or ``document_id`` everything that happened to it.

Logs hold no personal data: no texts, comments, user ids or values. An exception is logged by
its type (:func:`error_summary`), and a traceback keeps its frames but not the exceptions'
messages, which often quote the value that failed (pydantic's ``input_value=...``, a
``KeyError``'s key, a backend's answer); the whole reason goes where its record goes (the dead
letter, a quarantine with its own retention)."""

import logging
import re
import sys
import traceback
from contextlib import AbstractContextManager
from typing import Any

import structlog
from pydantic import ValidationError

from ragops_schemas import Event


def configure_logging(service: str, level: str = "INFO", fmt: str = "json") -> structlog.stdlib.BoundLogger:
    """Route stdlib and structlog records through one renderer and return the service's logger.

    Args:
        service: bound to every record as ``service``.
        level: minimum level name (``DEBUG``...``ERROR``).
        fmt: ``json`` (production, machine-readable) or ``console`` (humans at a terminal).
    """
    shared: list[structlog.typing.Processor] = [
        structlog.contextvars.merge_contextvars,
        structlog.stdlib.add_log_level,
        structlog.stdlib.add_logger_name,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
    ]
    renderer = structlog.processors.JSONRenderer() if fmt == "json" else structlog.dev.ConsoleRenderer()
    structlog.configure(
        processors=[*shared, structlog.stdlib.ProcessorFormatter.wrap_for_formatter],
        logger_factory=structlog.stdlib.LoggerFactory(),
        wrapper_class=structlog.stdlib.BoundLogger,
        cache_logger_on_first_use=True,
    )
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(
        structlog.stdlib.ProcessorFormatter(
            foreign_pre_chain=shared,
            processors=[
                structlog.stdlib.ProcessorFormatter.remove_processors_meta,
                format_exc_info_without_messages,
                renderer,
            ],
        )
    )
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    # aiokafka logs every group rebalance step at INFO; keep its warnings only.
    logging.getLogger("aiokafka").setLevel(max(logging.WARNING, root.level))
    # httpx logs every request at INFO: the monitor's SQL every few seconds would drown the rest.
    logging.getLogger("httpx").setLevel(max(logging.WARNING, root.level))
    # uvicorn's access lines quote each request's path and query, which name documents and
    # data subjects (an erasure's subject id): the gateway's route metrics count requests instead.
    # A filter, not only a level: uvicorn's own logging config (a server started with its default
    # log_config) sets the level back to INFO but keeps a logger's filters.
    access = logging.getLogger("uvicorn.access")
    access.setLevel(max(logging.WARNING, root.level))
    if _withhold_access_lines not in access.filters:
        access.addFilter(_withhold_access_lines)
    return structlog.stdlib.get_logger(service).bind(service=service)


def _withhold_access_lines(record: logging.LogRecord) -> bool:
    """Drop every uvicorn access line (see :func:`configure_logging`)."""
    return False


# Pydantic error types whose message is ours (a validator's ValueError or assert), which may
# quote the value; every other type's message is a fixed template that names no input.
_VALUE_QUOTING_ERRORS = frozenset({"value_error", "assertion_error"})


def error_summary(error: BaseException) -> str:
    """What a log line may say about ``error``: its type and, for a pydantic
    :class:`~pydantic.ValidationError`, :func:`validation_summary`; never the message, which
    may quote the value that failed."""
    if isinstance(error, ValidationError):
        return f"{type(error).__name__}: {validation_summary(error)}"
    return type(error).__qualname__


def validation_summary(error: ValidationError, most: int = 5) -> str:
    """The model and its first ``most`` errors as ``<field path>: <message>``, with the
    error type instead of the message where that can quote the input (a validator's own
    ValueError); the input values themselves never (``include_input=False``)."""
    parts = [
        f"{'.'.join(str(p) for p in item['loc']) or '<root>'}: "
        + (item["type"] if item["type"] in _VALUE_QUOTING_ERRORS else item["msg"])
        for item in error.errors(include_url=False, include_input=False, include_context=False)[:most]
    ]
    more = f" (+{error.error_count() - most} more)" if error.error_count() > most else ""
    return f"{error.title}: " + "; ".join(parts) + more


_QUOTED = re.compile(r"'(?:[^'\\]|\\.)*'")


def without_literals(text: str) -> str:
    """``text`` (a SQL engine's message) with every single-quoted run replaced by ``'…'``:
    ClickHouse quotes the statement's literals and the values it could not parse that way,
    while names, codes and positions stay readable."""
    return _QUOTED.sub("'…'", text)


def _chain(error: BaseException, seen: frozenset[int] = frozenset()) -> list[str]:
    """The frames and exception types of ``error``'s traceback, its causes first, as
    :mod:`traceback` prints them but with each exception's message left out (``seen``: the
    ids of the exceptions printed after it, so a cycle of causes ends)."""
    lines: list[str] = []
    cause = error.__cause__ or (None if error.__suppress_context__ else error.__context__)
    if cause is not None and id(cause) not in seen | {id(error)}:
        lines += _chain(cause, seen | {id(error)})
        lines.append(
            "\nThe above exception was the direct cause of the following exception:\n\n"
            if error.__cause__ is not None
            else "\nDuring handling of the above exception, another exception occurred:\n\n"
        )
    if error.__traceback__ is not None:
        lines.append("Traceback (most recent call last):\n")
        lines += traceback.format_tb(error.__traceback__)
    lines.append(f"{error_summary(error)}\n")
    return lines


def format_exc_info_without_messages(
    logger: Any, method_name: str, event_dict: structlog.typing.EventDict
) -> structlog.typing.EventDict:
    """structlog processor, in place of ``format_exc_info``: ``exc_info`` becomes an
    ``exception`` field with the traceback's frames and exception types but no message."""
    exc_info = event_dict.pop("exc_info", None)
    if exc_info is True:
        exc_info = sys.exc_info()
    error = exc_info if isinstance(exc_info, BaseException) else exc_info[1] if isinstance(exc_info, tuple) else None
    if error is not None:
        event_dict["exception"] = "".join(_chain(error)).rstrip("\n")
    return event_dict


def event_fields(event: Event) -> dict[str, str]:
    """The ids that tie a log line to ``event``: ``trace_id``, ``event_id``, ``event_type``
    and, for an event about a request or a document, ``request_id`` or ``document_id``."""
    fields = {"trace_id": event.trace_id, "event_id": str(event.event_id), "event_type": event.event_type}
    for name in ("request_id", "document_id"):
        if isinstance(value := getattr(event, name, None), str):
            fields[name] = value
    return fields


def event_context(event: Event) -> AbstractContextManager[None]:
    """A block in which every log line carries :func:`event_fields` of ``event`` (structlog
    context variables, merged by ``merge_contextvars``); on exit the previous values come
    back, so the next event's lines never carry this one's ids. Threads started with
    ``asyncio.to_thread`` inside the block inherit the ids."""
    return structlog.contextvars.bound_contextvars(**event_fields(event))

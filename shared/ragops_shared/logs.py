"""Structured logging for every service: one JSON object per line on stderr (structlog),
including the records of libraries that log through the standard ``logging`` module
(FastStream, aiokafka, uvicorn).

Every line logged while an event is handled carries that event's ids (:func:`event_context`),
so a search by ``trace_id`` shows one request across every service, and one by
``request_id`` or ``document_id`` everything that happened to it."""

import logging
import sys
from contextlib import AbstractContextManager

import structlog

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
                structlog.processors.format_exc_info,
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
    return structlog.stdlib.get_logger(service).bind(service=service)


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

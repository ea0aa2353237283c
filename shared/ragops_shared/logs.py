"""Structured logging for every service: one JSON object per line on stderr (structlog),
including the records of libraries that log through the standard ``logging`` module
(FastStream, aiokafka, uvicorn)."""

import logging
import sys

import structlog


def configure_logging(service: str, level: str = "INFO", fmt: str = "json") -> structlog.stdlib.BoundLogger:
    """Route stdlib and structlog records through one renderer and return the service's logger.

    Args:
        service: bound to every record as ``service``.
        level: minimum level name (``DEBUG``...``ERROR``).
        fmt: ``json`` (production, machine-readable) or ``console`` (humans at a terminal).
    """
    shared = [
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
            processors=[structlog.stdlib.ProcessorFormatter.remove_processors_meta, structlog.processors.format_exc_info, renderer],
        )
    )
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    # aiokafka logs every group rebalance step at INFO; keep its warnings only.
    logging.getLogger("aiokafka").setLevel(max(logging.WARNING, root.level))
    # httpx logs every request at INFO: the monitor's SQL every few seconds would drown the rest.
    logging.getLogger("httpx").setLevel(max(logging.WARNING, root.level))
    return structlog.get_logger(service).bind(service=service)

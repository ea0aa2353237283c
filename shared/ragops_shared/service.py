"""What every service's entry point does: identify itself, configure logging, build its
FastStream application and run it until SIGINT/SIGTERM."""

import asyncio
import sys
from collections.abc import Callable, Sequence
from importlib.metadata import PackageNotFoundError, version
from typing import Protocol, TypeVar

from faststream.asgi import AsgiFastStream, HttpHandler
from faststream.kafka import KafkaBroker
from faststream.specification import AsyncAPI
from pydantic import ValidationError
from pydantic_settings import BaseSettings

from ragops_schemas import Producer
from ragops_schemas.audit import AuditRecorded
from ragops_shared.access import guard_for
from ragops_shared.audit import audited_refusals
from ragops_shared.broker import EventPublisher
from ragops_shared.identity import Role
from ragops_shared.logs import configure_logging
from ragops_shared.ops import ops_routes
from ragops_shared.settings import KafkaSettings, PlatformSettings
from ragops_shared.tracing import LIGHT, ComputeSpec, declare


def platform_version() -> str:
    """The installed ``ragops`` distribution's version (``0+unknown`` when run from a bare tree)."""
    try:
        return version("ragops")
    except PackageNotFoundError:
        return "0+unknown"


def producer_for(service: str) -> Producer:
    """The ``producer`` stamped on every event a service emits."""
    return Producer(name=service, version=platform_version())


def asyncapi(service: str, description: str, *brokers: KafkaBroker) -> AsyncAPI:
    """The AsyncAPI document spec for a service (``make schemas`` renders it)."""
    return AsyncAPI(*brokers, title=f"ragops-{service}", version=platform_version(), description=description)


def service_app(
    service: str,
    description: str,
    broker: KafkaBroker,
    *,
    platform: PlatformSettings,
    warm_up: Sequence[Callable[[], object]] = (),
    close: Sequence[Callable[[], object]] = (),
    routes: Sequence[tuple[str, HttpHandler, Sequence[Role]]] = (),
    compute: ComputeSpec = LIGHT,
) -> AsgiFastStream:
    """The application of a service: its AsyncAPI document; heavy resources (models, stores)
    loaded in a worker thread before the broker starts consuming and released after it
    stopped; ``/health``, ``/ready`` and ``/metrics`` on its HTTP port, plus ``routes``
    (path, handler, the roles it allows).

    ``/metrics`` and ``routes`` are behind the service's guard (:func:`~ragops_shared.access.guard_for`
    on ``platform``; a handler finds its caller with :func:`~ragops_shared.access.principal_of`).
    Each call it refuses (401/403) is logged and audited: the service publishes its
    ``auth.refused`` ``AuditRecorded`` (an anonymous one in ``platform.tenant``), waiting at
    most ``platform.auth.refusal_audit_timeout_s`` before logging the entry instead.

    ``compute``: what the service computes on, charged on its events (:mod:`ragops_shared.tracing`;
    a model-running service gives its device and threads). With ``platform.otel.endpoint``
    its published events are exported as spans from startup; shutdown flushes them."""
    instruments = declare(service, compute)
    audit = EventPublisher(broker, producer_for(service), [AuditRecorded], dead_letters=False)
    guard = guard_for(
        platform,
        audited_refusals(audit, tenant=platform.tenant, timeout_s=platform.auth.refusal_audit_timeout_s),
    )
    loaded = {"ready": False}
    app = AsgiFastStream(
        broker,
        asgi_routes=[
            *ops_routes(broker, lambda: loaded["ready"], guard),
            *((path, guard.protect(handler, *roles)) for path, handler, roles in routes),
        ],
        specification=asyncapi(service, description),
    )

    @app.on_startup
    async def load() -> None:
        instruments.start(service, platform_version(), platform.otel)
        for step in warm_up:
            await asyncio.to_thread(step)

    @app.after_startup
    async def serving() -> None:
        loaded["ready"] = True

    @app.on_shutdown
    async def draining() -> None:
        loaded["ready"] = False

    @app.after_shutdown
    async def release() -> None:
        for step in close:
            await asyncio.to_thread(step)
        await asyncio.to_thread(instruments.stop)

    return app


class ServiceSettings(Protocol):
    platform: PlatformSettings
    kafka: KafkaSettings


S = TypeVar("S", bound=ServiceSettings)


def load_settings(settings_type: Callable[[], S]) -> S:
    """Read a service's settings from the environment; on an invalid or missing setting, exit
    with status 2 and one line per problem naming the environment variable."""
    try:
        return settings_type()
    except ValidationError as error:
        prefix = _env_prefix(error.title)
        for problem in error.errors(include_url=False):
            name = prefix + "_".join(str(part) for part in problem["loc"]).upper()
            print(f"invalid setting {name or error.title}: {problem['msg']}", file=sys.stderr)
        raise SystemExit(2) from None


def _env_prefix(settings_class: str) -> str:
    """The env prefix of the BaseSettings subclass named ``settings_class`` ('' if unknown)."""
    pending = list(BaseSettings.__subclasses__())
    while pending:
        cls = pending.pop()
        if cls.__name__ == settings_class:
            return str(cls.model_config.get("env_prefix", ""))
        pending += cls.__subclasses__()
    return ""


def run_service(service: str, settings_type: Callable[[], S], create_app: Callable[[S], AsgiFastStream]) -> None:
    """Entry point of ``python -m ragops_<service>``: settings (exit 2 naming a bad one), JSON
    logs, then the app and its HTTP endpoints until SIGINT/SIGTERM (in-flight handlers are
    drained first)."""
    settings = load_settings(settings_type)
    configure_logging(service, settings.platform.log_level, settings.platform.log_format)
    app = create_app(settings)
    asyncio.run(
        app.run(
            run_extra_options={
                "host": settings.platform.ops_host,
                "port": settings.platform.ops_port,
                "log_config": None,
            }
        )
    )

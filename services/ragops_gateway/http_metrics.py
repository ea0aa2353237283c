"""HTTP server metrics of the gateway, named after the OpenTelemetry HTTP semantic conventions
(https://opentelemetry.io/docs/specs/semconv/http/http-metrics/) in their Prometheus form:

- ``http_server_request_duration_seconds`` (histogram, ``http.server.request.duration``): labels
  ``http_request_method`` (a known method, else ``_OTHER``), ``http_route`` (the matched route's
  template, e.g. ``/v1/answers/{request_id}``, never the raw path, so the label's values are
  bounded; empty when no route matched) and ``http_response_status_code``;
- ``http_server_active_requests`` (gauge, ``http.server.active_requests``): requests in flight,
  by ``http_request_method``.

Both are on the gateway's ``/metrics`` (the process's default registry).
"""

import time

from prometheus_client import Gauge, Histogram
from starlette.routing import BaseRoute
from starlette.types import ASGIApp, Message, Receive, Scope, Send

REQUEST_DURATION = Histogram(
    "http_server_request_duration_seconds",
    "Duration of HTTP server requests (s), until the response is sent.",
    ["http_request_method", "http_route", "http_response_status_code"],
    # The conventions' advised boundaries, and the longer waits of POST /v1/queries (up to its timeout).
    buckets=(0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.25, 0.5, 0.75, 1, 2.5, 5, 7.5, 10, 30, 60, 120),
)
ACTIVE_REQUESTS = Gauge("http_server_active_requests", "HTTP server requests in flight.", ["http_request_method"])
KNOWN_METHODS = frozenset({"CONNECT", "DELETE", "GET", "HEAD", "OPTIONS", "PATCH", "POST", "PUT", "TRACE"})


def method_label(method: str) -> str:
    """``method`` if it is a known HTTP method, else ``_OTHER`` (the conventions' rule, which
    keeps a client's invented methods from growing the label's values)."""
    return method if method in KNOWN_METHODS else "_OTHER"


class HttpMetrics:
    """ASGI middleware recording every HTTP request in :data:`REQUEST_DURATION` and
    :data:`ACTIVE_REQUESTS`. The route is read after the app ran, from ``scope["route"]``, which
    the router sets on the request's scope when a route matches."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        method = method_label(scope["method"])
        status_code = 500  # if the app raises before it starts a response

        async def sending(message: Message) -> None:
            nonlocal status_code
            if message["type"] == "http.response.start":
                status_code = message["status"]
            await send(message)

        started = time.perf_counter()
        active = ACTIVE_REQUESTS.labels(http_request_method=method)
        active.inc()
        try:
            await self.app(scope, receive, sending)
        finally:
            active.dec()
            route = scope.get("route")
            REQUEST_DURATION.labels(
                http_request_method=method,
                http_route=getattr(route, "path", "") if isinstance(route, BaseRoute) else "",
                http_response_status_code=str(status_code),
            ).observe(time.perf_counter() - started)

"""Route guards: every HTTP route but the probes (``/health``, ``/ready``) names the roles it
allows, and one guard authenticates the caller, checks the role, and reports each refusal.

Two adapters over one check: :meth:`Guard.dependency` for FastAPI routes (the gateway) and
:meth:`Guard.protect` for FastStream's ASGI handlers (every service's ``/metrics``, the
sink's ``/sql``). A refusal is 401 (no valid credential) or 403 (no allowed role) with
``{"detail": ...}`` only, and is passed to ``on_refused`` (the audit trail) before the
answer goes out.
"""

import asyncio
import json
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Any, Literal

import structlog
from fastapi import HTTPException, Request, status
from faststream._internal.basic_types import LoggerProto
from faststream._internal.di.config import FastDependsConfig
from faststream.asgi import AsgiResponse, HttpHandler
from faststream.asgi.types import Receive, Scope, Send

from ragops_shared.identity import (
    Authenticator,
    Forbidden,
    Principal,
    Role,
    Unauthenticated,
    authenticator_for,
    authorize,
)
from ragops_shared.settings import PlatformSettings

log = structlog.get_logger(__name__)


@dataclass(frozen=True)
class Refusal:
    """A call refused at the door.

    Attributes:
        status: 401 or 403.
        method, path: what was called (no query string: it may carry anything).
        reason: why, for the audit trail and the log (never the credential).
        principal: who, when the credential verified (403); ``None`` for a 401.
    """

    status: Literal[401, 403]
    method: str
    path: str
    reason: str
    principal: Principal | None


OnRefused = Callable[[Refusal], Awaitable[None]]


async def log_refusal(refusal: Refusal) -> None:
    """A structured warning ``request_refused`` (status, method, path, subject, reason)."""
    log.warning(
        "request_refused",
        status=refusal.status,
        method=refusal.method,
        path=refusal.path,
        subject=refusal.principal.subject if refusal.principal else None,
        reason=refusal.reason,
    )


class Guard:
    """Authenticates and authorizes one call against the roles a route allows."""

    def __init__(self, authenticator: Authenticator, on_refused: OnRefused = log_refusal) -> None:
        self.authenticator = authenticator
        self.on_refused = on_refused

    async def check(self, authorization: str | None, allowed: frozenset[Role], method: str, path: str) -> Principal:
        """The caller, if it may call.

        Raises:
            Unauthenticated: 401 (reported to ``on_refused`` first).
            Forbidden: 403 (reported to ``on_refused`` first).
        """
        try:
            # A JWKS fetch blocks: never on the event loop.
            principal = await asyncio.to_thread(self.authenticator.authenticate, authorization)
        except Unauthenticated as error:
            await self.on_refused(Refusal(401, method, path, str(error), None))
            raise
        try:
            authorize(principal, allowed)
        except Forbidden as error:
            await self.on_refused(Refusal(403, method, path, str(error), principal))
            raise
        return principal

    def dependency(self, *roles: Role) -> Callable[[Request], Awaitable[Principal]]:
        """A FastAPI dependency admitting callers with one of ``roles``; 401/403 otherwise."""
        allowed = frozenset(roles)

        async def principal(request: Request) -> Principal:
            try:
                return await self.check(request.headers.get("authorization"), allowed, request.method, request.url.path)
            except Unauthenticated:
                raise HTTPException(
                    status.HTTP_401_UNAUTHORIZED, "authentication required", headers={"WWW-Authenticate": "Bearer"}
                ) from None
            except Forbidden:
                raise HTTPException(status.HTTP_403_FORBIDDEN, "not allowed") from None

        return principal

    def protect(self, handler: HttpHandler, *roles: Role) -> HttpHandler:
        """``handler`` (a FastStream ASGI handler) behind the check; the caller is in
        ``scope["state"]["principal"]`` for it."""
        return _GuardedHandler(handler, self, frozenset(roles))


class _GuardedHandler(HttpHandler):
    """A FastStream ASGI handler that runs only for callers the guard admits. FastStream
    configures handlers it is given (dependency injection, logger): passed on to the inner one."""

    def __init__(self, inner: HttpHandler, guard: Guard, allowed: frozenset[Role]) -> None:
        super().__init__(
            inner.func,
            include_in_schema=inner.include_in_schema,
            description=inner.description,
            methods=inner.methods,
            tags=inner.tags,
            unique_id=inner.unique_id,
        )
        self.inner, self.guard, self.allowed = inner, guard, allowed

    def update_fd_config(self, config: FastDependsConfig) -> None:
        self.inner.update_fd_config(config)

    def set_logger(self, logger: LoggerProto | None) -> None:
        self.inner.set_logger(logger)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        headers = {key.decode("latin-1").lower(): value.decode("latin-1") for key, value in scope["headers"]}
        try:
            principal = await self.guard.check(
                headers.get("authorization"), self.allowed, scope["method"], scope["path"]
            )
        except Unauthenticated:
            await _refuse(401, "authentication required", {"www-authenticate": "Bearer"})(scope, receive, send)
            return
        except Forbidden:
            await _refuse(403, "not allowed", {})(scope, receive, send)
            return
        scope.setdefault("state", {})["principal"] = principal
        await self.inner(scope, receive, send)


def _refuse(code: int, detail: str, headers: dict[str, str]) -> AsgiResponse:
    return AsgiResponse(
        json.dumps({"detail": detail}).encode(), code, headers={"content-type": "application/json", **headers}
    )


def guard_for(platform: PlatformSettings, on_refused: OnRefused = log_refusal) -> Guard:
    """The guard of a service: API keys from ``RAGOPS_AUTH_API_KEYS_FILE`` (or
    ``<data_dir>/auth/api-keys.json``), JWTs when an issuer is configured."""
    return Guard(authenticator_for(platform.auth, platform.data_dir), on_refused)


def principal_of(scope: Mapping[str, Any]) -> Principal:
    """The caller :meth:`Guard.protect` admitted, from a FastStream ASGI handler's ``scope``.

    Raises:
        KeyError: the handler is not behind :meth:`Guard.protect`.
    """
    principal = scope["state"]["principal"]
    assert isinstance(principal, Principal)
    return principal

"""The console's session: the credential a person pasted into the login form, kept in a cookie
and authenticated on every page exactly as an ``Authorization: Bearer`` header would be (the
gateway's :class:`~ragops_shared.access.Guard`: a revoked key stops working at once, every
refusal is audited), plus the checks a cookie needs that a header does not: CSRF tokens and
same-origin posts.

The cookie (:data:`COOKIE`) holds the credential itself (an API key or a JWT) with ``HttpOnly``
(no script reads it), ``SameSite=Strict`` (no other site's page sends it), ``Path=/``,
``Secure`` over https (or always, ``RAGOPS_GATEWAY_CONSOLE_SECURE_COOKIE``) and a ``Max-Age``
(``RAGOPS_GATEWAY_CONSOLE_SESSION_S``). Nothing is stored on the server: revoking the key ends
every session of it. Each form carries a CSRF token, the HMAC-SHA256 of the credential under
the console's key, and a post is taken only with an ``Origin`` (or, without one, a ``Referer``)
of the gateway's own host (OWASP CSRF Prevention Cheat Sheet: synchronizer token plus
origin verification; ``SameSite=Strict`` is the defence in depth).
"""

import hashlib
import hmac
from collections.abc import Awaitable, Callable
from urllib.parse import urlsplit

from fastapi import Request, Response

from ragops_gateway.settings import GatewaySettings
from ragops_shared.access import Guard
from ragops_shared.identity import Forbidden, Principal, Role, Unauthenticated

COOKIE = "ragops_console"
CSRF_FIELD = "csrf"
LOGIN_PATH = "/console/login"


class LoginRequired(Exception):
    """No valid credential in the cookie: the page redirects to :data:`LOGIN_PATH`."""


class NotAllowed(Exception):
    """A valid credential without a role the page allows (403 page)."""


class BadForm(Exception):
    """A console post without a valid CSRF token or from another origin (400 page)."""


class Sessions:
    """Authenticates console requests with the gateway's ``guard`` (see the module)."""

    def __init__(self, settings: GatewaySettings, guard: Guard) -> None:
        self.guard = guard
        self.max_age_s = settings.console_session_s
        self.always_secure = settings.console_secure_cookie
        self._key = settings.form_key()

    @property
    def key(self) -> bytes:
        """The gateway's own HMAC key (:meth:`GatewaySettings.form_key`), which the review queue's
        tokens use too (:func:`ragops_gateway.reviews.queue_token`): read once, here."""
        return self._key

    async def login(self, request: Request, credential: str) -> Principal:
        """The principal of ``credential`` (a refusal audited as the guard audits one).

        Raises:
            Unauthenticated: not a valid credential.
        """
        return await self.guard.check(f"Bearer {credential}", frozenset(Role), request.method, request.url.path)

    def set_cookie(self, request: Request, response: Response, credential: str) -> None:
        response.set_cookie(
            COOKIE,
            credential,
            max_age=self.max_age_s,
            path="/",
            httponly=True,
            samesite="strict",
            secure=self.always_secure or request.url.scheme == "https",
        )

    @staticmethod
    def clear_cookie(response: Response) -> None:
        response.delete_cookie(COOKIE, path="/", httponly=True, samesite="strict")

    def page(self, allowed: frozenset[Role]) -> Callable[[Request], Awaitable[Principal]]:
        """A FastAPI dependency: the caller of a console page, from its cookie, if it holds one
        of ``allowed``. Raises :class:`LoginRequired` (no valid credential) or
        :class:`NotAllowed` (no allowed role), each reported to the guard's audit first."""

        async def principal(request: Request) -> Principal:
            credential = request.cookies.get(COOKIE)
            try:
                return await self.guard.check(
                    None if credential is None else f"Bearer {credential}", allowed, request.method, request.url.path
                )
            except Unauthenticated:
                raise LoginRequired from None
            except Forbidden:
                raise NotAllowed from None

        return principal

    def csrf_token(self, request: Request) -> str:
        """The CSRF token of the request's session (empty without one)."""
        credential = request.cookies.get(COOKIE)
        if credential is None:
            return ""
        return hmac.new(self._key, credential.encode(), hashlib.sha256).hexdigest()

    def check_post(self, request: Request, token: str | None) -> None:
        """A console post's CSRF token (if the session has one) and origin.

        Raises:
            BadForm: a wrong or missing token, or an ``Origin``/``Referer`` of another host (or neither).
        """
        if not same_origin(request):
            raise BadForm("the form was not sent from this site")
        expected = self.csrf_token(request)
        if expected and not hmac.compare_digest(expected, token or ""):
            raise BadForm("the form is stale or not from this site: open the page again")


def same_origin(request: Request) -> bool:
    """Whether the request's ``Origin`` (else its ``Referer``) names the host it was sent to.
    The host and port are compared, not the scheme: behind a TLS-terminating proxy the gateway
    sees http where the browser sent https."""
    source = request.headers.get("origin") or request.headers.get("referer")
    if not source or source == "null":
        return False
    return urlsplit(source).netloc == request.headers.get("host", request.url.netloc)

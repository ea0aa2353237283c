"""The console's routes: login and logout, the pages over the analytics queries
(:mod:`ragops_analytics.queries`, "console" section), ``/docs`` (Swagger UI from the
``swagger_ui_bundle`` package, no CDN) and ``/openapi.json``.

Every page but the login form and its stylesheet needs the session cookie
(:mod:`ragops_gateway.console.session`) and a role its ``ROUTE_ROLES`` entry names; a page
reads the caller's tenant's rows only (every tenant's, with a tenant filter, for a
``platform`` caller). Reads block: each runs in a worker thread."""

import asyncio
import base64
import mimetypes
import re
from collections.abc import Awaitable, Callable, Iterator, Mapping, Sequence
from datetime import UTC, date, datetime, timedelta
from importlib import resources
from pathlib import Path
from typing import Annotated, Any, TypeVar
from urllib.parse import parse_qs, urlencode

import structlog
import swagger_ui_bundle  # type: ignore[import-untyped]  # no stubs: one path attribute is read
from fastapi import Depends, FastAPI, Request, Response, status
from fastapi.responses import HTMLResponse, JSONResponse, RedirectResponse
from jinja2 import Environment, PackageLoader, select_autoescape
from markupsafe import Markup
from pydantic import ValidationError

from ragops_analytics import charts, queries
from ragops_analytics.experiments import Readout, readout
from ragops_analytics.guard import ReadOnlyViolation
from ragops_analytics.store import QueryError, QueryResult, Reader, StoreUnavailable
from ragops_analytics.traces import TraceNode, request_tree
from ragops_gateway import reviews
from ragops_gateway.changes import ChangeOut, ControlPlane
from ragops_gateway.console.session import (
    COOKIE,
    CSRF_FIELD,
    LOGIN_PATH,
    BadForm,
    LoginRequired,
    NotAllowed,
    Sessions,
    same_origin,
)
from ragops_gateway.limits import TokenBuckets
from ragops_schemas import Event, Producer
from ragops_schemas.events import Citation
from ragops_shared.citations import source_label
from ragops_shared.identity import TENANT_PATTERN, Principal, Role, Unauthenticated
from ragops_shared.registry_view import ExperimentView

log = structlog.get_logger(__name__)

# What a browser may load on a console page: its own stylesheet and inline SVG charts, nothing
# from elsewhere, no framing (OWASP Secure Headers / HTTP Headers cheat sheets).
SECURITY_HEADERS = {
    "content-security-policy": "default-src 'self'; img-src 'self' data:; style-src 'self'; frame-ancestors 'none'",
    "x-content-type-options": "nosniff",
    "referrer-policy": "same-origin",
    "cache-control": "no-store",
}
CONSOLE_PREFIXES = ("/console", "/docs", "/openapi.json")
# Pages in the navigation bar, in order: each shown to who may open it.
NAVIGATION = (
    ("/console", "Overview"),
    ("/console/requests", "Requests"),
    ("/console/drift", "Drift"),
    ("/console/versions", "Versions"),
    ("/console/approvals", "Approvals"),
    ("/console/experiments", "Experiments"),
    ("/console/dead-letters", "Dead letters"),
    ("/console/review", "Review"),
    ("/console/agreement", "Agreement"),
    ("/docs", "API"),
)
OVERVIEW_DAYS = 30
PAGE_SIZE = 50
# The deepest page of the request list (10,000 rows in): deeper, the filters are too wide to page through.
MAX_PAGE = 200
REVIEW_QUEUE_SIZE = 20
FORM_MAX_BYTES = 64 * 1024
_STATIC = resources.files("ragops_gateway.console") / "static"
STATIC_FILES = frozenset(entry.name for entry in _STATIC.iterdir() if entry.is_file())
_SWAGGER = Path(swagger_ui_bundle.swagger_ui_path)
SWAGGER_FILES = frozenset({"swagger-ui.css", "swagger-ui-bundle.js", "favicon-32x32.png"})

T = TypeVar("T")
Roles = Mapping[tuple[str, str], frozenset[Role]]


class _TenantReader:
    """A reader whose every statement sees ``tenant``'s rows only (None: every tenant's)."""

    def __init__(self, reader: Reader, tenant: str | None) -> None:
        self.reader, self.tenant = reader, tenant

    def query(
        self, sql: str, parameters: Mapping[str, Any] | None = None, *, tenant: str | None = None, audit: bool = False
    ) -> QueryResult:
        return self.reader.query(sql, parameters, tenant=self.tenant, audit=audit)


def scope_of(principal: Principal) -> str | None:
    """Whose rows a caller reads: its tenant's, or every tenant's for a platform caller."""
    return None if Role.PLATFORM in principal.roles else principal.tenant


def _number(value: object, digits: int = 3) -> str:
    if value is None:
        return "–"
    if isinstance(value, float):
        return f"{value:.{digits}f}"
    return str(value)


def _environment() -> Environment:
    environment = Environment(
        loader=PackageLoader("ragops_gateway.console", "templates"),
        autoescape=select_autoescape(default=True, default_for_string=True),
    )
    environment.filters["number"] = _number
    return environment


class Unavailable(Exception):
    """The analytics store cannot answer (or is not configured): a 503 page."""


class Refused(Exception):
    """A request the console refuses past the guard: its status and why, on the error page
    (``retry_after``: seconds, sent as ``Retry-After``)."""

    def __init__(self, status_code: int, detail: str, retry_after: int | None = None) -> None:
        super().__init__(detail)
        self.status_code = status_code
        self.retry_after = retry_after


async def _read(reader: Reader | None, read: Callable[[Reader], T]) -> T:
    """``read(reader)`` in a worker thread; :class:`Unavailable` when it cannot answer."""
    if reader is None:
        raise Unavailable("analytics is not configured here (RAGOPS_ANALYTICS_SQL_URL or _CLICKHOUSE_URL)")
    try:
        return await asyncio.to_thread(read, reader)
    except (QueryError, StoreUnavailable, ReadOnlyViolation) as error:
        log.error("console_read_failed", error=repr(error))
        raise Unavailable("analytics cannot answer now; try again later") from None


async def _form(request: Request) -> dict[str, str]:
    """An ``application/x-www-form-urlencoded`` body, each field's first value; at most
    :data:`FORM_MAX_BYTES` (a longer body is a :class:`BadForm`)."""
    body = bytearray()
    async for chunk in request.stream():
        body += chunk
        if len(body) > FORM_MAX_BYTES:
            raise BadForm("the form is too large")
    fields = parse_qs(body.decode("utf-8", "replace"), keep_blank_values=True, max_num_fields=50)
    return {name: values[0] for name, values in fields.items()}


def _day(text: str | None, default: date) -> date:
    return date.fromisoformat(text) if text else default


def _optional(text: str | None, parse: Callable[[str], T]) -> T | None:
    return parse(text) if text not in (None, "") else None


def _bad_filter(since: date, until: date, page_number: int, tenant: str | None, max_days: int) -> str | None:
    """Why the request list refuses these filters (a 400 page), or None: the range (both days
    included) must run forwards over at most ``max_days`` days, end before :data:`date.max` (its
    next midnight is the bound), the page be at most :data:`MAX_PAGE`, a tenant be a tenant name."""
    if until < since:
        return f"The range ends ({until}) before it starts ({since})."
    if (until - since).days + 1 > max_days:
        return f"The range spans {(until - since).days + 1} days: at most {max_days} are searched at once."
    if until >= date.max:
        return f"The range ends too late ({until})."
    if page_number > MAX_PAGE:
        return f"Page {page_number} is past the last one listed ({MAX_PAGE}): narrow the filters instead."
    if tenant is not None and not re.fullmatch(TENANT_PATTERN, tenant):
        return "The tenant is not a tenant name."
    return None


def add_console_routes(
    app: FastAPI,
    sessions: Sessions,
    roles: Roles,
    reader: Reader | None,
    control: ControlPlane,
    experiments: ExperimentView,
    publish: Callable[[Event], Awaitable[None]],
    producer: Producer,
    *,
    buckets: TokenBuckets,
    max_days: int,
) -> None:
    """The console's routes on ``app`` (see the module); ``roles``: the gateway's route table;
    ``publish`` sends an event as the API's routes do (503 when the broker does not take it);
    every page read takes a token of its tenant's ``reads`` bucket in ``buckets`` (429 page
    without one); the request list searches at most ``max_days`` days at once."""
    templates = _environment()

    def page(path: str, method: str = "GET") -> Callable[..., Any]:
        allowed = sessions.page(roles[method, path])
        if method != "GET":
            return allowed

        async def within_rate(principal: Annotated[Principal, Depends(allowed)]) -> Principal:
            retry_after = buckets.take(principal.tenant, "reads")
            if retry_after:
                raise Refused(
                    status.HTTP_429_TOO_MANY_REQUESTS,
                    f"Too many pages at once: open this one again in {retry_after} s.",
                    retry_after,
                )
            return principal

        return within_rate

    def render(
        request: Request, template: str, principal: Principal | None, status_code: int = 200, **context: Any
    ) -> HTMLResponse:
        held = principal.roles if principal is not None else frozenset()
        navigation = [(path, label) for path, label in NAVIGATION if held & roles["GET", path]]
        body = templates.get_template(template).render(
            request_path=request.url.path,
            navigation=navigation,
            principal=principal,
            csrf=sessions.csrf_token(request),
            csrf_field=CSRF_FIELD,
            **context,
        )
        return HTMLResponse(body, status_code=status_code)

    @app.middleware("http")
    async def security_headers(request: Request, call_next: Callable[[Request], Any]) -> Response:
        response: Response = await call_next(request)
        if request.url.path.startswith(CONSOLE_PREFIXES):
            response.headers.update(SECURITY_HEADERS)
        return response

    @app.exception_handler(LoginRequired)
    async def login_required(request: Request, _: LoginRequired) -> Response:
        response = RedirectResponse(LOGIN_PATH, status.HTTP_303_SEE_OTHER)
        if request.cookies.get(COOKIE) is not None:
            sessions.clear_cookie(response)  # revoked or expired: the cookie is useless now
        return response

    @app.exception_handler(NotAllowed)
    async def not_allowed(request: Request, _: NotAllowed) -> Response:
        return render(
            request,
            "error.html",
            None,
            status.HTTP_403_FORBIDDEN,
            title="Not allowed",
            message=("Your credential has no role that may open this page."),
        )

    @app.exception_handler(BadForm)
    async def bad_form(request: Request, error: BadForm) -> Response:
        return render(
            request, "error.html", None, status.HTTP_400_BAD_REQUEST, title="Form refused", message=str(error)
        )

    @app.exception_handler(Refused)
    async def refused(request: Request, error: Refused) -> Response:
        response = render(request, "error.html", None, error.status_code, title="Not done", message=str(error))
        if error.retry_after is not None:
            response.headers["retry-after"] = str(error.retry_after)
        return response

    @app.exception_handler(Unavailable)
    async def unavailable(request: Request, error: Unavailable) -> Response:
        return render(
            request, "error.html", None, status.HTTP_503_SERVICE_UNAVAILABLE, title="Unavailable", message=str(error)
        )

    # ------------------------------------------------------------------ login, assets

    @app.get(LOGIN_PATH, include_in_schema=False)
    async def login_form(request: Request) -> HTMLResponse:
        return render(request, "login.html", None, error=None)

    @app.post(LOGIN_PATH, include_in_schema=False)
    async def login(request: Request) -> Response:
        """Checks the pasted credential as the guard would and keeps it in the session cookie."""
        if not same_origin(request):
            raise BadForm("the form was not sent from this site")
        credential = (await _form(request)).get("credential", "").strip()
        try:
            principal = await sessions.login(request, credential)
        except Unauthenticated:
            return render(request, "login.html", None, status.HTTP_401_UNAUTHORIZED, error="Not a valid credential.")
        first = next((path for path, _ in NAVIGATION if principal.roles & roles["GET", path]), "/docs")
        response = RedirectResponse(first, status.HTTP_303_SEE_OTHER)
        sessions.set_cookie(request, response, credential)
        log.info("console_login", subject=principal.subject, tenant=principal.tenant)
        return response

    @app.post("/console/logout", include_in_schema=False)
    async def logout(
        request: Request, principal: Annotated[Principal, Depends(page("/console/logout", "POST"))]
    ) -> Response:
        sessions.check_post(request, (await _form(request)).get(CSRF_FIELD))
        response = RedirectResponse(LOGIN_PATH, status.HTTP_303_SEE_OTHER)
        sessions.clear_cookie(response)
        log.info("console_logout", subject=principal.subject)
        return response

    @app.get("/console/static/{name}", include_in_schema=False)
    async def static(name: str) -> Response:
        if name not in STATIC_FILES:
            return Response(status_code=status.HTTP_404_NOT_FOUND)
        return Response((_STATIC / name).read_bytes(), media_type=mimetypes.guess_type(name)[0])

    # ------------------------------------------------------------------ pages

    Overview = Annotated[Principal, Depends(page("/console"))]

    @app.get("/console", include_in_schema=False)
    async def overview(request: Request, principal: Overview) -> HTMLResponse:
        tenant = scope_of(principal)
        since = datetime.now(UTC) - timedelta(days=OVERVIEW_DAYS)

        def read(reader: Reader) -> dict[str, Markup]:
            quality = queries.console_quality_by_day(reader, since, tenant)
            latency = queries.console_latency_by_day(reader, since, tenant)
            feedback = queries.console_feedback_by_day(reader, since, tenant)
            cost: dict[str, list[tuple[datetime, float]]] = {}
            for day, stage, usd in queries.cost_by_day(reader, since, tenant):
                cost.setdefault(stage, []).append((datetime.combine(day, datetime.min.time(), UTC), usd))
            titled = {
                "quality": (quality, "Evaluation scores by day", "mean score"),
                "latency": (latency, "Latency per stage (median)", "ms"),
                "feedback": (feedback, "Feedback by day", "share of feedback"),
                "cost": (cost, "Cost per stage by day", "USD"),
            }
            return {
                name: chart_image(charts.line_chart(series, title=title, y_label=unit), title)
                for name, (series, title, unit) in titled.items()
            }

        plots = await _read(reader, read)
        return render(
            request,
            "overview.html",
            principal,
            days=OVERVIEW_DAYS,
            plots=plots,
        )

    Requests = Annotated[Principal, Depends(page("/console/requests"))]

    @app.get("/console/requests", include_in_schema=False)
    async def requests(request: Request, principal: Requests) -> HTMLResponse:
        asked = request.query_params
        today = datetime.now(UTC).date()
        try:
            since = _day(asked.get("since"), today - timedelta(days=7))
            until = _day(asked.get("until"), today)
            version = _optional(asked.get("prompt_version"), int)
            low, high = _optional(asked.get("min_score"), float), _optional(asked.get("max_score"), float)
            page_number = max(1, _optional(asked.get("page"), int) or 1)
        except ValueError:
            return render(request, "error.html", principal, 400, title="Bad filter", message="A filter is malformed.")
        platform = Role.PLATFORM in principal.roles
        tenant = (asked.get("tenant") or None) if platform else principal.tenant
        problem = _bad_filter(since, until, page_number, tenant, max_days)
        if problem:
            return render(request, "error.html", principal, 400, title="Bad filter", message=problem)
        feedback = asked.get("feedback") or None
        if feedback not in (None, "up", "down", "none"):
            feedback = None
        metric = asked.get("metric") or None

        def read(reader: Reader) -> list[queries.ConsoleRequest]:
            return queries.console_requests(
                reader,
                tenant,
                since=datetime.combine(since, datetime.min.time(), UTC),
                until=datetime.combine(until, datetime.min.time(), UTC) + timedelta(days=1),
                prompt_version=version,
                metric=metric,
                min_score=low,
                max_score=high,
                feedback=feedback,  # type: ignore[arg-type]
                limit=PAGE_SIZE + 1,
                offset=(page_number - 1) * PAGE_SIZE,
            )

        rows = await _read(reader, read)
        filters = {name: value for name, value in asked.items() if name != "page" and value}
        return render(
            request,
            "requests.html",
            principal,
            rows=rows[:PAGE_SIZE],
            filters=filters,
            since=since.isoformat(),
            until=until.isoformat(),
            platform=platform,
            page=page_number,
            previous=urlencode(filters | {"page": page_number - 1}) if page_number > 1 else None,
            next=urlencode(filters | {"page": page_number + 1}) if len(rows) > PAGE_SIZE else None,
        )

    Detail = Annotated[Principal, Depends(page("/console/requests/{request_id}"))]

    @app.get("/console/requests/{request_id}", include_in_schema=False)
    async def request_detail(request: Request, request_id: str, principal: Detail) -> HTMLResponse:
        tenant = scope_of(principal)

        def read(
            reader: Reader,
        ) -> tuple[queries.ConsoleRequestDetail | None, list[TraceNode], queries.RequestCost | None]:
            found = queries.console_request(reader, request_id, tenant)
            if found is None:
                return None, [], None
            tree = request_tree(queries.request_events(reader, request_id, tenant=tenant))
            return found, tree, queries.request_costs(reader, [request_id], tenant).get(request_id)

        found, tree, cost = await _read(reader, read)
        if found is None:
            return render(request, "error.html", principal, 404, title="Not found", message="No such request.")
        return render(
            request,
            "request.html",
            principal,
            detail=found,
            trace=list(_flattened(tree)),
            cost=cost,
            **_request_parts(found.payloads),
        )

    Platform = Annotated[Principal, Depends(page("/console/drift"))]

    @app.get("/console/drift", include_in_schema=False)
    async def drift(request: Request, principal: Platform) -> HTMLResponse:
        tenant = scope_of(principal)

        def read(reader: Reader) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
            return queries.console_drift(reader, tenant), queries.console_training_steps(reader, tenant)

        alerts, steps = await _read(reader, read)
        return render(request, "drift.html", principal, alerts=alerts, steps=steps)

    Versions = Annotated[Principal, Depends(page("/console/versions"))]

    @app.get("/console/versions", include_in_schema=False)
    async def versions(request: Request, principal: Versions) -> HTMLResponse:
        tenant = scope_of(principal)

        def read(reader: Reader) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
            return queries.console_versions(reader, tenant), queries.console_training_steps(reader, tenant)

        registered, steps = await _read(reader, read)
        decisions = [step for step in steps if step["event_type"] == "training.candidate_evaluated"]
        return render(request, "versions.html", principal, versions=registered, decisions=decisions)

    Approvals = Annotated[Principal, Depends(page("/console/approvals"))]

    @app.get("/console/approvals", include_in_schema=False)
    async def approvals(request: Request, principal: Approvals) -> HTMLResponse:
        now = datetime.now(UTC)
        changes = [ChangeOut.of(record, now) for record in control.book.of_tenant(principal.tenant)]
        pending = [change for change in changes if change.status == "pending"]
        decided = [change for change in reversed(changes) if change.status != "pending"][:50]
        return render(request, "approvals.html", principal, pending=pending, decided=decided)

    Experiments = Annotated[Principal, Depends(page("/console/experiments"))]

    @app.get("/console/experiments", include_in_schema=False)
    async def experiments_page(request: Request, principal: Experiments) -> HTMLResponse:
        tenant = scope_of(principal)
        running = {started.experiment_id for started in experiments.book.running()}

        def read(reader: Reader) -> list[Readout]:
            scoped = _TenantReader(reader, tenant)
            found = (readout(scoped, experiment) for experiment in queries.console_experiment_ids(reader, tenant))
            return [found_readout for found_readout in found if found_readout is not None]

        readouts = await _read(reader, read)
        return render(request, "experiments.html", principal, readouts=readouts, running=running)

    DeadLetters = Annotated[Principal, Depends(page("/console/dead-letters"))]

    @app.get("/console/dead-letters", include_in_schema=False)
    async def dead_letters(request: Request, principal: DeadLetters) -> HTMLResponse:
        tenant = scope_of(principal)
        by_reason, latest = await _read(reader, lambda reader: queries.console_dead_letters(reader, tenant))
        title = "Dead letters by reason"
        chart = charts.bar_chart(
            {f"{row['error_type']}: {row['reason'][:40]}": float(row["n"]) for row in by_reason[:10]},
            title=title,
            y_label="dead letters",
        )
        return render(
            request,
            "dead_letters.html",
            principal,
            by_reason=by_reason,
            latest=latest,
            chart=chart_image(chart, title),
        )

    Reviewer = Annotated[Principal, Depends(page("/console/review"))]
    Labeller = Annotated[Principal, Depends(page("/console/review", "POST"))]

    @app.get("/console/review", include_in_schema=False)
    async def review(request: Request, principal: Reviewer) -> HTMLResponse:
        items = await _reviewed(reviews.queue(reader, principal, REVIEW_QUEUE_SIZE, sessions.key))
        saved = request.query_params.get("saved")
        return render(request, "review.html", principal, items=items, saved=saved)

    @app.post("/console/review", include_in_schema=False)
    async def label(request: Request, principal: Labeller) -> Response:
        """A reviewer's label from the queue's form, published as the API's ``POST /v1/reviews``
        publishes it (:func:`ragops_gateway.reviews.submit_review`), then back to the queue."""
        form = await _form(request)
        sessions.check_post(request, form.get(CSRF_FIELD))
        try:
            wanted = reviews.ReviewIn.model_validate(
                {
                    name: form.get(name) or None
                    for name in ("request_id", "answer_event_id", "correct", "grounded", "sampled_as", "token")
                }
                | {name: form.get(name) or None for name in ("corrected_answer", "comment")}
            )
        except ValidationError:
            raise BadForm("the label is incomplete: mark both questions") from None
        submitted = await _reviewed(reviews.submit_review(reader, publish, producer, principal, wanted, sessions.key))
        return RedirectResponse(
            f"/console/review?{urlencode({'saved': submitted.request_id})}", status.HTTP_303_SEE_OTHER
        )

    Agreement = Annotated[Principal, Depends(page("/console/agreement"))]

    @app.get("/console/agreement", include_in_schema=False)
    async def agreement(request: Request, principal: Agreement) -> HTMLResponse:
        agreements = await _reviewed(reviews.agreement(reader, principal))
        return render(request, "agreement.html", principal, agreements=agreements)

    # ------------------------------------------------------------------ the API's own page

    Docs = Annotated[Principal, Depends(page("/docs"))]
    OpenApi = Annotated[Principal, Depends(page("/openapi.json"))]
    DocsAssets = Annotated[Principal, Depends(page("/docs/assets/{name}"))]

    @app.get("/docs", include_in_schema=False)
    async def docs(request: Request, principal: Docs) -> HTMLResponse:
        return render(request, "docs.html", principal)

    @app.get("/openapi.json", include_in_schema=False)
    async def openapi(_: OpenApi) -> JSONResponse:
        return JSONResponse(app.openapi())

    @app.get("/docs/assets/{name}", include_in_schema=False)
    async def docs_assets(name: str, _: DocsAssets) -> Response:
        if name not in SWAGGER_FILES:
            return Response(status_code=status.HTTP_404_NOT_FOUND)
        content = await asyncio.to_thread((_SWAGGER / name).read_bytes)
        return Response(content, media_type=mimetypes.guess_type(name)[0])


async def _reviewed(call: Awaitable[T]) -> T:
    """``call``'s result; a :class:`~ragops_gateway.reviews.ReviewRefused` as the console's error page."""
    try:
        return await call
    except reviews.ReviewRefused as refused:
        raise Refused(refused.status_code, str(refused)) from None


def chart_image(svg: str, title: str) -> Markup:
    """An ``<img>`` of a chart's SVG as a ``data:`` URL: an image document keeps the inline
    styles matplotlib writes, which the page's ``style-src 'self'`` would block in inline SVG,
    and runs no script whatever it holds."""
    source = base64.b64encode(svg.encode()).decode()
    return Markup('<img class="chart" alt="{}" src="data:image/svg+xml;base64,{}">').format(title, source)


def _flattened(nodes: Sequence[TraceNode], depth: int = 0) -> Iterator[tuple[int, TraceNode]]:
    """The tree's nodes depth first, each with its depth (0: a root)."""
    for node in nodes:
        yield depth, node
        yield from _flattened(node.children, depth + 1)


def _request_parts(payloads: Mapping[str, Mapping[str, Any]]) -> dict[str, Any]:
    """What the request page shows from its events' payloads: the question, the retrieved
    chunks (document, version, score, text), the prompt and variant, the answer, its sources
    (each citation with its :func:`~ragops_shared.citations.source_label`, in marker order)
    and its model."""
    submitted = payloads.get("query.redacted", {})
    retrieved = payloads.get("query.context_retrieved", {})
    answered = payloads.get("query.answer_generated", {})
    lineage = answered.get("lineage") or {}
    generation = answered.get("generation") or {}
    prompt = lineage.get("prompt") or {}
    contexts: Sequence[Mapping[str, Any]] = retrieved.get("contexts") or answered.get("contexts") or []
    return {
        "question": submitted.get("question") or retrieved.get("question") or answered.get("question", ""),
        "contexts": contexts,
        "prompt_name": prompt.get("name") or retrieved.get("prompt_name") or submitted.get("prompt_name"),
        "prompt_version": prompt.get("version") or retrieved.get("prompt_version"),
        "variant": lineage.get("variant"),
        "experiment_id": lineage.get("experiment_id"),
        "answer": answered.get("answer"),
        "sources": [
            (citation, source_label(citation))
            for citation in sorted(
                (Citation.model_validate(one) for one in answered.get("citations") or []), key=lambda c: c.marker
            )
        ],
        "model": generation.get("gen_ai.request.model"),
        "usage": generation.get("usage") or {},
    }

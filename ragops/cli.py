"""``ragops``: run the embedded platform, feed it documents and questions, run the demo."""

import asyncio
import csv
import dataclasses
import difflib
import io
import json
import logging
import shutil
import signal
import sys
import threading
import time
import tomllib
from collections import Counter
from collections.abc import Coroutine, Sequence
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from importlib.metadata import version as package_version
from pathlib import Path
from typing import Annotated, Any, Literal, TypeVar
from urllib.parse import quote

import httpx
import typer
from pydantic_settings import BaseSettings, SettingsConfigDict
from rich.console import Console
from rich.progress import Progress
from rich.table import Table
from rich.text import Text
from rich.tree import Tree

from ragops import dataset_versions, report
from ragops.calibrate import calibrate
from ragops.client import PlatformClient, PlatformUnreachableError, QueryOptions, QueryTrace, RequestTimeoutError
from ragops.credentials import api_key, bearer
from ragops.demo import corpus_submissions, progress_bar, run_demo
from ragops.evaluate import run_evaluation
from ragops.gate import (
    Side,
    comparison_table,
    decide,
    discordant,
    junit_xml,
    parse_side,
    scores_by_example,
    served_versions,
)
from ragops.keys import app as keys_app
from ragops.platform import EmbeddedPlatform, PlatformError, PlatformState, alive, log_path, running_platform
from ragops.shadow import print_result, replay_retained
from ragops.supervision import SupervisorSettings
from ragops.tco import Tco, in_effect, price_list_body, total_cost
from ragops_analytics import audit
from ragops_analytics.client import AnalyticsClient
from ragops_analytics.experiments import Readout, readout
from ragops_analytics.paired import GateCheck, Threshold, compare
from ragops_analytics.queries import DEFAULT_RETENTION_DAYS, PriceListRow, cost_measurements, request_events
from ragops_analytics.store import QueryError, StoreUnavailable
from ragops_analytics.traces import TraceNode, key_facts, request_tree, tree_dicts
from ragops_evaluation.metrics import BINARY_METRICS, METRIC_NAMES
from ragops_schemas import (
    EVENT_TYPES,
    AnswerGenerated,
    DocumentIndexed,
    DocumentSubmitted,
    EvaluationComparisonCompleted,
    EvaluationRunCompleted,
    Event,
    MessageDeadLettered,
)
from ragops_schemas.changes import PromoteChange, RetireChange, RetrainChange
from ragops_schemas.events import Citation, UnsupportedFileType, content_type_for
from ragops_schemas.ids import DEFAULT_TENANT, evaluation_run_id
from ragops_schemas.lifecycle import RetrainingAction, VersionKind, VersionRef
from ragops_schemas.topics import TOPICS
from ragops_shared.abstention import DEFAULT_CALIBRATION
from ragops_shared.blobs import ContentTooLarge
from ragops_shared.citations import source_label
from ragops_shared.settings import KafkaSettings, PlatformSettings

app = typer.Typer(
    help="RAGOps: an event-driven RAG platform over Kafka.", no_args_is_help=True, pretty_exceptions_enable=False
)
app.add_typer(keys_app, name="keys")
console = Console(stderr=True)
T = TypeVar("T")
# aiokafka logs every failed reconnect; the CLI reports the outcome once instead.
logging.getLogger("aiokafka").setLevel(logging.CRITICAL)
DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"


def version_text() -> str:
    """``ragops --version``: the package's version, then the contracts it speaks: how many event
    types at which schema versions (``SCHEMA_VERSION``, the major version in each event's
    ``schema_version``), and how many topics at which topic versions (the ``.vN`` of their names)."""
    schemas = Counter(event_type.SCHEMA_VERSION for event_type in EVENT_TYPES)
    topics = Counter(spec.topic.value.rsplit(".", 1)[-1] for spec in TOPICS)
    return "\n".join(
        [
            f"ragops {package_version('ragops')}",
            f"event schemas: {len(EVENT_TYPES)} types, "
            + ", ".join(f"{n} at version {v}" for v, n in sorted(schemas.items())),
            f"topics: {len(TOPICS)}, " + ", ".join(f"{n} at {v}" for v, n in sorted(topics.items())),
        ]
    )


def _print_version(wanted: bool) -> None:
    if wanted:
        print(version_text())
        raise typer.Exit()


@app.callback()
def options(
    version: bool = typer.Option(
        False, "--version", callback=_print_version, is_eager=True, help="Print the version and the contracts'."
    ),
) -> None:
    """RAGOps: an event-driven RAG platform over Kafka."""


DataDir = Annotated[
    Path, typer.Option(help="Stores, logs and the running platform's address.", envvar="RAGOPS_DATA_DIR")
]


class GatewayAddress(BaseSettings):
    """Env prefix ``RAGOPS_``: ``RAGOPS_GATEWAY_URL``, a gateway other than the one `ragops up` runs."""

    model_config = SettingsConfigDict(env_prefix="RAGOPS_", extra="ignore")

    gateway_url: str | None = None


def _gateway_url(data_dir: Path) -> str:
    """The running platform's gateway (``RAGOPS_GATEWAY_URL`` if set).

    Raises:
        typer.BadParameter: no platform runs in ``data_dir`` and none is configured.
    """
    try:
        return GatewayAddress().gateway_url or running_platform(data_dir)["gateway_url"]
    except PlatformError as error:
        raise typer.BadParameter(f"{error} (or set RAGOPS_GATEWAY_URL and RAGOPS_API_KEY)") from None


def _gateway(data_dir: Path) -> httpx.Client:
    """A client of the gateway with the CLI's credential (:mod:`ragops.credentials`)."""
    url = _gateway_url(data_dir)
    try:
        return httpx.Client(base_url=url, auth=bearer(data_dir), timeout=30.0)
    except FileNotFoundError as error:
        raise typer.BadParameter(f"{error} (or set RAGOPS_GATEWAY_URL and RAGOPS_API_KEY)") from None


def _analytics(data_dir: Path) -> AnalyticsClient:
    """The ClickHouse server if ``RAGOPS_SINK_CLICKHOUSE_URL`` is set, else the running
    platform's gateway (``POST /v1/sql``) with the CLI's credential: the credential decides
    the tenant and whether ``audit_log`` is readable, never the request.

    Raises:
        typer.BadParameter: no platform runs in ``data_dir``, or there is no credential.
    """
    from ragops_sink.settings import SinkSettings

    url = SinkSettings().clickhouse_url
    if url:
        return AnalyticsClient(clickhouse_url=url)
    gateway = _gateway_url(data_dir)
    try:
        key = api_key(data_dir)
    except FileNotFoundError as error:
        raise typer.BadParameter(f"{error} (or set RAGOPS_API_KEY)") from None
    return AnalyticsClient(sql_url=f"{gateway}/v1/sql", api_key=key, timeout_s=120)


def _run(work: Coroutine[object, object, T]) -> T:
    """Run a client coroutine; an unreachable platform or a timeout is a red line and exit 2."""
    try:
        return asyncio.run(work)
    except (PlatformUnreachableError, RequestTimeoutError, ContentTooLarge) as error:
        console.print(f"[red]{error}")
        raise typer.Exit(2) from None


def _kafka(data_dir: Path) -> KafkaSettings:
    """The broker to talk to: ``KAFKA_BOOTSTRAP_SERVERS`` if set, else the one `ragops up` runs."""
    configured = KafkaSettings()
    if "bootstrap_servers" in configured.model_fields_set:  # KAFKA_BOOTSTRAP_SERVERS is set
        return configured
    try:
        return KafkaSettings(bootstrap_servers=running_platform(data_dir)["bootstrap_servers"])
    except PlatformError as error:
        raise typer.BadParameter(str(error)) from None


def _stop_on_sigterm() -> None:
    """SIGTERM ends the command like Ctrl-C, so every `with` block cleans up (processes, files)."""

    def interrupt(*_: object) -> None:
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, interrupt)


@app.command()
def up(
    data_dir: DataDir = Path(".ragops"),
    gateway_port: int = typer.Option(8080, help="HTTP gateway port."),
    max_restarts: int | None = typer.Option(
        None,
        help="Restarts allowed per service within the restart window "
        "(default: RAGOPS_SUPERVISOR_BUDGET_RESTARTS, 5 in RAGOPS_SUPERVISOR_BUDGET_WINDOW_S=300).",
    ),
) -> None:
    """Run the whole platform on the embedded default (Tansu, every service) until Ctrl-C.

    A service or broker whose process dies is started again after an exponential backoff
    (its consumer groups resume from their last committed offsets); one that exits more
    often than its restart budget allows stops the platform (README "Supervision")."""
    _stop_on_sigterm()
    supervisor = SupervisorSettings()
    if max_restarts is not None:
        supervisor = supervisor.model_copy(update={"budget_restarts": max_restarts})
    try:
        with EmbeddedPlatform(data_dir=data_dir, gateway_port=gateway_port, supervisor=supervisor) as platform:
            with console.status("starting Kafka and the services (first start converts the generation model)..."):
                platform.wait_ready()
            console.print(
                f"[green]RAGOps is up.[/] Kafka: {platform.kafka_settings.bootstrap_servers}  "
                f"gateway: {platform.gateway_url}  logs: {data_dir / 'logs'}"
            )
            assert platform.keys is not None
            console.print(
                f"Admin API key (every role but platform): {platform.keys.admin_file} "
                "(the CLI presents it; RAGOPS_API_KEY overrides it)."
            )
            if platform.broker_storage == "durable":
                console.print(
                    f"Kafka keeps its log in {data_dir / 'broker'}: a restart loses no event. Ctrl-C to stop."
                )
            else:
                console.print("Kafka storage is in memory: events are gone when the platform stops. Ctrl-C to stop.")
            while True:
                for gone in platform.supervise():
                    console.print(
                        f"[yellow]{gone.name} {gone.reason} (status {gone.code}); "
                        f"restarting it in {gone.delay_s:.1f} s (restart {gone.used} of "
                        f"{supervisor.budget_restarts} within {supervisor.budget_window_s:g} s), "
                        f"see {data_dir / 'logs'}"
                    )
                time.sleep(supervisor.poll_interval_s)
    except KeyboardInterrupt:
        console.print("stopped.")
    except PlatformError as error:
        console.print(f"[red]{error}")
        raise typer.Exit(1) from None


def _documents(client: PlatformClient, path: Path) -> list[DocumentSubmitted]:
    if path.suffix == ".jsonl":
        return corpus_submissions(path, client)
    files = sorted(p for p in path.rglob("*") if p.is_file()) if path.is_dir() else [path]
    documents = []
    for file in files:
        try:
            content_type = content_type_for(file)
        except UnsupportedFileType as error:
            console.print(f"[yellow]skipping {file}: {error}")
            continue
        # The resolved path: one file is one document however the command names it.
        document_id = str(file.resolve())
        documents.append(
            client.document(
                document_id,
                # utf-8-sig: a byte order mark is an encoding signature, not text.
                file.read_text(encoding="utf-8-sig", errors="replace"),
                content_type=content_type,
                source=str(file.resolve()),
            )
        )
    return documents


def ingest_summary(outcomes: Sequence[Event]) -> str:
    """One line for ``ragops ingest``: documents indexed now (with their chunks, and the chunks
    reused instead of embedded again), documents unchanged (already indexed: nothing done),
    documents that failed."""
    indexed = [o for o in outcomes if isinstance(o, DocumentIndexed) and not o.unchanged]
    unchanged = sum(isinstance(o, DocumentIndexed) and o.unchanged for o in outcomes)
    reused = sum(o.reused_chunks for o in indexed)
    return (
        f"{len(indexed)} documents indexed ({sum(o.chunk_count for o in indexed)} chunks"
        f"{f', {reused} reused' if reused else ''}), {unchanged} unchanged, "
        f"{len(outcomes) - len(indexed) - unchanged} failed"
    )


@app.command()
def ingest(
    path: Annotated[
        Path,
        typer.Argument(
            exists=True, help="A file, a folder (recursive) or a JSONL corpus ({id, text, title?, source?} per line)."
        ),
    ],
    data_dir: DataDir = Path(".ragops"),
    timeout: float = typer.Option(600.0, help="Seconds to wait for each document's outcome."),
) -> None:
    """Submit documents through Kafka and wait until each is indexed or rejected."""

    async def run() -> int:
        async with PlatformClient(_kafka(data_dir), platform=PlatformSettings(data_dir=data_dir)) as client:
            documents = _documents(client, path)
            with progress_bar(console) as progress:
                task = progress.add_task("ingesting", total=len(documents))
                results = await client.ingest(documents, timeout_s=timeout, on_done=lambda _: progress.advance(task))
        outcomes = [outcome for _, outcome in results]
        failed = 0
        for document, outcome in results:
            if not isinstance(outcome, DocumentIndexed):
                failed += 1
                console.print(f"[red]{document.document_id}: {outcome.event_type}: {getattr(outcome, 'reason', '')}")
        console.print(ingest_summary(outcomes))
        return 1 if failed else 0

    raise typer.Exit(_run(run()))


@app.command()
def ask(
    question: str,
    data_dir: DataDir = Path(".ragops"),
    top_k: int = typer.Option(5, min=1, max=100),
    filters: list[str] = typer.Option(
        [],
        "--filter",
        help="KEY=VALUE payload filter (document_id, title, source or a metadata key); repeat for several.",
    ),
    prompt_name: str | None = typer.Option(None, help="Prompt template (default: the service's)."),
    prompt_version: int | None = typer.Option(
        None, min=1, help="Pinned prompt version (default: the experiment arm's, else production)."
    ),
    timeout: float = typer.Option(120.0, help="Seconds to wait for the answer."),
    as_json: bool = typer.Option(False, "--json", help="Print the AnswerGenerated event as JSON."),
) -> None:
    """Ask a question through Kafka and print its request id (for `ragops trace` and `ragops feedback`),
    the answer and its sources."""
    if any("=" not in item for item in filters):
        raise typer.BadParameter("--filter takes KEY=VALUE")
    fields: QueryOptions = {"top_k": top_k, "prompt_name": prompt_name, "prompt_version": prompt_version}
    if filters:
        fields["filters"] = {key: value for key, _, value in (item.partition("=") for item in filters)}

    async def run() -> int:
        async with PlatformClient(_kafka(data_dir)) as client:
            [trace] = await client.ask([client.question(question, **fields)], timeout_s=timeout)
        if isinstance(trace.outcome, MessageDeadLettered):
            console.print(Text(f"the request {trace.submitted.request_id} failed: {trace.outcome.reason}", style="red"))
            return 1
        # Not waiting for the evaluation, a request ends in its answer or its dead letter.
        assert isinstance(trace.outcome, AnswerGenerated)
        if as_json:
            print(trace.outcome.model_dump_json(indent=2))
        else:
            # On stderr with the sources, so stdout stays the answer alone for scripts.
            console.print(Text(f"request {trace.outcome.request_id}", style="bold"))
            print(trace.outcome.answer or "(no answer)")
            if trace.outcome.citations:
                console.print(Text("Sources", style="bold"))
                console.print(Text(sources_text(trace.outcome.citations)))
        return 0

    raise typer.Exit(_run(run()))


def sources_text(citations: Sequence[Citation]) -> str:
    """The sources of an answer as ``ragops ask`` prints them, in marker order: one line per
    cited document, ``[n] title or file name — section`` (:func:`~ragops_shared.citations.source_label`;
    the section only when known), then its supporting snippet, indented. Empty for none."""
    lines = []
    for citation in sorted(citations, key=lambda cited: cited.marker):
        section = f" — {citation.section}" if citation.section else ""
        lines += [f"[{citation.marker}] {source_label(citation)}{section}", f"    {citation.snippet}"]
    return "\n".join(lines)


class RowFormat(StrEnum):
    """How ``ragops sql`` prints rows."""

    table = "table"
    csv = "csv"
    json = "json"


def format_rows(columns: Sequence[str], rows: Sequence[Sequence[Any]], fmt: RowFormat, *, width: int = 200) -> str:
    """``rows`` under ``columns`` as text, every value as stored (never read as markup or emoji).

    ``table``: a rich table whose header and cells are :class:`rich.text.Text` (rich parses
    plain strings for ``[style]`` markup and ``:emoji:`` codes, which would alter values such as
    ``root:x:0:0``); ``csv``: RFC 4180 through :mod:`csv` (header line, values with commas,
    quotes or newlines quoted, None as an empty field); ``json``: JSON Lines, one object per row
    (column -> value, values JSON cannot hold as text), so output streams and pipes into ``jq``.
    """
    if fmt is RowFormat.csv:
        buffer = io.StringIO()
        writer = csv.writer(buffer)
        writer.writerow(columns)
        writer.writerows([("" if value is None else value) for value in row] for row in rows)
        return buffer.getvalue()
    if fmt is RowFormat.json:
        return "".join(json.dumps(dict(zip(columns, row, strict=True)), default=str) + "\n" for row in rows)
    table = Table()
    for column in columns:
        table.add_column(Text(str(column)))
    for row in rows:
        table.add_row(*(Text(str(value)) for value in row))
    buffer = io.StringIO()
    Console(file=buffer, width=width, color_system=None, emoji=False, markup=False).print(table)
    return buffer.getvalue()


@app.command()
def sql(
    statement: Annotated[
        str,
        typer.Argument(
            help="One read-only statement over the platform's tables: SELECT (WITH ... SELECT) or DESCRIBE."
        ),
    ],
    data_dir: DataDir = Path(".ragops"),
    fmt: RowFormat = typer.Option(
        RowFormat.table, "--format", help="table, csv (RFC 4180, header line) or json (one object per row)."
    ),
    as_json: bool = typer.Option(False, "--json", help="Print {columns, rows} as one JSON document."),
) -> None:
    """Query ClickHouse (read-only) while the platform runs; writes and DDL are refused. Values
    print as stored."""
    analytics = _analytics(data_dir)
    try:
        result = analytics.query(statement)
    except (QueryError, StoreUnavailable, ValueError) as error:
        console.print(Text(str(error), style="red"))
        raise typer.Exit(1) from None
    finally:
        analytics.close()
    if as_json:
        print(json.dumps({"columns": result.columns, "rows": result.rows}, default=str))
        return
    width = shutil.get_terminal_size().columns if fmt is RowFormat.table else 0
    sys.stdout.write(format_rows(result.columns, result.rows, fmt, width=width or 200))


class TraceFormat(StrEnum):
    """How ``ragops trace`` prints a request."""

    tree = "tree"
    json = "json"


def trace_tree(request_id: str, nodes: Sequence[TraceNode]) -> Tree:
    """A rich tree of ``nodes``: per event its offset from the request's first event and the time
    since its cause (ms), producer, type and :func:`~ragops_analytics.traces.key_facts`; labels
    are :class:`rich.text.Text`, so stored values never read as markup."""
    root = Tree(Text(f"request {request_id}", style="bold"))

    def add(branch: Tree, node: TraceNode) -> None:
        label = Text(f"+{node.offset_ms:.0f} ms ", style="dim")
        if node.duration_ms is not None:
            label.append(f"(+{node.duration_ms:.0f} ms) ", style="cyan")
        label.append(f"{node.row.producer} ", style="green")
        label.append(node.row.event_type, style="bold")
        facts = key_facts(node.row)
        if facts:
            label.append("  " + "  ".join(f"{key}={_fact(value)}" for key, value in facts.items()))
        child = branch.add(label)
        for grandchild in node.children:
            add(child, grandchild)

    for node in nodes:
        add(root, node)
    return root


def _fact(value: object) -> str:
    if isinstance(value, float):
        return f"{value:.3f}"
    if isinstance(value, dict):
        return "{" + ", ".join(f"{key}: {_fact(item)}" for key, item in value.items()) + "}"
    if isinstance(value, list):
        return ",".join(str(item) for item in value)
    return str(value)


@app.command()
def trace(
    request_id: Annotated[str, typer.Argument(help="The request's id (`ragops ask` prints it).")],
    data_dir: DataDir = Path(".ragops"),
    fmt: TraceFormat = typer.Option(TraceFormat.tree, "--format", help="tree, or json (the nested events)."),
) -> None:
    """Every stored event of one request as a tree (each event under the one that caused it),
    with offsets and stage durations in ms and each event's key facts. Reads ClickHouse as the
    CLI's credential: another tenant's request is not found. Events stored before the envelope
    carried parent_span_id appear as roots, in time order."""
    analytics = _analytics(data_dir)
    try:
        rows = request_events(analytics, request_id)
    except (QueryError, StoreUnavailable) as error:
        console.print(Text(str(error), style="red"))
        raise typer.Exit(1) from None
    finally:
        analytics.close()
    if not rows:
        console.print(Text(f"no stored events of request {request_id} (the sink may not have stored them yet)"))
        raise typer.Exit(1)
    nodes = request_tree(rows)
    if fmt is TraceFormat.json:
        print(json.dumps({"request_id": request_id, "events": tree_dicts(nodes)}, default=str))
        return
    Console(emoji=False, markup=False).print(trace_tree(request_id, nodes))


class Thumb(StrEnum):
    up = "up"
    down = "down"


@app.command()
def feedback(
    request_id: Annotated[str, typer.Argument(help="The request whose answer this is about.")],
    thumb: Thumb | None = typer.Option(None, help="up or down."),
    rating: int | None = typer.Option(None, min=1, max=5, help="1 (worst) to 5 (best)."),
    comment: str | None = typer.Option(None, help="Free text (redacted by the privacy service before it is kept)."),
    correction: str | None = typer.Option(
        None, help="The answer that should have been given (it becomes a dataset example)."
    ),
    data_dir: DataDir = Path(".ragops"),
) -> None:
    """Send feedback on an answer (``POST /v1/feedback`` as the CLI's credential, which needs the
    product role; its tenant is the credential's) and print the feedback event's id. Accepted is
    not yet linked: the feedback service dead-letters an unknown request id (see `ragops trace`)."""
    said = {"thumb": thumb, "rating": rating, "comment": comment, "corrected_answer": correction}
    body = {key: value for key, value in said.items() if value is not None}
    if not body:
        raise typer.BadParameter("give at least one of --thumb, --rating, --comment, --correction")
    with _gateway(data_dir) as gateway:
        try:
            response = gateway.post("/v1/feedback", json={"request_id": request_id, **body})
        except httpx.HTTPError as error:
            console.print(Text(f"the gateway is unreachable: {error}", style="red"))
            raise typer.Exit(2) from None
    if response.status_code != 202:
        console.print(Text(f"refused ({response.status_code}): {response.text}", style="red"))
        raise typer.Exit(1)
    print(response.json()["event_id"])


def service_status(state: PlatformState, timeout_s: float = 3.0) -> list[dict[str, Any]]:
    """Each child of the running platform ``state`` describes: name, running (its process
    exists), restarts so far, its ``/ready`` answer (``ready``, ``loading``, ``stuck``, ``kafka
    unreachable``, or ``unreachable``), and, for a Kafka consumer, the largest
    ``oldest_unprocessed_age_s`` of its consumers (how long its oldest pending record has waited:
    the lag the service itself measures) and whether one is stuck."""
    restarts = state.get("restarts", {})
    found = []
    with httpx.Client(timeout=timeout_s) as client:
        for name, pid in sorted(state["pids"].items()):
            url = state["gateway_url"] if name == "gateway" else state["ops_urls"].get(name)
            ready, consumers = "unreachable", list[dict[str, Any]]()
            if url is not None:
                try:
                    answer = client.get(f"{url}/ready")
                    body = answer.json()
                    ready = str(body.get("status") or body.get("detail") or answer.status_code)
                    consumers = body.get("consumers") or []
                except (httpx.HTTPError, ValueError):
                    pass
            ages = [float(c["oldest_unprocessed_age_s"]) for c in consumers]
            found.append(
                {
                    "service": name,
                    "running": alive(pid),
                    "restarts": restarts.get(name, 0),
                    "ready": ready,
                    "oldest_unprocessed_age_s": max(ages) if ages else None,
                    "stuck": any(c.get("stuck") for c in consumers),
                }
            )
    return found


@app.command()
def status(
    data_dir: DataDir = Path(".ragops"),
    as_json: bool = typer.Option(False, "--json", help="One JSON array, an object per service."),
) -> None:
    """The embedded platform's services: running or not, restarts, readiness (the gateway's and
    each service's /ready) and the age of each consumer's oldest unprocessed record. Exit 1 when
    no platform runs in DATA_DIR, 3 when a service is not running or not ready."""
    try:
        state = running_platform(data_dir)
    except PlatformError as error:
        console.print(Text(str(error), style="red"))
        raise typer.Exit(1) from None
    found = service_status(state)
    if as_json:
        print(json.dumps(found))
    else:
        table = Table("service", "running", "restarts", "ready", "oldest unprocessed (s)")
        for row in found:
            age = row["oldest_unprocessed_age_s"]
            table.add_row(
                Text(row["service"]),
                Text("yes" if row["running"] else "no", style="green" if row["running"] else "red"),
                Text(str(row["restarts"])),
                Text(row["ready"], style="green" if row["ready"] == "ready" else "yellow"),
                Text("" if age is None else f"{age:.1f}" + (" stuck" if row["stuck"] else "")),
            )
        Console().print(table)
        console.print(
            Text(f"gateway {state['gateway_url']}  kafka {state['bootstrap_servers']}  logs {data_dir / 'logs'}")
        )
    if not all(row["running"] and row["ready"] == "ready" for row in found):
        raise typer.Exit(3)


def last_lines(path: Path, count: int) -> list[str]:
    """The last ``count`` lines of ``path`` (without their newlines), read from its end in blocks,
    so a large log costs what the lines cost; invalid UTF-8 replaced."""
    with path.open("rb") as file:
        file.seek(0, io.SEEK_END)
        position = file.tell()
        data = b""
        while position > 0 and data.count(b"\n") <= count:
            step = min(64 * 1024, position)
            position -= step
            file.seek(position)
            data = file.read(step) + data
    lines = data.decode(errors="replace").splitlines()
    return lines[-count:] if count else []


@app.command()
def logs(
    service: Annotated[
        str | None, typer.Argument(help="A service (gateway, sink...) or tansu; none: every one.")
    ] = None,
    data_dir: DataDir = Path(".ragops"),
    follow: bool = typer.Option(False, "--follow", "-f", help="Keep printing what is written (Ctrl-C ends)."),
    lines: int = typer.Option(50, "--lines", "-n", min=0, help="How many of the last lines to print first."),
) -> None:
    """Print the embedded platform's logs (<data_dir>/logs/<service>.log: each service's output,
    rotated past RAGOPS_SUPERVISOR_LOG_MAX_BYTES). With several logs each line is prefixed with
    its service."""
    folder = data_dir / "logs"
    paths = [log_path(data_dir, service)] if service else sorted(folder.glob("*.log"))
    missing = [path for path in paths if not path.is_file()]
    if missing or not paths:
        known = ", ".join(sorted(path.stem for path in folder.glob("*.log"))) or "none"
        console.print(Text(f"no log {missing[0] if missing else folder} (logs there: {known})", style="red"))
        raise typer.Exit(1)
    prefix = len(paths) > 1

    def emit(path: Path, line: str) -> None:
        sys.stdout.write(f"{path.stem} | {line}\n" if prefix else f"{line}\n")

    for path in paths:
        for line in last_lines(path, lines):
            emit(path, line)
    sys.stdout.flush()
    if not follow:
        return
    _stop_on_sigterm()
    positions = {path: path.stat().st_size for path in paths}
    pending = dict.fromkeys(paths, b"")
    try:
        while True:
            for path in paths:
                size = path.stat().st_size if path.exists() else 0
                if size < positions[path]:  # rotated (truncated in place): read it from its start
                    positions[path] = 0
                if size > positions[path]:
                    with path.open("rb") as file:
                        file.seek(positions[path])
                        chunk = pending[path] + file.read(size - positions[path])
                    positions[path] = size
                    complete = chunk.split(b"\n")
                    pending[path] = complete.pop()  # a line not ended yet waits for its end
                    for raw in complete:
                        emit(path, raw.decode(errors="replace"))
            sys.stdout.flush()
            time.sleep(0.5)
    except KeyboardInterrupt:
        return


audit_app = typer.Typer(
    help="The audit log: who did what, in which tenant; hash-chained, so an edited or deleted row shows.",
    invoke_without_command=True,
)
app.add_typer(audit_app, name="audit")


def _since(value: str | None) -> datetime | None:
    """An ISO-8601 time (``2026-12-01``, ``2026-12-01T09:00:00Z``...); without a zone, UTC."""
    if value is None:
        return None
    try:
        moment = datetime.fromisoformat(value)
    except ValueError:
        raise typer.BadParameter(f"not an ISO-8601 time: {value!r}", param_hint="--since") from None
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


@audit_app.callback()
def audit_log(
    context: typer.Context,
    since: str | None = typer.Option(None, help="Entries at or after this ISO-8601 time (UTC if no zone)."),
    actor: str | None = typer.Option(None, help="Entries of this actor (its id, e.g. key:<id>, or its name)."),
    action: str | None = typer.Option(None, help="Entries of this action, e.g. auth.refused, answer.generated."),
    tenant: str | None = typer.Option(None, help="Entries of this tenant."),
    limit: int = typer.Option(100, min=1, max=100_000, help="Most entries shown, newest first."),
    data_dir: DataDir = Path(".ragops"),
    as_json: bool = typer.Option(False, "--json", help="One JSON object per entry, every column."),
) -> None:
    """List audit entries, newest first (`ragops audit verify` checks the chains)."""
    if context.invoked_subcommand is not None:
        return
    analytics = _analytics(data_dir)
    try:
        rows = audit.entries(analytics, since=_since(since), actor=actor, action=action, tenant=tenant, limit=limit)
    except (QueryError, StoreUnavailable) as error:
        console.print(f"[red]{error}")
        raise typer.Exit(1) from None
    finally:
        analytics.close()
    if as_json:
        for row in rows:
            print(json.dumps(dataclasses.asdict(row), ensure_ascii=False))
        return
    table = Table("occurred (UTC)", "tenant", "actor", "action", "target", "outcome", "reason")
    for row in rows:
        occurred = row.occurred.isoformat(timespec="milliseconds").replace("+00:00", "Z")
        table.add_row(occurred, row.tenant, row.actor_id, row.action, row.target, row.outcome, row.reason)
    Console().print(table)


@audit_app.command("verify")
def audit_verify(
    tenant: str | None = typer.Option(None, help="Check this tenant's chains only."),
    data_dir: DataDir = Path(".ragops"),
) -> None:
    """Check every audit chain: exit 0 with the counts when intact, 1 naming the first chain and
    seq that does not check out (a row edited, deleted, inserted or moved)."""
    analytics = _analytics(data_dir)
    try:
        verification = audit.verify(analytics, tenant)
    except (QueryError, StoreUnavailable) as error:
        console.print(f"[red]{error}")
        raise typer.Exit(2) from None
    finally:
        analytics.close()
    if verification.broken is not None:
        broken = verification.broken
        console.print(f"[red]audit log broken: chain {broken.chain} at seq {broken.seq}: {broken.problem}")
        raise typer.Exit(1)
    print(f"audit log intact: {verification.rows} entries in {verification.chains} chains")


def _call(
    data_dir: Path, method: str, path: str, body: dict[str, object] | None = None, *, timeout_s: float = 30.0
) -> object:
    """The gateway's JSON answer (within ``timeout_s`` seconds); a refusal is a red line with
    its detail and exit 1, an unreachable gateway exit 2."""
    try:
        with _gateway(data_dir) as client:
            response = client.request(method, path, json=body, timeout=timeout_s)
    except httpx.HTTPError as error:
        console.print(f"[red]the gateway cannot be reached: {error}")
        raise typer.Exit(2) from None
    if response.is_error:
        try:
            detail = response.json().get("detail", response.text)
        except ValueError:
            detail = response.text
        console.print(f"[red]{response.status_code}: {detail}")
        raise typer.Exit(1)
    return response.json()


def _request_change(data_dir: Path, change: dict[str, object], reason: str) -> None:
    answer = _call(data_dir, "POST", "/v1/changes", {"change": change, "reason": reason})
    assert isinstance(answer, dict)
    console.print(
        f"change {answer['change_id']} requested ({change['kind']}); it takes effect once another person "
        f"approves it: ragops changes approve {answer['change_id']} --reason ..."
    )
    print(answer["change_id"])


@app.command(name="delete-document")
def delete_document(
    document_id: Annotated[str, typer.Argument(help="The document's id (of the credential's tenant).")],
    wait: float = typer.Option(
        30.0, min=0, help="Seconds to wait for its removal from the index; 0: return once the deletion is accepted."
    ),
    data_dir: DataDir = Path(".ragops"),
) -> None:
    """Delete a document through the gateway: its chunks leave every index build, replays skip
    it and no later answer cites it (submitting it again brings it back). Prints the points
    removed per collection (after --wait), or the deletion's event id."""
    path = f"/v1/documents/{quote(document_id, safe='')}" + (f"?wait_s={wait:g}" if wait else "")
    answer = _call(data_dir, "DELETE", path, timeout_s=wait + 30.0)
    assert isinstance(answer, dict)
    removed = answer.get("removed_points")
    if removed is None:
        console.print(f"deletion of {document_id} accepted (event {answer['event_id']})")
    else:
        console.print(f"{document_id}: {sum(removed.values())} points removed from {len(removed)} collections")
    print(json.dumps(answer))


@app.command()
def retrain(
    action: Annotated[RetrainingAction, typer.Argument(help="What the trainer should do.")],
    reason: str = typer.Option(..., help="Why (recorded on the request and on any version it promotes)."),
    model_version: str | None = typer.Option(
        None, help="reindex: the embedding model version to build with (default: production)."
    ),
    data_dir: DataDir = Path(".ragops"),
) -> None:
    """Request retraining (a four-eyes change: the trainer acts once another person approves
    it); prints the change id. The monitor's policy asks the trainer directly."""
    target = None
    if model_version is not None:
        from ragops_embedding.settings import EmbeddingSettings

        target = VersionRef(kind="embedding_model", name=EmbeddingSettings().embedder().name, version=model_version)
    change = RetrainChange(action=action, target=target)
    _request_change(data_dir, change.model_dump(mode="json"), reason)


@app.command()
def retire(
    kind: Annotated[VersionKind, typer.Argument()],
    name: Annotated[str, typer.Argument(help="e.g. rag-answer for a prompt.")],
    version: Annotated[str, typer.Argument()],
    reason: str = typer.Option(..., help="Why the version must take no more traffic."),
    data_dir: DataDir = Path(".ragops"),
) -> None:
    """Request a retirement (a four-eyes change): once another person approves it, the version
    takes no new traffic (requests pinned to a retired prompt version get the production one)."""
    change = RetireChange(version=VersionRef(kind=kind, name=name, version=version))
    _request_change(data_dir, change.model_dump(mode="json"), reason)


@app.command()
def promote(
    kind: Annotated[VersionKind, typer.Argument()],
    name: Annotated[str, typer.Argument()],
    version: Annotated[str, typer.Argument()],
    reason: str = typer.Option(..., help="Why this version should serve."),
    alias: str = typer.Option("production", help="The alias to point at the version."),
    data_dir: DataDir = Path(".ragops"),
) -> None:
    """Request a promotion (a four-eyes change): once another person approves it, ``alias``
    points at the version."""
    change = PromoteChange(version=VersionRef(kind=kind, name=name, version=version), alias=alias)
    _request_change(data_dir, change.model_dump(mode="json"), reason)


@app.command()
def erase(
    subject: str = typer.Option(..., "--subject", help="The data subject's id (a user_id, a document's subject_id)."),
    reason: str = typer.Option("", help="Why (a ticket, the subject's request): recorded on the request."),
    key: str | None = typer.Option(
        None, help="Idempotency key: the same key names the same erasure (run it again to finish a failed one)."
    ),
    wait: float = typer.Option(120.0, min=0, help="Seconds to wait for every store's report (0: do not wait)."),
    as_json: bool = typer.Option(False, "--json", help="Print the erasure's state as JSON."),
    data_dir: DataDir = Path(".ragops"),
) -> None:
    """Erase a data subject of your tenant (admin) from ClickHouse, every vector index and the
    kept topics (its sealing key is deleted), through the gateway; prints the counts per store.
    Where erasures need approval, prints the change that another person approves. Exit 1 when
    the erasure is not complete (run it again with the same --key), 2 when waiting timed out."""
    body: dict[str, object] = {"subject": subject, "reason": reason, **({"key": key} if key else {})}
    answer = _call(data_dir, "POST", "/v1/erasures", body)
    assert isinstance(answer, dict)
    deadline = time.monotonic() + wait
    while answer["state"] == "in_progress" and time.monotonic() < deadline:
        time.sleep(0.5)  # the gateway folds the stores' reports as they come
        answer = _call(data_dir, "GET", f"/v1/erasures/{answer['erasure_id']}")
        assert isinstance(answer, dict)
    if as_json:
        print(json.dumps(answer))
    else:
        if answer["state"] == "awaiting_approval":
            console.print(
                f"erasure {answer['erasure_id']} awaits approval: ragops changes approve {answer['change_id']} "
                "--reason ..."
            )
        table = Table("store", "deleted", "left", "complete", "reason")
        for store, done in answer["stores"].items():
            deleted = ", ".join(f"{where} {count}" for where, count in done["deleted"].items()) or "0"
            left = sum(done["remaining"].values())
            table.add_row(store, deleted, str(left), "yes" if done["complete"] else "no", done["reason"])
        console.print(table)
        console.print(f"erasure {answer['erasure_id']}: {answer['state']}")
    if answer["state"] == "incomplete":
        raise typer.Exit(1)
    if answer["state"] == "in_progress" and wait:
        raise typer.Exit(2)


changes = typer.Typer(help="Four-eyes changes: list them, approve or reject another person's.", no_args_is_help=True)
app.add_typer(changes, name="changes")


@changes.command(name="list")
def list_changes(
    data_dir: DataDir = Path(".ragops"),
    status: str | None = typer.Option(None, help="Only those pending, approved, rejected or expired."),
    as_json: bool = typer.Option(False, "--json", help="Print the changes as JSON."),
) -> None:
    """Your tenant's changes, oldest first."""
    found = _call(data_dir, "GET", "/v1/changes" + (f"?state={status}" if status else ""))
    assert isinstance(found, list)
    if as_json:
        print(json.dumps(found))
        return
    table = Table("change", "status", "kind", "what", "requested by", "reason", "decided by")
    for change in found:
        what = change["change"].get("version") or {"kind": change["change"].get("action")}
        table.add_row(
            change["change_id"],
            change["status"],
            change["change"]["kind"],
            " ".join(str(value) for value in what.values() if value),
            change["requested_by"]["name"],
            change["reason"],
            (change.get("decided_by") or {}).get("name", ""),
        )
    Console().print(table)


def _decide(change_id: str, verdict: str, reason: str, data_dir: Path) -> None:
    answer = _call(data_dir, "POST", f"/v1/changes/{change_id}/{verdict}", {"reason": reason})
    assert isinstance(answer, dict)
    console.print(f"change {change_id}: {answer['status']}")


@changes.command()
def approve(
    change_id: Annotated[str, typer.Argument()],
    reason: str = typer.Option(..., help="Why (recorded with the approval)."),
    data_dir: DataDir = Path(".ragops"),
) -> None:
    """Approve another person's pending change: it takes effect now."""
    _decide(change_id, "approve", reason, data_dir)


@changes.command()
def reject(
    change_id: Annotated[str, typer.Argument()],
    reason: str = typer.Option(..., help="Why (recorded with the rejection)."),
    data_dir: DataDir = Path(".ragops"),
) -> None:
    """Reject another person's pending change: it never takes effect."""
    _decide(change_id, "reject", reason, data_dir)


prompt = typer.Typer(
    help="Prompts as data: push versions, read and compare them, label them (production needs approval).",
    no_args_is_help=True,
)
app.add_typer(prompt, name="prompt")


def _prompt_text(data_dir: Path, name: str, version: int | None) -> dict[str, Any]:
    """One version's text from the gateway; ``None``: the version labelled production, else the highest."""
    if version is None:
        found = _call(data_dir, "GET", f"/v1/prompts/{quote(name, safe='')}")
        assert isinstance(found, dict)
        version = found["labels"].get("production") or max(v["version"] for v in found["versions"])
    answer = _call(data_dir, "GET", f"/v1/prompts/{quote(name, safe='')}/versions/{version}")
    assert isinstance(answer, dict)
    return answer


def _label(data_dir: Path, name: str, version: int, label: str, reason: str) -> None:
    body = {"label": label, "version": version, "reason": reason}
    answer = _call(data_dir, "POST", f"/v1/prompts/{quote(name, safe='')}/labels", body)
    assert isinstance(answer, dict)
    if answer["status"] == "pending":
        console.print(
            f"{label} -> {name} version {version} waits for another person's approval: "
            f"ragops changes approve {answer['change_id']} --reason ..."
        )
        print(answer["change_id"])
    else:
        console.print(f"{label} -> {name} version {version}")


@prompt.command()
def push(
    file: Annotated[Path, typer.Argument(exists=True, dir_okay=False, help="TOML: name, description, system, user.")],
    data_dir: DataDir = Path(".ragops"),
) -> None:
    """Register a new version of a prompt (the registry numbers it: a ``version`` in the file is
    ignored); the same text as an existing version names that version. Prints the version."""
    try:
        data = tomllib.loads(file.read_text(encoding="utf-8"))
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as error:
        raise typer.BadParameter(f"{file}: {error}") from None
    body: dict[str, object] = {key: data[key] for key in ("name", "description", "system", "user") if key in data}
    answer = _call(data_dir, "POST", "/v1/prompts", body)
    assert isinstance(answer, dict)
    if answer["registered"]:
        console.print(f"{answer['name']} version {answer['version']} registered (sha256 {answer['sha256']})")
    else:
        console.print(f"{answer['name']}: the same text as version {answer['version']}; nothing registered")
    print(answer["version"])


@prompt.command(name="list")
def list_prompts(
    data_dir: DataDir = Path(".ragops"),
    as_json: bool = typer.Option(False, "--json", help="Print the prompts as JSON."),
) -> None:
    """Every prompt, its versions and labels."""
    found = _call(data_dir, "GET", "/v1/prompts")
    assert isinstance(found, list)
    if as_json:
        print(json.dumps(found))
        return
    table = Table("prompt", "versions", "labels")
    for entry in found:
        versions = ", ".join(str(v["version"]) + (" (retired)" if v["retired"] else "") for v in entry["versions"])
        labels = ", ".join(f"{label} -> {version}" for label, version in sorted(entry["labels"].items()))
        table.add_row(entry["name"], versions, labels)
    Console().print(table)


def _name_and_version(reference: str) -> tuple[str, int | None]:
    name, _, version = reference.partition(":")
    if version and not version.isdecimal():
        raise typer.BadParameter(f"{reference}: expected NAME or NAME:VERSION (a number)")
    return name, int(version) if version else None


@prompt.command()
def show(
    reference: Annotated[str, typer.Argument(help="NAME (its production version, else the highest) or NAME:VERSION.")],
    data_dir: DataDir = Path(".ragops"),
) -> None:
    """Print one version of a prompt: its description, labels and both templates."""
    name, version = _name_and_version(reference)
    text = _prompt_text(data_dir, name, version)
    labels = f" [{', '.join(text['labels'])}]" if text["labels"] else ""
    retired = " (retired)" if text["retired"] else ""
    print(f"{name} version {text['version']}{labels}{retired}, sha256 {text['sha256']}")
    print(f"description: {text['description']}")
    print(f"--- system\n{text['system']}\n--- user\n{text['user']}")


@prompt.command()
def diff(
    name: Annotated[str, typer.Argument()],
    a: Annotated[int, typer.Argument(help="The version to compare from.")],
    b: Annotated[int, typer.Argument(help="The version to compare to.")],
    data_dir: DataDir = Path(".ragops"),
) -> None:
    """Unified diff (difflib) of the system and user templates of two versions."""
    old, new = _prompt_text(data_dir, name, a), _prompt_text(data_dir, name, b)
    for part in ("system", "user"):
        lines = difflib.unified_diff(
            old[part].splitlines(keepends=True),
            new[part].splitlines(keepends=True),
            fromfile=f"{name}:{a} {part}",
            tofile=f"{name}:{b} {part}",
        )
        sys.stdout.writelines(line if line.endswith("\n") else line + "\n" for line in lines)


@prompt.command(name="label")
def label_prompt(
    name: Annotated[str, typer.Argument()],
    version: Annotated[int, typer.Argument()],
    label: Annotated[str, typer.Argument(help="e.g. staging; production waits for another person's approval.")],
    reason: str = typer.Option(..., help="Why (recorded with the label)."),
    data_dir: DataDir = Path(".ragops"),
) -> None:
    """Point a label at a version: at once, or (production by default) once another person
    approves the change; prints the change id then."""
    _label(data_dir, name, version, label, reason)


@prompt.command()
def rollback(
    name: Annotated[str, typer.Argument()],
    to: int = typer.Option(..., "--to", help="The version production should serve again."),
    reason: str = typer.Option(..., help="Why (recorded with the change)."),
    data_dir: DataDir = Path(".ragops"),
) -> None:
    """Point production back at an earlier version (label production: a four-eyes change)."""
    _label(data_dir, name, to, "production", reason)


experiment = typer.Typer(
    help="Sticky A/B tests and canaries: start one over versions of a prompt or an index, list, stop.",
    no_args_is_help=True,
)
app.add_typer(experiment, name="experiment")


def _variants(spec: str) -> list[dict[str, object]]:
    """``3:50,4:50`` -> arms named after their versions (``v3``, ``v4``), the first the control.

    Raises:
        typer.BadParameter: an arm is not ``VERSION:WEIGHT`` with an integer weight.
    """
    arms: list[dict[str, object]] = []
    for part in spec.split(","):
        version, _, weight = part.strip().rpartition(":")
        if not version or not weight.strip().isdigit():
            raise typer.BadParameter(f"{part!r}: each variant is VERSION:WEIGHT (e.g. 3:50,4:50)")
        arms.append({"name": f"v{version}", "version": version, "weight": int(weight)})
    return arms


@experiment.command(name="start")
def start_experiment(
    target_name: Annotated[str, typer.Argument(help="The prompt's name (rag-answer), or the index's.")],
    variants: str = typer.Option(
        ...,
        help="VERSION:WEIGHT,... summing to 100; the first is the control: the version production "
        "serves now; the others together at most the gateway's experiment_max_candidate_percent (50).",
    ),
    unit: str = typer.Option("user", help="Who keeps one arm: user, session or request."),
    target: str = typer.Option("prompt", help="prompt, or index (a canary: e.g. --variants b1:95,b2:5)."),
    primary_metric: str = typer.Option("thumbs_down_rate", help="The metric that decides win or loss."),
    alpha: float = typer.Option(0.05, help="Type I error of the always-valid test."),
    min_samples: int = typer.Option(100, help="Observations per arm before any decision."),
    reason: str = typer.Option(..., help="Why (recorded with the experiment)."),
    data_dir: DataDir = Path(".ragops"),
) -> None:
    """Start an experiment; the gateway refuses it with the reason before any traffic moves."""
    body: dict[str, object] = {
        "target": target,
        "target_name": target_name,
        "variants": _variants(variants),
        "unit": unit,
        "policy": {"primary_metric": primary_metric, "alpha": alpha, "min_samples": min_samples},
        "reason": reason,
    }
    answer = _call(data_dir, "POST", "/v1/experiments", body)
    assert isinstance(answer, dict)
    console.print(f"experiment {answer['experiment_id']} running over {target} {target_name}")
    print(answer["experiment_id"])


@experiment.command(name="list")
def list_experiments(
    as_json: bool = typer.Option(False, "--json", help="Print the experiments as JSON."),
    data_dir: DataDir = Path(".ragops"),
) -> None:
    """Every experiment, oldest first, with its status."""
    found = _call(data_dir, "GET", "/v1/experiments")
    assert isinstance(found, list)
    if as_json:
        print(json.dumps(found))
        return
    table = Table("experiment", "status", "target", "variants", "unit", "started by", "reason")
    for one in found:
        arms = ", ".join(f"{arm['name']}={arm['version']}:{arm['weight']}%" for arm in one["variants"])
        target = f"{one['target']} {one['target_name']}"
        table.add_row(
            one["experiment_id"],
            one["status"],
            target,
            arms,
            one["unit"],
            (one["started_by"] or {}).get("name", ""),
            one["reason"] or "",
        )
    Console().print(table)


dataset_app = typer.Typer(
    help="Named dataset versions: immutable, content-addressed snapshots of question sets.", no_args_is_help=True
)
app.add_typer(dataset_app, name="dataset")


@dataset_app.command(name="push")
def dataset_push(
    name: Annotated[str, typer.Argument(help="The dataset's name (letters, digits, '.', '_', '-').")],
    file: Annotated[
        Path, typer.Argument(exists=True, dir_okay=False, help="JSONL: {id, question, answers, context_ids}.")
    ],
    data_dir: DataDir = Path(".ragops"),
) -> None:
    """Store FILE as a snapshot and register it as a version of NAME; prints NAME@VERSION (the
    version is the content's hash: pushing the same file again names the same version)."""
    platform = PlatformSettings(data_dir=data_dir)
    try:
        pushed = _run(dataset_versions.push(_kafka(data_dir), platform, name, file.read_bytes(), str(file)))
    except dataset_versions.DatasetError as error:
        console.print(Text(str(error), style="red"))
        raise typer.Exit(2) from None
    note = "registered" if pushed.new else "already registered (same content)"
    console.print(Text(f"{pushed.name}@{pushed.version}: {pushed.questions} questions, {note}"))
    print(f"{pushed.name}@{pushed.version}")


@dataset_app.command(name="list")
def dataset_list(
    name: Annotated[str | None, typer.Argument(help="Only this dataset's versions.")] = None,
    data_dir: DataDir = Path(".ragops"),
) -> None:
    """The pushed dataset versions, oldest first (the last of a name is its latest)."""
    platform = PlatformSettings(data_dir=data_dir)
    registry = _run(dataset_versions.read_registry(_kafka(data_dir), platform))
    table = Table("dataset", "version", "questions", "sha256", "registered")
    for state in dataset_versions.snapshots(registry, name):
        assert state.registered is not None
        table.add_row(
            *(
                Text(cell)
                for cell in (
                    state.ref.name,
                    state.ref.version,
                    state.metadata.get("questions", ""),
                    state.metadata.get("sha256", ""),
                    state.registered.occurred_at.isoformat(timespec="seconds"),
                )
            )
        )
    Console().print(table)


@experiment.command(name="stop")
def stop_experiment(
    experiment_id: Annotated[str, typer.Argument()],
    reason: str = typer.Option(..., help="Why (recorded with the stop)."),
    data_dir: DataDir = Path(".ragops"),
) -> None:
    """Stop a running experiment: every unit is served by production again."""
    answer = _call(data_dir, "POST", f"/v1/experiments/{experiment_id}/stop", {"reason": reason})
    assert isinstance(answer, dict)
    console.print(f"experiment {experiment_id}: {answer['status']}")


def _dataset(data_dir: Path, spec: str, questions: int | None) -> dataset_versions.Dataset:
    """A file's questions, else the pushed dataset ``NAME[@VERSION]``'s (exit 2 when neither)."""
    try:
        if Path(spec).is_file():
            return dataset_versions.from_file(Path(spec), questions)
        platform = PlatformSettings(data_dir=data_dir)
        registry = _run(dataset_versions.read_registry(_kafka(data_dir), platform))
        return dataset_versions.resolve(registry, platform, spec, questions)
    except dataset_versions.DatasetError as error:
        console.print(Text(str(error), style="red"))
        raise typer.Exit(2) from None


def _thresholds(kind: Literal["fail-under", "max-regression"], texts: list[str]) -> list[Threshold]:
    """Parsed thresholds; a malformed one or an unknown metric is a usage error (exit 2)."""
    parsed = []
    for text in texts:
        try:
            threshold = Threshold.parse(kind, text)
        except ValueError as error:
            raise typer.BadParameter(str(error), param_hint=f"--{kind}") from None
        if threshold.metric not in METRIC_NAMES:
            raise typer.BadParameter(
                f"unknown metric {threshold.metric!r} (one of {', '.join(METRIC_NAMES)})", param_hint=f"--{kind}"
            )
        parsed.append(threshold)
    return parsed


@app.command(name="eval")
def evaluate(
    dataset: str = typer.Option(
        ...,
        help="A JSONL file ({id, question, answers, context_ids} per line), or a pushed dataset NAME@VERSION "
        "(NAME alone: its latest version).",
    ),
    questions: int | None = typer.Option(None, min=1, help="Seeded sample of this many questions (default: all)."),
    run_id: str | None = typer.Option(None, help="Run id (default: eval-<UTC time>)."),
    candidate: str | None = typer.Option(
        None, help="Gate a candidate against the baseline on the same questions: prompt=NAME:VERSION."
    ),
    baseline: str = typer.Option("production", help="With --candidate: production, or prompt=NAME:VERSION."),
    fail_under: list[str] = typer.Option([], help="METRIC=FLOOR: fail when the candidate's mean is below (repeat)."),
    max_regression: list[str] = typer.Option(
        [], help="METRIC=MARGIN: fail when the candidate's mean is below the baseline's by more (repeat)."
    ),
    junit: Path | None = typer.Option(None, help="With --candidate: write the gate's checks as JUnit XML here."),
    concurrency: int = typer.Option(8, min=1),
    data_dir: DataDir = Path(".ragops"),
) -> None:
    """Run a question set through the platform as a tagged evaluation run; report mean scores
    and how each reference-free score correlates with token F1 (Spearman).

    With --candidate, run the baseline and the candidate on the same questions, compare them
    pair by pair (Wilcoxon signed-rank, McNemar for 0/1 scores, 95 % CI of the mean
    difference), publish the comparison and exit 1 when a threshold misses, 0 otherwise."""
    if candidate is None:
        if fail_under or max_regression or junit:
            raise typer.BadParameter("--fail-under, --max-regression and --junit gate a --candidate")
        _evaluate_one(data_dir, _dataset(data_dir, dataset, questions), run_id, concurrency)
        return
    try:
        sides = (parse_side(baseline, "--baseline"), parse_side(candidate, "--candidate"))
    except ValueError as error:
        raise typer.BadParameter(str(error)) from None
    thresholds = _thresholds("fail-under", fail_under) + _thresholds("max-regression", max_regression)
    chosen = _dataset(data_dir, dataset, questions)
    run = run_id or evaluation_run_id("gate", datetime.now(UTC))

    async def one(
        client: PlatformClient, progress: Progress, name: Literal["baseline", "candidate"], side: Side
    ) -> tuple[dict[str, dict[str, float]], list[int | None]]:
        task = progress.add_task(f"{name}: {side.label}", total=len(chosen.questions))
        traces, _ = await run_evaluation(
            client,
            chosen.questions,
            run_id=f"{run}-{name}",
            dataset=chosen.name,
            dataset_sha256=chosen.sha256,
            dataset_version=chosen.version,
            side=name,
            prompt_name=side.prompt_name,
            prompt_version=side.prompt_version,
            concurrency=concurrency,
            on_done=lambda _: progress.advance(task),
        )
        return scores_by_example(traces), served_versions(traces)

    async def run_both() -> tuple[list[GateCheck], EvaluationComparisonCompleted]:
        async with PlatformClient(_kafka(data_dir), name="eval") as client:
            # Both sides at once: the services batch their questions together, and neither
            # side sees a platform the other did not (same index, same load).
            with progress_bar(console) as progress:
                (before, _), (after, served) = await asyncio.gather(
                    one(client, progress, "baseline", sides[0]), one(client, progress, "candidate", sides[1])
                )
            paired = compare(before, after, binary=BINARY_METRICS)
            checks, reasons = decide(paired, thresholds, (len(before), len(after)), (sides[1], served))
            comparison = EvaluationComparisonCompleted(
                producer=client.producer,
                run_id=run,
                mode="dataset",
                dataset=chosen.label,
                baseline=sides[0].label,
                candidate=sides[1].label,
                questions=len(chosen.questions),
                paired=paired,
                disagreements=discordant(before, after, BINARY_METRICS)[:100],
                passed=not reasons,
                reasons=reasons,
            )
            await client.publish(comparison)
            return checks, comparison

    checks, comparison = _run(run_both())
    title = f"{run}: {comparison.candidate} vs {comparison.baseline} on {comparison.dataset}"
    Console().print(comparison_table(comparison.paired, checks, title))
    for check in checks:
        console.print(
            Text(f"{'pass' if check.passed else 'FAIL'}  {check.message}", style="" if check.passed else "red")
        )
    if junit is not None:
        junit.write_bytes(junit_xml(checks, suite=title))
    raise typer.Exit(0 if comparison.passed else 1)


def _evaluate_one(data_dir: Path, chosen: dataset_versions.Dataset, run_id: str | None, concurrency: int) -> None:
    run = run_id or evaluation_run_id("eval", datetime.now(UTC))

    async def run_all() -> tuple[list[QueryTrace], EvaluationRunCompleted]:
        async with PlatformClient(_kafka(data_dir), name="eval") as client:
            with progress_bar(console) as progress:
                task = progress.add_task(f"evaluating {run}", total=len(chosen.questions))
                return await run_evaluation(
                    client,
                    chosen.questions,
                    run_id=run,
                    dataset=chosen.name,
                    dataset_sha256=chosen.sha256,
                    dataset_version=chosen.version,
                    concurrency=concurrency,
                    on_done=lambda _: progress.advance(task),
                )

    _, summary = _run(run_all())
    table = Table(
        "metric",
        "mean",
        "Spearman vs f1",
        title=f"{run}: {summary.answered}/{summary.questions} answered "
        f"(prompt {summary.prompt.name if summary.prompt else '?'} "
        f"v{summary.prompt.version if summary.prompt else '?'}, "
        f"{summary.generation_model}, {summary.collection})",
    )
    for metric, mean in summary.mean_scores.items():
        rho = summary.spearman_vs_f1.get(metric)
        table.add_row(metric, f"{mean:.3f}", "" if rho is None and metric not in summary.spearman_vs_f1 else str(rho))
    Console().print(table)


def _lookback(value: str) -> datetime:
    """``--since``: a duration back from now (``30m``, ``24h``, ``7d``) or an ISO-8601 time."""
    back = report.duration(value)
    if back is not None:
        return datetime.now(UTC) - back
    moment = _since(value)
    assert moment is not None
    return moment


@app.command()
def shadow(
    candidate: str = typer.Option(..., help="What to try: prompt=NAME:VERSION (e.g. prompt=rag-answer:4)."),
    baseline: str = typer.Option("production", help="What to compare with: production or prompt=NAME:VERSION."),
    since: str | None = typer.Option(
        None, help="Replay the questions asked since then: 30m, 24h, 7d or an ISO time [default: 24h]."
    ),
    until: str | None = typer.Option(None, help="... and before this ISO time [default: now]."),
    sample: int | None = typer.Option(
        None, min=1, help="A seeded sample of this many retained questions (of every retained one unless --since)."
    ),
    seed: int = typer.Option(0, help="--sample: the same seed picks the same questions."),
    min_questions: int = typer.Option(100, min=0, help="Block when fewer questions were paired."),
    alpha: float = typer.Option(0.05, min=0.0, max=1.0, help="Block a metric worse at p < alpha (two-sided)."),
    tenant: str = typer.Option(DEFAULT_TENANT, help="Whose questions (a gateway credential reads only its own)."),
    junit: Path | None = typer.Option(None, help="Write the gate's checks as JUnit XML here."),
    promote: bool = typer.Option(
        False, help="On a pass, request the production label for the candidate (a four-eyes change)."
    ),
    reason: str | None = typer.Option(None, help="--promote: why (recorded on the change request)."),
    concurrency: int = typer.Option(8, min=2, help="Questions in flight, shared by the two sides."),
    data_dir: DataDir = Path(".ragops"),
) -> None:
    """Shadow replay: ask retained production questions again through the candidate and the
    baseline (tagged evaluation runs: nobody is answered, the monitor does not count them),
    score both with the same evaluators, compare them paired (Wilcoxon signed-rank per metric,
    McNemar on answered), print the table and the questions on which they disagree, publish
    the comparison. Exit 1 when the candidate is blocked (a metric significantly worse, or
    too few questions), 0 when it passes."""
    try:
        base, cand = Side.parse(baseline), Side.parse(candidate)
    except ValueError as error:
        raise typer.BadParameter(str(error)) from None
    if cand.prompt_version is None:
        raise typer.BadParameter("the candidate must pin a version: prompt=NAME:VERSION", param_hint="--candidate")
    if promote and not reason:
        raise typer.BadParameter("--promote needs a --reason", param_hint="--reason")
    started = datetime.now(UTC)
    run = evaluation_run_id("shadow", started)
    window_start = _lookback(since) if since else (None if sample else started - timedelta(hours=24))
    analytics = _analytics(data_dir)
    try:
        with progress_bar(console) as progress:
            task = progress.add_task(f"replaying ({run})", total=None)
            result = _run(
                replay_retained(
                    _kafka(data_dir),
                    analytics,
                    run_id=run,
                    tenant=tenant,
                    baseline=base,
                    candidate=cand,
                    alpha=alpha,
                    min_questions=min_questions,
                    since=window_start,
                    until=_since(until),
                    sample=sample,
                    seed=seed,
                    concurrency=concurrency,
                    on_questions=lambda n: progress.update(task, total=2 * n),
                    on_done=lambda _: progress.advance(task),
                )
            )
    except (QueryError, StoreUnavailable) as error:
        console.print(f"[red]the retained questions cannot be read: {error}")
        raise typer.Exit(2) from None
    finally:
        analytics.close()
    print_result(result, Console(), baseline=base, candidate=cand)
    if junit is not None:
        junit.write_bytes(junit_xml(result.checks, suite="shadow-replay", classname=f"shadow.{run}"))
    if not result.passed:
        raise typer.Exit(1)
    if promote and reason and cand.prompt_name is not None:  # both checked before the replay
        change = PromoteChange(
            version=VersionRef(kind="prompt", name=cand.prompt_name, version=str(cand.prompt_version)),
            alias="production",
            metrics={f"shadow.{m.metric}.difference": m.difference for m in result.paired},
        )
        _request_change(data_dir, change.model_dump(mode="json"), f"{reason} (shadow replay {run} passed)")


@app.command()
def demo(
    questions: int = typer.Option(100, help="How many questions of the question file to ask (seeded sample)."),
    report: Path | None = typer.Option(
        None, help="Where to write the JSON report [default: demo-report.json, drift-report.json]."
    ),
    corpus: Path = typer.Option(DATA / "corpus.jsonl", exists=True, help="JSONL corpus to ingest."),
    questions_file: Path | None = typer.Option(
        None,
        exists=True,
        help="JSONL questions with answers and context_ids "
        "[default: questions.jsonl; questions-all.jsonl with --drift].",
    ),
    concurrency: int = typer.Option(8, min=1, help="Questions in flight at once."),
    data_dir: Path = typer.Option(
        Path(".ragops/demo"), help="Where the demo platform keeps its stores and logs (wiped first)."
    ),
    drift: bool = typer.Option(
        False, "--drift", help="Run the drift scenario: switch topics mid-stream, watch the loop close."
    ),
    baseline: int = typer.Option(200, min=20, help="--drift: questions before the switch."),
    after: int = typer.Option(100, min=0, help="--drift: questions after the loop closed."),
    max_questions: int = typer.Option(800, min=1, help="--drift: most questions after the switch."),
    null_questions: int = typer.Option(2000, min=100, help="--drift: unchanged questions the false-alarm count uses."),
) -> None:
    """Run the embedded platform on real data and report retrieval, answer quality and latency
    (with --drift: detection delay, false alarms, and what the trainer did)."""

    _stop_on_sigterm()  # a killed demo stops its broker and services too
    shutil.rmtree(data_dir, ignore_errors=True)  # a fresh index, so the figures are this run's
    try:
        if drift:
            from ragops.drift_demo import run_drift_demo  # imports the monitor's statistics only when asked

            run_drift_demo(
                data_dir=data_dir,
                corpus=corpus,
                questions_file=questions_file or DATA / "questions-all.jsonl",
                report_path=report or Path("drift-report.json"),
                console=console,
                baseline=baseline,
                after=after,
                max_questions=max_questions,
                concurrency=concurrency,
                null_questions=null_questions,
            )
        else:
            figures = run_demo(
                data_dir=data_dir,
                corpus=corpus,
                questions_file=questions_file or DATA / "questions.jsonl",
                questions=questions,
                concurrency=concurrency,
                report_path=report or Path("demo-report.json"),
                console=console,
            )
            if not figures["pii"]["clean"]:
                console.print("[red]planted personal data was kept (see the leaks above and the report's pii.leaks)")
                raise typer.Exit(1)
    except PlatformError as error:
        console.print(f"[red]{error}")
        raise typer.Exit(1) from None
    except KeyboardInterrupt:
        console.print("stopped.")
        raise typer.Exit(130) from None


def _print_readout(shown: Readout) -> None:
    """One experiment's arms, status and every comparison the monitor's test makes, as tables."""
    started = shown.started
    policy = started.policy
    arms = ", ".join(f"{v.name}={started.target_name}:{v.version} ({v.weight}%)" for v in started.variants)
    status = f"ended by {shown.ended.event_type}" if shown.ended is not None else "running"
    out = Console()
    out.print(f"{started.experiment_id}: {started.target} {arms}, unit {started.unit}; {status}")
    out.print(
        f"primary {policy.primary_metric}, guardrails {', '.join(policy.guardrail_metrics) or 'none'}, "
        f"alpha {policy.alpha} (Bonferroni over the comparisons), min {policy.min_samples} per arm (mSPRT)"
    )
    table = Table("variant", "metric", "n", "control n", "mean", "control mean", "difference", "CI", "p", "outcome")
    for r in shown.results:
        table.add_row(
            r.variant,
            r.metric,
            str(r.samples),
            str(r.control_samples),
            f"{r.mean:.4g}",
            f"{r.control_mean:.4g}",
            f"{r.difference:+.4g}",
            f"[{r.ci_low:.4g}, {r.ci_high:.4g}]",
            f"{r.p_value:.3g}",
            r.outcome,
        )
    out.print(table)
    decision = shown.decision
    out.print(f"decision: {decision.decision} ({decision.reason})" if decision else "decision: none yet (undecided)")


@experiment.command("show")
def experiment_show(
    experiment_id: Annotated[str, typer.Argument(help="The experiment's id (exp-...).")],
    data_dir: DataDir = Path(".ragops"),
    as_json: bool = typer.Option(False, "--json", help="Print the comparisons and the decision as JSON."),
) -> None:
    """Each variant against the control on the primary and guardrail metrics, as the monitor's
    sequential test sees them now (ragops_analytics.experiments); exit 1 for an unknown id."""
    analytics = _analytics(data_dir)
    try:
        shown = readout(analytics, experiment_id)
    except (QueryError, StoreUnavailable) as error:
        console.print(f"[red]{error}")
        raise typer.Exit(2) from None
    finally:
        analytics.close()
    if shown is None:
        console.print(f"[red]no experiment {experiment_id} is stored")
        raise typer.Exit(1)
    if as_json:
        decision = dataclasses.asdict(shown.decision) if shown.decision else None
        results = [result.model_dump(mode="json") for result in shown.results]
        ended = shown.ended.event_type if shown.ended is not None else None
        print(json.dumps({"experiment_id": experiment_id, "ended": ended, "results": results, "decision": decision}))
        return
    _print_readout(shown)


# ---- cost: price lists and `ragops tco`

prices_app = typer.Typer(help="Price lists: what compute, tokens and storage cost, from a date.", no_args_is_help=True)
app.add_typer(prices_app, name="prices")


@prices_app.command(name="publish")
def publish_prices(
    file: Annotated[Path, typer.Argument(help="A TOML price list (deploy/prices/default.toml shows the format).")],
    reason: str | None = typer.Option(None, help="Why (default: the file's `reason`)."),
    data_dir: DataDir = Path(".ragops"),
) -> None:
    """Publish a price list (an operator of the platform's tenant; the gateway signs it)."""
    try:
        body = price_list_body(file, reason)
    except (OSError, tomllib.TOMLDecodeError) as error:
        raise typer.BadParameter(f"{file}: {error}") from None
    answer = _call(data_dir, "POST", "/v1/prices", body)
    assert isinstance(answer, dict)
    console.print(f"price list {answer['price_list_id']} in effect from {answer['effective_from']}")
    print(answer["price_list_id"])


def _price_rows(data_dir: Path) -> list[PriceListRow]:
    """Every signed price list, newest first, as the gateway lists them."""
    found = _call(data_dir, "GET", "/v1/prices")
    assert isinstance(found, list)
    return [
        PriceListRow(
            one["price_list_id"],
            datetime.fromisoformat(one["effective_from"]),
            datetime.fromisoformat(one["effective_from"]),
            one["published_by"] or "",
            one["reason"] or "",
            sorted((p["unit"], p["resource"], float(p["usd"])) for p in one["prices"]),
        )
        for one in found
    ]


@prices_app.command(name="list")
def list_prices(
    as_json: bool = typer.Option(False, "--json", help="Print the lists as JSON."),
    data_dir: DataDir = Path(".ragops"),
) -> None:
    """Every signed price list, newest first (once the sink stored it)."""
    if as_json:
        print(json.dumps(_call(data_dir, "GET", "/v1/prices")))
        return
    table = Table("price list", "effective from", "unit", "resource", "usd", "published by", "reason")
    for row in _price_rows(data_dir):
        for unit, resource, usd in row.prices:
            table.add_row(
                Text(row.price_list_id), Text(row.effective_from.isoformat()), Text(unit), Text(resource),
                Text(f"{usd:g}"), Text(row.published_by), Text(row.reason),
            )  # fmt: skip
    Console().print(table)


@app.command()
def tco(
    since: str = typer.Option("7d", help="The window measured: 30m, 24h, 7d or an ISO time."),
    answers_per_day: float | None = typer.Option(None, min=0, help="The volume to cost [default: the measured rate]."),
    documents_per_day: float | None = typer.Option(None, min=0, help="Documents ingested a day [default: measured]."),
    hosted_model: str | None = typer.Option(
        None, help="The hosted API model [default: the first model the price list gives token prices for]."
    ),
    output: Literal["table", "json"] = typer.Option("table", "--format", help="table or json."),
    data_dir: DataDir = Path(".ragops"),
) -> None:
    """Total cost of ownership per day in three scenarios (embedded CPU, a GPU node, a hosted
    API) from the throughput measured on this installation and the price list in effect,
    printing every assumption (ragops.tco)."""
    lists = _price_rows(data_dir)
    prices = in_effect(lists, datetime.now(UTC))
    if prices is None:
        console.print("[red]no price list is in effect: ragops prices publish deploy/prices/default.toml")
        raise typer.Exit(1)
    hosted = hosted_model or next((r for u, r, _ in prices.prices if u == "output_tokens_million"), "")
    analytics = _analytics(data_dir)
    try:
        measured = cost_measurements(analytics, _lookback(since))
    except (QueryError, StoreUnavailable) as error:
        console.print(f"[red]{error}")
        raise typer.Exit(2) from None
    finally:
        analytics.close()
    try:
        result = total_cost(
            measured, prices, answers_per_day=answers_per_day, documents_per_day=documents_per_day,
            hosted_model=hosted, retention_days=DEFAULT_RETENTION_DAYS["events"] or 90,
        )  # fmt: skip
    except ValueError as error:
        console.print(f"[red]{error}")
        raise typer.Exit(1) from None
    if output == "json":
        print(json.dumps(result.as_json(), default=str))
        return
    _print_tco(result)


def _print_tco(result: Tco) -> None:
    assumptions = Table("assumption", "value", title="Assumptions")
    assumptions.add_row("answers per day", Text(f"{result.answers_per_day:g} ({result.answers_per_day_source})"))
    assumptions.add_row("documents per day", Text(f"{result.documents_per_day:g}"))
    assumptions.add_row("price list", Text(result.price_list_id))
    for name, usd in result.prices.items():
        assumptions.add_row(Text(f"price {name}"), Text(f"{usd:g} USD"))
    measured = result.measured
    assumptions.add_row(
        "measured since", Text(f"{measured['since']}: {measured['answers']} answers, {measured['documents']} documents")
    )
    for key, figures in measured["stages"].items():
        assumptions.add_row(
            Text(f"measured {key}"),
            Text(f"{figures['unit_seconds_each']:.4g} unit-s each ({figures['events']} events)"),
        )
    assumptions.add_row(
        "tokens per answer", Text(f"{measured['mean_input_tokens']:.1f} in, {measured['mean_output_tokens']:.1f} out")
    )
    assumptions.add_row(
        "stored bytes per day",
        Text(f"{measured['stored_bytes_per_day_at_volume']:.0f} (measured {measured['stored_bytes']} over "
             f"{measured['storage_days']} days), kept {result.retention_days} days"),
    )  # fmt: skip
    for speedup in result.speedups:
        assumptions.add_row(Text(f"GPU speed-up {speedup.stage}"), Text(f"{speedup.factor:.1f}x: {speedup.source}"))
    Console().print(assumptions)
    table = Table("scenario", "compute", "tokens", "storage", "USD/day", "USD/month", "USD/answer", "notes")
    for one in result.scenarios:
        table.add_row(
            Text(one.name), f"{one.compute_usd_per_day:.4f}", f"{one.token_usd_per_day:.4f}",
            f"{one.storage_usd_per_day:.4f}", f"{one.usd_per_day:.4f}", f"{one.usd_per_month:.2f}",
            f"{one.usd_per_answer:.6f}", Text("; ".join(one.notes)),
        )  # fmt: skip


# ---- review: human review (ragops_gateway.reviews)

review_app = typer.Typer(
    help="Human review: the queue of sampled answers, labelling one, and the evaluators' agreement with the labels.",
    no_args_is_help=True,
)
app.add_typer(review_app, name="review")


def _short(value: object, width: int = 80) -> Text:
    """A value as literal text (no rich markup), on one line, cut at ``width`` characters."""
    text = " ".join(str(value).split())
    return Text(text if len(text) <= width else text[: width - 1] + "…")


@review_app.command(name="queue")
def review_queue(
    limit: int = typer.Option(20, min=1, max=200, help="Answers to show."),
    as_json: bool = typer.Option(False, "--json", help="Print the items as JSON (contexts included)."),
    data_dir: DataDir = Path(".ragops"),
) -> None:
    """Answers of your tenant waiting for a review (sampled at random, among the lowest scores
    and among negative feedback), the strata taken in turn. Needs the reviewer role."""
    found = _call(data_dir, "GET", f"/v1/reviews/queue?limit={limit}")
    assert isinstance(found, list)
    if as_json:
        print(json.dumps(found))
        return
    table = Table("request", "sampled as", "question", "answer", "scores", "thumb")
    for item in found:
        scores = ", ".join(f"{metric}={value:.2f}" for metric, value in sorted(item["scores"].items()))
        table.add_row(
            Text(item["request_id"]),
            item["sampled_as"],
            _short(item["question"]),
            _short(item["answer"]),
            scores,
            item["thumb"] or "",
        )
    Console().print(table)


@review_app.command(name="label")
def review_label(
    request_id: Annotated[str, typer.Argument(help="The request whose answer you reviewed.")],
    correct: bool = typer.Option(..., "--correct/--incorrect", help="The answer answers the question correctly."),
    grounded: bool = typer.Option(
        ..., "--grounded/--ungrounded", help="Every claim of the answer is supported by its retrieved context."
    ),
    correction: str | None = typer.Option(None, help="The right answer (becomes the dataset example's reference)."),
    comment: str | None = typer.Option(None, help="A note on the answer."),
    data_dir: DataDir = Path(".ragops"),
) -> None:
    """Label an answer of the review queue: its answer, stratum and token (which vouches for
    the stratum: the gateway decides it) are taken from the queue (exit 1 when the request is
    not in its first 200 answers)."""
    queued = _call(data_dir, "GET", "/v1/reviews/queue?limit=200")
    assert isinstance(queued, list)
    item = next((one for one in queued if one["request_id"] == request_id), None)
    if item is None:
        console.print(f"[red]request {request_id} is not in the review queue")
        raise typer.Exit(1)
    body: dict[str, object] = {
        "request_id": request_id,
        "answer_event_id": item["answer_event_id"],
        "correct": correct,
        "grounded": grounded,
        "sampled_as": item["sampled_as"],
        "token": item["token"],
        "corrected_answer": correction,
        "comment": comment,
    }
    answer = _call(data_dir, "POST", "/v1/reviews", body)
    assert isinstance(answer, dict)
    console.print(Text(f"review of {request_id} accepted"))
    print(answer["event_id"])


def _figure(value: float | None) -> str:
    return "-" if value is None else f"{value:+.3f}"


@review_app.command(name="agreement")
def review_agreement(
    as_json: bool = typer.Option(False, "--json", help="Print the rows as JSON."),
    data_dir: DataDir = Path(".ragops"),
) -> None:
    """How far each automatic metric agrees with the reviewers' labels: Spearman's rho, Cohen's
    kappa at the calibrated threshold (Youden's J), and kappa over the random sample alone
    ("-": undefined, e.g. fewer than two labels or one label value only)."""
    found = _call(data_dir, "GET", "/v1/reviews/agreement")
    assert isinstance(found, list)
    if as_json:
        print(json.dumps(found))
        return
    table = Table("metric", "label", "n", "rho", "kappa", "threshold", "n random", "random-stratum kappa")
    for row in found:
        threshold = "-" if row["threshold"] is None else f"{row['threshold']:.3f}"
        table.add_row(
            row["metric"],
            row["label"],
            str(row["n"]),
            _figure(row["spearman_rho"]),
            _figure(row["cohen_kappa"]),
            threshold,
            str(row["n_random"]),
            _figure(row["kappa_random"]),
        )
    Console().print(table)


def main() -> None:
    app()


if __name__ == "__main__":
    main()


@app.command(name="report")
def stakeholder_report(
    since: str = typer.Option("7d", help="Start: a duration back from now (24h, 7d) or an ISO-8601 time."),
    until: str | None = typer.Option(None, help="End (exclusive), an ISO-8601 time; default now."),
    fmt: report.Format = typer.Option("html", "--format", help="html (one standalone file) or pdf."),
    out: Path | None = typer.Option(None, help="The file to write (once)."),
    every: str | None = typer.Option(
        None, help="Run until stopped: at the end of each period (24h, 7d), report on the period to --out-dir."
    ),
    out_dir: Path | None = typer.Option(None, help="Instead of --out: a folder, the file named by the window."),
    data_dir: DataDir = Path("data"),
) -> None:
    """The stakeholder report over ClickHouse: quality, feedback, drift, versions, experiments
    and cost, with charts (README, "Reports")."""
    if every is not None:
        period = report.duration(every)
        if period is None or out_dir is None:
            raise typer.BadParameter("--every needs a duration (24h, 7d) and --out-dir")
        _stop_on_sigterm()
        console.print(f"reporting every {every} to {out_dir} (Ctrl-C stops)")
        stop = threading.Event()
        try:
            report.run_schedule(lambda: _analytics(data_dir), period, out_dir, fmt, stop)
        except KeyboardInterrupt:
            stop.set()
        return
    end = _since(until) or datetime.now(UTC)
    window = report.Window(_lookback(since), end)
    if out is None and out_dir is not None:
        out = out_dir / window.file_name(fmt)
    if out is None:
        raise typer.BadParameter("give --out or --out-dir")
    try:
        report.write_report(_analytics(data_dir), window, fmt, out)
    except (QueryError, StoreUnavailable) as error:
        console.print(f"[red]{error}")
        raise typer.Exit(2) from None
    console.print(f"report {window.label} written to {out}")


calibrate_app = typer.Typer(help="Fit the platform's calibrated checks from labelled data.", no_args_is_help=True)
app.add_typer(calibrate_app, name="calibrate")


@calibrate_app.command(name="abstention")
def calibrate_abstention(
    data: Path = typer.Option(DATA, help="Folder with corpus.jsonl, questions.jsonl, questions-unanswerable.jsonl."),
    out: Path = typer.Option(DEFAULT_CALIBRATION, help="Calibration file to write (default: the packaged one)."),
    per_class: int = typer.Option(1000, min=20, help="Questions drawn from each file (half train, half held out)."),
    seed: int = typer.Option(17, help="Seed of the draw and of the split."),
    min_answered: float = typer.Option(
        0.9, min=0.5, max=1.0, help="Share of answerable questions that must still be answered (the ROC constraint)."
    ),
    threads: int = typer.Option(1, min=1, help="Torch threads for the embedding model."),
) -> None:
    """Fit the abstention check on labelled questions and write its calibration file
    (ragops/calibrate.py says how: retrieval signals, logistic regression, ROC threshold).
    Point a generation service at another file with RAGOPS_GENERATION_ABSTENTION_CALIBRATION."""
    with console.status(f"embedding the corpus and {2 * per_class} questions, fitting..."):
        content = calibrate(data, per_class=per_class, seed=seed, min_answered=min_answered, threads=threads)
    out.write_text(json.dumps(content, indent=2) + "\n", encoding="utf-8")
    held = content["held_out"]
    console.print(
        f"{content['id']}: ROC AUC {content['roc_auc']['held_out']} held out, threshold {content['threshold']}; "
        f"held out: {held['abstained_unanswerable']:.3f} of {held['unanswerable']} unanswerable abstained, "
        f"{held['answered_answerable']:.3f} of {held['answerable']} answerable answered -> {out}"
    )

"""The stakeholder report: quality, feedback, drift, versions, experiments and cost over a window,
with charts, as one standalone HTML file or a PDF (``ragops report``), once or on a schedule.

Read from the platform's ClickHouse through any :class:`~ragops_analytics.store.Reader` (the
CLI's analytics client: the credential decides the tenant). The HTML comes from a Jinja2
template with autoescaping on, its CSS and its charts (:mod:`ragops_analytics.charts`, inline
SVG) inside the file, so it opens anywhere without a network; the PDF is the same HTML laid
out by WeasyPrint (https://doc.courtbouillon.org/weasyprint/). Every figure states its window
and its sample size; a section without data says so.
"""

import logging
import threading
from collections import defaultdict
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from pathlib import Path
from typing import Literal

from jinja2 import Environment, FileSystemLoader, select_autoescape
from pydantic import ValidationError

from ragops_analytics import queries
from ragops_analytics.charts import bar_chart, line_chart
from ragops_analytics.queries import DriftRow, VersionChange
from ragops_analytics.store import Reader
from ragops_schemas.experiments import ExperimentConcluded, ExperimentStarted, ExperimentStopped

log = logging.getLogger(__name__)

Format = Literal["html", "pdf"]
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_TEMPLATES = Path(__file__).with_name("templates")
_EXPERIMENT_EVENTS: dict[str, type[ExperimentStarted | ExperimentStopped | ExperimentConcluded]] = {
    "experiment.started": ExperimentStarted,
    "experiment.stopped": ExperimentStopped,
    "experiment.concluded": ExperimentConcluded,
}


def duration(value: str) -> timedelta | None:
    """``30m``, ``24h``, ``7d`` as a positive timedelta; None when ``value`` is not one."""
    amount, unit = value[:-1], value[-1:]
    if amount.isdigit() and int(amount) > 0 and unit in ("m", "h", "d"):
        return timedelta(minutes=int(amount) * {"m": 1, "h": 60, "d": 1440}[unit])
    return None


@dataclass(frozen=True)
class Window:
    """The report's period, ``[since, until)`` in UTC."""

    since: datetime
    until: datetime

    @property
    def label(self) -> str:
        return f"{self.since:%Y-%m-%d %H:%M} to {self.until:%Y-%m-%d %H:%M} UTC"

    def file_name(self, fmt: Format) -> str:
        """``ragops-report-<since>--<until>.<fmt>`` (basic ISO-8601 times, UTC)."""
        return f"ragops-report-{self.since:%Y%m%dT%H%MZ}--{self.until:%Y%m%dT%H%MZ}.{fmt}"


@dataclass(frozen=True)
class Experiment:
    """One experiment event of the window, as the report shows it."""

    occurred_at: datetime
    event_type: str
    experiment_id: str
    summary: str
    reason: str
    results: list[dict[str, object]] = field(default_factory=list)


@dataclass(frozen=True)
class ReportData:
    """Everything the report shows, read once from ClickHouse."""

    window: Window
    generated_at: datetime
    quality_by_day: list[tuple[date, str, int, float]]
    quality_by_prompt: list[tuple[str, int, str, int, float]]
    feedback_by_day: list[tuple[date, int, float]]
    feedback_by_prompt: list[tuple[str, int, int, float, float, float]]
    drift: list[DriftRow]
    versions: list[VersionChange]
    approvals: list[tuple[datetime, str, str, str]]
    experiments: list[Experiment]
    cost_by_day: list[tuple[date, str, int, float]]
    cost_by_stage: dict[str, float]


def _experiment(event_type: str, payload: str) -> Experiment:
    """The report's line for one stored experiment event; one that does not parse is shown as
    unreadable rather than left out."""
    try:
        event = _EXPERIMENT_EVENTS[event_type].model_validate_json(payload)
    except ValidationError as error:
        return Experiment(EPOCH, event_type, "?", f"unreadable event ({error.error_count()} errors)", "")
    if isinstance(event, ExperimentStarted):
        arms = ", ".join(f"{v.name}={v.version} ({v.weight}%)" for v in event.variants)
        summary = f"{event.target} {event.target_name}: {arms}; primary metric {event.policy.primary_metric}"
        return Experiment(event.occurred_at, event_type, event.experiment_id, summary, event.reason)
    if isinstance(event, ExperimentConcluded):
        summary = f"{event.decision}: {event.variant} on {event.metric} (test {event.test})" + (
            ", rolled back" if event.rolled_back else ""
        )
        results = [result.model_dump() for result in event.results]
        return Experiment(event.occurred_at, event_type, event.experiment_id, summary, event.reason, results)
    return Experiment(event.occurred_at, event_type, event.experiment_id, "stopped", event.reason)


def gather(reader: Reader, window: Window, *, now: datetime | None = None) -> ReportData:
    """Read every section of the report for ``window``.

    Raises: what the reader raises (:class:`~ragops_analytics.store.QueryError`,
    :class:`~ragops_analytics.store.StoreUnavailable`)."""
    since, until = window.since, window.until
    return ReportData(
        window=window,
        generated_at=now or datetime.now(UTC),
        quality_by_day=queries.quality_by_day_between(reader, since, until),
        quality_by_prompt=queries.quality_by_prompt_between(reader, since, until),
        feedback_by_day=queries.feedback_by_day_between(reader, since, until),
        feedback_by_prompt=queries.feedback_by_prompt_between(reader, since, until),
        drift=queries.drift_between(reader, since, until),
        versions=queries.version_changes_between(reader, since, until),
        approvals=queries.change_decisions_between(reader, since, until),
        experiments=[
            _experiment(kind, payload) for kind, payload in queries.experiment_events_between(reader, since, until)
        ],
        cost_by_day=queries.answer_cost_by_day(reader, since, until),
        cost_by_stage=_cost_by_stage(reader, window),
    )


def _cost_by_stage(reader: Reader, window: Window) -> dict[str, float]:
    """Stage -> USD over the window's days (the last one up to ``until``'s day): whole UTC days,
    as :func:`~ragops_analytics.queries.cost_by_day` sums them; tenant as the reader decides."""
    last_day = (window.until - timedelta(milliseconds=1)).date()
    by_stage: dict[str, float] = defaultdict(float)
    for day, stage, usd in queries.cost_by_day(reader, window.since, None):
        if day <= last_day:
            by_stage[stage] += usd
    return dict(sorted(by_stage.items()))


def _noon(day: date) -> datetime:
    # A day's aggregate is plotted at its middle.
    return datetime.combine(day, time(12), UTC)


def charts(data: ReportData) -> dict[str, str]:
    """The report's figures as inline SVG, by name; each title states the sample size (the
    caption under it, the window)."""
    quality: dict[str, list[tuple[datetime, float]]] = defaultdict(list)
    for day, metric, _, mean in data.quality_by_day:
        quality[metric].append((_noon(day), mean))
    evaluations = sum(n for _, _, n, _ in data.quality_by_day)
    by_prompt = {f"{name} v{version} {metric}": mean for name, version, metric, _, mean in data.quality_by_prompt}
    feedback = sum(n for _, n, _ in data.feedback_by_day)
    cost: dict[str, list[tuple[datetime, float]]] = defaultdict(list)
    for day, model, _, usd in data.cost_by_day:
        cost[model].append((_noon(day), usd))
    answers = sum(n for _, _, n, _ in data.cost_by_day)
    effects = {
        f"{e.experiment_id[:8]} {r['variant']} {r['metric']}": float(str(r["difference"]))
        for e in data.experiments
        for r in e.results
    }
    return {
        "quality_by_day": line_chart(
            quality, title=f"Mean evaluation score by day (n = {evaluations} evaluations)", y_label="mean score"
        ),
        "quality_by_prompt": bar_chart(
            by_prompt,
            title=f"Mean evaluation score by prompt version (n = {sum(r[3] for r in data.quality_by_prompt)})",
            y_label="mean score",
        ),
        "feedback_by_day": line_chart(
            {"thumbs-down rate": [(_noon(day), rate) for day, _, rate in data.feedback_by_day]},
            title=f"Thumbs-down rate by day (n = {feedback} feedback)",
            y_label="share of feedback",
        ),
        "experiment_effects": bar_chart(
            effects, title=f"Difference to control (n = {len(effects)} comparisons)", y_label="mean - control mean"
        ),
        "cost_by_day": line_chart(
            cost, title=f"Cost of answers by day and model (n = {answers} answers)", y_label="USD"
        ),
        "cost_by_stage": bar_chart(
            data.cost_by_stage, title=f"Cost by stage (n = {len(data.cost_by_stage)} stages)", y_label="USD"
        ),
    }


def render_html(data: ReportData) -> str:
    """The report as one standalone HTML document (autoescaped; the SVG charts are this
    module's own output, marked safe)."""
    environment = Environment(
        loader=FileSystemLoader(_TEMPLATES), autoescape=select_autoescape(["html", "j2"]), keep_trailing_newline=True
    )
    template = environment.get_template("report.html.j2")
    return template.render(data=data, charts=charts(data))


class _SvgPresentationAttributes(logging.Filter):
    """WeasyPrint reads the inline charts' ``style`` attributes as HTML CSS too, and warns on
    each SVG-only property (``fill``, ``stroke``...) before its SVG renderer applies them:
    dozens of warnings per chart that say nothing about the report."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not (record.msg.startswith("Ignored `") and record.msg.endswith("unknown property."))


def render_pdf(html: str) -> bytes:
    """``html`` laid out as a PDF by WeasyPrint (it draws the inline SVG charts as vectors).
    Nothing is fetched: the document has no external references."""
    from weasyprint import HTML  # Imported here: it loads Pango and fonts, which only PDFs need.

    weasyprint_log = logging.getLogger("weasyprint")
    if not any(isinstance(existing, _SvgPresentationAttributes) for existing in weasyprint_log.filters):
        weasyprint_log.addFilter(_SvgPresentationAttributes())
    pdf: bytes = HTML(string=html).write_pdf()
    return pdf


def write_report(reader: Reader, window: Window, fmt: Format, path: Path) -> Path:
    """Gather, render and write the report to ``path`` (written to a temporary name first and
    renamed, so a reader never sees half a file)."""
    html = render_html(gather(reader, window))
    content = html.encode() if fmt == "html" else render_pdf(html)
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(path.name + ".partial")
    partial.write_bytes(content)
    partial.replace(path)
    return path


# ------------------------------------------------------------------------------ the schedule


def report_window(now: datetime, every: timedelta) -> Window:
    """The last whole period of length ``every`` that ended at or before ``now``; periods are
    counted from the Unix epoch (UTC), so every run and every replica agrees on them."""
    ended = EPOCH + ((now - EPOCH) // every) * every
    return Window(ended - every, ended)


def next_run(now: datetime, every: timedelta) -> datetime:
    """When the next period ends: strictly after ``now``."""
    return report_window(now, every).until + every


def run_schedule(
    reader: Callable[[], Reader],
    every: timedelta,
    out_dir: Path,
    fmt: Format,
    stop: threading.Event,
    clock: Callable[[], datetime] = lambda: datetime.now(UTC),
) -> None:
    """Until ``stop`` is set: at each period's end, write the report of the period that ended to
    ``out_dir`` (:meth:`Window.file_name`; a file already there is kept, so a restart does not
    redo it). A period whose report fails is logged and tried again at the next tick with the
    new one. Sleeps on ``stop`` between ticks (no polling)."""
    pending: list[Window] = []
    while not stop.is_set():
        now = clock()
        window = report_window(now, every)
        if window not in pending:
            pending.append(window)
        pending = _write_pending(reader, pending, out_dir, fmt)
        stop.wait(max((next_run(now, every) - clock()).total_seconds(), 1.0))


def _write_pending(reader: Callable[[], Reader], pending: Sequence[Window], out_dir: Path, fmt: Format) -> list[Window]:
    """Write each pending window's report; the windows that failed."""
    failed = []
    for window in pending:
        path = out_dir / window.file_name(fmt)
        if path.exists():
            continue
        try:
            write_report(reader(), window, fmt, path)
        except Exception:  # Any failure (store down, a bad row): logged, retried at the next tick.
            log.exception("report %s failed; retrying at the next tick", window.label)
            failed.append(window)
        else:
            log.info("report %s written to %s", window.label, path)
    return failed

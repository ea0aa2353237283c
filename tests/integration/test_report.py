"""The stakeholder report on real components: a week of events stored by the sink's own row
code in chDB (migrations applied), read back through `ragops report` in both formats: the
HTML holds each section's figures from the seed (and nothing from outside the window), the
PDF is a PDF whose text has every heading; the schedule writes the period's file once."""

import re
import threading
import uuid
import zlib
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from typer.testing import CliRunner
from weasyprint import HTML
from weasyprint.formatting_structure.boxes import TextBox
from weasyprint.images import SVGImage

from ragops import cli
from ragops.report import Window, gather, render_html, report_window, run_schedule
from ragops_analytics.chdb_store import ChdbStore
from ragops_analytics.queries import insert_events
from ragops_analytics.store import StoreUnavailable
from ragops_schemas import AnswerEvaluated, AnswerGenerated, Event, FeedbackRecorded
from ragops_schemas.changes import ChangeApproved
from ragops_schemas.experiments import ExperimentConcluded, ExperimentStarted
from ragops_schemas.lifecycle import DriftDetected, VersionPromoted, VersionRetired
from ragops_sink.rows import events_to_arrow, to_row
from ragops_sink.schema import set_prices
from tests.helpers import example, record_of

pytestmark = pytest.mark.clickhouse

SINCE = datetime(2026, 11, 26, tzinfo=UTC)
UNTIL = SINCE + timedelta(days=7)
HEADINGS = ("Quality", "Feedback", "Drift", "Versions promoted, rejected and retired", "Experiments", "Cost")
MODEL = "SmolLM2-135M-Instruct"  # the golden answer's model


def _at(event: Event, at: datetime, **update: object) -> Event:
    return event.model_copy(update={"event_id": uuid.uuid4(), "occurred_at": at, **update})


def _evaluation(at: datetime, faithfulness: float, prompt_version: int, run_id: str | None = None) -> Event:
    golden = example(AnswerEvaluated)
    scores = [golden.scores[0].model_copy(update={"value": faithfulness})]
    prompt = golden.prompt.model_copy(update={"version": prompt_version}) if golden.prompt else None
    return _at(golden, at, scores=scores, prompt=prompt, run_id=run_id, example_id=None, request_id=str(uuid.uuid4()))


def _seed() -> list[Event]:
    day = [SINCE + timedelta(days=d, hours=9) for d in range(7)]
    events: list[Event] = [
        # Quality: faithfulness 0.25 then 0.75 under prompt version 2 on day 0; 0.9 under 3 on day 1.
        _evaluation(day[0], 0.25, 2),
        _evaluation(day[0], 0.75, 2),
        _evaluation(day[1], 0.9, 3),
        # Not in the report: an evaluation run's score, and a score before the window.
        _evaluation(day[1], 0.0, 3, run_id="run-x"),
        _evaluation(SINCE - timedelta(hours=1), 0.0, 2),
    ]
    # Feedback: one thumbs-down of four.
    golden_feedback = example(FeedbackRecorded)
    events += [_at(golden_feedback, day[2], thumb=thumb) for thumb in ("down", "up", "up", "up")]
    events += [_at(example(DriftDetected), day[3], statistic=0.4321)]
    events += [
        _at(example(VersionPromoted), day[4], reason="hit@5 0.910 > live 0.880 on 300 held-out questions"),
        _at(example(VersionRetired), day[4] + timedelta(hours=1), reason="superseded by version 2"),
        _at(example(ChangeApproved), day[4], reason="checked the answers it produced"),
    ]
    started = example(ExperimentStarted)
    events += [
        _at(started, day[5]),
        _at(example(ExperimentConcluded), day[6], experiment_id=started.experiment_id),
    ]
    golden_answer = example(AnswerGenerated)
    events += [_at(golden_answer, day[6], request_id=str(uuid.uuid4())) for _ in range(3)]
    return events


def _store(store: ChdbStore, events: Sequence[Event]) -> None:
    rows = [to_row(record_of(event, offset), datetime.now(UTC)) for offset, event in enumerate(events)]
    insert_events(store, events_to_arrow(rows))


@pytest.fixture
def seeded(chdb_store: ChdbStore, monkeypatch: pytest.MonkeyPatch) -> ChdbStore:
    _store(chdb_store, _seed())
    set_prices(chdb_store, {MODEL: (1.0, 2.0)})
    monkeypatch.setattr(cli, "_analytics", lambda data_dir: chdb_store)
    return chdb_store


def _pdf_pages(pdf: bytes) -> int:
    """Page objects in a PDF, looking into its compressed object streams too."""
    inflated = []
    for stream in re.finditer(rb"<<([^<>]*)>>\s*stream\r?\n", pdf):
        length = re.search(rb"/Length (\d+)", stream.group(1))
        if length and b"/FlateDecode" in stream.group(1):
            inflated.append(zlib.decompress(pdf[stream.end() : stream.end() + int(length.group(1))]))
    return sum(len(re.findall(rb"/Type\s*/Page\b(?!s)", part)) for part in [pdf, *inflated])


def _report(tmp_path: Path, fmt: str) -> Path:
    out = tmp_path / f"report.{fmt}"
    window = ["--since", SINCE.isoformat(), "--until", UNTIL.isoformat()]
    result = CliRunner().invoke(cli.app, ["report", *window, "--format", fmt, "--out", str(out)])
    assert result.exit_code == 0, result.output
    return out


def test_the_html_report_shows_each_section_from_the_seed(seeded: ChdbStore, tmp_path: Path) -> None:
    html = _report(tmp_path, "html").read_text()
    assert "Window: 2026-11-26 00:00 to 2026-12-03 00:00 UTC" in html
    for heading in HEADINGS:
        assert f">{heading}</h2>" in html
    # Quality: 3 production evaluations (not the run's, not the one before the window).
    assert "n = 3 evaluations" in html
    # Per prompt version: v2 two scores, mean 0.5; v3 one, 0.9.
    row = (
        '<td>rag-answer</td><td class="num">{}</td><td>faithfulness</td><td class="num">{}</td><td class="num">{}</td>'
    )
    assert row.format(2, 2, "0.500") in html and row.format(3, 1, "0.900") in html
    # Feedback: 4, a quarter thumbs-down.
    assert "n = 4 feedback" in html and "25.0%" in html
    # Drift: the test, its statistic and threshold.
    assert '<td>ks</td><td class="num">0.4321</td><td class="num">0.0010</td>' in html
    # Versions and why; the approval and its reason.
    assert "promoted" in html and "hit@5 0.910 &gt; live 0.880 on 300 held-out questions" in html
    assert "retired" in html and "superseded by version 2" in html
    assert "checked the answers it produced" in html
    # Experiments: the start and the conclusion with its effect size.
    assert "experiment.started" in html and "loser: v4 on thumbs_down_rate" in html
    assert "+0.09" in html and "[0.012, 0.168]" in html
    # Cost: 3 answers at the seeded prices.
    assert "n = 3 answers" in html and "<td>tokens</td>" in html
    assert html.count("<svg") == 6 and "<script" not in html
    assert "no data" not in html


def test_an_empty_window_says_so_in_every_section(seeded: ChdbStore, tmp_path: Path) -> None:
    out = tmp_path / "empty.html"
    window = ["--since", "2020-01-01", "--until", "2020-01-08"]
    result = CliRunner().invoke(cli.app, ["report", *window, "--format", "html", "--out", str(out)])
    assert result.exit_code == 0, result.output
    html = out.read_text()
    assert html.count('class="empty">No data') == 7  # six sections and the approvals


def test_the_pdf_report_is_a_pdf_with_every_heading_and_chart(seeded: ChdbStore, tmp_path: Path) -> None:
    pdf = _report(tmp_path, "pdf").read_bytes()
    assert pdf.startswith(b"%PDF-1.") and pdf.rstrip().endswith(b"%%EOF")
    # The same HTML as WeasyPrint lays it out (no PDF text extractor is installed): the pages'
    # text has every heading, and each chart is an SVG image drawn on a page.
    document = HTML(string=render_html(gather(seeded, Window(SINCE, UNTIL)))).render()
    assert _pdf_pages(pdf) == len(document.pages) > 1
    boxes = [box for page in document.pages for box in page._page_box.descendants()]
    text = " ".join(box.text for box in boxes if isinstance(box, TextBox))
    for heading in ("RAGOps stakeholder report", *HEADINGS):
        assert heading in text
    assert sum(isinstance(getattr(box, "replacement", None), SVGImage) for box in boxes) == 6


def test_the_schedule_writes_each_period_once_and_retries_a_failure(seeded: ChdbStore, tmp_path: Path) -> None:
    week = timedelta(days=7)
    first = UNTIL + timedelta(hours=1)
    second = UNTIL + week + timedelta(hours=1)
    # The clock at the first tick, at the wait after it (1 s before the period ends: the
    # shortest wait), at the second tick, and at the wait after it, when the test stops.
    times = iter([first, UNTIL + week - timedelta(milliseconds=500), second, second])
    stop = threading.Event()

    def clock() -> datetime:
        moment = next(times)
        if moment is second and stop_next:
            stop.set()
        return moment

    stop_next = False
    calls = 0

    def reader() -> ChdbStore:
        nonlocal calls, stop_next
        calls += 1
        stop_next = calls >= 2
        if calls == 1:
            raise StoreUnavailable("ClickHouse is down")
        return seeded

    out = tmp_path / "reports"
    run_schedule(reader, week, out, "html", stop, clock)
    # The first period failed at the first tick and was written at the second, with the second.
    expected = sorted(report_window(moment, week).file_name("html") for moment in (first, second))
    assert sorted(path.name for path in out.iterdir()) == expected
    assert expected[0] == Window(SINCE, UNTIL).file_name("html")
    assert calls == 3

"""Charts as inline SVG strings, for the console's pages and the stakeholder report.

Drawn with matplotlib's object API (:class:`matplotlib.figure.Figure` on the Agg canvas,
never ``pyplot``'s global figure manager), so charts can be drawn from several threads at
once. The SVG is deterministic for the same input: element ids come from a fixed
``svg.hashsalt`` and the metadata carries no date, so a page or report rendered twice is
byte-identical. Text stays as ``<text>`` elements (``svg.fonttype = "none"``), searchable
and selectable; the output has no XML prolog, no scripts and no external references, so it
can be embedded in an HTML page or a PDF as it is.

Source: matplotlib's SVG backend, https://matplotlib.org/stable/users/explain/customizing.html
(``svg.hashsalt``, ``svg.fonttype``) and ``Figure.savefig(metadata={"Date": None})``.
"""

import hashlib
import io
import re
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime

import matplotlib as mpl
import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from numpy.typing import NDArray

NO_DATA = "no data"
"""What a chart with nothing to plot says."""

_SIZE_INCHES = (7.0, 3.2)
# The SVG writer reads these two from the process-wide rcParams when it saves. They are set
# once, here, to constants and never changed back (an rc_context per chart would restore
# them under a concurrent save on another thread); nothing else in RAGOps writes SVG.
mpl.rcParams["svg.hashsalt"] = "ragops-charts"
mpl.rcParams["svg.fonttype"] = "none"
# Everything before the <svg element: the XML prolog and DOCTYPE matplotlib writes.
_PROLOG = re.compile(r"\A.*?(?=<svg\b)", re.DOTALL)
# The RDF metadata block: it names Dublin Core resources by URL, which an inline chart
# does not need.
_METADATA = re.compile(r"\s*<metadata>.*?</metadata>", re.DOTALL)
# Element ids and their references: prefixed per chart, so several charts inline in one
# page never share an id.
_IDS = re.compile(r'(\bid="|url\(#|href="#)')


def _figure() -> Figure:
    figure = Figure(figsize=_SIZE_INCHES, layout="constrained")
    FigureCanvasAgg(figure)
    return figure


def _svg(figure: Figure) -> str:
    buffer = io.StringIO()
    figure.savefig(buffer, format="svg", metadata={"Date": None, "Creator": None})
    svg = _METADATA.sub("", _PROLOG.sub("", buffer.getvalue()), count=1)
    prefix = "c" + hashlib.sha256(svg.encode()).hexdigest()[:10] + "-"
    return _IDS.sub(lambda match: match.group(1) + prefix, svg)


def _utc_times(times: Sequence[datetime]) -> NDArray[np.datetime64]:
    # numpy datetime64 is naive: aware times are turned to naive UTC first.
    return np.array([t.astimezone(UTC).replace(tzinfo=None) for t in times], dtype="datetime64[ms]")


def _no_data(figure: Figure, title: str) -> None:
    axes = figure.add_subplot()
    axes.set_title(title)
    axes.set_axis_off()
    axes.text(0.5, 0.5, NO_DATA, ha="center", va="center", transform=axes.transAxes)


def line_chart(series: Mapping[str, Sequence[tuple[datetime, float]]], *, title: str, y_label: str) -> str:
    """One line per named series of ``(time, value)`` points, as an inline ``<svg>`` string.

    Series are drawn in name order (the legend's order does not depend on the mapping's);
    points are sorted by time. With no points at all the chart says "no data".
    """
    figure = _figure()
    if not any(series.values()):
        _no_data(figure, title)
        return _svg(figure)
    axes = figure.add_subplot()
    for name in sorted(series):
        points = sorted(series[name])
        if points:
            axes.plot(_utc_times([t for t, _ in points]), [v for _, v in points], marker="o", markersize=3, label=name)
    axes.xaxis_date(UTC)
    axes.set_title(title)
    axes.set_ylabel(y_label)
    axes.grid(alpha=0.3)
    axes.legend(fontsize="small")
    figure.autofmt_xdate()
    return _svg(figure)


def bar_chart(bars: Mapping[str, float], *, title: str, y_label: str) -> str:
    """One bar per label (in the mapping's order), as an inline ``<svg>`` string; with no
    bars the chart says "no data"."""
    figure = _figure()
    if not bars:
        _no_data(figure, title)
        return _svg(figure)
    axes = figure.add_subplot()
    labels = list(bars)
    axes.bar(labels, [bars[label] for label in labels])
    axes.set_title(title)
    axes.set_ylabel(y_label)
    axes.grid(axis="y", alpha=0.3)
    if len(labels) > 4:
        axes.tick_params(axis="x", labelrotation=30)
    return _svg(figure)

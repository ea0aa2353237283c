"""The release gate of ``ragops eval --candidate``: the two sides' specs, their scores paired by
example id, the threshold checks (:mod:`ragops_analytics.paired`), the comparison table and the
JUnit XML report a CI system shows as test results.

The gate fails when a threshold misses (``--fail-under``: the candidate's mean below the floor;
``--max-regression``: the candidate's mean below the baseline's by more than the margin, on the
point estimate; see :class:`ragops_analytics.paired.Threshold`), when a threshold's metric was
not scored on both sides, when the candidate answered fewer questions than the baseline (a
prompt that fails to render dead-letters its questions: they are missing, not scored low), or
when a pinned candidate's answers were rendered with another version (a retired pin is served
by production: the same check as ``ragops shadow``'s)."""

import re
import xml.etree.ElementTree as ET
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass

from rich.table import Table
from rich.text import Text

from ragops.client import QueryTrace
from ragops_analytics.paired import GateCheck, Threshold, gate
from ragops_schemas import AnswerEvaluated, PairedMetric

_PROMPT_PIN = re.compile(r"^prompt=([A-Za-z0-9][A-Za-z0-9._-]*):([0-9]+)$")


@dataclass(frozen=True)
class Side:
    """What one side of a comparison serves: ``production`` (no pin) or a pinned prompt
    version (``ragops eval --candidate`` and ``ragops shadow``)."""

    label: str
    prompt_name: str | None = None
    prompt_version: int | None = None

    @classmethod
    def parse(cls, text: str) -> "Side":
        """``production`` or ``prompt=NAME:VERSION`` (e.g. ``prompt=rag-answer:4``).
        ValueError otherwise."""
        if text == "production":
            return cls(text)
        match = _PROMPT_PIN.match(text)
        if match is None:
            raise ValueError(f"expected production or prompt=NAME:VERSION, got {text!r}")
        return cls(text, match.group(1), int(match.group(2)))

    @classmethod
    def prompt(cls, name: str, version: int) -> "Side":
        """The side pinned to version ``version`` of prompt ``name``."""
        return cls(f"prompt={name}:{version}", name, version)


def parse_side(text: str, option: str) -> Side:
    """``production`` or ``prompt=NAME:VERSION`` (e.g. ``prompt=rag-answer:4``), as
    :meth:`Side.parse`.

    Raises ``ValueError`` naming ``option`` and what is accepted; model and index candidates
    are not gated on a dataset (a canary or a shadow replay compares those)."""
    kind, equals, _ = text.partition("=")
    if equals and kind != "prompt":
        raise ValueError(
            f"{option} {text!r}: only prompt versions can be gated on a dataset for now "
            "(prompt=NAME:VERSION); compare models and indexes with a canary or a shadow replay"
        )
    try:
        return Side.parse(text)
    except ValueError as error:
        raise ValueError(f"{option}: {error}, e.g. prompt=rag-answer:4") from None


def scores_of(trace: QueryTrace) -> dict[str, float]:
    """``{metric: value}`` of the trace's evaluated answer; empty when it was not evaluated
    (dead-lettered or unanswered)."""
    outcome = trace.outcome
    return {score.name: score.value for score in outcome.scores} if isinstance(outcome, AnswerEvaluated) else {}


def scores_by_example(traces: Sequence[QueryTrace]) -> dict[str, dict[str, float]]:
    """``{example_id: {metric: value}}`` of the evaluated answers (dead-lettered or unanswered
    questions are absent)."""
    return {
        trace.outcome.example_id: scores_of(trace)
        for trace in traces
        if isinstance(trace.outcome, AnswerEvaluated) and trace.outcome.example_id is not None
    }


def discordant(
    baseline: Mapping[str, Mapping[str, float]], candidate: Mapping[str, Mapping[str, float]], metrics: Collection[str]
) -> list[str]:
    """The example ids (sorted) on which the two sides' 0/1 outcomes differ on any of
    ``metrics`` (McNemar's discordant pairs): the questions to read first."""
    return sorted(
        i
        for i in baseline.keys() & candidate.keys()
        if any(m in baseline[i] and m in candidate[i] and baseline[i][m] != candidate[i][m] for m in metrics)
    )


def decide(
    paired: Sequence[PairedMetric],
    thresholds: Sequence[Threshold],
    answered: tuple[int, int],
    served: tuple[Side, Sequence[int | None]] | None = None,
) -> tuple[list[GateCheck], list[str]]:
    """The answered check (``answered``: questions evaluated on the baseline, the candidate),
    for a pinned candidate the served check (``served``: the candidate's side and the prompt
    version of each of its answers, :func:`served_versions`; :func:`served_check`)
    and every threshold's (:func:`ragops_analytics.paired.gate`); and the messages of those
    that failed."""
    baseline, candidate = answered
    checks = [
        GateCheck(
            "answered",
            None,
            candidate >= baseline,
            f"answered: the candidate answered {candidate} questions, the baseline {baseline}",
        )
    ]
    if served is not None and (check := served_check(*served)) is not None:
        checks.append(check)
    checks += gate(paired, thresholds)
    return checks, [check.message for check in checks if not check.passed]


SERVED_CHECK = "candidate-served"


def served_versions(traces: Sequence[QueryTrace]) -> list[int | None]:
    """The prompt version that rendered each answer (None: no answer)."""
    return [trace.answer.lineage.prompt.version if trace.answer is not None else None for trace in traces]


def served_check(candidate: Side, served: Sequence[int | None]) -> GateCheck | None:
    """For a pinned ``candidate``, the check that its answers are its own: failed when
    ``served`` (the prompt version that rendered each answer, :func:`served_versions`) names
    another version than the pin (generation serves production instead of a retired pin);
    None for an unpinned side. Shared by ``ragops eval --candidate`` and ``ragops shadow``."""
    if candidate.prompt_version is None:
        return None
    other = sorted({v for v in served if v is not None and v != candidate.prompt_version})
    message = (
        f"the candidate's answers were rendered with prompt version(s) {other}, "
        f"not {candidate.prompt_version}: the pin was not served"
        if other
        else f"the candidate's answers were rendered with its pinned version {candidate.label}"
    )
    return GateCheck(SERVED_CHECK, None, not other, message)


def junit_xml(checks: Sequence[GateCheck], *, suite: str, classname: str = "ragops.eval.gate") -> bytes:
    """A JUnit XML report (the schema CI systems read): one ``testcase`` per check (of
    ``classname``), a failed check with a ``failure`` holding its message."""
    root = ET.Element("testsuites")
    failures = sum(not check.passed for check in checks)
    element = ET.SubElement(
        root, "testsuite", name=suite, tests=str(len(checks)), failures=str(failures), errors="0", skipped="0"
    )
    for check in checks:
        case = ET.SubElement(element, "testcase", classname=classname, name=check.name)
        if check.passed:
            ET.SubElement(case, "system-out").text = check.message
        else:
            ET.SubElement(case, "failure", message=check.message, type="threshold")
    root.set("tests", str(len(checks)))
    root.set("failures", str(failures))
    document: bytes = ET.tostring(root, encoding="utf-8", xml_declaration=True)
    return document


def comparison_table(paired: Sequence[PairedMetric], checks: Sequence[GateCheck], title: str) -> Table:
    """metric, test, pairs, both means, the difference with its confidence interval, p and the
    verdict of the metric's thresholds (blank without one). Every cell is literal text: metric
    names come from events, never read as rich markup."""
    table = Table(
        "metric", "test", "pairs", "baseline", "candidate", "difference [95% CI]", "p", "verdict", title=Text(title)
    )
    verdicts: dict[str, list[bool]] = {}
    for check in checks:
        if check.metric is not None:
            verdicts.setdefault(check.metric, []).append(check.passed)
    for p in paired:
        verdict = verdicts.get(p.metric)
        table.add_row(
            *(
                Text(cell)
                for cell in (
                    p.metric,
                    p.test,
                    str(p.pairs),
                    f"{p.baseline_mean:.4f}",
                    f"{p.candidate_mean:.4f}",
                    f"{p.difference:+.4f} [{p.ci_low:+.4f}, {p.ci_high:+.4f}]",
                    "-" if p.p_value is None else f"{p.p_value:.4g}",
                    "" if verdict is None else ("pass" if all(verdict) else "FAIL"),
                )
            )
        )
    return table

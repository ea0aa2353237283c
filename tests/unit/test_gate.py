"""The release gate's plain parts: side specs, usage errors (exit 2 before anything runs),
the checks, the JUnit XML report and the comparison table; the metric names it accepts."""

import xml.etree.ElementTree as ET

import numpy as np
import pytest
from rich.console import Console
from typer.testing import CliRunner

from ragops.cli import app
from ragops.gate import SERVED_CHECK, Side, comparison_table, decide, discordant, junit_xml, parse_side
from ragops_analytics.paired import Threshold, paired_comparison
from ragops_evaluation.metrics import BINARY_METRICS, METRIC_NAMES, reference_free_scores, reference_scores
from ragops_shared.datasets import parse_questions


def test_sides_are_production_or_a_prompt_version() -> None:
    assert parse_side("production", "--baseline") == Side("production")
    assert parse_side("prompt=rag-answer:4", "--candidate") == Side("prompt=rag-answer:4", "rag-answer", 4)
    with pytest.raises(ValueError, match="only prompt versions"):
        parse_side("model=smollm2:2", "--candidate")
    for bad in ("prompt=rag-answer", "prompt=:3", "rag-answer:4", "prompt=Rag Answer:4"):
        with pytest.raises(ValueError, match="expected production or prompt=NAME:VERSION"):
            parse_side(bad, "--candidate")


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--candidate", "prompt=rag-answer:4", "--fail-under", "rouge=0.1"], "unknown metric 'rouge'"),
        (["--candidate", "prompt=rag-answer:4", "--fail-under", "f1"], "METRIC=NUMBER"),
        (["--candidate", "prompt=rag-answer:4", "--max-regression", "f1=-1"], ">= 0"),
        (["--candidate", "rag-answer:4"], "expected production or prompt=NAME:VERSION"),
        (["--candidate", "index=docs:7"], "only prompt versions"),
        (["--fail-under", "f1=0.1"], "gate a --candidate"),
    ],
)
def test_usage_errors_exit_2_before_anything_runs(args: list[str], message: str) -> None:
    result = CliRunner().invoke(app, ["eval", "--dataset", "nowhere@1", *args], env={"COLUMNS": "300"})
    assert result.exit_code == 2, result.output
    assert message in " ".join(result.output.replace("│", " ").split())  # the message as rich boxed it


def test_the_metric_names_are_the_scores_the_evaluation_computes() -> None:
    computed = reference_scores("Paris", ["Paris"], ["a", "b"], ["a"]) + reference_free_scores(
        "Where?", "Paris", ["Paris is in France."], lambda texts: np.eye(len(texts), 4, dtype=np.float32)
    )
    assert sorted(score.name for score in computed) == sorted(METRIC_NAMES)
    assert all(score.value in (0.0, 1.0) for score in computed if score.name in BINARY_METRICS)


def test_checks_junit_and_table() -> None:
    paired = [
        paired_comparison("f1", [0.6, 0.8, 0.7], [0.1, 0.2, 0.0]),
        paired_comparison("exact_match", [1, 1, 0], [0, 0, 0], binary=True),
    ]
    thresholds = [Threshold("fail-under", "f1", 0.15), Threshold("max-regression", "exact_match", 0.02)]
    checks, reasons = decide(paired, thresholds, (3, 2))
    assert [(c.name, c.passed) for c in checks] == [
        ("answered", False),
        ("fail-under f1=0.15", False),
        ("max-regression exact_match=0.02", False),
    ]
    assert reasons == [c.message for c in checks]
    passing, none = decide(paired, [Threshold("fail-under", "f1", 0.1)], (3, 3))
    assert none == [] and all(c.passed for c in passing)

    report = ET.fromstring(junit_xml(checks[:2] + passing[1:], suite="gate-1"))
    suite = report.find("testsuite")
    assert suite is not None and (suite.get("tests"), suite.get("failures")) == ("3", "2")
    cases = suite.findall("testcase")
    assert [c.get("name") for c in cases] == ["answered", "fail-under f1=0.15", "fail-under f1=0.1"]
    assert [c.find("failure") is not None for c in cases] == [True, True, False]
    assert "0.1000 < 0.15" in (cases[1].find("failure").get("message") or "")  # type: ignore[union-attr]

    console = Console(record=True, width=200)
    console.print(comparison_table(paired, checks, "[bold]gate-1[/bold]"))
    text = console.export_text()
    assert "[bold]gate-1[/bold]" in text  # data is printed literally, never as markup
    assert "-0.6000 [" in text and "mcnemar" in text and "FAIL" in text


def test_a_pinned_candidate_rendered_with_another_version_fails_the_gate() -> None:
    """A retired pin is served by production: its scores are not the candidate's (as in ``ragops shadow``)."""
    paired = [paired_comparison("f1", [0.6, 0.8, 0.7], [0.6, 0.8, 0.7])]
    candidate = Side.parse("prompt=rag-answer:4")
    checks, reasons = decide(paired, [], (3, 3), (candidate, [2, 2, None]))
    assert [(c.name, c.passed) for c in checks] == [("answered", True), (SERVED_CHECK, False)]
    assert reasons == [checks[1].message] and "[2]" in reasons[0] and "not 4" in reasons[0]
    served, none = decide(paired, [], (3, 3), (candidate, [4, 4, None]))
    assert none == [] and [c.name for c in served] == ["answered", SERVED_CHECK]
    unpinned, _ = decide(paired, [], (3, 3), (Side.parse("production"), [2, 3]))
    assert [c.name for c in unpinned] == ["answered"], "production is whatever production serves"


def test_discordant_questions_are_those_whose_outcomes_differ() -> None:
    baseline = {"a": {"exact_match": 1.0, "f1": 1.0}, "b": {"exact_match": 0.0, "f1": 0.2}, "c": {"exact_match": 1.0}}
    candidate = {"a": {"exact_match": 0.0, "f1": 0.5}, "b": {"exact_match": 0.0, "f1": 0.9}, "d": {"exact_match": 1.0}}
    assert discordant(baseline, candidate, {"exact_match"}) == ["a"]


def test_questions_parse_from_bytes_with_the_line_of_an_error() -> None:
    data = '\ufeff{"id": 1, "question": "Q?", "answers": ["A"], "context_ids": ["c"]}\n'.encode()
    [question] = parse_questions(data, "ds@abc")
    assert (question.id, question.answers) == ("1", ["A"])
    with pytest.raises(ValueError, match="ds@abc:2: not a question row"):
        parse_questions(data + b'{"question": "no id"}\n', "ds@abc")
    with pytest.raises(ValueError, match="not UTF-8"):
        parse_questions(b"\xff\xfe", "ds@abc")

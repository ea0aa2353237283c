"""The shadow replay's plain functions: parsing a side, pairing by the original request id, the
paired comparison, the gate and the disagreements (ragops.shadow)."""

from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any
from xml.etree import ElementTree

import numpy as np
import pytest

from ragops.client import QueryTrace
from ragops.gate import SERVED_CHECK, Side, junit_xml
from ragops.shadow import (
    ANSWERED,
    MIN_QUESTIONS_CHECK,
    Outcome,
    ShadowPair,
    ShadowResult,
    compare,
    disagreements,
    excerpt,
    gate_checks,
    pair_by_request,
)
from ragops_analytics.paired import GateCheck
from ragops_analytics.queries import RetainedQuestion
from ragops_schemas import AnswerEvaluated, AnswerGenerated, EvaluationContext, PairedMetric, QuerySubmitted
from tests.helpers import PRODUCER, example


def retained(i: int) -> RetainedQuestion:
    return RetainedQuestion(f"r{i}", f"question {i}", 5, {}, datetime(2026, 11, 1, tzinfo=UTC))


def pair(i: int, baseline: dict[str, float], candidate: dict[str, float], *, answered: bool = True) -> ShadowPair:
    return ShadowPair(
        retained(i),
        Outcome("the answer", 3, baseline),
        Outcome("banana" if answered else None, 4 if answered else None, candidate),
    )


def blocks(checks: Sequence[GateCheck]) -> dict[str, str]:
    """Check name -> message of the checks that block."""
    return {check.name: check.message for check in checks if not check.passed}


def gate_blocks(paired: Sequence[PairedMetric], pairs: int, **options: Any) -> dict[str, str]:
    return blocks(gate_checks(paired, pairs, **options))


def test_a_side_is_production_or_a_pinned_prompt_version() -> None:
    assert Side.parse("production") == Side("production")
    assert (
        Side.parse("prompt=rag-answer:4")
        == Side("prompt=rag-answer:4", "rag-answer", 4)
        == Side.prompt("rag-answer", 4)
    )
    for bad in ("staging", "prompt=rag-answer", "model=x:1", "prompt=:4"):
        with pytest.raises(ValueError, match="prompt=NAME:VERSION"):
            Side.parse(bad)


def trace(original: str, answer: str | None, score: float) -> QueryTrace:
    asked = QuerySubmitted(
        producer=PRODUCER,
        request_id=f"new-{original}",
        question="q",
        evaluation=EvaluationContext(run_id="shadow-x-baseline", example_id=original),
    )
    generated = example(AnswerGenerated).model_copy(update={"request_id": asked.request_id, "answer": answer or ""})
    evaluated = example(AnswerEvaluated)
    evaluated = evaluated.model_copy(
        update={"scores": [evaluated.scores[0].model_copy(update={"name": "faithfulness", "value": score})]}
    )
    return QueryTrace(asked, [generated] if answer is not None else [], evaluated if answer is not None else None)


def test_the_sides_are_paired_by_the_original_request_id_whatever_their_order() -> None:
    questions = [retained(i) for i in range(3)]
    baseline = [trace("r2", "b2", 0.2), trace("r0", "b0", 0.0), trace("r1", "b1", 0.1)]
    candidate = [trace("r1", "c1", 0.6), trace("r0", None, 0.0)]  # r2 missing on this side
    pairs = pair_by_request(questions, baseline, candidate)
    assert [p.question.request_id for p in pairs] == ["r0", "r1"]
    assert pairs[0].baseline.answer == "b0" and pairs[0].baseline.scores == {"faithfulness": 0.0}
    assert pairs[0].candidate == Outcome(None, None, {})
    assert pairs[1].candidate.scores == {"faithfulness": 0.6}


def test_a_clearly_worse_candidate_is_blocked_and_the_baseline_against_itself_passes() -> None:
    rng = np.random.default_rng(0)
    good = rng.uniform(0.6, 0.9, 120)
    worse = [pair(i, {"faithfulness": g}, {"faithfulness": g - 0.4}) for i, g in enumerate(good)]
    paired = compare(worse)
    assert [m.metric for m in paired] == [ANSWERED, "faithfulness"]
    faithfulness = paired[1]
    assert faithfulness.pairs == 120 and faithfulness.difference == pytest.approx(-0.4)
    blocks = gate_blocks(paired, len(worse), alpha=0.05, min_questions=100)
    assert list(blocks) == ["faithfulness"] and "candidate worse by 0.4000" in blocks["faithfulness"]

    same = [pair(i, {"faithfulness": g}, {"faithfulness": g}) for i, g in enumerate(good)]
    assert gate_blocks(compare(same), len(same), alpha=0.05, min_questions=100) == {}
    # A better candidate is not blocked: only a significant loss is.
    better = [pair(i, {"faithfulness": g - 0.4}, {"faithfulness": g}) for i, g in enumerate(good)]
    assert gate_blocks(compare(better), len(better), alpha=0.05, min_questions=100) == {}


def test_too_few_pairs_block_and_a_candidate_that_stops_answering_fails_mcnemar() -> None:
    pairs = [pair(i, {"faithfulness": 0.5}, {"faithfulness": 0.5}, answered=i % 4 == 0) for i in range(40)]
    paired = compare(pairs)
    answered = paired[0]
    assert (answered.metric, answered.test, answered.baseline_mean, answered.candidate_mean) == (
        ANSWERED,
        "mcnemar",
        1.0,
        0.25,
    )
    blocks = gate_blocks(paired, len(pairs), alpha=0.05, min_questions=100)
    assert list(blocks) == [MIN_QUESTIONS_CHECK, ANSWERED]
    assert blocks[MIN_QUESTIONS_CHECK] == "40 paired questions, fewer than --min-questions 100"


def test_a_candidate_served_by_another_version_is_blocked() -> None:
    candidate = Side.parse("prompt=rag-answer:4")
    passing = gate_checks([], 0, alpha=0.05, min_questions=0, candidate=candidate, served=[4, 4, None])
    assert [(c.name, c.passed) for c in passing] == [(MIN_QUESTIONS_CHECK, True), (SERVED_CHECK, True)]
    blocks = gate_blocks([], 0, alpha=0.05, min_questions=0, candidate=candidate, served=[4, 2])
    assert list(blocks) == [SERVED_CHECK] and "[2]" in blocks[SERVED_CHECK]


def test_disagreements_are_an_answer_on_one_side_only_or_a_score_half_a_point_apart() -> None:
    pairs = [
        pair(0, {"faithfulness": 0.9}, {"faithfulness": 0.8}),  # agree
        pair(1, {"faithfulness": 0.9}, {"faithfulness": 0.4}),  # 0.5 apart
        pair(2, {"faithfulness": 0.9}, {}, answered=False),  # one side did not answer
        pair(3, {"faithfulness": 0.9, "answer_relevancy": 0.1}, {"answer_relevancy": 0.7}),
    ]
    found = disagreements(pairs)
    assert [d.request_id for d in found] == ["r1", "r2", "r3"]
    assert found[0].metrics == {"faithfulness": (0.9, 0.4)}
    assert found[1].metrics == {} and found[1].candidate_answer is None
    assert found[2].metrics == {"answer_relevancy": (0.1, 0.7)}
    assert excerpt("a  b\nc") == "a b c" and excerpt("x" * 200, 10) == "x" * 9 + "…" and excerpt(None) == "-"


def test_the_junit_report_has_a_failed_case_per_blocking_check() -> None:
    pairs = [pair(i, {"faithfulness": 0.9}, {"faithfulness": 0.2 + i / 100}) for i in range(30)]
    paired = compare(pairs)
    checks = gate_checks(paired, len(pairs), alpha=0.05, min_questions=100, candidate=Side.prompt("rag-answer", 4))
    result = ShadowResult("shadow-x", pairs, paired, disagreements(pairs), checks)
    assert not result.passed and result.reasons == list(blocks(checks).values())
    report = ElementTree.fromstring(junit_xml(result.checks, suite="shadow-replay", classname="shadow.shadow-x"))
    suite = report.find("testsuite")
    assert suite is not None
    assert (suite.get("name"), suite.get("tests"), suite.get("failures")) == ("shadow-replay", "4", "2")
    failed = [case.get("name") for case in suite if case.find("failure") is not None]
    assert failed == [MIN_QUESTIONS_CHECK, "faithfulness"]
    assert {case.get("classname") for case in suite} == {"shadow.shadow-x"}

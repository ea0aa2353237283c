"""Offline-run helpers: dataset reading and the Spearman summary (no platform needed)."""

from pathlib import Path

import pytest

from ragops.evaluate import spearman_vs_reference
from ragops_schemas import AnswerEvaluated
from ragops_shared.datasets import load_questions
from tests.helpers import example


def test_a_malformed_line_is_named(tmp_path: Path) -> None:
    dataset = tmp_path / "q.jsonl"
    dataset.write_text('{"id": "1", "question": "a?", "answers": ["x"], "context_ids": []}\n{"id": "2"}\nnot json\n')
    with pytest.raises(ValueError, match=r"q.jsonl:2: not a question row"):
        load_questions(dataset)


def test_sampling_is_seeded(data_dir: Path) -> None:
    first = load_questions(data_dir / "questions.jsonl", 20)
    assert [q.id for q in first] == [q.id for q in load_questions(data_dir / "questions.jsonl", 20)]
    assert len({q.id for q in first}) == 20


def _evaluated(faithfulness: float, relevancy: float, f1: float) -> AnswerEvaluated:
    base = example(AnswerEvaluated)
    scores = [
        {"name": "faithfulness", "value": faithfulness, "method": "m", "reference_based": False},
        {"name": "answer_relevancy", "value": relevancy, "method": "m", "reference_based": False},
        {"name": "f1", "value": f1, "method": "squad_v1.1", "reference_based": True},
    ]
    return base.model_copy(update={"scores": [type(base.scores[0]).model_validate(s) for s in scores]})


def test_spearman_against_f1() -> None:
    runs = [_evaluated(0.1, 0.5, 0.0), _evaluated(0.5, 0.5, 0.4), _evaluated(0.9, 0.5, 1.0), _evaluated(0.7, 0.5, 0.6)]
    rho = spearman_vs_reference(runs)
    assert rho["faithfulness"] == 1.0  # same ranking as F1
    assert rho["answer_relevancy"] is None  # a constant series has no rank correlation
    assert spearman_vs_reference(runs[:2]) == {"answer_relevancy": None, "faithfulness": None}  # fewer than 3 pairs

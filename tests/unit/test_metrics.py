"""Pure scoring functions: the SQuAD v1.1 scores, the id-based retrieval scores, and the
edge cases of the reference-free scores (a tiny deterministic embedding stands in for the
model; ``tests/integration/test_metrics_model.py`` checks them on the real one)."""

import numpy as np
import pytest

from ragops_evaluation.metrics import (
    Score,
    contains_answer,
    exact_match,
    hit_at_k,
    reference_free_scores,
    reference_scores,
    token_f1,
)
from ragops_shared.citations import normalize_answer


class FakeEmbed:
    """Bag of letters a-z, L2-normalised; records how many texts each call received."""

    def __init__(self) -> None:
        self.calls: list[int] = []

    def __call__(self, texts: list[str]) -> np.ndarray:
        self.calls.append(len(texts))
        vectors = np.zeros((len(texts), 26), dtype=np.float32)
        for row, text in enumerate(texts):
            for char in text.lower():
                if "a" <= char <= "z":
                    vectors[row, ord(char) - ord("a")] += 1
        return vectors / np.maximum(np.linalg.norm(vectors, axis=1, keepdims=True), 1e-9)


def by_name(scores: list[Score]) -> dict[str, Score]:
    return {score.name: score for score in scores}


def test_normalisation_follows_the_squad_script() -> None:
    assert normalize_answer("The  Normans, of course!") == "normans of course"
    assert normalize_answer("An apple a day") == "apple day"


def test_exact_match_takes_the_best_reference() -> None:
    assert exact_match("in the 1050s", ["1050s", "in the 1050s"]) == 1.0
    assert exact_match("1050", ["1050s"]) == 0.0


def test_token_f1_is_partial_credit() -> None:
    assert token_f1("Gamal Abdul Nasser", ["Gamal Abdul Nasser"]) == 1.0
    assert token_f1("president Nasser", ["Gamal Abdul Nasser"]) == 0.4  # p=1/2, r=1/3
    assert token_f1("", ["x"]) == 0.0


def test_contains_answer_matches_whole_tokens() -> None:
    assert contains_answer("It was Inertia, said Newton.", ["inertia"]) == 1.0
    assert contains_answer("Inertial frames", ["inertia"]) == 0.0
    assert contains_answer("anything", ["the"]) == 0.0  # a reference that normalises to nothing


def test_hit_at_k() -> None:
    assert hit_at_k(["a", "b", "c"], ["c"], 3) == 1.0
    assert hit_at_k(["a", "b", "c"], ["c"], 2) == 0.0


def test_reference_free_scores_are_named_bounded_and_embed_once() -> None:
    embed = FakeEmbed()
    contexts = ["Oxygen was discovered by Scheele. Priestley published first!", "Unrelated text."]
    scores = reference_free_scores("Who discovered oxygen?", "Scheele discovered it.", contexts, embed)
    assert [(s.name, s.method, s.reference_based) for s in scores] == [
        ("faithfulness", "token_support_v1", False),
        ("answer_relevancy", "embedding_cosine_v1", False),
        ("context_relevance", "sentence_cosine_term_coverage_v1", False),
    ]
    assert all(0.0 <= s.value <= 1.0 for s in scores)
    assert embed.calls == [1 + 1 + 3]  # question, answer and the three context sentences together
    assert by_name(scores)["faithfulness"].value == 1.0  # "scheele", "discovered" occur; "it" is a stop word


def test_faithfulness_counts_content_tokens_with_repeats() -> None:
    scores = by_name(reference_free_scores("q?", "Paris, Paris and Lyon", ["Paris is in France."], FakeEmbed()))
    assert scores["faithfulness"].value == pytest.approx(2 / 3)


@pytest.mark.parametrize("answer", ["", "  ", "The.", "it is"])
def test_an_answer_without_content_scores_zero_faithfulness(answer: str) -> None:
    scores = by_name(
        reference_free_scores("Who discovered oxygen?", answer, ["Scheele discovered oxygen."], FakeEmbed())
    )
    assert scores["faithfulness"].value == 0.0


def test_an_empty_answer_is_not_embedded_and_scores_zero_relevancy() -> None:
    embed = FakeEmbed()
    scores = by_name(reference_free_scores("Who discovered oxygen?", "", ["Scheele discovered oxygen."], embed))
    assert scores["answer_relevancy"].value == 0.0
    assert embed.calls == [2]  # the question and the one context sentence
    assert scores["context_relevance"].value > 0.0


def test_no_contexts_scores_zero_support_and_zero_context_relevance() -> None:
    scores = by_name(reference_free_scores("Who discovered oxygen?", "Scheele", [], FakeEmbed()))
    assert scores["faithfulness"].value == 0.0
    assert scores["context_relevance"].value == 0.0
    assert scores["answer_relevancy"].value > 0.0


def test_nothing_to_compare_makes_no_embedding_call() -> None:
    embed = FakeEmbed()
    scores = reference_free_scores("Who discovered oxygen?", "", ["", "..."], embed)
    assert embed.calls == []
    assert [s.value for s in scores] == [0.0, 0.0, 0.0]


def test_reference_scores_cover_answer_and_retrieval() -> None:
    scores = reference_scores("It was Gamal Abdul Nasser.", ["Gamal Abdul Nasser"], ["p1", "p2", "p3"], ["p2", "p9"])
    assert [(s.name, s.value, s.method) for s in scores] == [
        ("exact_match", 0.0, "squad_v1.1"),
        ("f1", pytest.approx(2 * 0.6 * 1.0 / 1.6), "squad_v1.1"),  # 3 common of 5 predicted, 3 gold
        ("contains_answer", 1.0, "squad_v1.1"),
        ("context_recall", 0.5, "id_match_v1"),
        ("hit@1", 0.0, "id_match_v1"),
        ("hit@5", 1.0, "id_match_v1"),
    ]
    assert all(s.reference_based for s in scores)


def test_reference_scores_skip_what_has_no_reference() -> None:
    assert [s.name for s in reference_scores("x", [], ["p1"], ["p1"])] == ["context_recall", "hit@1", "hit@5"]
    assert [s.name for s in reference_scores("x", ["x"], ["p1"], [])] == ["exact_match", "f1", "contains_answer"]


def test_the_evaluation_service_scores_an_answer_without_its_citation_markers() -> None:
    from ragops_evaluation.app import evaluate
    from ragops_schemas import AnswerGenerated
    from ragops_schemas.events import EvaluationContext
    from tests.helpers import PRODUCER, example

    class Embedder:
        name = "bag-of-letters"
        embed = FakeEmbed()

    answer = example(AnswerGenerated).model_copy(
        update={"evaluation": EvaluationContext(reference_answers=["France"], reference_context_ids=["Normans-p000"])}
    )

    def scores(text: str) -> dict[str, float]:
        [evaluated] = evaluate(Embedder(), PRODUCER, 1.0, [answer.model_copy(update={"answer": text})])  # type: ignore[arg-type]
        return {score.name: score.value for score in evaluated.scores}

    marked, plain = scores("France [1]"), scores("France")
    assert marked == plain
    assert (marked["exact_match"], marked["f1"]) == (1.0, 1.0)

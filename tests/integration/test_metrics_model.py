"""The evaluation metrics with the real embedding model (all-MiniLM-L6-v2) on real SQuAD
passages from ``../shared/data``."""

import numpy as np
import pytest

from ragops_evaluation.metrics import Score, reference_free_scores, reference_scores
from ragops_models.defaults import default_embedding_model_dir
from ragops_models.embedder import Embedder

pytestmark = pytest.mark.model

QUESTION = "What Egyptian president jailed thousands of members of the Brotherhood?"


class CountingEmbedder:
    """The real embedder, recording the size of each call."""

    def __init__(self, embedder: Embedder) -> None:
        self.embedder = embedder
        self.calls: list[int] = []

    def __call__(self, texts: list[str]) -> np.ndarray:
        self.calls.append(len(texts))
        return self.embedder.embed(texts)


@pytest.fixture(scope="module")
def embedder() -> Embedder:
    embedder = Embedder(default_embedding_model_dir())
    embedder.warm_up()
    return embedder


@pytest.fixture(scope="module")
def passages(corpus_rows: list[dict]) -> dict[str, str]:
    return {row["id"]: row["text"] for row in corpus_rows}


def values(scores: list[Score]) -> dict[str, float]:
    return {score.name: score.value for score in scores}


def test_a_supported_answer_is_more_faithful_than_an_unsupported_one(
    embedder: Embedder, passages: dict[str, str]
) -> None:
    context = [passages["Islamism-p014"]]
    supported = values(reference_free_scores(QUESTION, "Gamal Abdul Nasser jailed them.", context, embedder.embed))
    unsupported = values(
        reference_free_scores(QUESTION, "Anwar Sadat imprisoned them in 1981.", context, embedder.embed)
    )
    assert supported["faithfulness"] == 1.0
    assert unsupported["faithfulness"] < 0.5


def test_an_on_topic_answer_is_more_relevant_than_an_off_topic_one(
    embedder: Embedder, passages: dict[str, str]
) -> None:
    context = [passages["Islamism-p014"]]
    on_topic = values(
        reference_free_scores(QUESTION, "President Gamal Abdul Nasser of Egypt.", context, embedder.embed)
    )
    off_topic = values(
        reference_free_scores(QUESTION, "Photosynthesis turns light into chemical energy.", context, embedder.embed)
    )
    assert on_topic["answer_relevancy"] > off_topic["answer_relevancy"] + 0.2


def test_the_right_passage_is_more_relevant_context_than_an_unrelated_one(
    embedder: Embedder, passages: dict[str, str]
) -> None:
    right = values(reference_free_scores(QUESTION, "", [passages["Islamism-p014"]], embedder.embed))
    unrelated = values(reference_free_scores(QUESTION, "", [passages["Force-p005"]], embedder.embed))
    assert right["context_relevance"] > unrelated["context_relevance"]


def test_one_batched_embedding_call_per_answer(embedder: Embedder, passages: dict[str, str]) -> None:
    embed = CountingEmbedder(embedder)
    scores = reference_free_scores(QUESTION, "Nasser.", [passages["Islamism-p014"], passages["Force-p005"]], embed)
    assert len(embed.calls) == 1 and embed.calls[0] > 2
    assert all(0.0 <= score.value <= 1.0 for score in scores)


def test_reference_scores_on_a_squad_question() -> None:
    scores = values(
        reference_scores(
            "Gamal Abdul Nasser", ["Gamal Abdul Nasser"], ["Islamism-p013", "Islamism-p014"], ["Islamism-p014"]
        )
    )
    assert scores == {
        "exact_match": 1.0,
        "f1": 1.0,
        "contains_answer": 1.0,
        "context_recall": 1.0,
        "hit@1": 0.0,
        "hit@5": 1.0,
    }

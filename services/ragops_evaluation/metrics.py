"""Answer and retrieval quality scores.

Two families:

* **Reference-based** (:func:`reference_scores`): the SQuAD v1.1 answer scores (Rajpurkar et al.,
  2016, "SQuAD: 100,000+ Questions for Machine Comprehension of Text") and id-based retrieval
  scores, for questions whose reference answer and reference passages are known.
* **Reference-free** (:func:`reference_free_scores`): approximations of the RAGAS metrics
  (Es et al., 2023, "RAGAS: Automated Evaluation of Retrieval Augmented Generation";
  https://docs.ragas.io) computed without an LLM judge, from SQuAD-normalised token overlap and
  the cosine similarities of the platform's sentence-embedding model (all-MiniLM-L6-v2).

Every score is a float in ``[0, 1]``, higher is better, and names the versioned method that
computed it, so that a changed definition never mixes with older values.
"""

from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

from ragops_shared.citations import content_tokens, normalize_answer, split_sentences

Embed = Callable[[list[str]], np.ndarray]
"""Texts -> float32 array of shape ``(len(texts), dimension)`` with L2-normalised rows, such as
``ragops_models.embedder.Embedder.embed``."""

SQUAD_METHOD = "squad_v1.1"
ID_MATCH_METHOD = "id_match_v1"
FAITHFULNESS_METHOD = "token_support_v1"
ANSWER_RELEVANCY_METHOD = "embedding_cosine_v1"
CONTEXT_RELEVANCE_METHOD = "sentence_cosine_term_coverage_v1"

METRIC_NAMES = (
    "faithfulness",
    "answer_relevancy",
    "context_relevance",
    "exact_match",
    "f1",
    "contains_answer",
    "context_recall",
    "hit@1",
    "hit@5",
)
"""Every score name this module computes (what a release gate's thresholds may name)."""
BINARY_METRICS = frozenset({"exact_match", "contains_answer", "hit@1", "hit@5"})
"""The scores that are 0/1 outcomes by definition (paired by McNemar's test, not Wilcoxon's)."""


@dataclass(frozen=True)
class Score:
    """One quality score of one answer.

    Attributes:
        name: the RAGAS or SQuAD metric name, e.g. ``"faithfulness"``, ``"f1"``, ``"hit@5"``.
        value: in ``[0, 1]``, higher is better.
        method: how it was computed, versioned (e.g. ``"token_support_v1"``, ``"squad_v1.1"``).
        reference_based: whether it needed a reference answer or reference passages.
    """

    name: str
    value: float
    method: str
    reference_based: bool


def exact_match(prediction: str, references: Sequence[str]) -> float:
    """1.0 if the normalised prediction equals a normalised reference, else 0.0."""
    normalized = normalize_answer(prediction)
    return float(any(normalized == normalize_answer(reference) for reference in references))


def token_f1(prediction: str, references: Sequence[str]) -> float:
    """Best token-overlap F1 (0..1) of the prediction against the references."""
    predicted = normalize_answer(prediction).split()
    best = 0.0
    for reference in references:
        gold = normalize_answer(reference).split()
        common = sum((Counter(predicted) & Counter(gold)).values())
        if common:
            precision, recall = common / len(predicted), common / len(gold)
            best = max(best, 2 * precision * recall / (precision + recall))
    return best


def contains_answer(prediction: str, references: Sequence[str]) -> float:
    """1.0 if a normalised reference occurs in the normalised prediction (a fluent sentence
    that holds the right span scores 0 on exact match but 1 here), else 0.0."""
    normalized = f" {normalize_answer(prediction)} "
    return float(
        any(f" {normalize_answer(reference)} " in normalized for reference in references if normalize_answer(reference))
    )


def hit_at_k(retrieved_ids: Sequence[str], relevant_ids: Sequence[str], k: int) -> float:
    """1.0 if any relevant id is among the first ``k`` retrieved ids, else 0.0."""
    return float(bool(set(retrieved_ids[:k]) & set(relevant_ids)))


def reference_free_scores(question: str, answer: str, contexts: Sequence[str], embed: Embed) -> list[Score]:
    """RAGAS-style scores of one answer that need no reference: ``faithfulness``,
    ``answer_relevancy`` and ``context_relevance``, each in ``[0, 1]``.

    RAGAS (Es et al., 2023) computes all three with an LLM judge; here the judge is replaced by
    SQuAD-normalised tokens (:func:`normalize_answer`; *content tokens* are those tokens minus a
    fixed list of English function words) and by cosine similarities of ``embed`` (negative
    cosines clipped to 0). Each definition below is the variant that tracked the quality the
    metric stands for best, among those measured (Spearman correlations below) on 150 SQuAD
    v1.1 questions with hybrid-retrieved (dense + BM25) top-3 passages and five synthetic
    answers each: the gold answer, the gold answer in a sentence, a span of the retrieved
    passages, a span of an unrelated passage, and the empty string.

    * ``faithfulness`` (``token_support_v1``). RAGAS: the answer is split into claims by an
      LLM, each claim is verified against the retrieved context, and the score is
      supported claims / claims. Here a claim is a content token: the score is the share of the
      answer's content tokens (counted with repetition) that occur among the SQuAD-normalised
      tokens of the contexts. It measures grounding, not correctness: a wrong span copied from
      the context scores 1. An answer with no content token (empty, or function words only),
      or no context, scores 0.0 where RAGAS would give no value: it states nothing the context
      supports, and a number keeps averages and storage free of NaN. Measured: Spearman 0.76
      with "the answer occurs in the contexts" (sentence-embedding support: 0.49) and 0.53 with
      token F1 against the gold answer (embedding support: 0.61, which tracks topicality more
      than support).
    * ``answer_relevancy`` (``embedding_cosine_v1``). RAGAS: an LLM generates questions back
      from the answer, and the score is the mean cosine similarity between the embeddings of
      the question and of the generated questions. Here the answer itself stands in for the
      generated questions: ``max(0, cos(embed(question), embed(answer)))``. An answer that is
      empty after normalisation scores 0.0 (it addresses nothing). Measured: Spearman 0.61
      with token F1 (the mean over the answer's sentences: 0.62, no better within noise).
    * ``context_relevance`` (``sentence_cosine_term_coverage_v1``). RAGAS (paper): an LLM
      extracts the context sentences needed to answer, and the score is extracted / all
      sentences; RAGAS's later context precision asks the LLM whether each retrieved chunk is
      relevant. Here: the mean of (a) the highest cosine between the question and any context
      sentence and (b) the highest share of the question's content tokens found in a single
      context. Contexts with one relevant sentence among many are thus not penalised.
      No context (or a question with nothing to embed) scores 0.0. Measured per question,
      Spearman 0.34 with "a gold passage is among the top 3" (max sentence cosine alone: 0.24,
      term coverage alone: 0.31, max passage cosine: 0.05, mean passage cosine: -0.11,
      share of sentences above a cosine threshold: -0.19 to -0.07).

    Args:
        question: the user's question.
        answer: the generated answer ("" when none).
        contexts: the retrieved passages given to the generator, in rank order.
        embed: texts -> float32 ``(len(texts), dimension)`` array of L2-normalised rows. It is
            called at most once, on the question, the answer and the context sentences together.

    Returns:
        ``[faithfulness, answer_relevancy, context_relevance]``, all ``reference_based=False``.
    """
    answer_tokens = content_tokens(answer)
    context_tokens = [set(normalize_answer(context).split()) for context in contexts]
    supported = set().union(*context_tokens)
    faithfulness = sum(token in supported for token in answer_tokens) / len(answer_tokens) if answer_tokens else 0.0

    question_tokens = content_tokens(question)
    coverages = (
        [sum(token in tokens for token in question_tokens) / len(question_tokens) for tokens in context_tokens]
        if question_tokens
        else []
    )

    has_answer = bool(normalize_answer(answer))
    sentences = [sentence for context in contexts for sentence in split_sentences(context)]
    texts = [question, *([answer] if has_answer else []), *sentences]
    if len(texts) > 1:
        vectors = embed(texts)  # (len(texts), dimension), rows of norm 1
        cosines = np.clip(vectors[1:] @ vectors[0], 0.0, 1.0)  # (len(texts) - 1,): each text vs the question
    else:
        cosines = np.zeros(0, dtype=np.float32)
    answer_relevancy = float(cosines[0]) if has_answer else 0.0
    sentence_cosines = cosines[1:] if has_answer else cosines
    context_relevance = (float(sentence_cosines.max()) + max(coverages, default=0.0)) / 2 if sentences else 0.0
    return [
        Score("faithfulness", faithfulness, FAITHFULNESS_METHOD, reference_based=False),
        Score("answer_relevancy", answer_relevancy, ANSWER_RELEVANCY_METHOD, reference_based=False),
        Score("context_relevance", context_relevance, CONTEXT_RELEVANCE_METHOD, reference_based=False),
    ]


def reference_scores(
    answer: str, reference_answers: Sequence[str], retrieved_ids: Sequence[str], reference_context_ids: Sequence[str]
) -> list[Score]:
    """Scores against references, for what has a reference.

    With ``reference_answers`` (SQuAD v1.1, Rajpurkar et al., 2016; best over the references):
    ``exact_match`` (:func:`exact_match`), ``f1`` (:func:`token_f1`) and ``contains_answer``
    (:func:`contains_answer`), method ``squad_v1.1``.

    With ``reference_context_ids`` (ids of the passages that hold the answer, in the same id
    space as ``retrieved_ids``), method ``id_match_v1``: ``context_recall``, the share of
    reference ids among the retrieved ids (RAGAS's id-based context recall), and ``hit@1``,
    ``hit@5`` (:func:`hit_at_k`).

    Args:
        answer: the generated answer.
        reference_answers: acceptable answers; empty when unknown (no answer scores then).
        retrieved_ids: ids of the retrieved passages, in rank order.
        reference_context_ids: ids of the passages that hold the answer; empty when unknown
            (no retrieval scores then).

    Returns:
        The scores above, in that order, all ``reference_based=True``, each in ``[0, 1]``.
    """
    scores: list[Score] = []
    if reference_answers:
        scores += [
            Score("exact_match", exact_match(answer, reference_answers), SQUAD_METHOD, reference_based=True),
            Score("f1", token_f1(answer, reference_answers), SQUAD_METHOD, reference_based=True),
            Score("contains_answer", contains_answer(answer, reference_answers), SQUAD_METHOD, reference_based=True),
        ]
    if reference_context_ids:
        relevant = set(reference_context_ids)
        recall = len(relevant & set(retrieved_ids)) / len(relevant)
        scores += [
            Score("context_recall", recall, ID_MATCH_METHOD, reference_based=True),
            Score("hit@1", hit_at_k(retrieved_ids, reference_context_ids, 1), ID_MATCH_METHOD, reference_based=True),
            Score("hit@5", hit_at_k(retrieved_ids, reference_context_ids, 5), ID_MATCH_METHOD, reference_based=True),
        ]
    return scores

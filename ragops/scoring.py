"""Answer and retrieval scores against references, as the SQuAD v1.1 evaluation script
defines them (Rajpurkar et al., 2016): answers are lower-cased, stripped of punctuation and
of the articles a/an/the, and whitespace-normalised before comparison; a prediction is
scored against its best-matching reference."""

import re
import string
from collections import Counter
from collections.abc import Sequence

_ARTICLES = re.compile(r"\b(a|an|the)\b")
_PUNCTUATION = str.maketrans("", "", string.punctuation)


def normalize_answer(text: str) -> str:
    """SQuAD normalisation: lower case, no punctuation, no articles, single spaces."""
    return " ".join(_ARTICLES.sub(" ", text.lower().translate(_PUNCTUATION)).split())


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
    return float(any(f" {normalize_answer(reference)} " in normalized for reference in references if normalize_answer(reference)))


def hit_at_k(retrieved_ids: Sequence[str], relevant_ids: Sequence[str], k: int) -> float:
    """1.0 if any relevant id is among the first ``k`` retrieved ids, else 0.0."""
    return float(bool(set(retrieved_ids[:k]) & set(relevant_ids)))

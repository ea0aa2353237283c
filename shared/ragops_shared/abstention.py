"""The abstention check: whether the retrieved context holds the answer to a question.

Signals (:func:`signals`, each in ``[0, 1]``, or a cosine in ``[-1, 1]``):

* ``top_similarity``: dense cosine of the query to its nearest chunk
  (``RetrievalInfo.similarities[0]``; 0 when there is none);
* ``margin``: that cosine minus the second one (0 with fewer than two);
* ``question_coverage``: share of the question's content words (lower-cased words of two or
  more letters or any digits, stop words removed) found in the chunks put into the prompt;
* ``top_coverage``: the same share in the first of those chunks alone;
* ``groundedness``: share of the draft answer's content words found in those chunks (an
  empty draft, or one of stop words only, is 0).

The decision (:class:`Calibration`) is a logistic regression over the signals its
calibration file names: ``score = 1 / (1 + exp(-(intercept + sum(coefficient * signal))))``,
the estimated probability that the context does not hold the answer, and the platform
abstains when ``score >= threshold``. The calibration file (JSON, :data:`CALIBRATION_KEYS`)
is written by ``ragops calibrate abstention`` (:mod:`ragops.calibrate`), which fits the
coefficients on a labelled split and picks the threshold on its ROC curve; its id is
``<name>@<first 12 hex of the sha256 of the file's content without the id>``
(:func:`calibration_id`), so any edit of the figures changes the id recorded on answers.

Pure Python (no numpy, no torch): the generation service runs it on every answer.
"""

from __future__ import annotations

import hashlib
import json
import math
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ragops_schemas import AbstentionCheck

ABSTAINED_ANSWER = "The documents do not say."
"""The answer text of an abstained answer (its finish reason is ``abstained``)."""

ABSTAINED = "abstained"
"""``GenerationInfo.finish_reasons`` of an abstained answer: ``["abstained"]``."""

SIGNALS = ("top_similarity", "margin", "question_coverage", "top_coverage", "groundedness")
"""Every signal :func:`signals` computes; a calibration uses a subset of them."""

DRAFT_SIGNALS = frozenset({"groundedness"})
"""Signals that need the draft answer (a generation per labelled question to calibrate)."""

DEFAULT_CALIBRATION = Path(__file__).parent / "calibrations" / "abstention.json"
"""The calibration packaged with the platform (the generation service's default)."""

CALIBRATION_KEYS = frozenset(
    {
        "id",
        "name",
        "features",
        "coefficients",
        "intercept",
        "threshold",
        "threshold_rule",
        "roc_auc",
        "train",
        "held_out",
        "seed",
        "datasets",
        "retrieval",
        "generation",
        "created_by",
    }
)
"""Keys of a calibration file. ``train``/``held_out``: ``{"answerable", "unanswerable"}``
counts, and for ``held_out`` also ``abstained_unanswerable`` and ``answered_answerable``
(shares); ``datasets``: file name -> sha256; ``generation``: the model and prompt whose
drafts the draft signals came from (null when no draft signal is used)."""

# Function words that say nothing about whether a passage holds the answer (English; the
# question words too, since a passage rarely repeats "what" or "which").
_STOP_WORDS = frozenset(
    """
    a about above after again against all also am an and any are as at be because been before being
    below between both but by can could did do does doing down during each few for from further had has
    have having he her here hers herself him himself his how i if in into is it its itself just me more
    most my myself no nor not now of off on once only or other our ours ourselves out over own same she
    should so some such than that the their theirs them themselves then there these they this those
    through to too under until up very was we were what when where which while who whom whose why will
    with would you your yours yourself yourselves many much one
    """.split()  # noqa: SIM905  a word list reads better as text
)
_WORD = re.compile(r"[^\W_]+")


def content_words(text: str) -> set[str]:
    """The distinct content words of ``text``: lower-cased runs of letters or digits, at least
    two characters unless a digit, without :data:`_STOP_WORDS`."""
    return {
        word for word in _WORD.findall(text.lower()) if word not in _STOP_WORDS and (len(word) > 1 or word.isdigit())
    }


def coverage(words: set[str], texts: Iterable[str]) -> float:
    """Share of ``words`` found among the content words of ``texts`` (0 when ``words`` is empty)."""
    if not words:
        return 0.0
    found: set[str] = set()
    for text in texts:
        found |= content_words(text)
    return len(words & found) / len(words)


def signals(question: str, similarities: Sequence[float], contexts: Sequence[str], draft: str) -> dict[str, float]:
    """Every signal of :data:`SIGNALS` for one question.

    Args:
        question: the question as asked.
        similarities: dense cosines of the query to its nearest chunks, best first
            (``RetrievalInfo.similarities``).
        contexts: texts of the chunks put into the prompt, best first.
        draft: the generated answer before the check ("" when not generated).
    """
    asked = content_words(question)
    top = similarities[0] if similarities else 0.0
    return {
        "top_similarity": top,
        "margin": top - similarities[1] if len(similarities) > 1 else 0.0,
        "question_coverage": coverage(asked, contexts),
        "top_coverage": coverage(asked, contexts[:1]),
        "groundedness": coverage(content_words(draft), contexts),
    }


def logistic(intercept: float, coefficients: Sequence[float], values: Sequence[float]) -> float:
    """``1 / (1 + exp(-(intercept + coefficients . values)))``, without overflow."""
    z = intercept + math.fsum(c * v for c, v in zip(coefficients, values, strict=True))
    if z >= 0:
        return 1.0 / (1.0 + math.exp(-z))
    e = math.exp(z)
    return e / (1.0 + e)


def calibration_id(content: Mapping[str, Any]) -> str:
    """``<name>@<sha12>``: the first 12 hex digits of the sha256 of ``content`` without its
    ``id``, as canonical JSON (sorted keys, no spaces)."""
    body = {key: value for key, value in content.items() if key != "id"}
    digest = hashlib.sha256(json.dumps(body, sort_keys=True, separators=(",", ":")).encode()).hexdigest()
    return f"{content['name']}@{digest[:12]}"


class CalibrationError(ValueError):
    """A calibration file is malformed, or its id does not match its content."""


@dataclass(frozen=True)
class Calibration:
    """A fitted abstention decision (see the module docstring)."""

    id: str
    features: tuple[str, ...]
    coefficients: tuple[float, ...]
    intercept: float
    threshold: float

    @classmethod
    def from_content(cls, content: Mapping[str, Any]) -> Calibration:
        """Check and read a calibration file's content.

        Raises:
            CalibrationError: a key of :data:`CALIBRATION_KEYS` is missing, a feature is not
                one of :data:`SIGNALS`, the coefficients do not match the features, the
                threshold is outside [0, 1], or the id is not :func:`calibration_id` of the content.
        """
        missing = CALIBRATION_KEYS - content.keys()
        if missing:
            raise CalibrationError(f"calibration lacks {sorted(missing)}")
        features = tuple(content["features"])
        coefficients = tuple(float(value) for value in content["coefficients"])
        unknown = set(features) - set(SIGNALS)
        if unknown or not features or len(coefficients) != len(features):
            raise CalibrationError(f"calibration features {features} do not match coefficients or SIGNALS")
        threshold = float(content["threshold"])
        if not 0.0 <= threshold <= 1.0:
            raise CalibrationError(f"calibration threshold {threshold} is outside [0, 1]")
        if content["id"] != calibration_id(content):
            raise CalibrationError(f"calibration id {content['id']!r} does not match its content")
        return cls(content["id"], features, coefficients, float(content["intercept"]), threshold)

    @classmethod
    def load(cls, path: Path) -> Calibration:
        """Read and check the calibration file at ``path`` (raises ``OSError``, ``ValueError``)."""
        return cls.from_content(json.loads(path.read_text(encoding="utf-8")))

    @property
    def needs_draft(self) -> bool:
        """Whether a signal needs the draft answer."""
        return bool(DRAFT_SIGNALS & set(self.features))

    def check(
        self, question: str, similarities: Sequence[float], contexts: Sequence[str], draft: str
    ) -> AbstentionCheck:
        """The verdict for one answer: abstain when the score reaches the threshold."""
        values = signals(question, similarities, contexts, draft)
        used = {name: values[name] for name in self.features}
        score = logistic(self.intercept, self.coefficients, list(used.values()))
        return AbstentionCheck(
            abstained=score >= self.threshold,
            score=score,
            threshold=self.threshold,
            signals=used,
            calibration=self.id,
        )

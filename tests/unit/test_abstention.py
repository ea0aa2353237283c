"""The abstention check: its signals, its decision, the calibration procedure and file, and
the generation service applying it (ragops_shared.abstention, ragops.calibrate)."""

import json
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pytest

from ragops.calibrate import Split, calibration_sample, fit, pick_threshold, read_jsonl
from ragops.demo_abstain import held_out_questions, rates as demo_rates
from ragops_evaluation.metrics import reference_scores
from ragops_generation.app import ABSTAINED_ANSWERS, Answerer
from ragops_generation.settings import GenerationSettings
from ragops_models.generation import Generation
from ragops_schemas import ContextRetrieved
from ragops_shared.abstention import (
    ABSTAINED_ANSWER,
    DEFAULT_CALIBRATION,
    Calibration,
    CalibrationError,
    calibration_id,
    content_words,
    signals,
)
from tests.helpers import PRODUCER, example

PASSAGE = "The 1973 oil crisis began in October 1973 when OAPEC proclaimed an oil embargo."


def test_signals_of_a_question_its_context_and_a_draft() -> None:
    found = signals(
        "When was the oil embargo proclaimed?", [0.8, 0.5, 0.4], [PASSAGE, "Unrelated text."], "October 1973"
    )
    assert found["top_similarity"] == 0.8
    assert found["margin"] == pytest.approx(0.3)
    assert found["question_coverage"] == found["top_coverage"] == 1.0  # oil, embargo, proclaimed
    assert found["groundedness"] == 1.0


def test_coverage_counts_the_question_words_missing_from_the_context() -> None:
    assert content_words("When did the Soviet oil embargo begin?") == {"soviet", "oil", "embargo", "begin"}
    found = signals("When did the Soviet oil embargo begin?", [0.7], [PASSAGE], "")
    assert found["question_coverage"] == pytest.approx(2 / 4)  # oil, embargo
    assert found["top_coverage"] == pytest.approx(2 / 4)
    assert (found["margin"], found["groundedness"]) == (0.0, 0.0)  # one similarity, an empty draft


def test_no_similarities_and_no_context_give_zero_signals() -> None:
    assert set(signals("Who?", [], [], "").values()) == {0.0}


def _content(**overrides: object) -> dict[str, object]:
    content: dict[str, object] = {
        "name": "test",
        "features": ["top_similarity", "question_coverage"],
        "coefficients": [-4.0, -4.0],
        "intercept": 4.0,
        "threshold": 0.5,
        "threshold_rule": "test",
        "roc_auc": {"train": 1.0, "held_out": 1.0},
        "train": {"answerable": 1, "unanswerable": 1},
        "held_out": {"answerable": 1, "unanswerable": 1},
        "seed": 0,
        "datasets": {},
        "retrieval": {},
        "generation": None,
        "created_by": "test",
        **overrides,
    }
    content["id"] = calibration_id(content)
    return content


def test_the_decision_abstains_when_the_score_reaches_the_threshold() -> None:
    calibration = Calibration.from_content(_content())
    supported = calibration.check("When was the oil embargo proclaimed?", [0.9], [PASSAGE], "")
    unsupported = calibration.check("Who painted the Mona Lisa?", [0.1], [PASSAGE], "")
    assert not supported.abstained and supported.score < 0.5
    assert unsupported.abstained and unsupported.score > 0.5
    assert unsupported.signals == {"top_similarity": 0.1, "question_coverage": 0.0}
    assert (unsupported.threshold, unsupported.calibration) == (0.5, calibration.id)


def test_a_calibration_whose_id_does_not_match_its_content_is_refused() -> None:
    edited = _content()
    edited["threshold"] = 0.9
    with pytest.raises(CalibrationError, match="does not match"):
        Calibration.from_content(edited)
    with pytest.raises(CalibrationError, match="do not match"):
        Calibration.from_content(_content(features=["top_similarity", "unknown"]))


def test_the_threshold_abstains_most_while_answering_the_share_asked() -> None:
    rng = np.random.default_rng(0)
    labels = np.array([0] * 500 + [1] * 500)
    scores = np.concatenate([rng.uniform(0.0, 0.6, 500), rng.uniform(0.4, 1.0, 500)])
    threshold = pick_threshold(labels.tolist(), scores.tolist(), min_answered=0.9)
    answered = (scores[labels == 0] < threshold).mean()
    abstained = (scores[labels == 1] >= threshold).mean()
    assert answered >= 0.9
    # Any lower threshold would answer fewer than 0.9 of the answerable questions.
    lower = np.sort(scores[scores < threshold])[-1]
    assert (scores[labels == 0] < lower).mean() < 0.9
    assert abstained == pytest.approx(0.46 / 0.6, abs=0.05)  # unanswerable above the 90th percentile, 0.54


def test_a_fit_on_separable_signals_meets_the_constraint_on_held_out_data() -> None:
    rng = np.random.default_rng(1)

    def split(size: int) -> Split:
        labels = np.array([0] * size + [1] * size)
        # Unanswerable questions: lower similarity and coverage.
        features = np.column_stack([0.7 - 0.3 * labels, 0.9 - 0.5 * labels]) + rng.normal(0, 0.05, (2 * size, 2))
        return Split(features, labels)

    figures = fit(split(200), split(200), ["top_similarity", "question_coverage"], min_answered=0.9, seed=0)
    assert figures["roc_auc"]["held_out"] > 0.99
    assert figures["held_out_rates"]["answered_answerable"] >= 0.9
    assert figures["held_out_rates"]["abstained_unanswerable"] > 0.95
    assert all(value < 0 for value in figures["coefficients"])  # more support, less abstention


def test_the_sample_is_the_same_whatever_the_line_order() -> None:
    rows = [{"id": f"q{i}"} for i in range(50)]
    assert calibration_sample(rows, 10, 3) == calibration_sample(list(reversed(rows)), 10, 3)


def test_the_packaged_calibration_is_valid_and_its_id_matches_its_content() -> None:
    content = json.loads(DEFAULT_CALIBRATION.read_text(encoding="utf-8"))
    calibration = Calibration.load(DEFAULT_CALIBRATION)
    assert calibration.id == calibration_id(content) == content["id"]
    assert content["held_out"]["answerable"] > 0 and content["held_out"]["unanswerable"] > 0
    assert set(content["datasets"]) == {"corpus.jsonl", "questions.jsonl", "questions-unanswerable.jsonl"}
    assert 0.5 < content["roc_auc"]["held_out"] <= 1.0
    # Fitted under the constraint: at least 0.9 of the answerable answered (training split).
    assert content["train"]["answered_answerable"] >= 0.9
    assert GenerationSettings().calibration() == calibration  # the service's default


class Says:
    """A generator without a model that drafts the same text for every prompt."""

    model_name = "says"
    model_version = "0"

    def __init__(self, text: str) -> None:
        self.text = text

    def warm_up(self) -> None:
        pass

    def generate(self, batch: Sequence[list[dict[str, str]]]) -> list[Generation]:
        return [Generation(self.text, input_tokens=9, output_tokens=3, finish_reason="stop") for _ in batch]


def _asked(question: str, similarities: list[float]) -> ContextRetrieved:
    retrieved = example(ContextRetrieved)
    chunk = retrieved.contexts[0].model_copy(update={"text": PASSAGE})
    return retrieved.model_copy(
        update={
            "question": question,
            "contexts": [chunk],
            "retrieval": retrieved.retrieval.model_copy(update={"similarities": similarities}),
        }
    )


def test_the_generation_service_replaces_an_unsupported_draft_and_counts_it() -> None:
    calibration = Calibration.from_content(_content())
    answerer = Answerer(GenerationSettings(), Says("Leonardo da Vinci"), PRODUCER, abstention=calibration)
    before = ABSTAINED_ANSWERS.labels(tenant="default")._value.get()
    unsupported, supported = answerer.answer(
        [_asked("Who painted the Mona Lisa?", [0.1]), _asked("When was the oil embargo proclaimed?", [0.9])]
    )
    assert unsupported.answer == ABSTAINED_ANSWER
    assert unsupported.generation.finish_reasons == ["abstained"]
    assert unsupported.abstention is not None and unsupported.abstention.abstained
    assert unsupported.generation.usage.output_tokens == 3  # the draft's cost is still recorded
    assert supported.answer == "Leonardo da Vinci" and supported.generation.finish_reasons == ["stop"]
    assert supported.abstention is not None and not supported.abstention.abstained
    assert ABSTAINED_ANSWERS.labels(tenant="default")._value.get() == before + 1


def test_without_a_calibration_or_a_context_no_check_runs() -> None:
    unchecked = Answerer(GenerationSettings(), Says("Leonardo"), PRODUCER)
    (answer,) = unchecked.answer([_asked("Who painted the Mona Lisa?", [0.1])])
    assert (answer.answer, answer.abstention) == ("Leonardo", None)
    checked = Answerer(GenerationSettings(), Says("x"), PRODUCER, abstention=Calibration.from_content(_content()))
    (empty,) = checked.answer([_asked("Who?", [0.1]).model_copy(update={"contexts": []})])
    assert (empty.generation.finish_reasons, empty.abstention) == (["no_context"], None)
    assert GenerationSettings(abstention=False).calibration() is None


def test_an_abstained_answer_to_an_answerable_question_scores_as_a_miss() -> None:
    scores = reference_scores(ABSTAINED_ANSWER, ["1050s", "in the 1050s"], ["Normans-p012"], ["Normans-p012"])
    by_name = {score.name: score.value for score in scores}
    assert by_name["exact_match"] == by_name["f1"] == by_name["contains_answer"] == 0.0
    assert by_name["hit@1"] == 1.0  # retrieval is scored as it was: the contexts stay on the answer


def test_the_demo_asks_questions_the_calibration_was_not_fitted_on(data_dir: Path) -> None:
    fitted = json.loads(DEFAULT_CALIBRATION.read_text(encoding="utf-8"))
    drawn = held_out_questions(data_dir, 40, seed=2017)
    assert [len(drawn["answerable"]), len(drawn["unanswerable"])] == [40, 40]
    for kind, file in (("answerable", "questions.jsonl"), ("unanswerable", "questions-unanswerable.jsonl")):
        used = calibration_sample(read_jsonl(data_dir / file), fitted["per_class"], fitted["seed"])
        assert not {row["question"] for row in used} & set(drawn[kind]), kind


def test_the_demo_counts_abstained_answers_of_each_kind() -> None:
    answer = _asked("Who?", [0.1])
    served = Answerer(GenerationSettings(), Says("x"), PRODUCER, abstention=Calibration.from_content(_content()))
    [abstained] = served.answer([answer])
    [answered] = Answerer(GenerationSettings(), Says("x"), PRODUCER).answer([answer])
    assert demo_rates([abstained, answered, None]) == {
        "asked": 3,
        "answered": 2,
        "checked": 1,
        "abstained": 1,
        "abstained_rate": 0.5,
    }

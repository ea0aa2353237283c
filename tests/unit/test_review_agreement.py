"""Agreement of the automatic metrics with reviewers' labels (ragops_analytics.agreement) on
hand-checked numbers, and the review queue's round-robin mix of its strata."""

from datetime import UTC, datetime

import pytest

from ragops_analytics.agreement import by_metric, metric_agreement, youden_threshold
from ragops_analytics.queries import ReviewLabel, ReviewStratum, mix_strata


def _label(request_id: str, *, correct: bool, grounded: bool = True, stratum: ReviewStratum = "random") -> ReviewLabel:
    return ReviewLabel(
        request_id=request_id,
        answer_event_id=f"a-{request_id}",
        reviewer="person:rita",
        correct=correct,
        grounded=grounded,
        sampled_as=stratum,
        occurred_at=datetime(2026, 12, 5, tzinfo=UTC),
        corrected_answer=None,
        comment=None,
    )


def test_a_metric_that_orders_the_labels_perfectly() -> None:
    # Scores 0.9 0.8 0.3 0.7 against correct 1 1 0 0. Ranks of the scores 4 3 1 2, of the labels
    # 3.5 3.5 1.5 1.5: deviations (1.5 .5 -1.5 -.5) and (1 1 -1 -1), covariance sum 4,
    # rho = 4 / (sqrt(5) * 2) = 0.894427. Youden's J is 1 at 0.8 (every 1 at or above, every 0
    # below), where kappa is 1.
    labels = [
        _label("a", correct=True),
        _label("b", correct=True),
        _label("c", correct=False),
        _label("d", correct=False),
    ]
    scores = {"answer_relevancy": {"a": 0.9, "b": 0.8, "c": 0.3, "d": 0.7}}

    [found] = metric_agreement(labels, scores)

    assert (found.metric, found.label, found.n, found.n_random) == ("answer_relevancy", "correct", 4, 4)
    assert found.spearman_rho == pytest.approx(2 / 5**0.5)
    assert found.threshold == pytest.approx(0.8)
    assert found.cohen_kappa == pytest.approx(1.0) and found.kappa_random == pytest.approx(1.0)
    # No non-random labels to fit on: fitted on all of them, flagged as not held out.
    assert (found.n_fit, found.held_out) == (4, False)


def test_an_uninformative_metric_and_the_random_stratum_alone() -> None:
    # Scores 0.9 0.8 0.7 0.2 0.1 against grounded 1 0 1 0 1: ranks 5 4 3 2 1 against 4 1.5 4 1.5 4,
    # covariance sum 2 - 1.5 + 0 + 1.5 - 2 = 0, so rho = 0. Youden's J per threshold: 0.9: 1/3 - 0,
    # 0.8: 1/3 - 1/2, 0.7: 2/3 - 1/2, 0.2: 2/3 - 1, 0.1: 0; the best, 1/3, at 0.9. Predicted
    # 1 0 0 0 0: observed agreement 3/5, chance 3/5 * 1/5 + 2/5 * 4/5 = 11/25, kappa
    # (0.6 - 0.44) / 0.56 = 2/7. The random stratum (a, b, c): predicted 1 0 0 against 1 0 1,
    # observed 2/3, chance 2/3 * 1/3 + 1/3 * 2/3 = 4/9, kappa (2/3 - 4/9) / (5/9) = 2/5.
    grounded = [True, False, True, False, True]
    strata: list[ReviewStratum] = ["random", "random", "random", "low_score", "negative_feedback"]
    labels = [
        _label(request_id, correct=True, grounded=value, stratum=stratum)
        for request_id, value, stratum in zip("abcde", grounded, strata, strict=True)
    ]
    scores = {"faithfulness": dict(zip("abcde", [0.9, 0.8, 0.7, 0.2, 0.1], strict=True))}

    [found] = metric_agreement(labels, scores)

    assert (found.label, found.n, found.n_random) == ("grounded", 5, 3)
    assert found.spearman_rho == pytest.approx(0.0, abs=1e-12)
    assert found.threshold == pytest.approx(0.9)
    assert found.cohen_kappa == pytest.approx(2 / 7)
    assert found.kappa_random == pytest.approx(2 / 5)
    # Two non-random labels are too few to fit on: the fit is on all five, in-sample.
    assert (found.n_fit, found.held_out) == (5, False)


def test_the_threshold_is_fitted_on_the_non_random_strata_and_kappa_random_is_held_out() -> None:
    # Non-random strata: scores 0.1 .. 1.0 against correct 0 0 0 0 1 0 1 1 1 1 (5 and 5). Youden's J
    # (TPR - FPR) per threshold from the top: 1.0: .2, 0.9: .4, 0.8: .6, 0.7: .8, 0.6: .8 - .2,
    # 0.5: 1 - .2 = .8, 0.4: .6 ...: the best, .8, at 0.7 and 0.5; ties go to the highest, 0.7.
    # In-sample kappa there: predicted 0 0 0 0 0 0 1 1 1 1, observed agreement 9/10, chance
    # .4 * .5 + .6 * .5 = .5, kappa (.9 - .5) / .5 = 0.8. The random stratum, never fitted on:
    # scores 0.75 0.65 0.3 0.9 0.2 against 1 0 0 1 1, predicted at 0.7: 1 0 0 1 0, observed 4/5,
    # chance .4 * .6 + .6 * .4 = .48, kappa (.8 - .48) / .52 = 8/13.
    fitted = [
        _label(f"s{index}", correct=value, stratum="low_score" if index % 2 else "negative_feedback")
        for index, value in enumerate([False] * 4 + [True, False] + [True] * 4, start=1)
    ]
    random = [_label(f"r{index}", correct=value) for index, value in enumerate([True, False, False, True, True])]
    scores = {
        "f1": {f"s{index}": index / 10 for index in range(1, 11)}
        | dict(zip([f"r{index}" for index in range(5)], [0.75, 0.65, 0.3, 0.9, 0.2], strict=True))
    }

    [found] = metric_agreement(fitted + random, scores)

    assert (found.n, found.n_fit, found.n_random, found.held_out) == (15, 10, 5, True)
    assert found.threshold == pytest.approx(0.7)
    assert found.cohen_kappa == pytest.approx(0.8)
    assert found.kappa_random == pytest.approx(8 / 13)
    # Ten non-random labels of one class cannot be fitted on: back to all labels, flagged.
    one_class = [_label(f"s{index}", correct=False, stratum="low_score") for index in range(1, 11)]
    fallback = metric_agreement(one_class + random, scores)[0]
    assert (fallback.n_fit, fallback.held_out) == (15, False)


def test_undefined_statistics_are_none() -> None:
    one = metric_agreement([_label("a", correct=True)], {"f1": {"a": 1.0}})
    assert one[0].n == 1 and one[0].spearman_rho is None and one[0].threshold is None and one[0].cohen_kappa is None
    # Every label the same: no ROC curve, no rank correlation.
    constant = metric_agreement([_label("a", correct=True), _label("b", correct=True)], {"f1": {"a": 0.2, "b": 0.9}})[0]
    assert (constant.spearman_rho, constant.spearman_p, constant.threshold, constant.cohen_kappa) == (None,) * 4
    # A metric nobody estimates with a label, and answers without a score, are left out.
    assert metric_agreement([_label("a", correct=True)], {"hit@1": {"a": 1.0}}) == []
    assert metric_agreement([_label("z", correct=True)], {"f1": {"a": 1.0}})[0].n == 0
    assert youden_threshold([0.1, 0.2], [1, 1]) is None


def test_scores_per_request_turn_into_scores_per_metric() -> None:
    assert by_metric({"r1": {"f1": 0.5, "faithfulness": 1.0}, "r2": {"f1": 0.0}}) == {
        "f1": {"r1": 0.5, "r2": 0.0},
        "faithfulness": {"r1": 1.0},
    }


def test_the_queue_takes_the_strata_in_turn_without_repeating_an_answer() -> None:
    strata: dict[ReviewStratum, list[str]] = {
        "random": ["r1", "r2", "r3", "r4"],
        "low_score": ["r2", "l1"],
        "negative_feedback": ["n1"],
    }
    assert mix_strata(strata, 10) == [
        ("r1", "random"),
        ("r2", "low_score"),
        ("n1", "negative_feedback"),
        ("r3", "random"),  # r2 was taken: random goes on with r3
        ("l1", "low_score"),
        ("r4", "random"),
    ]
    assert mix_strata(strata, 2) == [("r1", "random"), ("r2", "low_score")]
    assert mix_strata({}, 5) == []

"""Paired comparison (Wilcoxon signed-rank, exact McNemar, t interval of the mean paired
difference) and the gate's thresholds, on cases checkable by hand."""

import math

import pytest
from scipy.stats import wilcoxon

from ragops_analytics.paired import Threshold, compare, gate, mcnemar_exact, paired_comparison


def test_wilcoxon_and_t_interval_on_five_improvements() -> None:
    # differences 1..5, all positive: exact two-sided p = 2 / 2^5; mean 3, sd sqrt(2.5),
    # half-width t(0.975, 4) * sqrt(2.5) / sqrt(5) = 2.776445 * 0.707107
    result = paired_comparison("f1", [0, 0, 0, 0, 0], [1, 2, 3, 4, 5])
    assert result.test == "wilcoxon" and result.pairs == 5
    assert (result.baseline_mean, result.candidate_mean, result.difference) == (0.0, 3.0, 3.0)
    assert result.p_value == pytest.approx(0.0625)
    assert result.ci_low == pytest.approx(3 - 2.776445 * math.sqrt(0.5), abs=1e-5)
    assert result.ci_high == pytest.approx(3 + 2.776445 * math.sqrt(0.5), abs=1e-5)


def test_wilcoxon_ranks_the_tied_questions_pratt() -> None:
    baseline = [0.5] * 10 + [0.2, 0.4, 0.6, 0.8, 0.3]
    candidate = [0.5] * 10 + [0.3, 0.2, 0.9, 0.9, 0.7]
    result = paired_comparison("f1", baseline, candidate)
    assert result.p_value == pytest.approx(wilcoxon(candidate, baseline, zero_method="pratt").pvalue)
    assert result.p_value != pytest.approx(wilcoxon(candidate, baseline, zero_method="wilcox").pvalue)


def test_mcnemar_counts_only_discordant_pairs() -> None:
    # 5 questions gained, none lost, 5 tied: p = 2 * 0.5^5
    result = paired_comparison("exact_match", [0] * 10, [1] * 5 + [0] * 5, binary=True)
    assert result.test == "mcnemar" and result.p_value == pytest.approx(0.0625)
    # 2 gained, none lost, among 100: not evidence (p = 0.5), whatever the concordant ones
    same = [1.0, 0.0] * 50
    two_better = [1.0] * 4 + same[4:]
    assert mcnemar_exact(same, two_better) == pytest.approx(0.5)
    # 3 gained and 3 lost: p = 1
    assert paired_comparison("em", [1, 1, 1, 0, 0, 0], [0, 0, 0, 1, 1, 1], binary=True).p_value == pytest.approx(1.0)


def test_every_pair_tied_has_no_p_value_and_a_point_interval() -> None:
    for binary in (False, True):
        result = paired_comparison("m", [1, 0, 1], [1, 0, 1], binary=binary)
        assert result.p_value is None
        assert (result.difference, result.ci_low, result.ci_high) == (0.0, 0.0, 0.0)
    shifted = paired_comparison("m", [0.1, 0.2, 0.3], [0.2, 0.3, 0.4])  # every difference 0.1
    assert shifted.ci_low == pytest.approx(0.1) and shifted.ci_high == pytest.approx(0.1)


@pytest.mark.parametrize(
    ("baseline", "candidate", "binary", "message"),
    [
        ([1, 0], [1], False, "one length"),
        ([1], [1], False, "at least 2"),
        ([0.5, 1], [1, 1], True, "0/1"),
        ([math.nan, 1], [1, 1], False, "finite"),
    ],
)
def test_bad_input_is_refused(baseline: list[float], candidate: list[float], binary: bool, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        paired_comparison("m", baseline, candidate, binary=binary)


def test_thresholds_parse_and_decide_on_the_point_estimate() -> None:
    assert Threshold.parse("fail-under", "f1=0.15") == Threshold("fail-under", "f1", 0.15)
    for bad in ("f1", "f1=", "=0.1", "f1=abc", "f1=inf"):
        with pytest.raises(ValueError, match="fail-under"):
            Threshold.parse("fail-under", bad)
    with pytest.raises(ValueError, match=">= 0"):
        Threshold.parse("max-regression", "faithfulness=-0.1")

    compared = [
        paired_comparison("f1", [0.5, 0.7, 0.6], [0.4, 0.6, 0.5]),  # candidate 0.5, regression 0.1
        paired_comparison("faithfulness", [0.9, 0.8], [0.89, 0.79]),  # regression 0.01
    ]
    checks = gate(
        compared,
        [
            Threshold("fail-under", "f1", 0.5),
            Threshold("fail-under", "f1", 0.51),
            Threshold("max-regression", "f1", 0.05),
            Threshold("max-regression", "faithfulness", 0.02),
        ],
    )
    assert [c.passed for c in checks] == [True, False, False, True]
    assert "0.5000 < 0.51" in checks[1].message and "exceeds margin 0.05" in checks[2].message
    [missing] = gate(compared, [Threshold("fail-under", "rouge", 0.1)])
    assert not missing.passed and "rouge was not scored on both sides" in missing.message


def test_compare_pairs_by_id_over_what_both_sides_scored() -> None:
    baseline = {"q1": {"f1": 0.5, "exact_match": 1.0}, "q2": {"f1": 0.2, "exact_match": 0.0}, "q3": {"f1": 0.9}}
    candidate = {"q2": {"f1": 0.4, "exact_match": 1.0}, "q1": {"f1": 0.5, "exact_match": 0.0}, "q4": {"f1": 0.0}}
    by_metric = {p.metric: p for p in compare(baseline, candidate, binary={"exact_match"})}
    assert by_metric["f1"].pairs == 2 and by_metric["f1"].difference == pytest.approx(0.1)  # q1, q2 only
    assert by_metric["exact_match"].test == "mcnemar" and by_metric["exact_match"].p_value == pytest.approx(1.0)

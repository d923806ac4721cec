"""The report's statistics against examples worked out by hand (the arithmetic is in the comments)."""
import math

import numpy as np
import pandas as pd
import pytest

from results.stats import average_ranks, holm, mean_ci, wilcoxon_holm


def test_mean_ci_is_the_student_t_interval():
    # [1, 2, 3]: mean 2, sample sd 1, t(0.975, df=2) = 4.302653 (table) -> half-width 4.302653 / sqrt(3) = 2.484138
    mean, half = mean_ci([1.0, 2.0, 3.0])
    assert mean == 2.0 and half == pytest.approx(2.484138, abs=1e-6)
    # [0.80, 0.90]: sd = 0.1 / sqrt(2), t(0.975, 1) = 12.706205 -> half-width 12.706205 * 0.1 / 2 = 0.6353102
    assert mean_ci([0.8, 0.9])[1] == pytest.approx(0.6353102, abs=1e-6)


def test_mean_ci_one_value_has_no_interval_and_nan_is_ignored():
    assert mean_ci([0.7])[0] == 0.7 and math.isnan(mean_ci([0.7])[1])
    assert mean_ci([0.7, math.nan])[0] == 0.7 and math.isnan(mean_ci([0.7, math.nan])[1])
    assert all(math.isnan(v) for v in mean_ci([]))


def test_average_ranks_hand_example_with_a_tie_and_a_missing_method():
    scores = pd.DataFrame({"none": [0.80, 0.70, 0.50, 0.50], "A": [0.85, 0.70, 0.90, np.nan],
                           "B": [0.90, 0.60, 0.60, 0.60]}, index=["d1", "d2", "d3", "d4"])
    # ranks (1 = best):  d1: none 3, A 2, B 1;  d2: none 1.5, A 1.5, B 3 (tie);  d3: none 3, A 1, B 2;
    # d4 (A missing, ranked among the others): none 2, B 1.
    # none: (3 + 1.5 + 3 + 2) / 4 = 2.375;  A: (2 + 1.5 + 1) / 3 = 1.5;  B: (1 + 3 + 2 + 1) / 4 = 1.75
    ranks = average_ranks(scores)
    assert list(ranks.index) == ["A", "B", "none"]
    assert ranks["avg_rank"].to_dict() == pytest.approx({"A": 1.5, "B": 1.75, "none": 2.375})
    assert ranks["n_datasets"].to_dict() == {"A": 3, "B": 4, "none": 4}
    assert average_ranks(-scores, lower_better=True)["avg_rank"].to_dict() == pytest.approx(ranks["avg_rank"].to_dict())


def test_holm_hand_example():
    # p = [0.04, 0.01, 0.03], m = 3, ascending: 0.01 * 3 = 0.03; 0.03 * 2 = 0.06; 0.04 * 1 = 0.04, raised to
    # the running maximum 0.06; back in input order: [0.06, 0.03, 0.06]
    assert holm([0.04, 0.01, 0.03]) == pytest.approx([0.06, 0.03, 0.06])
    assert holm([0.6, 0.5]) == pytest.approx([1.0, 1.0])      # 0.5 * 2 = 1.0, then max(1.0, 0.6) capped at 1


def test_wilcoxon_holm_hand_example():
    base = np.array([0.50, 0.60, 0.70, 0.55, 0.65, 0.75])
    scores = pd.DataFrame({
        "none": base,
        "A": base + [0.01, 0.02, 0.03, 0.04, 0.05, 0.06],     # better on all 6
        "B": base + [0.01, -0.02, 0.03, -0.04, 0.05, 0.06],   # mixed
        "C": base + [0.0, 0.01, 0.02, 0.03, 0.04, 0.05],      # one tie, better on 5
    }, index=[f"d{i}" for i in range(6)])
    out = wilcoxon_holm(scores, "none")
    # A: |d| ranks 1..6 all positive: W- = 0; exact two-sided p = 2 * P(W <= 0) = 2 / 2^6 = 0.03125
    # B: positive ranks 1, 3, 5, 6 (W+ = 15), negative 2, 4 (W- = 6); subsets of {1..6} with sum <= 6:
    #    {}, {1}, {2}, {3}, {1,2}, {4}, {1,3}, {5}, {1,4}, {2,3}, {6}, {1,5}, {2,4}, {1,2,3} = 14
    #    -> p = 2 * 14 / 64 = 0.4375
    # C: the tie is dropped, 5 positive differences: p = 2 / 2^5 = 0.0625
    assert out.loc["A", "p_value"] == pytest.approx(0.03125)
    assert out.loc["B", "p_value"] == pytest.approx(0.4375)
    assert out.loc["C", "p_value"] == pytest.approx(0.0625)
    assert out.loc["B", "statistic"] == 6.0
    # Holm over m = 3: A 0.03125 * 3 = 0.09375; C 0.0625 * 2 = 0.125; B 0.4375 * 1 -> 0.4375
    assert out["p_holm"].to_dict() == pytest.approx({"A": 0.09375, "B": 0.4375, "C": 0.125})
    assert not out["significant"].any()        # A alone would be significant at 0.05; Holm says no
    assert out.loc["C", ["wins", "ties", "losses", "n_paired"]].tolist() == [5, 1, 0, 6]
    assert out.loc["B", ["wins", "ties", "losses"]].tolist() == [4, 0, 2]
    assert out.loc["B", "mean_diff"] == pytest.approx((0.01 - 0.02 + 0.03 - 0.04 + 0.05 + 0.06) / 6)


def test_wilcoxon_holm_significant_alone_missing_pairs_and_lower_better():
    base = np.linspace(0.5, 0.8, 7)
    scores = pd.DataFrame({"none": base, "A": base + 0.05, "D": [np.nan] * 7}, index=[f"d{i}" for i in range(7)])
    out = wilcoxon_holm(scores, "none")
    # A better on all 7: p = 2 / 2^7 = 0.015625; D shares no dataset: untested, so m = 1
    assert out.loc["A", "p_holm"] == pytest.approx(0.015625) and out.loc["A", "significant"]
    assert out.loc["D", "n_paired"] == 0 and math.isnan(out.loc["D", "p_value"]) and not out.loc["D", "significant"]
    losses = wilcoxon_holm(scores[["none", "A"]], "none", lower_better=True)   # a loss: higher is worse
    assert losses.loc["A", ["wins", "losses"]].tolist() == [0, 7] and losses.loc["A", "mean_diff"] < 0


def test_all_tied_gives_p_one():
    scores = pd.DataFrame({"none": [0.5, 0.6], "A": [0.5, 0.6]})
    out = wilcoxon_holm(scores, "none")
    assert out.loc["A", "p_value"] == 1.0 and out.loc["A", "ties"] == 2

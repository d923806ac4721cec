"""The report's statistics as pure functions on arrays and (datasets x methods) score tables.

Across datasets the study follows the time-series classification convention (Demsar 2006,
Benavoli et al. 2016): average ranks, and paired Wilcoxon signed-rank tests against a control
(the `none` baseline) with Holm's step-down correction over the methods compared to it.
"""
from __future__ import annotations

import math
from typing import Sequence

import numpy as np
import pandas as pd
from scipy import stats

TIE = 1e-9      # scores closer than this are equal (means of identical accuracies differ by rounding only):
                # the one tolerance of selection, Pareto fronts and win / tie / loss counts


def mean_ci(values: Sequence[float], level: float = 0.95) -> tuple[float, float]:
    """Mean and half-width of the Student-t interval over seeds; the half-width is NaN for one value."""
    x = np.asarray(values, dtype=float)
    x = x[np.isfinite(x)]
    if len(x) == 0:
        return math.nan, math.nan
    if len(x) == 1:
        return float(x[0]), math.nan
    half = stats.t.ppf((1 + level) / 2, len(x) - 1) * x.std(ddof=1) / math.sqrt(len(x))
    return float(x.mean()), float(half)


def average_ranks(scores: pd.DataFrame, lower_better: bool = False) -> pd.DataFrame:
    """Rank 1 = best on each dataset (ties share the mean rank), averaged over datasets.

    A method missing on a dataset (NaN) is left out there and the others are ranked among
    themselves; `n_datasets` says on how many datasets each method was ranked.
    """
    ranks = scores.rank(axis=1, ascending=lower_better, method="average")
    out = pd.DataFrame({"avg_rank": ranks.mean(axis=0), "n_datasets": scores.notna().sum(axis=0)})
    out.index.name = "method"
    return out.sort_values("avg_rank")


def holm(p_values: Sequence[float]) -> np.ndarray:
    """Holm's step-down adjusted p-values, in the input order: p_(i) * (m - i + 1), made monotone."""
    p = np.asarray(p_values, dtype=float)
    order = np.argsort(p)
    m = len(p)
    adjusted = np.maximum.accumulate((m - np.arange(m)) * p[order])
    out = np.empty(m)
    out[order] = np.minimum(adjusted, 1.0)
    return out


def wilcoxon_holm(scores: pd.DataFrame, baseline: str, alpha: float = 0.05,
                  lower_better: bool = False) -> pd.DataFrame:
    """Each method against `baseline` over the datasets where both have a score.

    scores: (datasets x methods). Two-sided Wilcoxon signed-rank test on the paired differences
    (ties are dropped, as Wilcoxon did); Holm's correction over the methods tested. A method
    with no non-tied dataset gets p = 1. Returns one row per method other than the baseline;
    wins and a positive `mean_diff` mean better than the baseline.
    """
    rows = {}
    for method in scores.columns.drop(baseline):
        pair = scores[[method, baseline]].dropna()
        diff = (pair[method] - pair[baseline]) * (-1 if lower_better else 1)
        diff = diff.where(diff.abs() > TIE, 0.0)
        nonzero = diff[diff != 0].to_numpy()
        statistic, p = math.nan, (1.0 if len(pair) else math.nan)
        if len(nonzero):
            res = stats.wilcoxon(nonzero)
            statistic, p = float(res.statistic), float(res.pvalue)
        rows[method] = {"n_paired": len(pair), "wins": int((diff > 0).sum()), "ties": int((diff == 0).sum()),
                        "losses": int((diff < 0).sum()), "mean_diff": float(diff.mean()) if len(pair) else math.nan,
                        "statistic": statistic, "p_value": p}
    out = pd.DataFrame.from_dict(rows, orient="index",
                                 columns=["n_paired", "wins", "ties", "losses", "mean_diff", "statistic", "p_value"])
    out.index.name = "method"
    tested = out["p_value"].notna()
    out["p_holm"] = math.nan
    out.loc[tested, "p_holm"] = holm(out.loc[tested, "p_value"].to_numpy())
    out["significant"] = out["p_holm"] < alpha
    return out

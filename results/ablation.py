"""The ablation's answer in numbers: does aug_recon_weight change the tokens, and does the augmentation set
matter more than the weight?

Per SSL method and augmentation set, a Friedman test across the weights, each block one (dataset, seed)
that finished at every weight (so dataset and seed differences cancel); Kendall's W says how consistent
the ordering of weights is, and `weight_gap` (the mean over blocks of the mean absolute difference
between two weights) says how much the weight moves the metric. Per SSL method, the augmentation sets
are compared on blocks (dataset, weight, seed): a two-sided Wilcoxon signed-rank test of warp - slice
(or the first two sets), `aug_gap` the mean absolute difference. Both gaps are mean absolute differences
of two values, so seed noise alone gives both the same size (about 1.13 noise standard deviations) and
"the set matters more than the weight" compares like with like (a range over four weights would not). Holm's step-down corrects each family
of tests. Test metrics are only reported here: no configuration is chosen from them.
"""
from __future__ import annotations

import math

import numpy as np
import pandas as pd
from scipy import stats

from results.contract import BASELINE_METHOD, TEST_KNN, TEST_RECON, TEST_SVM
from results.stats import holm

ABLATION_METRICS = {TEST_SVM: "test SVM accuracy", TEST_KNN: "test KNN accuracy",
                    TEST_RECON: "test reconstruction loss"}
ALPHA = 0.05
THESIS = ("the reference study (thesis section 5.3.1) found that the weight has little effect on probe accuracy, "
          "a small effect on reconstruction (except on FordA), and that the choice of augmentations matters much more")


def _finished_ssl(trials: pd.DataFrame) -> pd.DataFrame:
    t = trials[(trials["status"] == "FINISHED") & (trials["ssl_method"] != BASELINE_METHOD)].copy()
    for m in ABLATION_METRICS:
        t[m] = pd.to_numeric(t.get(m), errors="coerce")
    return t


def weight_effects(trials: pd.DataFrame) -> pd.DataFrame:
    """One row per (ssl_method, aug_set, metric): blocks, weights, Friedman chi2 and p (Holm over the table),
    Kendall's W and weight_gap. Rows with fewer than 2 complete blocks or 3 weights have p NaN."""
    t = _finished_ssl(trials)
    rows = []
    for (method, aug), g in t.groupby(["ssl_method", "aug_set"]):
        for metric in ABLATION_METRICS:
            wide = g.pivot_table(index=["dataset", "seed"], columns="aug_recon_weight", values=metric).dropna()
            k, n = wide.shape[1], len(wide)
            chi2 = p = w = math.nan
            if k >= 3 and n >= 2:
                chi2, p = stats.friedmanchisquare(*wide.to_numpy().T)
                w = chi2 / (n * (k - 1)) if math.isfinite(chi2) else math.nan
            values = wide.to_numpy()
            pairs = [abs(values[:, i] - values[:, j]) for i in range(k) for j in range(i + 1, k)]
            spread = float(np.mean(pairs)) if n and pairs else math.nan
            rows.append({"ssl_method": method, "aug_set": aug, "metric": metric, "blocks": n, "weights": k,
                         "friedman_chi2": chi2, "p_value": p, "kendall_w": w, "weight_gap": spread})
    return _with_holm(pd.DataFrame(rows, columns=["ssl_method", "aug_set", "metric", "blocks", "weights",
                                                  "friedman_chi2", "p_value", "kendall_w", "weight_gap"]))


def aug_effects(trials: pd.DataFrame) -> pd.DataFrame:
    """One row per (ssl_method, metric): the first two augmentation sets compared on paired blocks (dataset,
    weight, seed): Wilcoxon p (Holm over the table), mean difference (first - second) and aug_gap."""
    t = _finished_ssl(trials)
    rows = []
    for method, g in t.groupby("ssl_method"):
        augs = sorted(g["aug_set"].unique(), key=lambda a: (a != "warp", a))[:2]
        if len(augs) < 2:
            continue
        for metric in ABLATION_METRICS:
            wide = g.pivot_table(index=["dataset", "aug_recon_weight", "seed"], columns="aug_set",
                                 values=metric)[augs].dropna()
            diff = (wide[augs[0]] - wide[augs[1]]).to_numpy()
            p = float(stats.wilcoxon(diff).pvalue) if np.count_nonzero(diff) >= 1 and len(diff) >= 2 else math.nan
            rows.append({"ssl_method": method, "metric": metric, "sets": f"{augs[0]} - {augs[1]}", "blocks": len(diff),
                         "mean_diff": float(diff.mean()) if len(diff) else math.nan,
                         "aug_gap": float(np.abs(diff).mean()) if len(diff) else math.nan, "p_value": p})
    return _with_holm(pd.DataFrame(rows, columns=["ssl_method", "metric", "sets", "blocks", "mean_diff", "aug_gap",
                                                  "p_value"]))


def _with_holm(frame: pd.DataFrame) -> pd.DataFrame:
    frame["p_holm"] = math.nan
    tested = frame["p_value"].notna()
    if tested.any():
        frame.loc[tested, "p_holm"] = holm(frame.loc[tested, "p_value"].to_numpy())
    return frame


def answer_lines(weights: pd.DataFrame, augs: pd.DataFrame) -> list[str]:
    """The ablation's answer in words: per method and set, does the weight matter; does the set matter more."""
    if weights.empty:
        return ["No SSL configuration finished at several weights: the weight's effect cannot be tested."]
    lines = []
    for metric, label in ABLATION_METRICS.items():
        w = weights[weights["metric"] == metric]
        parts = [f"{r.ssl_method}/{r.aug_set} p = {_p(r.p_holm)} (W {_f(r.kendall_w)}, gap {_f(r.weight_gap)})"
                 for r in w.itertuples()]
        moved = w[w["p_holm"] < ALPHA]
        verdict = (f"changes it significantly for {', '.join(f'{r.ssl_method}/{r.aug_set}' for r in moved.itertuples())}"
                   if len(moved) else "changes it significantly for no method and set")
        lines.append(f"- Weight -> {label}: the weight {verdict} (Friedman over (dataset, seed) blocks, Holm): "
                     + "; ".join(parts) + ".")
    n, floor, tests = _friedman_floor(weights)
    if floor * tests > ALPHA:
        lines.append(f"- With {n} (dataset, seed) block(s) per test the smallest Friedman p is {floor:.3g} "
                     f"({floor * tests:.3g} after Holm over {tests} tests): no weight effect can be "
                     f"significant at this size; more seeds or datasets (`--seeds`, `--datasets small`) can.")
    for metric, label in ABLATION_METRICS.items():
        a = augs[augs["metric"] == metric]
        w = weights[weights["metric"] == metric]
        for r in a.itertuples():
            spread = w.loc[w["ssl_method"] == r.ssl_method, "weight_gap"].mean()
            more = "more" if r.aug_gap > spread else "less"
            lines.append(f"- Augmentation set -> {label}, {r.ssl_method}: {r.sets} = {r.mean_diff:+.4f} on average, "
                         f"|gap| {r.aug_gap:.4f} against a weight gap of {spread:.4f}: the set matters {more} than "
                         f"the weight (Wilcoxon over {r.blocks} (dataset, weight, seed) blocks, Holm p = {_p(r.p_holm)}).")
    return lines


def _friedman_floor(weights: pd.DataFrame) -> tuple[int, float, int]:
    """(blocks, the smallest Friedman p those blocks allow, tests): every block ranking the weights alike."""
    tested = weights[weights["p_value"].notna()]
    if tested.empty:
        return 0, 1.0, 0
    n, k = int(tested["blocks"].min()), int(tested["weights"].max())
    return n, float(stats.chi2.sf(n * (k - 1), k - 1)), len(tested)


def thesis_verdict(weights: pd.DataFrame, augs: pd.DataFrame) -> str:
    """Whether this study agrees with the reference study's conclusion, from the tables above; says so
    where the study is too small for the weight test to reach significance at all."""
    if weights.empty or augs.empty:
        return f"Too few finished trials to compare with {THESIS}."
    probe = weights[weights["metric"].isin([TEST_SVM, TEST_KNN])]
    probe_moved = bool((probe["p_holm"] < ALPHA).any())
    set_vs_weight = []
    for r in augs[augs["metric"].isin([TEST_SVM, TEST_KNN])].itertuples():
        spread = weights.loc[(weights["ssl_method"] == r.ssl_method) & (weights["metric"] == r.metric),
                             "weight_gap"].mean()
        set_vs_weight.append(r.aug_gap > spread)
    aug_more = sum(set_vs_weight) > len(set_vs_weight) / 2
    n, floor, tests = _friedman_floor(weights)
    weak = floor * tests > ALPHA
    recon = weights[weights["metric"] == TEST_RECON]
    if weak:
        verdict = "cannot confirm or refute it on probe accuracy at this size"
    else:
        verdict = ("agrees" if not probe_moved and aug_more else "does not fully agree") + " on probe accuracy"
    return (f"Against the thesis: {THESIS}. Here the weight {'does' if probe_moved else 'does not'} change probe "
            f"accuracy significantly" + (f" (which {n} block(s) per test could not show)" if weak else "")
            + f", and the augmentation set moves probe accuracy more than the weight in {sum(set_vs_weight)} of "
            f"{len(set_vs_weight)} (method, probe) pairs: this study {verdict}. The weight changes test "
            f"reconstruction significantly for {int((recon['p_holm'] < ALPHA).sum())} of {len(recon)} (method, set) "
            f"pairs.")


def _p(p: float) -> str:
    return "n/a" if p is None or not math.isfinite(p) else f"{p:.3g}"


def _f(v: float) -> str:
    return "n/a" if v is None or not math.isfinite(v) else f"{v:.3g}"

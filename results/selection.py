"""Which configuration is best: one rule, used by the study's summary, stage 2's `best` mode and the report.

A configuration's score is the mean of SELECTION_METRIC over its seeds (a train-split estimate, never a
test metric), and only a configuration whose planned seeds all finished can be chosen: the seeds that
survive a failure or an early stop are not a random sample of its seeds, so a partial mean is biased. Equal means are broken by the TIE_BREAKERS in order (mean validation 5-NN
accuracy, then mean validation reconstruction loss), then by the smaller config id, so the choice is
deterministic; `n_tied` says how many configurations shared the best selection score.
"""
from __future__ import annotations

from typing import Sequence

import pandas as pd

from results.contract import PLANNED_SEEDS, SELECTION_METRIC, TIE_BREAKERS
from results.stats import TIE


def config_means(trials: pd.DataFrame, by: Sequence[str] = ("dataset",)) -> pd.DataFrame:
    """Per (by..., config_id): finished seeds (n_seeds), whether those are all its planned seeds
    (`complete`; trials without a PLANNED_SEEDS column count as complete), and the mean of the selection
    metric and its tie-breakers."""
    keys = [SELECTION_METRIC, *(m for m, _ in TIE_BREAKERS)]
    done = trials[trials["status"] == "FINISHED"].reindex(columns=[*by, "config_id", PLANNED_SEEDS, *keys])
    done[[PLANNED_SEEDS, *keys]] = done[[PLANNED_SEEDS, *keys]].apply(pd.to_numeric, errors="coerce")
    grouped = done.groupby([*by, "config_id"], sort=True, dropna=False)
    out = grouped[keys].mean().join(grouped.size().rename("n_seeds")).join(grouped[PLANNED_SEEDS].max())
    out["complete"] = out[PLANNED_SEEDS].isna() | (out["n_seeds"] >= out[PLANNED_SEEDS])
    return out.drop(columns=PLANNED_SEEDS).reset_index()


def select_best(trials: pd.DataFrame, by: Sequence[str] = ("dataset",)) -> pd.DataFrame:
    """One row per group of `by`: the best configuration's config_id, n_seeds, means, and n_tied.

    trials: one row per trial run with columns `by`, config_id, status and the metric keys.
    Configurations without a finite selection score, or with unfinished seeds, are never chosen.
    """
    means = config_means(trials, by).dropna(subset=[SELECTION_METRIC])
    means = means[means["complete"]].drop(columns="complete")
    if means.empty:
        return means.assign(n_tied=pd.Series(dtype=int))
    rows = []
    for _, group in means.groupby(list(by), sort=True, dropna=False):
        top = group[SELECTION_METRIC].max()
        tied = group[group[SELECTION_METRIC] >= top - TIE]
        order = [(m, lower) for m, lower in TIE_BREAKERS if m in tied]
        ranked = tied.sort_values([m for m, _ in order] + ["config_id"],
                                  ascending=[lower for _, lower in order] + [True], na_position="last")
        rows.append(ranked.iloc[0].to_dict() | {"n_tied": len(tied)})
    return pd.DataFrame(rows).reset_index(drop=True)

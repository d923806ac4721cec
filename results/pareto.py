"""Pareto fronts of a multi-objective study (`--objectives probe,recon`): per dataset, the configurations
that no other configuration of the same dataset beats on every objective.

Objectives are train-split estimates only (contract.OBJECTIVES: validation probe accuracy up, validation
reconstruction loss down); a configuration's point is the mean of each objective over its finished seeds,
as Optuna was told. The baseline is a configuration like any other: it may be on the front.
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Sequence

import numpy as np
import pandas as pd

from results.contract import BASELINE_METHOD, OBJECTIVES, OBJECTIVES_PARAM, SELECTION_METRIC
from results.stats import TIE

if TYPE_CHECKING:
    from results.runs import StudyRuns

SENSES = ("max", "min")
WEIGHT_BINS = [0.0, 0.05, 0.1, 0.15, 0.2, 0.25, np.inf]     # aug_recon_weight ranges of the counts


def objective_names(names: str | Sequence[str] | None) -> list[str]:
    """'probe,recon' (--objectives, a study's recorded param) -> ['probe', 'recon']: blanks and repeats
    dropped; None or NaN (a parent without the param) -> []."""
    if names is None or (isinstance(names, float) and np.isnan(names)):
        return []
    parts = names.split(",") if isinstance(names, str) else names
    return list(dict.fromkeys(str(n).strip() for n in parts if str(n).strip()))


def objective_specs(names: str | Sequence[str] | None) -> list[tuple[str, str]]:
    """objective_names -> [(metric, sense), ...] of contract.OBJECTIVES; none: the single objective."""
    return [OBJECTIVES[n] for n in objective_names(names)] or [(SELECTION_METRIC, "max")]


def pareto_mask(points, senses: Sequence[str]) -> np.ndarray:
    """Which rows of `points` (n x k) are Pareto-optimal, each column maximised or minimised by `senses`.

    Row a dominates row b when a is at least as good on every objective and better on one. A row with a
    non-finite value is never on the front and dominates nothing; equal rows do not dominate each other,
    so duplicates are on the front together.
    """
    p = np.asarray(points, dtype=float)
    if p.ndim != 2 or p.shape[1] != len(senses) or any(s not in SENSES for s in senses):
        raise ValueError(f"points must be (n, {len(senses)}) and senses each 'max' or 'min', got {p.shape}, {senses}")
    q = p * np.array([1.0 if s == "max" else -1.0 for s in senses])      # all maximised
    valid = np.isfinite(q).all(axis=1)
    v = q[valid]
    gap = v[:, None, :] - v[None, :, :]                          # [j, i]: j minus i; within TIE is a tie
    at_least = (gap >= -TIE).all(axis=2)                          # j at least as good as i everywhere
    better = (gap > TIE).any(axis=2)                             # j better than i somewhere
    mask = np.zeros(len(p), dtype=bool)
    mask[valid] = ~(at_least & better).any(axis=0)
    return mask


def config_objectives(trials: pd.DataFrame, objectives: Sequence[tuple[str, str]]) -> pd.DataFrame:
    """Per dataset and configuration: finished seeds and the mean of each objective metric over them."""
    metrics = [m for m, _ in objectives]
    done = trials[trials["status"] == "FINISHED"].reindex(columns=["dataset", "config_id", *metrics])
    done[metrics] = done[metrics].apply(pd.to_numeric, errors="coerce")
    grouped = done.groupby(["dataset", "config_id"], sort=True)
    return grouped[metrics].mean().join(grouped.size().rename("n_seeds")).reset_index()


def front(trials: pd.DataFrame, objectives: Sequence[tuple[str, str]]) -> pd.DataFrame:
    """config_objectives plus `pareto` (bool): on its dataset's front. Configurations without a finished
    seed are absent (their runs are not on the front)."""
    means = config_objectives(trials, objectives)
    means["pareto"] = False
    senses = [s for _, s in objectives]
    for _, idx in means.groupby("dataset").groups.items():
        means.loc[idx, "pareto"] = pareto_mask(means.loc[idx, [m for m, _ in objectives]].to_numpy(), senses)
    return means


def study_objectives(runs: StudyRuns) -> list[tuple[str, str]]:
    """(metric, sense) per objective the study searched (its parents' `objectives` param); one: single-objective."""
    recorded = [o for o in runs.parents.get(OBJECTIVES_PARAM, pd.Series(dtype=object)).dropna() if o]
    return objective_specs(max(recorded, key=len) if recorded else None)


def pareto_table(runs: StudyRuns, table: pd.DataFrame, objectives: list[tuple[str, str]]) -> pd.DataFrame:
    """results.runs.per_config's rows of every configuration with a finished seed, plus `pareto`: on its
    dataset's front (the means over finished seeds, the same points Optuna was told)."""
    flags = front(runs.trials, objectives)[["dataset", "config_id", "pareto"]]
    return table.merge(flags, on=["dataset", "config_id"], how="inner")


def front_counts(table: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Across datasets, how often each method and each aug_recon_weight range is on the front.

    table: one row per (dataset, configuration) with `method`, `aug_recon_weight`, `n_seeds` and `pareto`.
    Returns (per method: configurations scored, on the front, datasets where one of its configurations is
    on the front, of the datasets it ran on; per weight range of the SSL configurations: the same).
    """
    def count(frame: pd.DataFrame, key: str) -> pd.DataFrame:
        groups = frame.groupby(key, observed=True, sort=True)
        on_front = frame[frame["pareto"]].groupby(key, observed=True)["dataset"].nunique()
        out = pd.DataFrame({"configs": groups.size(), "on_front": groups["pareto"].sum().astype(int),
                            "datasets_on_front": on_front, "datasets": groups["dataset"].nunique()})
        out["datasets_on_front"] = out["datasets_on_front"].fillna(0).astype(int)
        return out.rename_axis(key).reset_index()

    scored = table[table["n_seeds"] > 0].assign(pareto=lambda t: t["pareto"].astype(bool))
    ssl = scored[scored["method"] != BASELINE_METHOD]
    ranges = pd.cut(pd.to_numeric(ssl["aug_recon_weight"], errors="coerce"), WEIGHT_BINS, right=False)
    labels = [f"[{a:.2f}, {b:.2f})" if np.isfinite(b) else f">= {a:.2f}" for a, b in zip(WEIGHT_BINS, WEIGHT_BINS[1:])]
    return count(scored, "method"), count(ssl.assign(aug_recon_weight=ranges.cat.rename_categories(labels)),
                                          "aug_recon_weight")


def stage2_front(trials: pd.DataFrame, objectives: Sequence[tuple[str, str]]) -> pd.DataFrame:
    """`--stage2 front`: per dataset, every Pareto-optimal configuration and, as the reference, the baseline's
    best one (results.selection's rule) even where it is off the front; columns dataset and config_id."""
    from results.selection import select_best

    flags = front(trials, objectives)
    on_front = flags.loc[flags["pareto"], ["dataset", "config_id"]]
    baseline = select_best(trials[trials["ssl_method"] == BASELINE_METHOD], by=["dataset"])
    picks = pd.concat([on_front, baseline.reindex(columns=["dataset", "config_id"])], ignore_index=True)
    return picks.drop_duplicates().sort_values(["dataset", "config_id"]).reset_index(drop=True)

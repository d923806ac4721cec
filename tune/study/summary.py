"""The end of a study: per dataset, the best SSL configuration (results.selection's rule) beside the
baseline, logged to the dataset's MLflow parent run and printed as a table.

It reads the study's own MLflow store, as the report does, so the `best_ssl.*` tags of a parent run and the
report's `selected.md` name the same configuration. "best" here is always the best SSL configuration
(never the baseline, which is logged beside it as `baseline/*`).
"""
from __future__ import annotations

import math
from typing import Any

import optuna
import pandas as pd
from ray.tune.search.optuna import OptunaSearch

from results.contract import (BASELINE_METHOD, BASELINE_PREFIX as BASELINE, BEST_SSL_PREFIX as BEST, CONFIGS_TAG,
                              GEN_CAS, GEN_FID, GEN_IS, IDENTITY_PARAMS, PARETO_TAG, RAW_1NN, RAW_SVM, SELECTION_METRIC,
                              TEST_KNN, TEST_RECON, TEST_SVM, TRAIN_S, VAL_KNN, VAL_SVM, column, summary_key)
from results.pareto import pareto_table
from results.runs import StudyRuns, per_config
from results.selection import select_best

KEYS = [VAL_SVM, VAL_KNN, TEST_SVM, TEST_KNN, TEST_RECON, TRAIN_S,
        GEN_FID, GEN_IS, GEN_CAS]


def param_importances(searched: pd.DataFrame, space) -> dict[str, float]:
    """Optuna's fANOVA importances of the searched parameters for one dataset (empty if too few trials)."""
    distributions = OptunaSearch.convert_search_space(space.params)
    study = optuna.create_study(direction="maximize")
    for _, row in searched.iterrows():
        params = {k: _as_choice(row.get(k), d) for k, d in distributions.items()}
        value = pd.to_numeric(row.get(SELECTION_METRIC), errors="coerce")
        if any(v is None for v in params.values()) or not math.isfinite(value):
            continue
        try:
            study.add_trial(optuna.trial.create_trial(params=params, distributions=distributions, value=value))
        except ValueError:      # a grid value outside the TPE range
            continue
    try:
        return {k: float(v) for k, v in optuna.importance.get_param_importances(study).items()}
    except (RuntimeError, ValueError, ZeroDivisionError):
        return {}


def _as_choice(text: Any, distribution) -> Any:
    """An MLflow param (a string) as the value Optuna's distribution holds."""
    if text is None or (isinstance(text, float) and math.isnan(text)):
        return None
    if isinstance(distribution, optuna.distributions.CategoricalDistribution):
        return next((c for c in distribution.choices if str(c) == str(text)), None)
    number = float(text)
    return int(number) if isinstance(distribution, optuna.distributions.IntDistribution) else number


def mark_front(runs: StudyRuns, objectives: list[tuple[str, str]], tracker) -> pd.DataFrame:
    """Tag every trial run `pareto` true / false (its configuration is on its dataset's front, results.pareto
    over the means of finished seeds) and return results.pareto.pareto_table's rows."""
    flagged = pareto_table(runs, per_config(runs), objectives)
    on_front = set(zip(flagged.loc[flagged["pareto"], "dataset"], flagged.loc[flagged["pareto"], "config_id"]))
    for r in runs.trials.itertuples():
        tracker.client.set_tag(r.run_id, PARETO_TAG, str((r.dataset, r.config_id) in on_front).lower())
    return flagged


def log_front(tracker, run_id: str, flagged: pd.DataFrame, dataset: str, objectives: list[tuple[str, str]]) -> int:
    """The dataset's front on its parent run as a table (pareto_front.json); returns its size. The report
    draws the front's figure and logs it to the same run."""
    rows = flagged[(flagged["dataset"] == dataset) & flagged["pareto"]]
    columns = ["method", *IDENTITY_PARAMS, "config_id", "n_seeds"] + [
        f"{m.replace('/', '_')}_{s}" for m, _ in objectives for s in ("mean", "ci95")]
    table = rows.reindex(columns=columns)
    tracker.client.log_table(run_id, table.astype(object).where(table.notna(), None), "pareto_front.json")
    return len(rows)


def summarize(runs: StudyRuns, plan, tracker, parents: dict[str, str], wall_s: float,
              configs_run: dict[str, int] | None = None,
              yardsticks: dict[str, dict[str, float]] | None = None) -> pd.DataFrame:
    """Finish each dataset's parent run with the best configuration, its means and the baseline's;
    configs_run: per dataset, the distinct configurations the search ran (when the searcher is at hand)."""
    trials = runs.trials
    for k in KEYS:
        trials[k] = pd.to_numeric(trials[k], errors="coerce") if k in trials else math.nan
    objectives = plan.objective_specs
    flagged = mark_front(runs, objectives, tracker) if len(objectives) > 1 and len(trials) else None
    out = []
    for ds in plan.datasets:
        d = trials[trials["dataset"] == ds]
        finished = d[d["status"] == "FINISHED"]
        base = finished[finished["ssl_method"] == BASELINE_METHOD]
        searched = d[d["ssl_method"] != BASELINE_METHOD]
        summary: dict[str, Any] = {"dataset": ds, "trials": len(d), "failed": int((d["status"] == "FAILED").sum())}
        metrics: dict[str, float] = dict((yardsticks or {}).get(ds, {}))
        tags: dict[str, str] = {}
        artifacts: dict[str, Any] = {}
        base_pick = select_best(base, by=["dataset"])
        if len(base_pick):       # the baseline's best configuration (there are several where it is tuned too)
            chosen = base[base["config_id"] == base_pick.iloc[0]["config_id"]]
            for k in KEYS:
                metrics[summary_key(BASELINE, k)] = float(chosen[k].mean())
        pick = select_best(searched, by=["dataset"])
        if len(pick):
            best = pick.iloc[0]
            rows = searched[(searched["config_id"] == best["config_id"]) & (searched["status"] == "FINISHED")]
            for k in KEYS:
                metrics[summary_key(BEST, k)] = float(rows[k].mean())
            first = rows.sort_values("seed").iloc[0]
            tags = {f"{BEST}.{k}": str(first[k]) for k in IDENTITY_PARAMS} | {
                f"{BEST}.config_id": best["config_id"], f"{BEST}.n_tied": str(int(best["n_tied"]))}
            artifacts[f"{BEST}_config.json"] = {k: first[k] for k in plan.space.params} | {
                k: first[k] for k in IDENTITY_PARAMS} | {"config_id": best["config_id"]}
            artifacts["param_importances.json"] = param_importances(searched[searched["status"] == "FINISHED"],
                                                                    plan.space)
        if configs_run:
            tags[CONFIGS_TAG] = str(configs_run[ds])
        if flagged is not None:
            summary["pareto"] = log_front(tracker, parents[ds], flagged, ds, objectives)
        tracker.finish_parent(parents[ds], metrics, tags, artifacts)
        summary |= {k: metrics.get(k, math.nan) for k in
                    [summary_key(p, m) for p in (BEST, BASELINE) for m in (VAL_SVM, TEST_SVM, TEST_RECON)]
                    + [RAW_SVM, RAW_1NN, summary_key(BEST, GEN_FID), summary_key(BASELINE, GEN_FID)]}
        summary = {k: v for k, v in summary.items() if not (k.endswith(column(GEN_FID)) and math.isnan(v))}
        summary[BEST] = " ".join(f"{k[len(BEST) + 1:]}={v}" for k, v in tags.items()
                                 if k.startswith(f"{BEST}.") and k[len(BEST) + 1:] in IDENTITY_PARAMS) or "-"
        out.append(summary)
    frame = pd.DataFrame(out)
    failed = int((trials["status"] == "FAILED").sum()) if len(trials) else 0
    print(f"\nStudy {plan.name}: {len(trials)} trials ({failed} failed) in {wall_s / 60:.1f} min")
    if len(frame):
        with pd.option_context("display.width", 200, "display.max_columns", 20, "display.precision", 3):
            print(frame.drop(columns=["trials"]).to_string(index=False))
    return frame

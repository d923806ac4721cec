"""The end of a study: per dataset, the best configuration (by validation accuracy, mean over seeds)
beside the baseline, logged to the dataset's MLflow parent run and printed as a table."""
from __future__ import annotations

import math
from typing import Any

import optuna
import pandas as pd
from ray.tune.search.optuna import OptunaSearch

KEYS = ["val/svm_acc", "val/knn_acc", "test/svm_acc", "test/knn_acc", "test/recon_loss", "time/train_s",
        "gen/fid", "gen/is", "gen/cas"]
CONFIG_KEYS = ["dataset", "ssl_method", "aug_set", "aug_recon_weight", "seed", "_group"]


def trial_table(results) -> pd.DataFrame:
    """One row per trial: its configuration, its last reported metrics, and whether it failed."""
    rows = []
    for r in results:
        cfg, metrics = r.config or {}, r.metrics or {}
        row = {k: cfg.get(k) for k in CONFIG_KEYS} | {k: metrics.get(k, math.nan) for k in KEYS}
        row |= {"failed": r.error is not None, "config": cfg, "trial_id": metrics.get("trial_id")}
        rows.append(row)
    return pd.DataFrame(rows)


def param_importances(searched: pd.DataFrame, space, metric: str) -> dict[str, float]:
    """Optuna's fANOVA importances of the searched parameters for one dataset (empty if too few trials)."""
    distributions = OptunaSearch.convert_search_space(space.params)
    study = optuna.create_study(direction="maximize")
    for _, row in searched.iterrows():
        params = {k: row["config"].get(k) for k in distributions}
        if any(v is None for v in params.values()) or not math.isfinite(row[metric]):
            continue
        try:
            study.add_trial(optuna.trial.create_trial(params=params, distributions=distributions, value=row[metric]))
        except ValueError:      # a grid value outside the TPE range
            continue
    try:
        return {k: float(v) for k, v in optuna.importance.get_param_importances(study).items()}
    except (RuntimeError, ValueError, ZeroDivisionError):
        return {}


def summarize(results, plan, tracker, parents: dict[str, str], wall_s: float, metric: str = "val/svm_acc") -> pd.DataFrame:
    table = trial_table(results)
    out = []
    for ds in plan.datasets:
        d = table[(table["dataset"] == ds) & ~table["failed"]]
        base = d[d["ssl_method"].eq("none") & d["_group"].str.endswith("-baseline")]
        searched = d[~d["_group"].str.endswith("-baseline")].dropna(subset=[metric])
        summary: dict[str, Any] = {"dataset": ds, "trials": int((table["dataset"] == ds).sum()),
                                   "failed": int(table[(table["dataset"] == ds)]["failed"].sum())}
        metrics: dict[str, float] = {}
        tags: dict[str, str] = {}
        artifacts: dict[str, Any] = {}
        if len(base):
            for k in KEYS:
                metrics[f"baseline/{k.replace('/', '_')}"] = float(base[k].mean())
        if len(searched):
            means = searched.groupby("_group")[KEYS].mean()
            best_group = means[metric].idxmax()
            best_cfg = searched[searched["_group"] == best_group].iloc[0]["config"]
            for k in KEYS:
                metrics[f"best/{k.replace('/', '_')}"] = float(means.loc[best_group, k])
            shown = {k: v for k, v in best_cfg.items() if not k.startswith("_") and k != "seed"}
            tags = {f"best.{k}": str(shown.get(k)) for k in ("ssl_method", "aug_set", "aug_recon_weight")}
            artifacts["best_config.json"] = shown
            artifacts["param_importances.json"] = param_importances(searched, plan.space, metric)
        tracker.finish_parent(parents[ds], metrics, tags, artifacts)
        summary |= {k: metrics.get(k, math.nan) for k in
                    ("best/val_svm_acc", "best/test_svm_acc", "best/test_recon_loss",
                     "baseline/val_svm_acc", "baseline/test_svm_acc", "baseline/test_recon_loss",
                     "best/gen_fid", "baseline/gen_fid")}
        summary = {k: v for k, v in summary.items() if not (k.endswith("gen_fid") and math.isnan(v))}
        summary["best"] = " ".join(f"{k.split('.')[1]}={v}" for k, v in tags.items()) or "-"
        out.append(summary)
    frame = pd.DataFrame(out)
    print(f"\nStudy {plan.name}: {len(table)} trials ({int(table['failed'].sum())} failed) in {wall_s / 60:.1f} min")
    if len(frame):
        with pd.option_context("display.width", 200, "display.max_columns", 20, "display.precision", 3):
            print(frame.drop(columns=["trials"]).to_string(index=False))
    return frame

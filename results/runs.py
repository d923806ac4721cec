"""A study's runs read back from its MLflow store, and their means per configuration.

One paged search per study (`mlflow.search_runs`), no query per run: the study (stage 2, the summary),
the report and the benchmarks all read a study through `load_study`, so they see the same trials.
"""
from __future__ import annotations

import math
from contextlib import contextmanager
from dataclasses import dataclass

import mlflow
import pandas as pd
from mlflow.exceptions import MlflowException
from mlflow.tracking import MlflowClient

from results.contract import (BASELINE_METHOD, BUDGET_PARAM, CONFIG_TAG, CONFIGS_TAG, DATASET_TAG, ERROR_TAG, GEN_FID,
                              GEN_METRICS, IDENTITY_PARAMS, INTERRUPTED_TAG, KEY_TAG, OBJECTIVES_PARAM, PARENT_TAG,
                              PERPLEXITY, PLANNED_CONFIGS_PARAM, PLANNED_SEEDS, ROLE_PARENT, ROLE_TAG, ROLE_TRIAL,
                              SEEDS_PARAM, SIMULATE_PARAM, TEST_METRICS, TRAIN_S, TRIAL_S, TRIAL_TAG, USAGE, VAL_RECON,
                              VAL_SVM, YARDSTICK_KEYS, column, config_id)
from results.errors import UsageError
from results.stats import mean_ci
from results.store import check_tracking_store

METRICS = [*TEST_METRICS, VAL_SVM, VAL_RECON, PERPLEXITY, USAGE, TRAIN_S, TRIAL_S, *GEN_METRICS]   # per_config's
CONFIG = list(IDENTITY_PARAMS)
REFERENCE_HIDDEN = 64     # the reference tokenizer's width: parents of studies before the param ran it
MAX_RUNS = 10_000_000     # mlflow.search_runs stops at max_results; a study has far fewer runs


@dataclass(frozen=True)
class StudyRuns:
    name: str
    parents: pd.DataFrame     # one row per dataset: run_id, dataset, seeds, configs (planned), yardsticks
    trials: pd.DataFrame      # one row per child run: run_id, parent, key, config_id, status, error, params, metrics
    config: list[str]         # the params that identify a configuration (CONFIG + any other that varies)
    params: list[str]         # every param of the trial runs (the whole resolved config)


def method_of(ssl_method: str, aug_set: str) -> str:
    return (BASELINE_METHOD if ssl_method == BASELINE_METHOD and aug_set in (BASELINE_METHOD, "")
            else f"{ssl_method}/{aug_set}")


@contextmanager
def _tracking_uri(uri: str):
    """mlflow.search_runs reads the process's tracking URI: point it at `uri` for the call, then put it back."""
    before = mlflow.get_tracking_uri() if mlflow.is_tracking_uri_set() else None
    mlflow.set_tracking_uri(uri)
    try:
        yield
    finally:
        mlflow.set_tracking_uri(before)


def search_study(study: str, tracking_uri: str) -> list:
    """Every run (mlflow.entities.Run) of the study's experiment, newest first; UsageError (one line) on a
    bad store or name."""
    check_tracking_store(tracking_uri, must_exist=True)
    client = MlflowClient(tracking_uri)
    try:
        exp = client.get_experiment_by_name(study)
        if exp is None:
            known = [e.name for e in client.search_experiments() if e.name != "Default"]
            raise UsageError(f"no study {study!r} in {tracking_uri}; studies there: {', '.join(known) or 'none'}")
        with _tracking_uri(tracking_uri):
            return mlflow.search_runs([exp.experiment_id], max_results=MAX_RUNS, output_format="list")
    except MlflowException as err:
        raise UsageError(f"cannot read the MLflow store {tracking_uri}: {str(err).splitlines()[0]}") from None


def load_study(study: str, tracking_uri: str) -> StudyRuns:
    """The study's parent runs and trial runs as tables; raises UsageError (one line) on a bad store or name."""
    runs = search_study(study, tracking_uri)
    parents = pd.DataFrame([{"run_id": r.info.run_id, "dataset": r.data.tags.get(DATASET_TAG, r.info.run_name),
                             SEEDS_PARAM: _count(r.data.params.get(SEEDS_PARAM)),
                             PLANNED_CONFIGS_PARAM: _planned_configs(r.data.params),
                             "proj_dim": _count(r.data.params.get("proj_dim")),
                             "hidden": _count(r.data.params.get("tokenizer.hidden", str(REFERENCE_HIDDEN))),
                             "configs_run": _count(r.data.tags.get(CONFIGS_TAG)),
                             OBJECTIVES_PARAM: r.data.params.get(OBJECTIVES_PARAM, ""),
                             INTERRUPTED_TAG: r.data.tags.get(INTERRUPTED_TAG, ""),
                             BUDGET_PARAM: r.data.params.get(BUDGET_PARAM, ""), "steps": _count(r.data.params.get("steps")),
                             SIMULATE_PARAM: float(r.data.params.get(SIMULATE_PARAM) or "nan"),
                             **{k: r.data.metrics.get(k, math.nan) for k in YARDSTICK_KEYS}}
                            for r in runs if r.data.tags.get(ROLE_TAG) == ROLE_PARENT],
                           columns=["run_id", "dataset", SEEDS_PARAM, PLANNED_CONFIGS_PARAM, "configs_run", "proj_dim",
                                    "hidden", OBJECTIVES_PARAM, INTERRUPTED_TAG, BUDGET_PARAM, "steps", SIMULATE_PARAM,
                                    *YARDSTICK_KEYS]).sort_values("dataset")
    children = [r for r in runs if r.data.tags.get(ROLE_TAG) == ROLE_TRIAL]
    params = sorted({k for r in children for k in r.data.params})
    trials = pd.DataFrame([{"run_id": r.info.run_id, "parent": r.data.tags.get(PARENT_TAG),
                            "key": r.data.tags.get(KEY_TAG, r.info.run_name),
                            "run_name": r.info.run_name,
                            "config_id": r.data.tags.get(CONFIG_TAG) or config_id(r.data.params),
                            "trial_id": r.data.tags.get(TRIAL_TAG), "status": r.info.status,
                            "error": _last_line(r.data.tags.get(ERROR_TAG, "")), **r.data.params, **r.data.metrics}
                           for r in children])
    first = ["run_id", "parent", "key", "run_name", "config_id", "trial_id", "status", "error", "dataset", *CONFIG, "seed"]
    trials = trials.reindex(columns=list(dict.fromkeys(first + list(trials.columns))))
    trials["aug_recon_weight"] = pd.to_numeric(trials["aug_recon_weight"], errors="coerce")
    trials["seed"] = pd.to_numeric(trials["seed"], errors="coerce")
    trials[PLANNED_SEEDS] = trials["parent"].map(dict(zip(parents["run_id"], parents[SEEDS_PARAM])))
    varying = [k for k in params if k not in (*CONFIG, "dataset", "seed") and trials[k].nunique(dropna=False) > 1]
    for k in varying:            # e.g. lr or codebook size in the `full` space: sort them as numbers
        number = pd.to_numeric(trials[k], errors="coerce")
        trials[k] = number if number.notna().sum() == trials[k].notna().sum() else trials[k]
    return StudyRuns(study, parents.reset_index(drop=True), trials, CONFIG + varying, params)


def with_method(trials: pd.DataFrame) -> pd.DataFrame:
    """trials plus a `method` column: the baseline, or SSL method / augmentation set."""
    return trials.assign(method=[method_of(m, a) for m, a in zip(trials["ssl_method"], trials["aug_set"])])


def per_config(runs: StudyRuns) -> pd.DataFrame:
    """Per dataset and configuration: seed counts, then mean and 95% t-interval half-width per metric."""
    t = with_method(runs.trials)
    metrics = [m for m in METRICS if m in t.columns]
    rows = []
    for (ds, cid), g in t.groupby(["dataset", "config_id"], dropna=False, sort=False):
        done = g[g["status"] == "FINISHED"]
        row = {"dataset": ds, **{k: g[k].iloc[0] for k in runs.config}, "config_id": cid,
               "method": g["method"].iloc[0], "n_seeds": len(done),
               "n_failed": int(g["status"].isin(["FAILED", "KILLED"]).sum()),
               "n_running": int((g["status"] == "RUNNING").sum()),
               "n_gen": int(pd.to_numeric(done.get(GEN_FID), errors="coerce").notna().sum()) if GEN_FID in done else 0}
        for m in metrics:
            row[f"{column(m)}_mean"], row[f"{column(m)}_ci95"] = mean_ci(done[m])
        rows.append(row)
    table = pd.DataFrame(rows, columns=["dataset", *runs.config, "config_id", "method", "n_seeds", "n_failed",
                                        "n_running", "n_gen"] + [f"{column(m)}_{s}" for m in metrics
                                                                 for s in ("mean", "ci95")])
    order = table.assign(_b=table["method"] != BASELINE_METHOD).sort_values(["dataset", "_b", "method",
                                                                               *runs.config[2:]])
    return order.drop(columns="_b").reset_index(drop=True)


def _planned_configs(params: dict) -> float:
    """The parent's planned configurations (studies before the `configs` param: baseline + num_samples)."""
    if PLANNED_CONFIGS_PARAM in params:
        return _count(params[PLANNED_CONFIGS_PARAM])
    return _count(params.get("baseline_configs", "1")) + _count(params.get("num_samples"))


def _count(v) -> float:
    return float(int(v)) if v not in (None, "", "None") else math.nan


def _last_line(text: str) -> str:
    lines = [ln.strip() for ln in text.strip().splitlines() if ln.strip()]
    return lines[-1][:160] if lines else ""

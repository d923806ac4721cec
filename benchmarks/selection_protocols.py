"""Which selection protocol picks better configurations? Reads a finished study that was run with a
validation split (`--set val_fraction=0.2`), so every trial carries both objectives:

* holdout: `holdout/svm_acc`, the probe trained on the train part and scored on the held-out split
  (the protocol the study used before);
* cv: `val/svm_acc`, the repeated stratified k-fold probe on the train part's features (the default now).

Per dataset and protocol, over the study's configurations (means over seeds): the Spearman rank
correlation between the objective and the test SVM accuracy, the regret (best test accuracy of any
configuration minus that of the configuration the protocol selects) and the number of configurations
tied at the top.

    python tune/run_ablation.py --space aug_weight --set val_fraction=0.2 --name protocols ...
    python benchmarks/selection_protocols.py --study protocols [--results-dir DIR]
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path


import pandas as pd
from scipy.stats import spearmanr

from results.contract import DEFAULT_RESULTS_DIR, HOLDOUT_SVM, TEST_SVM, VAL_SVM, default_tracking_uri
from results.runs import load_study

PROTOCOLS = {"holdout": HOLDOUT_SVM, "cv": VAL_SVM}
TEST = TEST_SVM
TIE = 1e-9


def compare(trials: pd.DataFrame) -> pd.DataFrame:
    done = trials[trials["status"] == "FINISHED"].copy()
    keys = [*PROTOCOLS.values(), TEST]
    done[keys] = done[keys].apply(pd.to_numeric, errors="coerce")
    means = done.groupby(["dataset", "config_id"])[keys].mean().reset_index()
    rows = []
    for ds, g in means.groupby("dataset"):
        best_test = g[TEST].max()
        for name, key in PROTOCOLS.items():
            top = g[g[key] >= g[key].max() - TIE]
            rho = spearmanr(g[key], g[TEST]).statistic if g[key].nunique() > 1 else float("nan")
            rows.append({"dataset": ds, "protocol": name, "configs": len(g), "spearman": rho,
                         "regret": best_test - top[TEST].mean(), "tied_at_top": len(top)})
    return pd.DataFrame(rows)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--study", required=True)
    p.add_argument("--results-dir", default=str(DEFAULT_RESULTS_DIR))
    p.add_argument("--mlflow-uri")
    args = p.parse_args()
    runs = load_study(args.study, args.mlflow_uri or default_tracking_uri(Path(args.results_dir)))
    if HOLDOUT_SVM not in runs.trials:
        sys.exit("error: the study has no holdout/svm_acc; run it with --set val_fraction=0.2")
    table = compare(runs.trials)
    with pd.option_context("display.width", 160, "display.precision", 3):
        print(table.to_string(index=False))
        print("\nmean over datasets (regret: with ties at the top, the mean test accuracy of the tied configurations)")
        print(table.groupby("protocol")[["spearman", "regret", "tied_at_top"]].mean().to_string())


if __name__ == "__main__":
    main()

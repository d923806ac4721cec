"""Stage-1 quality of the reference study's 7 configurations, one CSV row per (dataset, config, seed).

    python benchmarks/stage1_quality.py --ucr-root ../shared/ucr --datasets SonyAIBORobotSurface1,ECG5000 \\
        --epochs 200 --seeds 2 --out benchmarks/out/quality.csv [--workers 2] [--set proj_dim=4096]

Runs are independent processes (one thread each, `--workers` at a time), trained with the study's loop
on the whole train split; the test split is touched only for the reported metrics. `--reference CSV`
(../shared/reference/reference_study_means.csv) prints the reference study's means beside ours, with
Welch's p for each difference; `--from-csv A.csv B.csv ...` prints that table for finished runs.

`batchstat/*` is a diagnosis, never a result: the same test probes on features encoded with BatchNorm
in training mode (statistics of each batch of 128, as the reference study's probes ran), the codebook
frozen; it tells whether that protocol, rather than the model, explains a gap to the reference.
"""
from __future__ import annotations

import argparse
import csv
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

from results.contract import PERPLEXITY, TEST_KNN, TEST_RECON, TEST_SVM, USAGE, VAL_SVM

REFERENCE = ["none", "barlowtwins+warp", "barlowtwins+slice", "barlowtwins+gauss",
             "vibcreg+warp", "vibcreg+slice", "vibcreg+gauss"]
COLUMNS = ["dataset", "config", "seed", "epochs", TEST_SVM, TEST_KNN, TEST_RECON, VAL_SVM, PERPLEXITY, USAGE, "train_s",
           "batchstat/svm_acc", "batchstat/knn_acc"]
REFERENCE_PROBE_BATCH = 128   # the reference study's loader batch, which set its BatchNorm statistics


def batchstat_features(tokenizer, x):
    """Average-pooled z_q with BatchNorm normalising each batch by its own statistics (running ones untouched)."""
    import torch

    from models.modes import eval_mode, frozen_bn_stats

    bns = [m for m in tokenizer.modules() if isinstance(m, torch.nn.modules.batchnorm._BatchNorm)]
    with torch.no_grad(), eval_mode(tokenizer), frozen_bn_stats(tokenizer):
        for m in bns:
            m.train()
        feats = [tokenizer(xb).z_q.mean(dim=(2, 3)) for xb in torch.split(x, REFERENCE_PROBE_BATCH)]
    return torch.cat(feats).numpy()


def run_one(dataset: str, config: str, seed: int, epochs: int, ucr_root: str | None, overrides: dict) -> dict:
    import tempfile

    import torch

    from datasets.ucr import load_dataset
    from evaluation.probes import linear_probes
    from tune.config import from_flat_dict
    from tune.engine.tokenizer_training import TOKENIZER_FILE, load_tokenizer, train_stage1

    torch.set_num_threads(1)
    ssl_method, _, aug_set = config.partition("+")
    cfg = from_flat_dict({"dataset": dataset, "ssl_method": ssl_method, "aug_set": aug_set or "none",
                          "seed": seed, "epochs": epochs, "eval_every": epochs, **overrides})
    data = load_dataset(dataset, ucr_root, val_fraction=cfg.val_fraction, seed=seed, nan_policy=cfg.nan_policy)
    with tempfile.TemporaryDirectory() as ckpt:
        t0 = time.perf_counter()
        final = train_stage1(cfg, data, checkpoint_dir=ckpt)
        train_s = time.perf_counter() - t0
        tokenizer, _ = load_tokenizer(Path(ckpt) / TOKENIZER_FILE)
    as_x = lambda a: torch.as_tensor(a, dtype=torch.float32).unsqueeze(1)
    batchstat = linear_probes(batchstat_features(tokenizer, as_x(data.x_train)), data.y_train,
                              batchstat_features(tokenizer, as_x(data.x_test)), data.y_test)
    row = {"dataset": dataset, "config": config, "seed": seed, "epochs": epochs, "train_s": train_s,
           "batchstat/svm_acc": batchstat["svm_acc"], "batchstat/knn_acc": batchstat["knn_acc"]}
    row.update({k: final[k] for k in COLUMNS if k in final})
    return row


def compare(frame, reference_csv: str | None):
    """One row per (dataset, config, epochs): our mean, std and n per probe; with the reference, its mean,
    our difference and Welch's two-sided p (ours over seeds against its 4 seeds' mean and std)."""
    import numpy as np
    import pandas as pd
    from scipy import stats

    ref = None
    if reference_csv:
        ref = pd.read_csv(reference_csv)
        ref = ref[ref["stage"] == "stage1"]
        ref = ref.assign(config=ref["ssl_method"].where(ref["ssl_method"] == "none",
                                                        ref["ssl_method"] + "+" + ref["augmentation"]))
        ref = ref.set_index(["dataset", "config", "metric"])
    rows = []
    for (dataset, config, epochs), g in frame.groupby(["dataset", "config", "epochs"], sort=False):
        row = {"dataset": dataset, "config": config, "epochs": epochs, "n": len(g)}
        for probe, ref_metric in (("svm", "svm_accuracy"), ("knn", "knn_accuracy")):
            x = g[{"svm": TEST_SVM, "knn": TEST_KNN}[probe]].to_numpy(float)
            row |= {f"{probe}": x.mean(), f"{probe} std": x.std(ddof=1) if len(x) > 1 else np.nan}
            if ref is not None and (dataset, config, ref_metric) in ref.index:
                r = ref.loc[(dataset, config, ref_metric)]
                p = stats.ttest_ind_from_stats(x.mean(), x.std(ddof=1), len(x), r["mean"], r["std"], r["n_runs"],
                                               equal_var=False).pvalue if len(x) > 1 else np.nan
                row |= {f"ref {probe}": r["mean"], f"{probe} diff": x.mean() - r["mean"], f"{probe} p": p}
        if "batchstat/svm_acc" in g and g["batchstat/svm_acc"].notna().any():
            row["batchstat svm"] = g["batchstat/svm_acc"].mean()
        rows.append(row)
    return pd.DataFrame(rows).set_index(["dataset", "config", "epochs"])


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--ucr-root")
    p.add_argument("--datasets", help="comma-separated UCR names")
    p.add_argument("--epochs", type=int, default=200)
    p.add_argument("--seeds", type=int, default=1, help="seeds 0 .. N-1")
    p.add_argument("--seed-list", help="comma-separated seeds instead of --seeds (to add seeds to a table)")
    p.add_argument("--configs", default=",".join(REFERENCE))
    p.add_argument("--workers", type=int, default=2)
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE")
    p.add_argument("--out", help="CSV file (rows are appended as runs finish)")
    p.add_argument("--from-csv", nargs="+", metavar="CSV", help="train nothing: compare the rows of these CSVs")
    p.add_argument("--reference", help="the reference study's per-configuration means (CSV) to print beside ours")
    args = p.parse_args()
    import pandas as pd

    if args.from_csv:
        missing = [f for f in args.from_csv if not Path(f).is_file()]
        if missing:
            p.error(f"no such CSV: {', '.join(missing)}; give files that an earlier --out wrote")
        frame = pd.concat([pd.read_csv(f) for f in args.from_csv], ignore_index=True)
    elif args.datasets and args.out:
        if Path(args.out).is_dir():
            p.error(f"--out {args.out} is a folder; give a CSV file path (new, or an earlier --out to add rows to)")
        frame = pd.DataFrame(train_all(args))
    else:
        p.error("give --datasets and --out to train, or --from-csv to compare finished runs")
    with pd.option_context("display.width", 250, "display.max_columns", 30):
        print("\nmean and std over seeds; p: Welch's t-test against the reference's 4 seeds\n"
              + compare(frame, args.reference).round(3).to_string())


def train_all(args) -> list[dict]:
    from tune.config import parse_overrides

    overrides = parse_overrides(args.overrides)
    seeds = [int(s) for s in args.seed_list.split(",")] if args.seed_list else list(range(args.seeds))
    jobs = [(d.strip(), c.strip(), s) for d in args.datasets.split(",") for c in args.configs.split(",")
            for s in seeds]
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    rows = []
    fresh = not out.exists() or out.stat().st_size == 0
    with out.open("a", newline="") as fh, ProcessPoolExecutor(args.workers) as pool:  # adds to an earlier --out
        writer = csv.DictWriter(fh, COLUMNS, lineterminator="\n")
        if fresh:
            writer.writeheader()
        futures = [pool.submit(run_one, d, c, s, args.epochs, args.ucr_root, overrides) for d, c, s in jobs]
        for f in futures:
            row = f.result()
            rows.append(row)
            writer.writerow(row)
            fh.flush()
            print(f"{row['dataset']:24s} {row['config']:20s} seed {row['seed']}  svm {row[TEST_SVM]:.3f}  "
                  f"knn {row[TEST_KNN]:.3f}  batchstat svm {row['batchstat/svm_acc']:.3f}  "
                  f"recon {row[TEST_RECON]:.4f}  {row['train_s']:.0f}s", flush=True)
    return rows


if __name__ == "__main__":
    main()

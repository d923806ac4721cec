"""Stage-1 quality of the reference study's 7 configurations, one CSV row per (dataset, config, seed).

    python benchmarks/stage1_quality.py --ucr-root ../shared/ucr --datasets SonyAIBORobotSurface1,ECG5000 \\
        --epochs 200 --seeds 2 --out benchmarks/out/quality.csv [--workers 2] [--set proj_dim=4096]

Runs are independent processes (one thread each, `--workers` at a time), trained with the study's loop
on the whole train split; the test split is touched only for the reported metrics. `--reference CSV`
(../shared/reference/reference_study_means.csv) prints the reference study's means beside ours.

`batchstat/*` is a diagnosis, never a result: the same test probes on features encoded with BatchNorm
in training mode (statistics of each batch of 128, as the reference study's probes ran), the codebook
frozen; it tells whether that protocol, rather than the model, explains a gap to the reference.
"""
from __future__ import annotations

import argparse
import csv
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

REFERENCE = ["none", "barlowtwins+warp", "barlowtwins+slice", "barlowtwins+gauss",
             "vibcreg+warp", "vibcreg+slice", "vibcreg+gauss"]
COLUMNS = ["dataset", "config", "seed", "epochs", "test/svm_acc", "test/knn_acc", "test/recon_loss",
           "val/svm_acc", "codebook/perplexity", "codebook/usage", "train_s", "batchstat/svm_acc", "batchstat/knn_acc"]
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


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--ucr-root")
    p.add_argument("--datasets", required=True, help="comma-separated UCR names")
    p.add_argument("--epochs", type=int, default=200)
    p.add_argument("--seeds", type=int, default=1, help="seeds 0 .. N-1")
    p.add_argument("--seed-list", help="comma-separated seeds instead of --seeds (to add seeds to a table)")
    p.add_argument("--configs", default=",".join(REFERENCE))
    p.add_argument("--workers", type=int, default=2)
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE")
    p.add_argument("--out", required=True, help="CSV file (rows are appended as runs finish)")
    p.add_argument("--reference", help="the reference study's per-configuration means (CSV) to print beside ours")
    args = p.parse_args()
    from tune.cli import parse_overrides

    overrides = parse_overrides(args.overrides)
    seeds = [int(s) for s in args.seed_list.split(",")] if args.seed_list else list(range(args.seeds))
    jobs = [(d.strip(), c.strip(), s) for d in args.datasets.split(",") for c in args.configs.split(",")
            for s in seeds]
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    with out.open("w", newline="") as fh, ProcessPoolExecutor(args.workers) as pool:
        writer = csv.DictWriter(fh, COLUMNS)
        writer.writeheader()
        futures = [pool.submit(run_one, d, c, s, args.epochs, args.ucr_root, overrides) for d, c, s in jobs]
        rows = []
        for f in futures:
            row = f.result()
            rows.append(row)
            writer.writerow(row)
            fh.flush()
            print(f"{row['dataset']:24s} {row['config']:20s} seed {row['seed']}  svm {row['test/svm_acc']:.3f}  "
                  f"knn {row['test/knn_acc']:.3f}  batchstat svm {row['batchstat/svm_acc']:.3f}  recon {row['test/recon_loss']:.4f}  {row['train_s']:.0f}s", flush=True)
    import pandas as pd

    frame = pd.DataFrame(rows)
    table = frame.groupby(["dataset", "config"])[["test/svm_acc", "test/knn_acc", "batchstat/svm_acc", "test/recon_loss", "train_s"]].agg(
        ["mean", "std"])
    table.columns = [f"{m} {s}" for m, s in table.columns]
    if args.reference:
        ref = pd.read_csv(args.reference)
        ref = ref[(ref["stage"] == "stage1") & ref["metric"].isin(["svm_accuracy", "knn_accuracy"])]
        ref["config"] = ref["ssl_method"].where(ref["ssl_method"] == "none", ref["ssl_method"] + "+" + ref["augmentation"])
        wide = ref.pivot_table(index=["dataset", "config"], columns="metric", values="mean")
        table = table.join(wide.rename(columns={"svm_accuracy": "reference svm", "knn_accuracy": "reference knn"}))
    print(f"\nmean and std over seeds {seeds}\n" + table.round(4).to_string())


if __name__ == "__main__":
    main()

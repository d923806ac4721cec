"""Stage-1 learning curve: selection and test probe accuracy, codebook perplexity and usage against optimizer steps.

    python benchmarks/learning_curve.py --datasets GunPoint --seeds 2 --steps 25,50,100,200,400 \\
        --own-schedule 25,50,200 --out benchmarks/out/curve_gunpoint [--ucr-root ../shared/ucr] [--workers 1]
    python benchmarks/learning_curve.py --datasets ECG5000 --ucr-root ../shared/ucr --seed-list 1 \\
        --methods vibcreg+warp --steps 25,50,100,200 --out benchmarks/out/ecg_vib1   # add runs to a study
    python benchmarks/learning_curve.py --from-csv benchmarks/out/*.csv --seed-list 0,1 \\
        --out benchmarks/out/curve_all          # table and figure of earlier CSVs (same seeds), no training
    python benchmarks/learning_curve.py --time-steps 8 --datasets GunPoint,ACSF1 \\
        --methods none,barlowtwins+warp       # seconds per optimizer step only (for sizing a budget)

What it measures: for every (dataset, method, seed) ONE long run of max(--steps) optimizer steps of the
study's own train_stage1 (AdamW with a cosine schedule over the whole run; batch 128, projector 4096, lr 1e-3
as TrainConfig; val_fraction 0, so the whole train split trains the tokenizer), evaluated through its
`after_steps` hook at every epoch end where the step count first reaches a
grid point (an epoch of a dataset of n series is ceil(n / 128) steps; a budget of s steps is
ceil(s / steps per epoch) epochs, as tune.spaces.Budget.epochs counts them).

Why one long run plus short runs with their own schedule (--own-schedule): the cosine schedule
depends on the run's total, so at step s of a long run the learning rate is still high while a real
budget of s steps has annealed it to zero by then. Separate runs per grid point would cost about
twice the longest run (25 + 50 + ... + 1600 ~ 2 x 1600); one long run costs one, shows the shape of the
curve to its end, and the few short budgets that matter for choosing `quick` are trained as the study
would train them (schedule "own": exactly train_stage1's steps for epochs = ceil(s / steps per epoch)),
which also measures how far the long run's curve differs from real short budgets. The long run's
last point is itself a budget of its own schedule.

Each evaluation (models.modes.eval_mode through evaluation.tokens.evaluate_split: the model's state is
not changed) records: cv_probe_accuracy on the train split's features with the engine's CV_SEED (the
selection objective), linear_probes train -> test (reported only), codebook perplexity, usage and
redundancy of the train split, eval-mode reconstruction MSE on train and test, the mean training loss
of the last epoch, cumulative training seconds (evaluation excluded) and evaluation seconds.

Runs go one after another in this process with one torch thread (`--workers N` > 1: N spawned processes,
one thread each). Outputs: OUT.csv (one row per evaluation, written as it is made; with workers, as
each run finishes), OUT.png (cv and test SVM accuracy and
perplexity against steps, log-x, one line per method, one row per dataset; own-schedule runs as
markers) and a printed table of means over seeds, with the methods' ranking at every step count.
"""
from __future__ import annotations

import argparse
import contextlib
import csv
import math
import sys
import time
from concurrent.futures import ProcessPoolExecutor, as_completed
from multiprocessing import get_context
from pathlib import Path


METHODS = ["none", "barlowtwins+warp", "vibcreg+warp"]
COLUMNS = ["dataset", "n_train", "length", "steps_per_epoch", "method", "seed", "schedule", "total_steps",
           "grid_step", "steps", "epochs", "cv_svm_acc", "cv_knn_acc", "test_svm_acc", "test_knn_acc",
           "perplexity", "usage", "redundancy", "train_recon", "test_recon", "train_loss", "train_s", "eval_s",
           "s_per_step", "error"]
SHOWN = [("cv_svm_acc", "cv svm", ".3f"), ("test_svm_acc", "test svm", ".3f"), ("test_knn_acc", "test knn", ".3f"),
         ("perplexity", "perplex", ".1f"), ("usage", "usage", ".2f"), ("train_recon", "recon", ".4f"),
         ("train_s", "train s", ".0f")]


def run_curve(dataset: str, method: str, seed: int, grid: list[int], total_steps: int, schedule: str,
              ucr_root: str | None, overrides: dict, emit=None) -> list[dict]:
    """Train one stage-1 run of `total_steps` optimizer steps (rounded up to whole epochs) and evaluate it at
    the first epoch end at or past each grid step; `emit(row)`, if given, gets every row as it is made.
    The run is tune.engine.tokenizer_training.train_stage1 itself; its `after_steps` hook evaluates."""
    emit = emit or (lambda row: None)
    import torch

    from datasets.ucr import load_dataset
    from evaluation.probes import cv_probe_accuracy, linear_probes
    from evaluation.tokens import codebook_redundancy, evaluate_split
    from results.contract import TRAIN_LOSS, TRAIN_S
    from tune.config import from_flat_dict
    from tune.engine.loop import TrainingDiverged, check_diverged
    from tune.engine.tokenizer_training import CV_SEED, train_stage1

    torch.set_num_threads(1)
    ssl_method, _, aug_set = method.partition("+")
    base = {"dataset": dataset, "ssl_method": ssl_method, "aug_set": aug_set or "warp", "seed": seed,
            "val_fraction": 0.0, "device": "cpu", **overrides}
    cfg = from_flat_dict(base)
    data = load_dataset(dataset, ucr_root, val_fraction=0.0, seed=seed, nan_policy=cfg.nan_policy)
    as_x = lambda a: torch.as_tensor(a, dtype=torch.float32).unsqueeze(1)
    x_train, x_test = as_x(data.x_train), as_x(data.x_test)
    spe = max(1, math.ceil(len(x_train) / cfg.batch_size))
    epochs = math.ceil(total_steps / spe)
    cfg = from_flat_dict({**base, "epochs": epochs, "eval_every": epochs})   # its own evaluation: the last epoch only
    eval_at = {}                                   # epoch -> the grid step it stands for (the smallest)
    for g in sorted(grid, reverse=True):
        if g <= total_steps:
            eval_at[math.ceil(g / spe)] = g
    eval_at.setdefault(epochs, total_steps)

    head = {"dataset": dataset, "n_train": len(x_train), "length": data.length, "steps_per_epoch": spe,
            "method": method, "seed": seed, "schedule": schedule, "total_steps": epochs * spe}
    rows, eval_s = [], 0.0
    advice = "lower lr"

    def evaluate_at(model, epoch: int, metrics: dict) -> None:
        nonlocal eval_s
        if epoch not in eval_at:
            return
        t0 = time.perf_counter()
        train = evaluate_split(model.tokenizer, x_train)
        test = evaluate_split(model.tokenizer, x_test)
        check_diverged(epoch, {"train features": train.features, "test features": test.features}, advice)
        cv = cv_probe_accuracy(train.features, data.y_train, seed=CV_SEED)
        probes = linear_probes(train.features, data.y_train, test.features, data.y_test)
        eval_s += time.perf_counter() - t0
        train_s = metrics[TRAIN_S]
        rows.append({**head, "grid_step": eval_at[epoch], "steps": epoch * spe, "epochs": epoch,
                     "cv_svm_acc": cv["svm_acc"], "cv_knn_acc": cv["knn_acc"],
                     "test_svm_acc": probes["svm_acc"], "test_knn_acc": probes["knn_acc"],
                     "perplexity": train.perplexity, "usage": train.usage,
                     "redundancy": codebook_redundancy(model.tokenizer.codebook),
                     "train_recon": train.recon_loss, "test_recon": test.recon_loss, "train_loss": metrics[TRAIN_LOSS],
                     "train_s": train_s, "eval_s": eval_s, "s_per_step": train_s / (epoch * spe), "error": ""})
        print(f"  {dataset} {method} seed {seed} {schedule} {epoch * spe}/{epochs * spe} steps: cv svm "
              f"{cv['svm_acc']:.3f} test svm {probes['svm_acc']:.3f} perplexity {train.perplexity:.1f} "
              f"{train_s:.0f}s", file=sys.stderr, flush=True)
        emit(rows[-1])

    try:
        train_stage1(cfg, data, after_steps=evaluate_at)
    except TrainingDiverged as err:
        rows.append({**head, "error": str(err)})
        emit(rows[-1])
    return rows


def time_steps(dataset: str, method: str, ucr_root: str | None, overrides: dict, steps: int) -> dict:
    """Seconds per optimizer step of the study's epoch loop (1 thread), after one warm-up epoch."""
    import torch

    from datasets.ucr import load_dataset
    from tune.config import from_flat_dict
    from tune.engine.tokenizer_training import build_model, make_optimizer, train_tokenizer_epoch

    torch.set_num_threads(1)
    ssl_method, _, aug_set = method.partition("+")
    cfg = from_flat_dict({"dataset": dataset, "ssl_method": ssl_method, "aug_set": aug_set or "warp",
                          "val_fraction": 0.0, "device": "cpu", **overrides})
    data = load_dataset(dataset, ucr_root, val_fraction=0.0, seed=0, nan_policy=cfg.nan_policy)
    x = torch.as_tensor(data.x_train, dtype=torch.float32).unsqueeze(1)
    spe = max(1, math.ceil(len(x) / cfg.batch_size))
    torch.manual_seed(0)
    model = build_model(cfg, data.length)
    opt, sched = make_optimizer(model, cfg, 10_000)
    gen = torch.Generator().manual_seed(0)
    train_tokenizer_epoch(model, opt, sched, x, cfg, gen, spe)
    done, t0 = 0, time.perf_counter()
    while done < steps:
        train_tokenizer_epoch(model, opt, sched, x, cfg, gen, spe)
        done += spe
    return {"dataset": dataset, "n_train": len(x), "length": data.length, "steps_per_epoch": spe, "method": method,
            "s_per_step": (time.perf_counter() - t0) / done, "timed_steps": done}


def _ints(text: str) -> list[int]:
    return sorted({int(v) for v in text.split(",") if v.strip()})


def read_rows(paths: list[str]) -> list[dict]:
    rows = []
    for path in paths:
        with open(path, newline="") as fh:
            rows.extend(csv.DictReader(fh))
    return rows


def summarise(rows: list[dict]):
    """Mean over seeds per (dataset, method, schedule, step count) -> pandas DataFrame."""
    import pandas as pd

    df = pd.DataFrame(rows)
    df = df[df["error"].fillna("") == ""].copy()
    numeric = [c for c in COLUMNS if c not in ("dataset", "method", "schedule", "error")]
    df[numeric] = df[numeric].apply(pd.to_numeric)
    keys = ["dataset", "schedule", "grid_step", "method"]
    mean = df.groupby(keys)[[c for c, _, _ in SHOWN] + ["steps", "epochs", "cv_knn_acc", "s_per_step"]].mean()
    mean["seeds"] = df.groupby(keys)["seed"].nunique()
    std = df.groupby(keys)[["cv_svm_acc", "test_svm_acc"]].std()
    mean["cv_svm_sd"], mean["test_svm_sd"] = std["cv_svm_acc"], std["test_svm_acc"]
    return df, mean.reset_index()


def _ranking(block, column: str) -> str:
    """"vibc > none = barl": methods by mean, best first; '=' joins means equal to 3 decimals."""
    order = block.sort_values(column, ascending=False)
    text, previous = "", None
    for method, value in zip(order["method"], order[column].round(3)):
        text += ("" if previous is None else " = " if value == previous else " > ") + method.split("+")[0][:4]
        previous = value
    return text


def print_table(rows: list[dict]) -> None:
    df, mean = summarise(rows)
    for (dataset, schedule), block in mean.groupby(["dataset", "schedule"], sort=False):
        first = df[df.dataset == dataset].iloc[0]
        n, spe = int(first["n_train"]), int(first["steps_per_epoch"])
        note = " (its last point is also a budget of its own schedule)" if schedule == "long" else ""
        print(f"\n{dataset} ({n} train series, {spe} step(s) per epoch), schedule {schedule}{note}: "
              "mean over seeds")
        header = " ".join(f"{label:>8s}" for _, label, _ in SHOWN)
        print(f"{'steps':>5s} {'ep':>4s} {'method':18s} {'n':>2s} {header}")
        for step, at in block.groupby("grid_step"):
            for _, r in at.iterrows():
                cells = " ".join(f"{r[c]:8{fmt}}" for c, _, fmt in SHOWN)
                print(f"{int(r.steps):5d} {int(r.epochs):4d} {r.method:18s} {int(r.seeds):2d} {cells}")
            print(f"{'':11s}ranking by cv svm: {_ranking(at, 'cv_svm_acc'):28s} "
                  f"by test svm: {_ranking(at, 'test_svm_acc')}")
    runs = df.sort_values("steps").groupby(["dataset", "method", "seed", "schedule", "total_steps"]).last()
    print("\ntraining seconds per optimizer step (1 thread; each run's whole training time / its steps; mean)")
    print(runs.groupby(["dataset", "method"])["s_per_step"].agg(["mean", "min", "max", "count"]).round(3).to_string())


def plot(rows: list[dict], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import matplotlib.ticker

    _, mean = summarise(rows)
    datasets = list(dict.fromkeys(mean["dataset"]))
    panels = [("cv_svm_acc", "cv SVM acc (train split, selection)"), ("test_svm_acc", "test SVM acc (reported)"),
              ("perplexity", "codebook perplexity (train)")]
    fig, axes = plt.subplots(len(datasets), len(panels), figsize=(4.2 * len(panels), 3.2 * len(datasets)),
                             squeeze=False)
    colours = {}
    for i, dataset in enumerate(datasets):
        for j, (column, title) in enumerate(panels):
            ax = axes[i][j]
            for (method, schedule), block in mean[mean.dataset == dataset].groupby(["method", "schedule"]):
                colour = colours.setdefault(method, f"C{len(colours)}")
                block = block.sort_values("steps")
                if schedule == "long":
                    ax.plot(block["steps"], block[column], "-o", color=colour, ms=3, label=method)
                else:
                    ax.plot(block["steps"], block[column], "x", color=colour, ms=8, mew=2,
                            label=f"{method} (own schedule)")
            ax.set_xscale("log")
            ax.set_xticks(sorted(set(mean[mean.dataset == dataset]["steps"].astype(int))))
            ax.xaxis.set_major_formatter(matplotlib.ticker.ScalarFormatter())
            ax.xaxis.set_minor_formatter(matplotlib.ticker.NullFormatter())
            ax.set_title(f"{dataset}: {title}", fontsize=9)
            ax.set_xlabel("optimizer steps")
            ax.grid(alpha=0.3)
    handles, labels = axes[0][0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="lower center", ncol=min(6, len(labels)), fontsize=8)
    fig.tight_layout(rect=(0, 0.06, 1, 1))
    fig.savefig(path, dpi=120)
    print(f"figure: {path}")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--datasets", help="comma-separated UCR names")
    p.add_argument("--ucr-root", help="e.g. ../shared/ucr (the bundled datasets need none)")
    p.add_argument("--methods", default=",".join(METHODS), help="none or ssl_method+aug_set, comma-separated")
    p.add_argument("--seeds", type=int, default=2, help="seeds 0..N-1")
    p.add_argument("--seed-list", help="these seeds instead, e.g. 2 or 0,1 (to add runs to an earlier CSV)")
    p.add_argument("--steps", default="25,50,100,200,400,800,1600",
                   help="evaluation grid of the long run; its largest value is the long run's total")
    p.add_argument("--own-schedule", default="", help="grid steps also trained as budgets of their own (cosine over s)")
    p.add_argument("--no-long", action="store_true", help="only the --own-schedule runs, not the long run")
    p.add_argument("--workers", type=int, default=1, help="processes at once (one torch thread each)")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="config overrides (dotted TrainConfig keys)")
    p.add_argument("--from-csv", nargs="+", help="print the table and draw the figure of earlier CSVs, train nothing")
    p.add_argument("--out", default="benchmarks/out/learning_curve", help="path prefix: OUT.csv and OUT.png")
    p.add_argument("--time-steps", type=int, metavar="N",
                   help="only time N optimizer steps per dataset and method (after a warm-up epoch): s/step table")
    args = p.parse_args()
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    if args.time_steps:
        from tune.config import parse_overrides

        if not args.datasets:
            p.error("--time-steps needs --datasets")
        overrides = parse_overrides(args.overrides)
        print(f"{'dataset':24s} {'n':>5s} {'len':>5s} {'st/ep':>5s} {'method':18s} {'s/step':>7s}")
        for dataset in (d.strip() for d in args.datasets.split(",")):
            for method in (m.strip() for m in args.methods.split(",")):
                r = time_steps(dataset, method, args.ucr_root, overrides, args.time_steps)
                print(f"{r['dataset']:24s} {r['n_train']:5d} {r['length']:5d} {r['steps_per_epoch']:5d} "
                      f"{r['method']:18s} {r['s_per_step']:7.3f}", flush=True)
        return
    if args.from_csv:
        rows = read_rows(args.from_csv)
        if args.seed_list:      # compare methods on the same seeds
            rows = [r for r in rows if int(r["seed"]) in _ints(args.seed_list)]
        print_table(rows)
        plot(rows, out.with_suffix(".png"))
        return
    if not args.datasets:
        p.error("--datasets is required unless --from-csv is given")
    from tune.config import parse_overrides

    overrides = parse_overrides(args.overrides)
    grid, own = _ints(args.steps), _ints(args.own_schedule)
    jobs = []
    for dataset in (d.strip() for d in args.datasets.split(",")):
        for method in (m.strip() for m in args.methods.split(",")):
            for seed in (_ints(args.seed_list) if args.seed_list else range(args.seeds)):
                if not args.no_long:
                    jobs.append((dataset, method, seed, grid, max(grid), "long"))
                jobs += [(dataset, method, seed, [s], s, "own") for s in own]
    jobs.sort(key=lambda j: -j[4])          # longest first: the pool ends together
    t_start = time.perf_counter()
    rows = []
    with out.with_suffix(".csv").open("w", newline="") as fh, contextlib.ExitStack() as stack:
        writer = csv.DictWriter(fh, COLUMNS)
        writer.writeheader()
        if args.workers > 1:
            pool = stack.enter_context(ProcessPoolExecutor(args.workers, mp_context=get_context("spawn")))
            results = (f.result() for f in as_completed([pool.submit(run_curve, *job, args.ucr_root, overrides)
                                                         for job in jobs]))
        else:       # one worker: the runs one after another in this process, each row written as it is made
            def emit(row):
                writer.writerow(row)
                fh.flush()
            results = (run_curve(*job, args.ucr_root, overrides, emit) for job in jobs)
        for run_rows in results:
            rows += run_rows
            if args.workers > 1:
                writer.writerows(run_rows)
                fh.flush()
            last = run_rows[-1]
            print(f"[{time.perf_counter() - t_start:6.0f}s] {last['dataset']:22s} {last['method']:18s} seed "
                  f"{last['seed']} {last['schedule']:4s} {last.get('steps', '?')} steps: cv svm "
                  f"{last.get('cv_svm_acc', math.nan):.3f} test svm {last.get('test_svm_acc', math.nan):.3f} "
                  f"perplexity {last.get('perplexity', math.nan):.1f} {last.get('train_s', math.nan):.0f}s "
                  f"{last['error']}", flush=True)
    print_table(rows)
    plot(rows, out.with_suffix(".png"))
    print(f"csv: {out.with_suffix('.csv')}  ({time.perf_counter() - t_start:.0f}s in all)")


if __name__ == "__main__":
    main()

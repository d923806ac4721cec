"""Run a study of self-supervised VQ-VAE tokenizers on Ray Tune + Optuna, tracked in MLflow.

Each dataset is its own seeded Optuna search (objectives are not comparable across datasets); all
datasets' searches share the cluster. Every study also trains the `none` baseline once per dataset
and seed. Selection uses a cross-validated probe on the train split only; test metrics are reported,
never optimised.

examples:
  python tune/run_ablation.py --space aug_weight                 # the ablation grid on GunPoint (bundled)
  python tune/run_ablation.py --list-spaces
  python tune/run_ablation.py --space ssl --grid --datasets FordA,ECG5000 --ucr-root ~/UCRArchive_2018 \\
      --budget paper --seeds 4 --address auto --gpus-per-trial 0.25 --mlflow-uri http://mlflow:5000
  python tune/run_ablation.py --space aug_weight --resume        # continue the latest aug_weight study
  python tune/run_ablation.py --space aug_weight --objectives probe,recon   # the probe / reconstruction trade-off
"""
from __future__ import annotations

import sys
from pathlib import Path

if __name__ == "__main__" and not __package__:   # `python tune/run_ablation.py`: import from the repo root
    sys.path[0] = str(Path(__file__).resolve().parents[1])

import argparse  # noqa: E402

from results.cli import run_cli  # noqa: E402


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python tune/run_ablation.py", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    what = p.add_argument_group("what to study")
    what.add_argument("--space", help="named search space (see --list-spaces): aug_weight, aug_set, ssl, full")
    what.add_argument("--list-spaces", action="store_true", help="print the spaces, their ranges and the budgets")
    what.add_argument("--search", default="auto", choices=["auto", "grid", "tpe"],
                      help="auto (default): per (SSL method, augmentation set) cell, the space's grid where it has no "
                           "more points than the cell's share of --num-samples, else seeded TPE; grid: always the "
                           "grid; tpe: always TPE")
    what.add_argument("--grid", action="store_true", help="the same as --search grid")
    what.add_argument("--methods", help="comma-separated SSL methods to compare (default: every method of the "
                                        "space); the baseline always runs")
    what.add_argument("--datasets", default="GunPoint",
                      help="comma-separated UCR names (default: GunPoint, bundled: the ablation grid on one dataset "
                           "is what the quick budget's 30 minutes hold, docs/quick-budget.md), 'all' (the 128 of the "
                           "archive), 'bundled' (the six shipped with aeon, offline) or 'small' (the four of them "
                           "with series of at most 400 points)")
    what.add_argument("--stage2", default="best", nargs="?", const="all", choices=["off", "all", "best", "front"],
                      help="stage 2 (MaskGIT prior + FID / IS / CAS). best (default): once the search is done, for "
                           "the selected configuration of every SSL method and the baseline per dataset (by "
                           "validation accuracy), on each of its seeds; all: after every trial (for clusters); front "
                           "(with --objectives): every Pareto-optimal configuration and the baseline; off: none")
    what.add_argument("--objectives", default="probe",
                      help="what each dataset's Optuna search optimises: probe (validation SVM accuracy, the "
                           "default) or probe,recon (also validation reconstruction loss: multi-objective, a "
                           "Pareto front per dataset in the report and a `pareto` tag on every trial run)")
    what.add_argument("--ucr-root", help="UCRArchive_2018 folder (default: $UCR_ARCHIVE_DIR, the download "
                                         "cache of `python -m datasets.download`, then the bundled datasets)")
    size = p.add_argument_group("how much")
    size.add_argument("--budget", default="quick", help="smoke | quick | standard | paper (default %(default)s)")
    size.add_argument("--num-samples", type=int, help="SSL configurations per dataset, split equally over the (SSL "
                                                      "method, augmentation set) cells (default: the budget's)")
    size.add_argument("--seeds", type=int, help="seeds per configuration (default: the budget's)")
    size.add_argument("--search-seed", type=int, default=0,
                      help="seed of the Optuna samplers (default %(default)s); trials use seeds 0..SEEDS-1")
    size.add_argument("--early-stopping", default="auto", choices=["auto", "on", "off"],
                      help="stop weak SSL configurations from a third of their run, all seeds together on their "
                           "mean, compared per dataset, method and augmentation set; auto: on for the standard and "
                           "paper budgets, off for smoke and quick")
    size.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                      help="fix a training config key for every trial, e.g. --set epochs=50 --set proj_dim=4096")
    where = p.add_argument_group("where")
    where.add_argument("--address", help="join an existing Ray cluster ('auto' or HOST:PORT); default: start a local one")
    where.add_argument("--cpus-per-trial", type=float, default=1.0)
    where.add_argument("--gpus-per-trial", type=float, default=0.0,
                       help="GPUs per trial; fractions pack several trials on one GPU (runs through Ray Train)")
    where.add_argument("--max-concurrent", type=int, help="trials at once (default: as many as the resources allow)")
    where.add_argument("--executor", default="auto", choices=["auto", "function", "train"],
                       help="auto: Ray Train for GPU trials, a Tune function trainable for CPU trials; "
                            "train: always Ray Train (about 30 s start-up per trial on 2 cores)")
    out = p.add_argument_group("outputs")
    out.add_argument("--results-dir", help="study outputs and the default MLflow store (default: results/ of the repo)")
    out.add_argument("--mlflow-uri", help="MLflow tracking URI (default: sqlite under --results-dir)")
    out.add_argument("--name", help="study name (default: SPACE-BUDGET-TIMESTAMP); one MLflow experiment per study")
    out.add_argument("--resume", action="store_true",
                     help="continue a stopped or killed study (--name, or the latest one of --space and --budget)")
    out.add_argument("--simulate", nargs="?", type=float, const=0.01, metavar="SCALE",
                     help="no training: each trial waits SCALE (default 0.01) of its estimated time and reports "
                          "synthetic metrics; everything else (Ray, the searches, MLflow, resume, the report) runs for "
                          "real, and --datasets all plans without the data: a rehearsal of a cluster study")
    out.add_argument("--dry-run", action="store_true", help="print the plan and the estimated time, run nothing")
    out.add_argument("--no-report", action="store_true", help="skip the results report at the end")
    out.add_argument("--ray-progress", action="store_true",
                     help="Ray Tune's own progress tables and the trial processes' output instead of one line "
                          "per finished trial")
    args = p.parse_args(argv)
    # which flags the command line gave (argparse sets a default only where the namespace has no value):
    # --resume refuses those that contradict the study's recorded settings
    unset = object()
    probe = argparse.Namespace(**{k: None if isinstance(v, list) else unset for k, v in vars(args).items()})
    p.parse_args(argv, namespace=probe)
    args.explicit = {k for k, v in vars(probe).items() if v is not unset and v is not None}
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.address:
        from tune.study.auth import use_cluster_token

        use_cluster_token()          # before ray is imported: Ray reads RAY_AUTH_MODE once
    from tune.spaces import describe_spaces

    if args.list_spaces:
        print(describe_spaces())
        return 0
    from tune.study.plan import make_plan
    from tune.study.run import run_study

    plan = make_plan(args)
    print(plan.describe())
    if args.dry_run:
        return 0
    return run_study(plan, ray_progress=args.ray_progress)


if __name__ == "__main__":
    run_cli(main)

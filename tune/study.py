"""A study from plan to results: validate everything first, then Ray, MLflow, Tune, summary.

`make_plan` has no side effects: every bad input is found there, before Ray starts or anything is
written to MLflow or the results directory.
"""
from __future__ import annotations

import argparse
import json
import os
import socket
import tempfile
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ray.tune import Callback

from datasets.ucr import BUNDLED, load_dataset, resolve_names
from models.tokenizer import min_length
from tune.cli import UsageError, parse_overrides
from tune.config import from_flat_dict
from tune.spaces import BUDGETS, SPACES, Budget, SearchSpace
from tune.tracking import artifact_root, default_tracking_uri

METRIC, MODE = "val/svm_acc", "max"
DEFAULT_RESULTS = Path(__file__).resolve().parents[1] / "results"
# Seconds per (training series x series length) per epoch on one core, measured with
# benchmarks/stage1_speed.py; used only for --dry-run's estimate.
SECONDS_PER_POINT = {"none": 4e-7, "ssl": 1.2e-6}
TRIAL_OVERHEAD_S = 4.0


@dataclass(frozen=True)
class StudyPlan:
    name: str
    space: SearchSpace
    budget: Budget
    grid: bool
    datasets: list[str]
    shapes: dict[str, tuple[int, int]]        # dataset -> (training series, length)
    num_samples: int
    seeds: int
    seed: int
    train: dict[str, Any]                     # training config fixed for every trial
    results_dir: Path
    tracking_uri: str
    address: str | None
    cpus_per_trial: float
    gpus_per_trial: float
    executor: str                             # function | train
    max_concurrent: int | None
    resume: bool
    ucr_root: str | None
    stage2: str = "off"                       # off | all | best
    report: bool = True
    settings: dict = field(default_factory=dict)   # the CLI settings, saved so --resume reuses them
    notes: list[str] = field(default_factory=list)

    @property
    def storage(self) -> Path:
        return self.results_dir / "ray_results"

    @property
    def trials_per_dataset(self) -> int:
        return self.seeds * (1 + self.num_samples)

    def estimate_s(self, concurrent: int) -> float:
        epochs = self.train["epochs"]
        total = 0.0
        for ds, (n, length) in self.shapes.items():
            base = epochs * n * length * SECONDS_PER_POINT["none"] + TRIAL_OVERHEAD_S
            ssl = epochs * n * length * SECONDS_PER_POINT["ssl"] + TRIAL_OVERHEAD_S
            total += self.seeds * (base + self.num_samples * ssl)
        return total / max(1, concurrent)

    def describe(self) -> str:
        concurrent = self.max_concurrent or max(1, int((os.cpu_count() or 1) // self.cpus_per_trial))
        lines = [f"study {self.name}: space {self.space.name}{' (grid)' if self.grid else ''}, budget {self.budget.name} "
                 f"({self.train['epochs']} epochs, eval every {self.train['eval_every']})",
                 f"  datasets ({len(self.datasets)}): " + ", ".join(
                     f"{d} [{n}x{l}]" for d, (n, l) in self.shapes.items()),
                 f"  trials: {len(self.datasets)} x ({self.num_samples} configs + baseline) x {self.seeds} seed(s) "
                 f"= {len(self.datasets) * self.trials_per_dataset}",
                 f"  resources: {self.cpus_per_trial:g} CPU + {self.gpus_per_trial:g} GPU per trial via "
                 f"{'Ray Train' if self.executor == 'train' else 'a Tune function trainable'}; "
                 f"cluster {self.address or 'local (started here)'}",
                 f"  outputs: {self.results_dir}  MLflow: {self.tracking_uri}",
                 f"  estimated time at {concurrent} concurrent trials on this machine: "
                 f"~{self.estimate_s(concurrent) / 60:.0f} min"]
        return "\n".join(lines + [f"  note: {n}" for n in self.notes])


def make_plan(args) -> StudyPlan:
    """Check every input and resolve the defaults; raises UsageError / DataError with one line."""
    if not args.space:
        raise UsageError("--space is required: one of " + ", ".join(SPACES) + " (see --list-spaces)")
    if args.space not in SPACES:
        raise UsageError(f"unknown space {args.space!r}; choose one of {', '.join(SPACES)} (see --list-spaces)")
    if args.budget not in BUDGETS:
        raise UsageError(f"unknown budget {args.budget!r}; choose one of {', '.join(BUDGETS)}")
    results_dir = Path(args.results_dir).expanduser().resolve() if args.results_dir else DEFAULT_RESULTS
    name = _study_name(args, results_dir / "ray_results")
    if args.resume:        # a resumed study keeps what it was started with; only where it runs may change
        args = _restore_settings(args, results_dir / "ray_results" / f"{name}{SETTINGS_SUFFIX}")
    space, budget = SPACES[args.space], BUDGETS[args.budget]
    for flag, value in (("--num-samples", args.num_samples), ("--seeds", args.seeds), ("--max-concurrent", args.max_concurrent)):
        if value is not None and value < 1:
            raise UsageError(f"{flag} must be at least 1, got {value}")
    if args.cpus_per_trial <= 0 or args.gpus_per_trial < 0:
        raise UsageError("--cpus-per-trial must be > 0 and --gpus-per-trial >= 0")
    executor = "train" if args.gpus_per_trial > 0 or args.executor == "train" else "function"
    if args.executor == "function" and args.gpus_per_trial > 0:
        raise UsageError("GPU trials run through Ray Train: drop --executor function or --gpus-per-trial")

    stage2 = {f"stage2.{k}": v for k, v in budget.stage2.items()} if args.stage2 != "off" else {}
    train = {"epochs": budget.epochs, "eval_every": budget.eval_every, **budget.train, **stage2,
             **parse_overrides(args.overrides)}
    base_cfg = from_flat_dict(train)            # unknown keys and bad values fail here
    train = {k: getattr(base_cfg, k) if "." not in k else v for k, v in train.items()}
    names = list(BUNDLED) if args.datasets == "bundled" else resolve_names(
        [n.strip() for n in args.datasets.split(",") if n.strip()])
    shapes = {}
    for dataset in names:
        data = load_dataset(dataset, args.ucr_root, val_fraction=base_cfg.val_fraction, seed=0,
                            nan_policy=base_cfg.nan_policy)
        if data.length < min_length(base_cfg.tokenizer):
            raise UsageError(f"{dataset} has series of length {data.length}, shorter than the tokenizer's minimum "
                             f"{min_length(base_cfg.tokenizer)}; drop it from --datasets")
        shapes[dataset] = (len(data.x_train), data.length)
    # Largest datasets first: their long trials start early and the short ones fill the last slots.
    names = sorted(names, key=lambda n: -shapes[n][0] * shapes[n][1])
    shapes = {n: shapes[n] for n in names}

    _check_writable(results_dir)
    return StudyPlan(
        name=name, space=space, budget=budget, grid=args.grid, datasets=names, shapes=shapes,
        num_samples=len(space.grid_points()) if args.grid else (args.num_samples or budget.num_samples),
        seeds=args.seeds or budget.seeds, seed=args.seed, train=train, results_dir=results_dir,
        tracking_uri=args.mlflow_uri or default_tracking_uri(results_dir), address=args.address,
        cpus_per_trial=args.cpus_per_trial, gpus_per_trial=args.gpus_per_trial, executor=executor,
        max_concurrent=args.max_concurrent, resume=args.resume, stage2=args.stage2,
        ucr_root=str(Path(args.ucr_root).expanduser().resolve()) if args.ucr_root else None,
        report=not args.no_report, settings={k: getattr(args, k) for k in SAVED_SETTINGS})


SETTINGS_SUFFIX = ".settings.json"
SAVED_SETTINGS = ("space", "budget", "grid", "datasets", "ucr_root", "num_samples", "seeds", "seed", "overrides",
                  "stage2", "cpus_per_trial", "gpus_per_trial", "executor")


def _restore_settings(args, path: Path):
    if not path.exists():
        raise UsageError(f"study settings {path} are missing, so the study cannot be resumed; start a new one")
    saved = json.loads(path.read_text())
    return argparse.Namespace(**{**vars(args), **{k: saved[k] for k in SAVED_SETTINGS if k in saved}})


def _check_writable(path: Path) -> None:
    try:
        path.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=path):
            pass
    except OSError as err:
        raise UsageError(f"cannot write the results directory {path} ({err.strerror or err}); "
                         f"pass a writable --results-dir") from None


def _study_name(args, storage: Path) -> str:
    if not args.resume:
        name = args.name or f"{args.space}-{args.budget}-{time.strftime('%Y%m%d-%H%M%S')}"
        if (storage / name).exists():
            raise UsageError(f"study {name} already exists under {storage}; add --resume to continue it "
                             f"or pass another --name")
        return name
    if args.name:
        if not (storage / args.name).is_dir():
            raise UsageError(f"no study named {args.name} under {storage} to resume; start it without --resume")
        return args.name
    prefix = f"{args.space}-{args.budget}-"
    found = sorted((p for p in storage.glob(prefix + "*") if p.is_dir()), key=lambda p: p.stat().st_mtime)
    if not found:
        raise UsageError(f"no {args.space} study with budget {args.budget} under {storage} to resume; "
                         f"start one without --resume")
    return found[-1].name


def run_study(plan: StudyPlan) -> int:
    """Start (or join) Ray, set up MLflow, run the Tune searches, then summarise and report."""
    import optuna
    import ray
    from ray import tune

    from tune.search import StudySearch
    from tune.summary import summarize
    from tune.trial import TrialContext, stage1_trainable, train_driver
    from tune.tracking import StudyTracker

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    warnings.filterwarnings("ignore", message="The number of trials is too small to compute importances")
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    os.environ.setdefault("TUNE_WARN_EXCESSIVE_EXPERIMENT_CHECKPOINT_SYNC_THRESHOLD_S", "0")
    start = time.time()
    ctx = _start_ray(plan)
    try:
        if plan.gpus_per_trial > 0 and ray.cluster_resources().get("GPU", 0) < plan.gpus_per_trial:
            raise UsageError(f"--gpus-per-trial {plan.gpus_per_trial:g} but the Ray cluster has "
                             f"{ray.cluster_resources().get('GPU', 0):g} GPUs; drop the flag or join a GPU cluster")
        _print_dashboard(ctx)
        if not plan.resume:
            plan.storage.mkdir(parents=True, exist_ok=True)
            (plan.storage / f"{plan.name}{SETTINGS_SUFFIX}").write_text(json.dumps(plan.settings, indent=2))
        tracker = StudyTracker(plan.tracking_uri, plan.name, artifact_root(plan.tracking_uri, plan.results_dir, plan.name))
        parents = {ds: tracker.parent_run(ds, {"study": plan.name, "space": plan.space.name, "budget": plan.budget.name,
                                               "grid": plan.grid, "seeds": plan.seeds, "num_samples": plan.num_samples,
                                               **plan.train})
                   for ds in plan.datasets}
        context = TrialContext(tracking_uri=plan.tracking_uri, experiment_id=tracker.experiment_id,
                               parent_runs=parents, ucr_root=plan.ucr_root, cpus=plan.cpus_per_trial,
                               gpus=plan.gpus_per_trial, train_storage=str(plan.storage / f"{plan.name}-train"),
                               stage2=plan.stage2 == "all", fcn_cache=str(plan.results_dir / "fcn"))
        if plan.executor == "train":   # the trial only drives: its Train worker holds the CPUs / GPUs
            trainable = tune.with_resources(tune.with_parameters(train_driver, context=context),
                                            {"cpu": 0, "memory": 256 * 1024 ** 2})
        else:
            trainable = tune.with_resources(tune.with_parameters(stage1_trainable, context=context),
                                            {"cpu": plan.cpus_per_trial})
        path = plan.storage / plan.name
        if plan.resume:
            if not tune.Tuner.can_restore(str(path)):
                raise UsageError(f"study {plan.name} has no Tune state to resume at {path}; start it again without --resume")
            tuner = tune.Tuner.restore(str(path), trainable=trainable, resume_errored=True)
        else:
            searcher = StudySearch(plan.datasets, plan.space, num_samples=plan.num_samples, seeds=plan.seeds,
                                   metric=METRIC, mode=MODE, seed=plan.seed, grid=plan.grid, base=plan.train)
            tuner = tune.Tuner(
                trainable,
                tune_config=tune.TuneConfig(
                    metric=METRIC, mode=MODE, search_alg=searcher, num_samples=searcher.total_trials,
                    max_concurrent_trials=plan.max_concurrent or _slots(plan, ray.cluster_resources()),
                    reuse_actors=plan.executor == "function", trial_dirname_creator=_trial_dirname),
                run_config=tune.RunConfig(
                    name=plan.name, storage_path=str(plan.storage), verbose=1,
                    failure_config=tune.FailureConfig(max_failures=2),
                    checkpoint_config=tune.CheckpointConfig(num_to_keep=1),
                    callbacks=[TrialStatus(plan.tracking_uri, plan.name)]))
        results = tuner.fit()
        if plan.stage2 == "best":
            stage2_for_best(results, plan, context)
        summarize(results, plan, tracker, parents, wall_s=time.time() - start)
    finally:
        ray.shutdown()
    if plan.report:
        _write_report(plan)
    print(f"\nMLflow UI:  mlflow ui --backend-store-uri {plan.tracking_uri} --host 127.0.0.1 --port 5000"
          if plan.tracking_uri.startswith("sqlite") else f"\nMLflow: {plan.tracking_uri}")
    return 0


def check_address(address: str) -> str:
    """Fail fast on an unreachable cluster: ray.init retries an unreachable GCS for minutes.

    'auto' is resolved like Ray does, through the address file of a `ray start` on this host.
    """
    if address == "auto":
        current = Path(tempfile.gettempdir()) / "ray" / "ray_current_cluster"
        if not current.exists():
            raise UsageError("--address auto found no running Ray cluster on this host; start one with "
                             "`ray start --head` or drop --address to start a local one")
        address = current.read_text().split()[0]
    host, _, port = address.removeprefix("ray://").rpartition(":")
    try:
        socket.create_connection((host or "127.0.0.1", int(port)), timeout=5).close()
    except (OSError, ValueError):
        raise UsageError(f"cannot reach the Ray cluster at {address}; start one with `ray start --head` "
                         f"or drop --address to start a local one") from None
    return address


def stage2_for_best(results, plan: StudyPlan, context) -> None:
    """Stage 2 for each dataset's best tokenizer per method (validation accuracy), as Ray tasks."""
    import ray

    from tune.summary import trial_table

    table = trial_table(results)
    table = table[~table["failed"]].dropna(subset=[METRIC])
    picks = []
    for (ds, method, aug), rows in table.groupby(["dataset", "ssl_method", "aug_set"]):
        means = rows.groupby("_group")[METRIC].mean()
        best = rows[rows["_group"] == means.idxmax()].sort_values("seed").iloc[0]
        picks.append(best)
    task = ray.remote(num_cpus=plan.cpus_per_trial, num_gpus=plan.gpus_per_trial)(_stage2_task)
    refs = [task.remote(row["config"], row["trial_id"], context) for row in picks]
    print(f"stage 2 for {len(refs)} best tokenizers (dataset x method)", flush=True)
    for ref, row in zip(refs, picks):
        try:
            metrics = ray.get(ref)
            print(f"  {row['dataset']} {row['ssl_method']} {row['aug_set']}: FID {metrics['gen/fid']:.3g} "
                  f"IS {metrics['gen/is']:.3g} CAS {metrics['gen/cas']:.3f}", flush=True)
        except Exception as err:  # one failed stage 2 must not lose the others
            print(f"  {row['dataset']} {row['ssl_method']} {row['aug_set']}: stage 2 failed: "
                  f"{str(err).strip().splitlines()[-1]}", flush=True)


def _stage2_task(config: dict, trial_id: str, context) -> dict:
    """Fetch a finished trial's tokenizer from MLflow and run its stage 2 into the same run."""
    from datasets.ucr import load_dataset
    from tune.config import from_flat_dict, to_flat_dict
    from tune.stage1 import TOKENIZER_FILE
    from tune.trial import run_name, run_stage2
    from tune.tracking import TrialRun

    cfg = from_flat_dict(config)
    tracker = TrialRun(context.tracking_uri, context.experiment_id, context.parent_runs[cfg.dataset], trial_id,
                       f"{config.get('_group', trial_id)}-s{cfg.seed}", run_name(cfg), to_flat_dict(cfg))
    data = load_dataset(cfg.dataset, context.ucr_root, val_fraction=cfg.val_fraction, seed=cfg.seed,
                        nan_policy=cfg.nan_policy)
    with tempfile.TemporaryDirectory() as d:
        local = tracker.client.download_artifacts(tracker.run_id, f"checkpoint/{TOKENIZER_FILE}", d)
        return run_stage2(tracker, cfg, data, Path(local).parent, context.fcn_cache)


def _start_ray(plan: StudyPlan):
    import ray

    try:
        if plan.address:
            return ray.init(address=check_address(plan.address), logging_level="WARNING")
        return ray.init(address="local", num_cpus=os.cpu_count(), include_dashboard=True,
                        dashboard_host="127.0.0.1", logging_level="WARNING")
    except (ConnectionError, RuntimeError, TimeoutError, ValueError) as err:
        first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise UsageError(f"cannot reach the Ray cluster at {plan.address or 'local'} ({first}); "
                         f"start one with `ray start --head` or drop --address") from None


def _print_dashboard(ctx) -> None:
    url = getattr(ctx, "dashboard_url", None)
    if url:
        token = Path.home() / ".ray" / "auth_token"
        extra = f" (token authentication: paste the token from {token})" if token.exists() else ""
        print(f"Ray dashboard: http://{url}{extra}", flush=True)


def _slots(plan: StudyPlan, resources: dict) -> int:
    """Concurrent trials the cluster holds: its CPUs (or GPUs) divided by one trial's share."""
    slots = int(resources.get("CPU", 1) // plan.cpus_per_trial)
    if plan.gpus_per_trial > 0:
        slots = min(slots, int(resources.get("GPU", 0) // plan.gpus_per_trial))
    return max(1, slots)


def _trial_dirname(trial) -> str:
    return trial.trial_id


def _write_report(plan: StudyPlan) -> None:
    try:
        from results.report import write_report
    except ImportError:
        return
    write_report(plan.name, tracking_uri=plan.tracking_uri, results_dir=plan.results_dir)


class TrialStatus(Callback):
    """Close MLflow runs whose trial process could not: crashed after its retries, or stopped by Tune."""

    def __init__(self, tracking_uri: str, study: str):
        self.tracking_uri, self.study = tracking_uri, study
        self._tracker = None

    def _get(self):
        from tune.tracking import StudyTracker

        if self._tracker is None:
            self._tracker = StudyTracker(self.tracking_uri, self.study, None)
        return self._tracker

    def __getstate__(self):
        return {"tracking_uri": self.tracking_uri, "study": self.study, "_tracker": None}

    def on_trial_error(self, iteration, trials, trial, **info):
        error = None
        if trial.error_file and Path(trial.error_file).exists():
            error = Path(trial.error_file).read_text()
        self._get().close_trial(trial.trial_id, "FAILED", error=error or "trial failed after its retries")

    def on_trial_complete(self, iteration, trials, trial, **info):
        self._get().close_trial(trial.trial_id, "KILLED")

"""A study's plan: every input checked and every default resolved before anything starts.

Every bad input is found in `make_plan`, before Ray starts or anything is written to MLflow. It is not free
of side effects: it creates the results folder (and a temp file in it, to prove it writable), asks a tracking
server's /health and opens a socket to the --address cluster; the study's own folder is claimed later, by
claim_study_folder.
"""
from __future__ import annotations

import argparse
import json
import os
import secrets
import shutil
import socket
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from datasets.ucr import BUNDLED, BUNDLED_SMALL, load_dataset, resolve_names
from results.contract import DEFAULT_RESULTS_DIR, OBJECTIVES, STUDY_NAME, default_tracking_uri
from results.errors import UsageError
from results.pareto import objective_names, objective_specs
from results.store import check_tracking_store
from tune.config import check_trainable, from_flat_dict, parse_overrides
from tune.spaces import BUDGETS, SEARCH_MODES, SPACES, Budget, Cell, SearchSpace, search_cells
from tune.study.estimate import describe_estimate
from tune.study.preflight import check_node_resources
from tune.study.simulate import archive_shapes


@dataclass(frozen=True)
class StudyPlan:
    name: str
    space: SearchSpace
    budget: Budget
    search: str                               # tune.spaces.SEARCH_MODES: auto (grid where it fits) | grid | tpe
    datasets: list[str]
    shapes: dict[str, tuple[int, int]]        # dataset -> (training series, length)
    num_samples: int
    seeds: int
    search_seed: int                          # seeds the Optuna samplers (trials get seeds 0..seeds-1)
    train: dict[str, Any]                     # training config fixed for every trial
    per_dataset: dict[str, dict[str, Any]]    # dataset -> epochs and eval_every that give the budget's steps
    results_dir: Path
    tracking_uri: str
    address: str | None
    cpus_per_trial: float
    gpus_per_trial: float
    executor: str                             # function | train
    max_concurrent: int | None
    resume: bool
    ucr_root: str | None
    stage2: str = "off"                       # off | all | best | front
    methods: tuple[str, ...] | None = None    # --methods: the SSL methods compared (None: the space's all)
    objectives: tuple[str, ...] = ("probe",)  # contract.OBJECTIVES names, probe first; several: a Pareto search
    early_stopping: bool = False              # successive halving of configurations (tune.study.scheduler)
    report: bool = True
    simulate: float = 0.0                     # --simulate: no training, trials wait this share of their estimate
    settings: dict = field(default_factory=dict)   # the CLI settings, saved so --resume reuses them
    notes: list[str] = field(default_factory=list)

    @property
    def objective_specs(self) -> list[tuple[str, str]]:
        """(metric, mode) per objective; the first is the one Tune, the scheduler and "best" use."""
        return objective_specs(self.objectives)

    @property
    def storage(self) -> Path:
        return self.results_dir / "ray_results"

    @property
    def cells(self) -> list[Cell]:
        """What each dataset's search runs: the baseline and every (SSL method, augmentation set) cell."""
        return search_cells(self.space, self.num_samples, self.search, self.methods)

    @property
    def configs_per_dataset(self) -> int:
        return sum(cell.quota for cell in self.cells)

    @property
    def trials_per_dataset(self) -> int:
        return self.seeds * self.configs_per_dataset

    @property
    def total_trials(self) -> int:
        """Every trial of the plan, known before the first starts: "expected" in the summary and the report."""
        return len(self.datasets) * self.trials_per_dataset

    def dataset_config(self, dataset: str) -> dict[str, Any]:
        return {**self.train, **self.per_dataset[dataset]}

    def estimate_s(self, concurrent: int) -> float:
        """Wall seconds of the whole study at `concurrent` trials at once (tune.study.estimate)."""
        from tune.study.estimate import estimate_phases

        return sum(estimate_phases(self, concurrent).values())

    def describe(self) -> str:
        concurrent = self.max_concurrent or max(1, int((os.cpu_count() or 1) // self.cpus_per_trial))
        b = self.budget
        cells = self.cells
        layout = "; ".join(f"{c.name}: {c.quota} ({'grid' if c.grid else 'TPE'})" for c in cells)
        lines = [f"study {self.name}: space {self.space.name}, budget {b.name} "
                 f"({b.steps} optimizer steps, at least {b.min_epochs} epochs, {b.evaluations} evaluations per trial)",
                 f"  datasets ({len(self.datasets)}) [train series x length, epochs]: " + ", ".join(
                     f"{d} [{n}x{l}, {self.per_dataset[d]['epochs']}]" for d, (n, l) in self.shapes.items()),
                 f"  configurations per dataset: {self.configs_per_dataset} [{layout}]",
                 f"  trials: {len(self.datasets)} dataset(s) x {self.configs_per_dataset} configurations x "
                 f"{self.seeds} seed(s) = {self.total_trials}",
                 f"  early stopping: {'successive halving of configurations on their seed means, per dataset, method and augmentation set, from a third of each run' if self.early_stopping else 'off'}",
                 "  objectives: " + ", ".join(f"{m} ({mode})" for m, mode in self.objective_specs)
                 + (" (multi-objective: a Pareto front per dataset)" if len(self.objectives) > 1 else ""),
                 f"  resources: {self.cpus_per_trial:g} CPU + {self.gpus_per_trial:g} GPU per trial via "
                 f"{'Ray Train' if self.executor == 'train' else 'a Tune function trainable'}; "
                 f"cluster {self.address or 'local (started here)'}",
                 f"  outputs: {self.results_dir}  MLflow: {self.tracking_uri}",
                 f"  estimated time at {concurrent} concurrent trials on a quiet 2-core CPU: "
                 f"{describe_estimate(self, concurrent)}"]
        if self.simulate:
            lines.insert(1, f"  SIMULATED (--simulate {self.simulate:g}): no training; each trial waits {self.simulate:g} "
                            f"of the estimate below and reports synthetic metrics (tune/study/simulate.py)")
        return "\n".join(lines + [f"  note: {n}" for n in self.notes])


def make_plan(args) -> StudyPlan:
    """Check every input and resolve the defaults; raises UsageError / DataError with one line."""
    if not args.space and not (args.resume and args.name):     # --resume --name: the study's recorded space
        raise UsageError("--space is required: one of " + ", ".join(SPACES) + " (see --list-spaces)")
    results_dir = Path(args.results_dir).expanduser().resolve() if args.results_dir else DEFAULT_RESULTS_DIR
    name = _study_name(args, results_dir / "ray_results")
    if args.resume:        # a resumed study keeps what it was started with; only where it runs may change
        args = restore_settings(args, results_dir / "ray_results" / name / SETTINGS_FILE)
    if args.space not in SPACES:
        raise UsageError(f"unknown space {args.space!r}; choose one of {', '.join(SPACES)} (see --list-spaces)")
    if args.budget not in BUDGETS:
        raise UsageError(f"unknown budget {args.budget!r}; choose one of {', '.join(BUDGETS)}")
    space, budget = SPACES[args.space], BUDGETS[args.budget]
    for flag, value in (("--num-samples", args.num_samples), ("--seeds", args.seeds), ("--max-concurrent", args.max_concurrent)):
        if value is not None and value < 1:
            raise UsageError(f"{flag} must be at least 1, got {value}")
    if args.cpus_per_trial <= 0 or args.gpus_per_trial < 0:
        raise UsageError("--cpus-per-trial must be > 0 and --gpus-per-trial >= 0")
    search = "grid" if args.grid else getattr(args, "search", "auto")
    if search not in SEARCH_MODES:
        raise UsageError(f"unknown --search {search!r}; choose one of {', '.join(SEARCH_MODES)}")
    executor = "train" if args.gpus_per_trial > 0 or args.executor == "train" else "function"
    if getattr(args, "simulate", None):
        executor = "function"           # a simulated trial trains nothing: no Ray Train worker to start
    if args.executor == "function" and args.gpus_per_trial > 0:
        raise UsageError("GPU trials run through Ray Train: drop --executor function or --gpus-per-trial")

    methods = parse_methods(getattr(args, "methods", None), space)
    objectives = parse_objectives(getattr(args, "objectives", "probe"))
    if args.stage2 == "front" and len(objectives) < 2:
        raise UsageError("--stage2 front needs a multi-objective study: add --objectives probe,recon")
    stage2 = {f"stage2.{k}": v for k, v in budget.stage2.items()} if args.stage2 != "off" else {}
    train = {**budget.train, **stage2, **parse_overrides(args.overrides)}
    base_cfg = from_flat_dict(train)            # unknown keys and bad values fail here
    train = {k: getattr(base_cfg, k) if "." not in k else v for k, v in train.items()}
    names = {"bundled": list(BUNDLED), "small": list(BUNDLED_SMALL)}.get(args.datasets) or resolve_names(
        [n.strip() for n in args.datasets.split(",") if n.strip()])
    simulate = _simulate_scale(getattr(args, "simulate", None))
    shapes = archive_shapes(names, base_cfg.val_fraction) if simulate else {}
    for dataset in [] if simulate else names:
        data = load_dataset(dataset, args.ucr_root, val_fraction=base_cfg.val_fraction, seed=0,
                            nan_policy=base_cfg.nan_policy)
        check_trainable(data, base_cfg)
        shapes[dataset] = (len(data.x_train), data.length)
    # Largest datasets first: their long trials start early and the short ones fill the last slots.
    names = sorted(names, key=lambda n: -shapes[n][0] * shapes[n][1] * budget.epochs(shapes[n][0], base_cfg.batch_size))
    shapes = {n: shapes[n] for n in names}
    per_dataset = {}
    for dataset, (n, _) in shapes.items():      # --set epochs / eval_every override the budget everywhere
        epochs = train.get("epochs", budget.epochs(n, base_cfg.batch_size))
        per_dataset[dataset] = {"epochs": epochs, "eval_every": train.get("eval_every", budget.eval_every(epochs))}

    _check_writable(results_dir)
    tracking_uri = args.mlflow_uri or default_tracking_uri(results_dir)
    check_tracking_store(tracking_uri)
    if args.gpus_per_trial > 0 and not args.address:
        _check_local_gpus(args.gpus_per_trial)
    if not args.address:
        check_node_resources([{"CPU": os.cpu_count() or 1}], args.cpus_per_trial, 0.0, where="this machine")
    return StudyPlan(
        name=name, space=space, budget=budget, search=search, datasets=names, shapes=shapes,
        num_samples=args.num_samples or budget.num_samples,
        seeds=args.seeds or budget.seeds, search_seed=args.search_seed, train=train, per_dataset=per_dataset, results_dir=results_dir,
        tracking_uri=tracking_uri, address=check_address(args.address) if args.address else None,
        cpus_per_trial=args.cpus_per_trial, gpus_per_trial=args.gpus_per_trial, executor=executor,
        max_concurrent=args.max_concurrent, resume=args.resume, stage2=args.stage2, objectives=objectives,
        methods=methods,
        early_stopping=budget.early_stopping if args.early_stopping == "auto" else args.early_stopping == "on",
        ucr_root=str(Path(args.ucr_root).expanduser().resolve()) if args.ucr_root else None,
        report=not args.no_report, simulate=simulate,
        settings={k: getattr(args, k, None) for k in SAVED_SETTINGS})


SETTINGS_FILE = "study_settings.json"     # inside the study's Tune folder: what --resume restores
SAVED_SETTINGS = ("space", "budget", "grid", "search", "datasets", "ucr_root", "num_samples", "seeds", "search_seed",
                  "overrides", "stage2", "cpus_per_trial", "gpus_per_trial", "executor", "early_stopping", "objectives",
                  "mlflow_uri", "methods", "simulate")


def _simulate_scale(value) -> float:
    """--simulate [SCALE]: the share of its estimated time a simulated trial waits (0: a real study)."""
    if value is None or value is False:
        return 0.0
    scale = float(value)
    if not 0 < scale <= 1:
        raise UsageError(f"--simulate {value}: give a scale in (0, 1], e.g. 0.01 (a trial waits 1/100 of its "
                         f"estimated time)")
    return scale


def parse_methods(text: str | None, space: SearchSpace) -> tuple[str, ...] | None:
    """--methods: comma-separated SSL methods of the space (the baseline always runs); None: all of them."""
    if not text:
        return None
    known = list((space.grid.get("ssl_method") or space.params["ssl_method"].categories))
    names = tuple(dict.fromkeys(n.strip() for n in str(text).split(",") if n.strip()))
    unknown = [n for n in names if n not in known]
    if unknown or not names:
        raise UsageError(f"--methods {text!r}: give any of {', '.join(known)} (comma-separated; the baseline always "
                         f"runs)" + (f"; unknown: {', '.join(unknown)}" if unknown else ""))
    return names


def parse_objectives(text: str) -> tuple[str, ...]:
    """--objectives: comma-separated names of contract.OBJECTIVES, probe among them (it stays first: the
    search's Tune metric and the "best" rule); one name is the single-objective search."""
    names = objective_names(str(text))
    unknown = [n for n in names if n not in OBJECTIVES]
    if unknown or "probe" not in names:
        raise UsageError(f"--objectives {text!r}: give probe, or probe plus any of "
                         f"{', '.join(n for n in OBJECTIVES if n != 'probe')} (comma-separated)"
                         + (f"; unknown: {', '.join(unknown)}" if unknown else ""))
    return ("probe", *(n for n in names if n != "probe"))


def restore_settings(args, path: Path):
    """args with the study's recorded settings; a flag given on the command line (args.explicit) with
    another value than the recorded one is refused in one line naming both."""
    if not path.exists():
        raise UsageError(f"study settings {path} are missing, so the study cannot be resumed; start a new one")
    try:
        saved = json.loads(path.read_text())
    except (OSError, ValueError) as err:
        raise UsageError(f"study settings {path} are damaged ({err}); the study cannot be resumed") from None
    for key in sorted(set(getattr(args, "explicit", ())) & set(saved) & set(SAVED_SETTINGS)):
        if getattr(args, key) != saved[key]:
            flag = "--" + key.replace("_", "-")
            raise UsageError(f"{flag} {_shown(getattr(args, key))} conflicts with the resumed study's recorded "
                             f"{_shown(saved[key])}; drop {flag} (--resume uses the study's own settings)")
    return argparse.Namespace(**{**vars(args), **{k: saved[k] for k in SAVED_SETTINGS if k in saved}})


def _shown(value) -> str:
    return " ".join(f"--set {v}" for v in value) or "(none)" if isinstance(value, list) else repr(value)


def _check_writable(path: Path) -> None:
    try:
        path.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=path):
            pass
    except OSError as err:
        raise UsageError(f"cannot write the results directory {path} ({err.strerror or err}); "
                         f"pass a writable --results-dir") from None


def _check_local_gpus(gpus_per_trial: float) -> None:
    """A local cluster has the GPUs torch sees here: refuse a GPU study without them before Ray starts."""
    import torch

    have = torch.cuda.device_count()
    if have == 0 or gpus_per_trial > have:
        raise UsageError(f"--gpus-per-trial {gpus_per_trial:g} but this machine has {have} GPU(s) that torch can use; "
                         f"drop the flag, lower it, or join a GPU cluster with --address")


def _study_name(args, storage: Path) -> str:
    if args.name is not None and not STUDY_NAME.fullmatch(args.name):
        raise UsageError(f"study name {args.name!r} must be 1-100 letters, digits, '.', '_' or '-' and start with "
                         f"a letter or digit (it names folders and the MLflow experiment)")
    if not args.resume:
        name = args.name or f"{args.space}-{args.budget}-{time.strftime('%Y%m%d-%H%M%S')}-{secrets.token_hex(2)}"
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


def claim_study_folder(plan: StudyPlan) -> None:
    """Create the study's folder atomically and save its settings there: of two launches with one name,
    the second is refused here, before it starts Ray or writes to MLflow."""
    path = plan.storage / plan.name
    try:
        plan.storage.mkdir(parents=True, exist_ok=True)
        path.mkdir()
    except FileExistsError:
        raise UsageError(f"study {plan.name} already exists under {plan.storage} (another launch may be running "
                         f"it); add --resume to continue it or pass another --name") from None
    (path / SETTINGS_FILE).write_text(json.dumps(plan.settings, indent=2))


def release_study_folder(plan: StudyPlan) -> None:
    """Undo claim_study_folder for a study that failed before its first trial: nothing half-written stays."""
    path = plan.storage / plan.name
    if path.is_dir() and {p.name for p in path.iterdir()} <= {SETTINGS_FILE}:
        shutil.rmtree(path)


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

"""Named search spaces and budgets: every searched parameter, its range and its default, in one place.

Keys are the dotted config keys of tune.config.TrainConfig, so a sampled configuration is a
config override as it stands, and MLflow records it under the same names.
"""
from __future__ import annotations

import itertools
import math
from dataclasses import dataclass, field
from typing import Any

from ray import tune

from models.ssl_vqvae import REFERENCE_WEIGHT

SSL_BRANCHES = ["barlowtwins", "vibcreg"]
BASELINE_PARAMS = {"ssl_method": "none", "aug_set": "none", "aug_recon_weight": 0.0}
CELL_KEYS = ("ssl_method", "aug_set")   # a cell of the search: what the report compares methods by
# The quick budget's model and steps (docs/quick-budget.md, results/model-size/): 400 steps at hidden 32 matched or
# beat 200 at hidden 64 on GunPoint and ItalyPowerDemand for the baseline and the SSL methods alike (SSL gains from
# 200 to 400 steps where the baseline barely moves); 300 is what the ablation grid, 2 seeds and stage 2 on every
# method's selection fit into 30 minutes on 2 cores.
QUICK_STEPS = 300
QUICK_MODEL = {"proj_dim": 256, "tokenizer.hidden": 32}
AUG_SETS_SEARCHED = ["warp", "slice", "gauss", "warp+gauss", "slice+gauss", "warp+slice"]


@dataclass(frozen=True)
class SearchSpace:
    name: str
    description: str
    params: dict[str, Any]                              # ray.tune domains sampled by Optuna
    grid: dict[str, list]                               # --grid: the exact values, every combination
    fixed: dict[str, Any] = field(default_factory=dict)  # set for every trial of the space
    shared: tuple[str, ...] = ()                         # searched params the baseline has too: it is tuned on them


SPACES: dict[str, SearchSpace] = {s.name: s for s in [
    SearchSpace(
        "aug_weight", "the reference ablation: augmented-branch reconstruction weight x augmentation set x SSL method",
        params={"aug_recon_weight": tune.uniform(0.0, 0.3), "aug_set": tune.choice(["warp", "slice"]),
                "ssl_method": tune.choice(SSL_BRANCHES)},
        grid={"aug_recon_weight": [0.05, 0.1, 0.15, 0.2], "aug_set": ["warp", "slice"],
              "ssl_method": SSL_BRANCHES}),
    SearchSpace(
        "aug_set", "augmentation sets and their combinations, per SSL method, at the reference weight",
        params={"aug_set": tune.choice(AUG_SETS_SEARCHED), "ssl_method": tune.choice(SSL_BRANCHES)},
        grid={"aug_set": AUG_SETS_SEARCHED, "ssl_method": SSL_BRANCHES},
        fixed={"aug_recon_weight": REFERENCE_WEIGHT}),
    SearchSpace(
        "ssl", "SSL methods against the baseline (the reference study's 7 configurations with --grid)",
        params={"ssl_method": tune.choice(SSL_BRANCHES), "aug_set": tune.choice(["warp", "slice", "gauss"])},
        grid={"ssl_method": SSL_BRANCHES, "aug_set": ["warp", "slice", "gauss"]},
        fixed={"aug_recon_weight": REFERENCE_WEIGHT}),
    SearchSpace(
        "full", "the joint space: SSL method, augmentations, weight, learning rate, codebook and projector size",
        params={"ssl_method": tune.choice(SSL_BRANCHES), "aug_set": tune.choice(AUG_SETS_SEARCHED),
                "aug_recon_weight": tune.uniform(0.0, 0.3), "lr": tune.loguniform(3e-4, 3e-3),
                "tokenizer.codebook_size": tune.choice([32, 64, 128]), "proj_dim": tune.choice([256, 1024, 4096])},
        grid={"ssl_method": SSL_BRANCHES, "aug_set": ["warp", "slice", "gauss"],
              "aug_recon_weight": [0.05, 0.1, 0.2], "tokenizer.codebook_size": [32, 64]},
        shared=("lr", "tokenizer.codebook_size")),
]}


@dataclass(frozen=True)
class Cell:
    """One (SSL method, augmentation set) of a dataset's search, or the baseline. A cell runs the space's
    grid where the grid fits its share of the budget (every point), else `quota` configurations from a
    seeded TPE search over `searched`; every cell of a space gets the same share, so methods and
    augmentation sets are compared over equal numbers of tries."""
    fixed: dict[str, Any]                 # ssl_method, aug_set and the space's fixed values
    quota: int                            # configurations to run
    grid: tuple[dict[str, Any], ...] = ()  # the points to run; empty: TPE over `searched`
    searched: dict[str, Any] = field(default_factory=dict)   # ray.tune domains that TPE samples

    @property
    def name(self) -> str:
        method, aug = self.fixed["ssl_method"], self.fixed.get("aug_set", "none")
        return method if method == BASELINE_PARAMS["ssl_method"] else f"{method}/{aug}"

    @property
    def is_baseline(self) -> bool:
        return self.fixed["ssl_method"] == BASELINE_PARAMS["ssl_method"]


SEARCH_MODES = ("auto", "grid", "tpe")


def search_cells(space: SearchSpace, num_samples: int, mode: str = "auto",
                 methods: tuple[str, ...] | None = None) -> list[Cell]:
    """The cells of one dataset's search, the baseline first: the one rule for what a study runs.

    auto: a cell runs its grid when the grid has no more points than the cell's share of num_samples
    (split equally over the SSL cells, rounded up) and has values for every searched key, else TPE;
    grid: always the grid; tpe: TPE wherever a cell searches anything. methods: the SSL methods to keep
    (--methods; default every method of the space).
    The baseline is one configuration, or, where the space tunes parameters it shares (`shared`), a cell
    of its own with the same share."""
    cell_values = space.grid if mode == "grid" else {
        k: d.categories for k, d in space.params.items() if k in CELL_KEYS}
    combos = [dict(zip(CELL_KEYS, values)) for values in itertools.product(
        *[cell_values.get(k, [space.fixed.get(k)]) for k in CELL_KEYS])]
    combos = [c for c in combos if methods is None or c["ssl_method"] in methods]
    share = max(1, math.ceil(num_samples / len(combos)))
    rest = [k for k in space.params if k not in CELL_KEYS]

    def cell(fixed: dict, keys: list[str]) -> Cell:
        grid = _product({k: space.grid[k] for k in keys if k in space.grid})
        covers = all(k in space.grid for k in keys)        # a grid without values for a key does not cover it
        if mode == "grid" or (mode == "auto" and covers and len(grid) <= share) or not keys:
            return Cell(fixed, len(grid), tuple(grid))
        return Cell(fixed, share, searched={k: space.params[k] for k in keys})

    baseline = cell(BASELINE_PARAMS, list(space.shared))
    return [baseline, *(cell({**space.fixed, **c}, rest) for c in combos)]


def _product(grid: dict[str, list]) -> list[dict[str, Any]]:
    return [dict(zip(grid, values)) for values in itertools.product(*grid.values())]


@dataclass(frozen=True)
class Budget:
    """A study's size. Training is counted in optimizer steps, not epochs, so a 50-series dataset (one
    step per epoch at batch 128) trains as much as a 5000-series one; `min_epochs` makes every trial see
    its whole train split at least that often."""
    name: str
    description: str
    steps: int              # optimizer steps per trial
    min_epochs: int         # and at least this many passes over the train split
    evaluations: int        # evaluation points per trial (the last epoch always evaluates)
    num_samples: int        # SSL configurations per dataset, split equally over the cells (the baseline on top)
    seeds: int              # every configuration runs once per seed
    early_stopping: bool = False   # successive halving of SSL configurations on their seed means (tune.study.scheduler)
    train: dict[str, Any] = field(default_factory=dict)  # config overrides for this size
    stage2: dict[str, Any] = field(default_factory=dict)  # stage-2 overrides, used with --stage2

    def epochs(self, n_train: int, batch_size: int) -> int:
        """Epochs that give `steps` optimizer steps on a train split of n_train series."""
        return max(self.min_epochs, math.ceil(self.steps / math.ceil(n_train / batch_size)))

    def eval_every(self, epochs: int) -> int:
        return max(1, epochs // self.evaluations)


BUDGETS: dict[str, Budget] = {b.name: b for b in [
    Budget("smoke", "seconds per trial: checks the plumbing, not the science", steps=2, min_epochs=2,
           evaluations=2, num_samples=4, seeds=1, train={"proj_dim": 256},
           stage2={"width": 64, "depth": 2, "epochs": 10, "eval_every": 5, "min_generate": 200, "n_boot": 50,
                   "fcn_epochs": 30, "fcn_patience": 10, "cas_epochs": 5, "cas_patience": 5}),
    Budget("quick", "a laptop study: the aug_weight grid on a bundled dataset, 2 seeds, stage 2 for every method, "
           "within 30 minutes on 2 cores (a narrower encoder and projector 256, stated in the report)", steps=QUICK_STEPS,
           min_epochs=5, evaluations=2, num_samples=16, seeds=2,
           train=QUICK_MODEL,
           stage2={"width": 128, "depth": 2, "epochs": 60, "min_generate": 300, "n_boot": 50, "fcn_epochs": 200,
                   "fcn_patience": 50, "cas_epochs": 10, "cas_patience": 5}),
    Budget("standard", "an overnight CPU or a short GPU study", steps=1000, min_epochs=50, evaluations=10,
           num_samples=16, seeds=3, early_stopping=True, stage2={"epochs": 300}),
    Budget("paper", "the reference study's scale (1000 epochs on GunPoint, 4 seeds): a GPU cluster", steps=5000,
           min_epochs=150, evaluations=20, num_samples=16, seeds=4, early_stopping=True,
           stage2={"epochs": 1000, "min_generate": 5000}),
]}


def describe_spaces() -> str:
    """The text of --list-spaces."""
    lines = []
    for space in SPACES.values():
        lines.append(f"{space.name}: {space.description}")
        for key, domain in space.params.items():
            lines.append(f"    {key:26s} {_describe(domain)}   grid: {space.grid.get(key, '-')}")
        for key, value in space.fixed.items():
            lines.append(f"    {key:26s} fixed at {value}")
    lines.append("\nbudgets:")
    for b in BUDGETS.values():
        extra = f", {b.train}" if b.train else ""
        lines.append(f"    {b.name:9s} {b.steps} optimizer steps (at least {b.min_epochs} epochs), {b.evaluations} "
                     f"evaluations, {b.num_samples} SSL configs x {b.seeds} seed(s) per dataset, early stopping "
                     f"{'on' if b.early_stopping else 'off'}{extra}: {b.description}")
    return "\n".join(lines)


def _describe(domain: Any) -> str:
    if isinstance(domain, tune.search.sample.Categorical):
        return f"choice {domain.categories}"
    sampler = type(domain.get_sampler()).__name__.lower()
    kind = "log-uniform" if "log" in sampler else "uniform"
    return f"{kind} [{domain.lower}, {domain.upper}]"

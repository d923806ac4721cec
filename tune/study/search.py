"""One seeded Optuna search per dataset, behind the single Searcher that Ray Tune drives.

Objectives are not comparable across datasets, so each dataset has its own OptunaSearch (TPE, or
Optuna's GridSampler for --grid). This searcher interleaves their suggestions so that every dataset's
search runs concurrently, runs each suggestion once per seed and tells Optuna the mean over seeds.

The `none` baseline runs first on every dataset and seed, at the reference settings. Where the space
tunes parameters the baseline shares (`SearchSpace.shared`, e.g. lr and codebook size in `full`), the
baseline gets a search of its own over them, with as many proposals as each SSL method gets on
average, so the comparison is between equally tuned models.

A configuration runs once: when Optuna proposes one it already proposed (common in small categorical
spaces), the repeat is told the original's score (at once, or when the original finishes) and Optuna is
asked again, so a repeat never becomes extra seeds. A space with fewer distinct points than asked for
ends that search early (`distinct_configs` says how many ran).

With several objectives (`metric` and `mode` lists, `--objectives probe,recon`) every dataset's search is
multi-objective (TPE handles several objectives; the grid is unchanged) and Optuna is told each
objective's mean over the seeds that scored on all of them; Tune, its scheduler and "best" see the first.
"""
from __future__ import annotations

import math
import pickle
from collections import deque
from dataclasses import dataclass, field
from typing import Any

import optuna
from ray import tune
from ray.tune.search import Searcher
from ray.tune.search.optuna import OptunaSearch

from results.contract import FAILED_KEY, config_id
from tune.config import TrainConfig, to_flat_dict
from tune.spaces import SSL_BRANCHES, SearchSpace

BASELINE_PARAMS = {"ssl_method": "none", "aug_set": "none", "aug_recon_weight": 0.0}
MAX_REPEATS = 50      # asks in a row that only repeat earlier proposals: the space is exhausted


@dataclass
class Lane:
    """One dataset's search for the SSL configurations, or for the baseline's shared parameters."""
    dataset: str
    name: str                                  # "ssl" | "baseline"
    quota: int                                 # distinct configurations to run
    searcher: OptunaSearch | None              # None: one fixed configuration (the reference baseline)
    fixed: dict[str, Any]
    asked: int = 0
    exhausted: bool = False
    proposed: dict[str, str] = field(default_factory=dict)   # config id -> group

    @property
    def open(self) -> bool:
        return self.asked < self.quota and not self.exhausted

    def group_id(self) -> str:
        return f"{self.dataset}-{'' if self.name == 'ssl' else 'baseline-'}{self.asked:04d}"


class PickledState:
    """save / restore of a Tune plugin (searcher, scheduler) as its whole state, for --resume."""

    def save(self, checkpoint_path: str) -> None:
        with open(checkpoint_path, "wb") as fh:
            pickle.dump(self.__dict__, fh)

    def restore(self, checkpoint_path: str) -> None:
        with open(checkpoint_path, "rb") as fh:
            self.__dict__.update(pickle.load(fh))


class StudySearch(PickledState, Searcher):
    objectives: tuple[tuple[str, str], ...] = ()   # (metric, mode) of each objective when several, else ()

    def __init__(self, datasets: list[str], space: SearchSpace, *, num_samples: int, seeds: int,
                 metric: str | list[str], mode: str | list[str], seed: int = 0, grid: bool = False,
                 base: dict[str, dict[str, Any]] | None = None):
        """base: per dataset, the training config every trial of that dataset shares (epochs differ by size);
        metric, mode: lists for a multi-objective search (Tune is given the first)."""
        metrics, modes = ([metric], [mode]) if isinstance(metric, str) else (list(metric), list(mode))
        super().__init__(metric=metrics[0], mode=modes[0])
        if len(metrics) > 1:
            self.objectives = tuple(zip(metrics, modes))
        metric, mode = (metrics, modes) if self.objectives else (metrics[0], modes[0])
        self.num_samples = len(space.grid_points()) if grid else num_samples
        self.seeds, self.base = seeds, {ds: dict((base or {}).get(ds, {})) for ds in datasets}
        self.lanes: list[Lane] = []
        baseline_quota = max(1, math.ceil(self.num_samples / len(SSL_BRANCHES))) if space.shared else 1
        for i, ds in enumerate(datasets):
            baseline = (_optuna_search(space.shared_params(), metric, mode, seed + 1000 + i, False,
                                       [reference_defaults(space.shared)]) if space.shared else None)
            self.lanes.append(Lane(ds, "baseline", baseline_quota, baseline, BASELINE_PARAMS))
        for i, ds in enumerate(datasets):
            search = _space_search(space, metric, mode, seed + i, grid, self.num_samples)
            self.lanes.append(Lane(ds, "ssl", self.num_samples, search, dict(space.fixed)))
        self.repeats = 0
        self.queue: deque[tuple[str, dict]] = deque()           # (group, config) ready to run
        self.groups: dict[str, dict] = {}                       # group -> lane, trials, values, pending, twins
        self.trial_group: dict[str, str] = {}

    @property
    def total_trials(self) -> int:
        """An upper bound: a search whose space runs out of new points ends early."""
        return self.seeds * sum(lane.quota for lane in self.lanes)

    def distinct_configs(self, dataset: str) -> int:
        return sum(lane.asked for lane in self.lanes if lane.dataset == dataset)

    def set_search_properties(self, metric, mode, config, **spec) -> bool:
        return True   # metric, mode and space are fixed at construction

    def suggest(self, trial_id: str) -> dict | str | None:
        while not self.queue:
            lanes = [lane for lane in self.lanes if lane.open]
            if not lanes:
                return Searcher.FINISHED
            # baselines first, then round robin over the datasets' searches by the share already proposed
            self._propose(min(lanes, key=lambda lane: (lane.name != "baseline" or lane.asked > 0,
                                                       lane.asked / lane.quota)))
        group, config = self.queue.popleft()
        self.trial_group[trial_id] = group
        self.groups[group]["trials"].append(trial_id)
        return config

    def on_trial_complete(self, trial_id: str, result: dict | None = None, error: bool = False) -> None:
        group_id = self.trial_group.get(trial_id)
        if group_id is None:
            return
        group = self.groups[group_id]
        group["pending"] -= 1
        values = [(result or {}).get(m) for m in [m for m, _ in self.objectives] or [self.metric]]
        if all(v is not None and math.isfinite(v) for v in values):   # a failed trial reports NaN: no score
            group["values"].append(tuple(map(float, values)) if self.objectives else float(values[0]))
        if stopped_early(result, self.base[group["lane"].dataset]):
            group["stopped"] = True
        if group["pending"] == 0:
            for optuna_id in [group_id, *group["twins"]]:
                self._tell(group["lane"], optuna_id, group["values"], group["stopped"])

    def optuna_study(self, dataset: str, lane: str = "ssl") -> optuna.Study:
        return self._lane(dataset, lane).searcher._ot_study

    def _lane(self, dataset: str, name: str) -> Lane:
        return next(lane for lane in self.lanes if lane.dataset == dataset and lane.name == name)

    def _propose(self, lane: Lane) -> None:
        """Queue the lane's next configuration that has not run yet; repeats are answered, not run."""
        if lane.searcher is None:
            self._enqueue(lane, lane.group_id(), {})
            return
        for _ in range(MAX_REPEATS):
            group = lane.group_id()
            params = lane.searcher.suggest(group)
            original = lane.proposed.get(config_id(params))
            if original is None:
                lane.proposed[config_id(params)] = group
                self._enqueue(lane, group, params)
                return
            # Optuna's trial `group` repeats `original`: it takes another id and the original's score
            self.repeats += 1
            twin = f"{lane.dataset}-repeat{self.repeats:04d}"
            lane.searcher._ot_trials[twin] = lane.searcher._ot_trials.pop(group)
            if self.groups[original]["pending"] == 0:
                self._tell(lane, twin, self.groups[original]["values"], self.groups[original]["stopped"])
            else:
                self.groups[original]["twins"].append(twin)
        lane.exhausted = True

    def _tell(self, lane: Lane, optuna_id: str, values: list[float], stopped: bool = False) -> None:
        """Optuna hears the mean over seeds; a configuration the scheduler stopped early is PRUNED (its
        score at a rung is no final value), one without any score FAILED."""
        if lane.searcher is None:
            return
        if stopped:
            lane.searcher.on_trial_complete(optuna_id, None, error=False)
            return
        lane.searcher.on_trial_complete(optuna_id, self._means(values), error=not values)

    def _means(self, values: list) -> dict[str, float] | None:
        """Each objective's mean over the seeds that scored (what Optuna is told); None without a score."""
        if not values:
            return None
        if not self.objectives:
            return {self.metric: sum(values) / len(values)}
        return {m: sum(v[i] for v in values) / len(values) for i, (m, _) in enumerate(self.objectives)}

    def _enqueue(self, lane: Lane, group: str, params: dict) -> None:
        lane.asked += 1
        self.groups[group] = {"lane": lane, "trials": [], "values": [], "pending": self.seeds, "twins": [],
                              "stopped": False}
        for s in range(self.seeds):
            config = {**self.base[lane.dataset], **lane.fixed, **params, "dataset": lane.dataset, "seed": s}
            self.queue.append((group, config))


def stopped_early(result: dict | None, base: dict[str, Any]) -> bool:
    """A trial that ended with a score before its last epoch: the scheduler stopped it."""
    if not result or FAILED_KEY in result or "epochs" not in base:
        return False
    return result.get("epochs_done", base["epochs"]) < base["epochs"]


def _space_search(space: SearchSpace, metric: str | list[str], mode: str | list[str], seed: int,
                  grid: bool, limit: int | None = None) -> OptunaSearch:
    if grid:
        return _optuna_search({k: tune.choice(v) for k, v in space.grid.items()}, metric, mode, seed, True,
                              grid_values=space.grid)
    return _optuna_search(space.params, metric, mode, seed, False, reference_points(space, limit))


def _optuna_search(domains: dict, metric: str | list[str], mode: str | list[str], seed: int, grid: bool,
                   points: list[dict] | None = None, grid_values: dict | None = None) -> OptunaSearch:
    sampler = (optuna.samplers.GridSampler(grid_values, seed=seed) if grid
               else optuna.samplers.TPESampler(seed=seed))
    return OptunaSearch(OptunaSearch.convert_search_space(domains), metric=metric, mode=mode, sampler=sampler,
                        points_to_evaluate=points or None)


def reference_defaults(keys) -> dict[str, Any]:
    """The reference settings of `keys` (TrainConfig's defaults, augmentation warp at weight 0.1)."""
    defaults = {**to_flat_dict(TrainConfig()), "aug_set": "warp", "aug_recon_weight": 0.1}
    return {k: defaults[k] for k in keys}


def reference_points(space: SearchSpace, limit: int | None = None) -> list[dict]:
    """Every (SSL method, augmentation set) of the space at the reference settings (weight 0.1) first,
    methods alternating, at most `limit`; then TPE. A small budget so covers every method on every
    dataset, and methods can be ranked across datasets."""
    methods = space.params.get("ssl_method")
    if methods is None:
        return []
    augs = space.params["aug_set"].categories if "aug_set" in space.params else [None]
    points = [{**reference_defaults(space.params), "ssl_method": method, **({"aug_set": aug} if aug else {})}
              for aug in augs for method in methods.categories]
    return points[:limit]

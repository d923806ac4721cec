"""One seeded Optuna search per dataset, behind the single Searcher that Ray Tune drives.

Objectives are not comparable across datasets, so each dataset has its own OptunaSearch (TPE, or
Optuna's GridSampler for --grid). This searcher interleaves their suggestions so that every dataset's
search runs concurrently, runs each suggestion once per seed and tells Optuna the mean over seeds,
and queues the `none` baseline once per dataset and seed before anything else.
"""
from __future__ import annotations

import math
import pickle
from collections import deque
from typing import Any

import optuna
from ray import tune
from ray.tune.search import Searcher
from ray.tune.search.optuna import OptunaSearch

from tune.config import TrainConfig, to_flat_dict
from tune.spaces import SearchSpace

BASELINE_PARAMS = {"ssl_method": "none", "aug_set": "none", "aug_recon_weight": 0.0}


class StudySearch(Searcher):
    def __init__(self, datasets: list[str], space: SearchSpace, *, num_samples: int, seeds: int,
                 metric: str, mode: str, seed: int = 0, grid: bool = False, base: dict[str, Any] | None = None):
        super().__init__(metric=metric, mode=mode)
        self.num_samples = len(space.grid_points()) if grid else num_samples
        self.seeds, self.base, self.fixed = seeds, dict(base or {}), dict(space.fixed)
        self.searchers = {ds: _optuna_search(space, metric, mode, seed + i, grid) for i, ds in enumerate(datasets)}
        self.asked = {ds: 0 for ds in datasets}
        self.queue: deque[tuple[str, str, dict]] = deque()      # (dataset, group, params) ready to run
        self.groups: dict[str, dict] = {}                       # group -> dataset, trials, values, pending
        self.trial_group: dict[str, str] = {}
        for ds in datasets:
            self._enqueue(ds, f"{ds}-baseline", BASELINE_PARAMS)

    @property
    def total_trials(self) -> int:
        return len(self.searchers) * self.seeds * (1 + self.num_samples)

    def set_search_properties(self, metric, mode, config, **spec) -> bool:
        return True   # metric, mode and space are fixed at construction

    def suggest(self, trial_id: str) -> dict | str | None:
        if not self.queue:
            open_ds = [ds for ds, n in self.asked.items() if n < self.num_samples]
            if not open_ds:
                return Searcher.FINISHED
            ds = min(open_ds, key=lambda d: self.asked[d])      # round robin over datasets
            group = f"{ds}-{self.asked[ds]:04d}"
            self.asked[ds] += 1
            params = self.searchers[ds].suggest(group)
            self._enqueue(ds, group, params)
        ds, group, config = self.queue.popleft()
        self.trial_group[trial_id] = group
        self.groups[group]["trials"].append(trial_id)
        return config

    def on_trial_complete(self, trial_id: str, result: dict | None = None, error: bool = False) -> None:
        group_id = self.trial_group.get(trial_id)
        if group_id is None:
            return
        group = self.groups[group_id]
        group["pending"] -= 1
        value = (result or {}).get(self.metric)
        if value is not None and math.isfinite(value):     # a failed trial reports NaN: it has no score
            group["values"].append(float(value))
        if group["pending"] == 0 and not group_id.endswith("-baseline"):
            values = group["values"]
            mean = {self.metric: sum(values) / len(values)} if values else None
            self.searchers[group["dataset"]].on_trial_complete(group_id, mean, error=not values)

    def optuna_study(self, dataset: str) -> optuna.Study:
        return self.searchers[dataset]._ot_study

    def save(self, checkpoint_path: str) -> None:
        with open(checkpoint_path, "wb") as fh:
            pickle.dump(self.__dict__, fh)

    def restore(self, checkpoint_path: str) -> None:
        with open(checkpoint_path, "rb") as fh:
            self.__dict__.update(pickle.load(fh))

    def _enqueue(self, ds: str, group: str, params: dict) -> None:
        self.groups[group] = {"dataset": ds, "trials": [], "values": [], "pending": self.seeds}
        for s in range(self.seeds):
            config = {**self.base, **self.fixed, **params, "dataset": ds, "seed": s}
            self.queue.append((ds, group, config))


def _optuna_search(space: SearchSpace, metric: str, mode: str, seed: int, grid: bool) -> OptunaSearch:
    if grid:
        domains = {k: tune.choice(v) for k, v in space.grid.items()}
        sampler = optuna.samplers.GridSampler(space.grid, seed=seed)
        return OptunaSearch(OptunaSearch.convert_search_space(domains), metric=metric, mode=mode, sampler=sampler)
    sampler = optuna.samplers.TPESampler(seed=seed)
    return OptunaSearch(OptunaSearch.convert_search_space(space.params), metric=metric, mode=mode, sampler=sampler,
                        points_to_evaluate=reference_points(space))


def reference_points(space: SearchSpace) -> list[dict]:
    """Each SSL method at the reference settings first (warp, weight 0.1), then TPE: every dataset's
    search covers every method, so methods can be ranked across datasets even on a small budget."""
    methods = space.params.get("ssl_method")
    if methods is None:
        return []
    defaults = {**to_flat_dict(TrainConfig()), "aug_set": "warp", "aug_recon_weight": 0.1}
    return [{k: method if k == "ssl_method" else defaults[k] for k in space.params}
            for method in methods.categories if method != "none"]

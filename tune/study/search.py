"""One search per dataset and cell, behind the single Searcher that Ray Tune drives.

Objectives are not comparable across datasets, so each dataset searches on its own; within a dataset
every cell (an SSL method and augmentation set, or the baseline; tune.spaces.search_cells) gets the same
number of configurations: its grid where the grid fits that share, else a seeded Optuna TPE study
driven through its public ask / tell API (the reference settings first, then a startup count that suits
the share). This searcher interleaves the cells of every dataset so all searches run at once, runs each
configuration once per seed and tells Optuna the mean over seeds.

A configuration runs once: when TPE proposes one it already proposed (common where every searched
parameter is categorical), the repeat is told the original's score (at once, or when the original
finishes) and TPE is asked again, so a repeat never becomes extra seeds; a cell that keeps repeating
itself ends early (`configs_run` says how many ran).

With several objectives (`metric` and `mode` lists, `--objectives probe,recon`) every TPE study is
multi-objective and is told each objective's mean over the seeds that scored on all of them; Tune, its
scheduler and "best" see the first.
"""
from __future__ import annotations

import math
import pickle
from collections import deque
from dataclasses import dataclass, field
from typing import Any

import optuna
from optuna.trial import TrialState
from ray.tune.search import Searcher
from ray.tune.search.optuna import OptunaSearch

from results.contract import FAILED_KEY, config_id
from tune.config import TrainConfig, to_flat_dict
from tune.spaces import Cell

MAX_REPEATS = 50      # asks in a row that only repeat earlier proposals: the cell's space is exhausted


@dataclass
class Lane:
    """One dataset's cell: its grid walked in order, or its TPE study."""
    dataset: str
    cell: Cell
    study: optuna.Study | None                 # None: the cell runs its grid
    asked: int = 0
    exhausted: bool = False
    proposed: dict[str, str] = field(default_factory=dict)   # config id -> group

    @property
    def open(self) -> bool:
        return self.asked < self.cell.quota and not self.exhausted

    def group_id(self) -> str:
        return f"{self.dataset}-{self.cell.name}-{self.asked:04d}"


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

    def __init__(self, datasets: list[str], cells: list[Cell], *, seeds: int, metric: str | list[str],
                 mode: str | list[str], seed: int = 0, base: dict[str, dict[str, Any]] | None = None):
        """cells: tune.spaces.search_cells of the study (the same for every dataset); base: per dataset, the
        training config every trial of that dataset shares; metric, mode: lists for a multi-objective search."""
        metrics, modes = ([metric], [mode]) if isinstance(metric, str) else (list(metric), list(mode))
        super().__init__(metric=metrics[0], mode=modes[0])
        if len(metrics) > 1:
            self.objectives = tuple(zip(metrics, modes))
        self.directions = ["maximize" if m == "max" else "minimize" for m in modes]
        self.seeds, self.base = seeds, {ds: dict((base or {}).get(ds, {})) for ds in datasets}
        self.lanes = [Lane(ds, cell, None if cell.grid else self._tpe(cell, seed + 1000 * i + j))
                      for i, ds in enumerate(datasets) for j, cell in enumerate(cells)]
        self.queue: deque[tuple[str, dict]] = deque()           # (group, config) ready to run
        self.groups: dict[str, dict] = {}                       # group -> lane, trials, values, pending, twins
        self.trial_group: dict[str, str] = {}

    @property
    def total_trials(self) -> int:
        """An upper bound: a TPE cell that runs out of new points ends early."""
        return self.seeds * sum(lane.cell.quota for lane in self.lanes)

    def configs_run(self, dataset: str) -> int:
        return sum(lane.asked for lane in self.lanes if lane.dataset == dataset)

    def optuna_study(self, dataset: str, cell: str) -> optuna.Study | None:
        return next(lane.study for lane in self.lanes if lane.dataset == dataset and lane.cell.name == cell)

    def set_search_properties(self, metric, mode, config, **spec) -> bool:
        return True   # metric, mode and space are fixed at construction

    def suggest(self, trial_id: str) -> dict | str | None:
        while not self.queue:
            lanes = [lane for lane in self.lanes if lane.open]
            if not lanes:
                return Searcher.FINISHED
            # baselines first, then round robin over every dataset's cells by the share already proposed
            self._propose(min(lanes, key=lambda lane: (not (lane.cell.is_baseline and lane.asked == 0),
                                                       lane.asked / lane.cell.quota)))
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
            group["values"].append(tuple(map(float, values)))
        if stopped_early(result, self.base[group["lane"].dataset]):
            group["stopped"] = True
        if group["pending"] == 0:
            for number in [group["number"], *group["twins"]]:
                self._tell(group["lane"], number, group["values"], group["stopped"])

    def _tpe(self, cell: Cell, seed: int) -> optuna.Study:
        """A seeded TPE study for the cell, the reference settings enqueued first; startup: a third of the
        cell's share (at least 2 with the reference point), not Optuna's 10, which would leave no TPE."""
        startup = max(2, math.ceil(cell.quota / 3))
        study = optuna.create_study(directions=self.directions,
                                    sampler=optuna.samplers.TPESampler(seed=seed, n_startup_trials=startup))
        study.enqueue_trial(reference_defaults(cell.searched))
        return study

    def _propose(self, lane: Lane) -> None:
        """Queue the lane's next configuration that has not run yet; repeats are answered, not run."""
        if lane.study is None:
            self._enqueue(lane, lane.cell.grid[lane.asked], None)
            return
        distributions = OptunaSearch.convert_search_space(lane.cell.searched)
        for _ in range(MAX_REPEATS):
            trial = lane.study.ask(distributions)
            original = lane.proposed.get(config_id(trial.params))
            if original is None:
                lane.proposed[config_id(trial.params)] = lane.group_id()
                self._enqueue(lane, trial.params, trial.number)
                return
            done = self.groups[original]
            if done["pending"] == 0:       # the repeat gets the original's score; TPE is asked again
                self._tell(lane, trial.number, done["values"], done["stopped"])
            else:
                done["twins"].append(trial.number)
        lane.exhausted = True

    def _tell(self, lane: Lane, number: int | None, values: list[tuple], stopped: bool = False) -> None:
        """Optuna hears the mean over seeds; a configuration the scheduler stopped early is PRUNED (its
        score at a rung is no final value), one without any score FAILED."""
        if lane.study is None or number is None:
            return
        if stopped:
            lane.study.tell(number, state=TrialState.PRUNED)
        elif not values:
            lane.study.tell(number, state=TrialState.FAIL)
        else:
            means = [sum(v[i] for v in values) / len(values) for i in range(len(values[0]))]
            lane.study.tell(number, means)

    def _enqueue(self, lane: Lane, params: dict, number: int | None) -> None:
        group = lane.group_id()
        lane.asked += 1
        self.groups[group] = {"lane": lane, "number": number, "trials": [], "values": [], "pending": self.seeds,
                              "twins": [], "stopped": False}
        for s in range(self.seeds):
            config = {**self.base[lane.dataset], **lane.cell.fixed, **params, "dataset": lane.dataset, "seed": s}
            self.queue.append((group, config))


def stopped_early(result: dict | None, base: dict[str, Any]) -> bool:
    """A trial that ended with a score before its last epoch: the scheduler stopped it."""
    if not result or FAILED_KEY in result or "epochs" not in base:
        return False
    return result.get("epochs_done", base["epochs"]) < base["epochs"]


def reference_defaults(keys) -> dict[str, Any]:
    """The reference settings of `keys`: TrainConfig's defaults, the reference weight."""
    defaults = to_flat_dict(TrainConfig())     # aug_recon_weight: the reference's REFERENCE_WEIGHT
    return {k: defaults[k] for k in keys}

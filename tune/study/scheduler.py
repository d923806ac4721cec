"""Early stopping for long budgets: successive halving on configurations, never on single seeds.

A configuration is the unit of every decision (DESIGN.md section 5): at the rung (the first evaluation
at or after a third of the run) each of its seeds records its score; once every seed has recorded (or
failed), the configuration's mean over its seeds is compared with the means of the configurations of
the same race that reached the rung before it, and all its seeds go on or stop together. A race is
(dataset, SSL method, augmentation set): objectives are not comparable across datasets, and methods
learn at different speeds (in the measured learning curves VIbCReg trails Barlow Twins early and leads
late), so a configuration only competes with those that compete for its row of the report. The top
third goes on (ASHA's cutoff at the recorded means); the first configuration of a race, and any that
beats every earlier one, always goes on, so every method keeps a finished configuration on every dataset.

Order: the decision is asynchronous, as in ASHA: it compares with the configurations that reached the
rung earlier, so a different arrival order can stop a different configuration (the searcher queues a
configuration's seeds together and the cells in a fixed round robin, so the order follows the plan
except where trial durations differ). Seeds that reach the rung before their configuration's decision
go on to their next evaluation, where the decision reaches them. Baseline trials always run whole.
Only Ray's public scheduler API is used (FIFOScheduler's hooks).
"""
from __future__ import annotations

import math

import numpy as np
from ray.tune.schedulers import FIFOScheduler, TrialScheduler

from results.contract import BASELINE_METHOD, config_id
from tune.study.search import PickledState

TIME_ATTR = "epochs_done"
REDUCTION_FACTOR = 3        # the top third goes on at the rung
GRACE_FRACTION = 1 / 3      # no configuration is stopped before a third of its epochs
RACE_KEYS = ("ssl_method", "aug_set")   # within a dataset, configurations race only those equal on these


def keeps_going(mean: float, earlier: list[float], mode: str, reduction_factor: int = REDUCTION_FACTOR) -> bool:
    """ASHA's rule on configuration means: go on unless below the top 1/reduction_factor of `earlier`."""
    if not earlier:
        return True
    signed = [v if mode == "max" else -v for v in earlier]
    cutoff = float(np.percentile(signed, (1 - 1 / reduction_factor) * 100))
    return (mean if mode == "max" else -mean) >= cutoff


class SeedMeanHalving(PickledState, FIFOScheduler):
    def __init__(self, epochs: dict[str, int], eval_every: dict[str, int], seeds: int, *, metric: str, mode: str,
                 race_keys: tuple[str, ...] = RACE_KEYS, grace_fraction: float = GRACE_FRACTION,
                 reduction_factor: int = REDUCTION_FACTOR):
        """epochs / eval_every: per dataset; seeds: per configuration. race_keys, grace_fraction and
        reduction_factor are parameters so benchmarks/early_stopping_replay.py can replay other designs."""
        super().__init__()
        self.race_metric, self.race_mode = metric, mode      # own names: Tune's base class keeps _metric / _mode
        self._epochs, self._eval_every, self._seeds = epochs, eval_every, seeds
        self._race_keys, self._grace_fraction, self._rf = race_keys, grace_fraction, reduction_factor
        self.rung_means: dict[tuple, dict[str, float]] = {}     # race -> config id -> mean at the rung
        self.at_rung: dict[str, dict[int, float]] = {}         # config id -> seed -> score (NaN: no score)
        self.decision: dict[str, bool] = {}                    # config id -> goes on
        self.stopped: dict[str, int] = {}                      # trial id -> epochs done when stopped

    def grace_period(self, dataset: str) -> int:
        every = self._eval_every[dataset]
        return every * max(1, math.ceil(self._grace_fraction * self._epochs[dataset] / every))

    def set_search_properties(self, metric, mode, **spec) -> bool:
        return True          # fixed at construction

    def _race(self, config: dict) -> tuple | None:
        dataset = config.get("dataset")
        if config.get("ssl_method") == BASELINE_METHOD or dataset not in self._epochs:
            return None      # the baseline runs whole
        return (dataset, *(config.get(key) for key in self._race_keys))

    def on_trial_result(self, tune_controller, trial, result: dict) -> str:
        config = trial.config or {}
        race = self._race(config)
        if race is None or TIME_ATTR not in result:
            return TrialScheduler.CONTINUE
        cid = config_id(config)
        if cid not in self.decision and int(result[TIME_ATTR]) >= self.grace_period(config["dataset"]):
            seeds = self.at_rung.setdefault(cid, {})
            if config.get("seed") not in seeds:
                value = result.get(self.race_metric)
                seeds[config.get("seed")] = float(value) if value is not None else math.nan
                self._decide(race, cid)
        if self.decision.get(cid, True):
            return TrialScheduler.CONTINUE
        self.stopped[trial.trial_id] = int(result[TIME_ATTR])
        return TrialScheduler.STOP

    def on_trial_complete(self, tune_controller, trial, result: dict) -> None:
        self._absent(trial)

    def on_trial_error(self, tune_controller, trial) -> None:
        self._absent(trial)

    def on_trial_remove(self, tune_controller, trial) -> None:
        self._absent(trial)

    def _absent(self, trial) -> None:
        """A seed that ended without a score at the rung (it failed, or its run was shorter) is counted as
        having none, so its configuration's decision does not wait for it."""
        config = trial.config or {}
        race = self._race(config)
        cid = config_id(config)
        if race is None or cid in self.decision:
            return
        self.at_rung.setdefault(cid, {}).setdefault(config.get("seed"), math.nan)
        self._decide(race, cid)

    def _decide(self, race: tuple, cid: str) -> None:
        seeds = self.at_rung[cid]
        if len(seeds) < self._seeds:
            return
        scores = [v for v in seeds.values() if math.isfinite(v)]
        if not scores:
            self.decision[cid] = True      # nothing to judge: the failed seeds say so themselves
            return
        mean = sum(scores) / len(scores)
        earlier = self.rung_means.setdefault(race, {})
        self.decision[cid] = keeps_going(mean, list(earlier.values()), self.race_mode, self._rf)
        earlier[cid] = mean

    def debug_string(self) -> str:
        stopped = sum(not go for go in self.decision.values())
        return f"SeedMeanHalving: {stopped} configuration(s) stopped early"

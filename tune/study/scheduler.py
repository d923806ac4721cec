"""Early stopping for long budgets: asynchronous successive halving (ASHA) per dataset and method.

Objectives are not comparable across datasets, and methods learn at different speeds (in the measured
learning curves VIbCReg trails Barlow Twins early and leads late), so each (dataset, SSL method,
augmentation set, seed) has its own ASHA bracket: a trial is only ever compared with the trials that
compete with it for the same row of the report (which selects one configuration per dataset and method),
and with the same seed, so a race is between configurations, never between seeds of one; the best of a
bracket always goes on, so every method keeps a finished configuration on every dataset. The one rung sits at a third of the
run (REDUCTION_FACTOR 3: the top third goes on), late enough that the early ordering means something.
Baseline trials always run to the end, so every SSL method is compared with a whole baseline. What the
searcher and MLflow make of a stopped trial: see search.stopped_early and tracking.TrialStatus.
"""
from __future__ import annotations

import math

from ray.tune.schedulers import AsyncHyperBandScheduler, FIFOScheduler, TrialScheduler

from results.contract import BASELINE_METHOD
from tune.study.search import PickledState

TIME_ATTR = "epochs_done"
REDUCTION_FACTOR = 3        # ASHA keeps the top third at each rung
GRACE_FRACTION = 1 / 3      # no trial is stopped before a third of its epochs
RACE_KEYS = ("ssl_method", "aug_set", "seed")   # within a dataset, trials race only those equal on these


class PerDatasetASHA(PickledState, FIFOScheduler):
    def __init__(self, epochs: dict[str, int], eval_every: dict[str, int], *, metric: str, mode: str,
                 race_keys: tuple[str, ...] = RACE_KEYS, grace_fraction: float = GRACE_FRACTION):
        """epochs / eval_every: per dataset; the rung is the first evaluation at or after grace_fraction of the
        run. race_keys and grace_fraction are parameters so that benchmarks/early_stopping_replay.py can
        replay other designs (e.g. one race per dataset from the first evaluation) on the same curves."""
        super().__init__()
        self._metric, self._mode = metric, mode
        self._epochs, self._eval_every = epochs, eval_every
        self._race_keys, self._grace_fraction = race_keys, grace_fraction
        self.brackets: dict[tuple[str, tuple], AsyncHyperBandScheduler] = {}
        self.stopped: dict[str, int] = {}          # trial id -> epochs done when stopped

    def grace_period(self, dataset: str) -> int:
        every = self._eval_every[dataset]
        return every * max(1, math.ceil(self._grace_fraction * self._epochs[dataset] / every))

    def set_search_properties(self, metric, mode, **spec) -> bool:
        return True          # fixed at construction

    def _bracket(self, trial):
        config = trial.config or {}
        dataset = config.get("dataset")
        race = tuple(config.get(key) for key in self._race_keys)
        if config.get("ssl_method") == BASELINE_METHOD or dataset not in self._epochs:
            return None      # the baseline runs whole
        if (dataset, race) not in self.brackets:
            self.brackets[dataset, race] = AsyncHyperBandScheduler(
                time_attr=TIME_ATTR, metric=self._metric, mode=self._mode, max_t=self._epochs[dataset],
                grace_period=self.grace_period(dataset), reduction_factor=REDUCTION_FACTOR, brackets=1,
                stop_last_trials=False)
        return self.brackets[dataset, race]

    def on_trial_add(self, tune_controller, trial) -> None:
        if (bracket := self._bracket(trial)) is not None:
            bracket.on_trial_add(tune_controller, trial)

    def on_trial_result(self, tune_controller, trial, result: dict) -> str:
        bracket = self._bracket(trial)
        if bracket is None or not _scored(result, self._metric):
            return TrialScheduler.CONTINUE
        action = bracket.on_trial_result(tune_controller, trial, result)
        if action == TrialScheduler.STOP:
            self.stopped[trial.trial_id] = int(result[TIME_ATTR])
        return action

    def on_trial_complete(self, tune_controller, trial, result: dict) -> None:
        bracket = self._bracket(trial)
        if bracket is None or trial.trial_id not in bracket._trial_info:
            return
        if _scored(result, self._metric):
            bracket.on_trial_complete(tune_controller, trial, result)
        else:                # a failed trial has no score to set a rung with
            bracket.on_trial_remove(tune_controller, trial)

    def on_trial_remove(self, tune_controller, trial) -> None:
        bracket = self._bracket(trial)
        if bracket is not None and trial.trial_id in bracket._trial_info:
            bracket.on_trial_remove(tune_controller, trial)

    def debug_string(self) -> str:
        return f"PerDatasetASHA: {len(self.stopped)} trial(s) stopped early"



def _scored(result: dict | None, metric: str) -> bool:
    value = (result or {}).get(metric)
    return TIME_ATTR in (result or {}) and value is not None and math.isfinite(value)

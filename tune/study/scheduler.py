"""Early stopping for long budgets: asynchronous successive halving (ASHA) per dataset.

Objectives are not comparable across datasets, so each dataset has its own ASHA bracket: a trial is
only ever compared with trials of its own dataset, at its evaluation points (`epochs_done`, reported
with the selection metric). Baseline trials always run to the end, so every SSL method is compared
with a whole baseline. What the searcher and MLflow make of a stopped trial: see search.stopped_early
and tracking.TrialStatus.
"""
from __future__ import annotations

import math

from ray.tune.schedulers import AsyncHyperBandScheduler, FIFOScheduler, TrialScheduler

from results.contract import BASELINE_METHOD
from tune.study.search import PickledState

TIME_ATTR = "epochs_done"
REDUCTION_FACTOR = 3        # ASHA keeps the top third at each rung


class PerDatasetASHA(PickledState, FIFOScheduler):
    def __init__(self, epochs: dict[str, int], eval_every: dict[str, int], *, metric: str, mode: str):
        """epochs / eval_every: per dataset; the first rung is the first evaluation, the last the last epoch."""
        super().__init__()
        self._metric, self._mode = metric, mode
        self.brackets = {ds: AsyncHyperBandScheduler(
            time_attr=TIME_ATTR, metric=metric, mode=mode, max_t=epochs[ds], grace_period=eval_every[ds],
            reduction_factor=REDUCTION_FACTOR, brackets=1, stop_last_trials=False) for ds in epochs}
        self.stopped: dict[str, int] = {}          # trial id -> epochs done when stopped

    def set_search_properties(self, metric, mode, **spec) -> bool:
        return True          # fixed at construction

    def _bracket(self, trial):
        config = trial.config or {}
        if config.get("ssl_method") == BASELINE_METHOD:
            return None      # the baseline runs whole
        return self.brackets.get(config.get("dataset"))

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

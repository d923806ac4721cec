"""What a study prints: where to watch it, one line per finished trial with done/total and an ETA from the
measured trial times, each phase after the search with its duration, and the answer at the end.

Ray's own per-trial tables, checkpoint messages and Tune's "current best trial" (which compares trials of
different datasets) stay off unless `--ray-progress` asks for them (`quiet_ray`).
"""
from __future__ import annotations

import contextlib
import logging
import math
import os
import time
import warnings
from typing import Any, Iterator

from ray.tune import Callback, ProgressReporter

from results.contract import (BASELINE_PREFIX, BEST_SSL_PREFIX, FAILED_KEY, PLUMBING_BUDGETS, TEST_SVM, run_label,
                              summary_key)

QUIET_LOGGERS = ("ray.tune", "ray.train", "ray.air", "mlflow",
                 "ray._private.authentication")    # "Token authentication is enabled": the dashboard line says so
QUIET_WARNINGS = ("Target and region quantiles select the same set of trials",)   # Optuna's importances, tiny studies


class Silent(ProgressReporter):
    """Tune's progress reporter that reports nothing: TrialLines prints the trials."""

    def should_report(self, trials, done: bool = False) -> bool:
        return False

    def report(self, trials, done: bool, *sys_info) -> None:
        pass


def quiet() -> Silent:
    """Driver side: Tune's reporter off (its experiment box and per-trial tables: the legacy output path,
    which takes a ProgressReporter, with Silent), Ray's and MLflow's driver loggers off (a failed trial's
    traceback is its MLflow run's error tag and its error.txt under ray_results: the console has its line;
    a failed store or disk would print one traceback per retry, thousands of lines, where the study prints
    one), no MLflow artifact progress bars. Trial processes' output stays in Ray's log files
    (ray.init(log_to_driver=False)). Returns the reporter for tune.RunConfig(progress_reporter=...)."""
    os.environ.setdefault("RAY_AIR_NEW_OUTPUT", "0")
    os.environ.setdefault("RAY_IGNORE_UNHANDLED_ERRORS", "1")     # a stopped trial's error, logged by Ray again
    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
    for name in QUIET_LOGGERS:
        logging.getLogger(name).setLevel(logging.CRITICAL)
    for message in QUIET_WARNINGS:
        warnings.filterwarnings("ignore", message=message)
    return Silent()


def duration(seconds: float) -> str:
    """12 s, 4 min 05 s, 2 h 03 min."""
    if not math.isfinite(seconds):
        return "?"
    s = int(round(seconds))
    if s < 60:
        return f"{s} s"
    if s < 3600:
        return f"{s // 60} min {s % 60:02d} s"
    return f"{s // 3600} h {s % 3600 // 60:02d} min"


def eta(mean_s: float, remaining: int, slots: int) -> float:
    """Seconds left: the remaining trials at the mean measured trial time (NaN before the first), `slots` at
    a time."""
    if remaining <= 0:
        return 0.0
    return math.ceil(remaining / max(slots, 1)) * mean_s


def trial_line(done: int, total: int, config: dict[str, Any], result: dict[str, Any], objectives: list[str],
               seconds: float, eta_s: float, outcome: str = "", name_width: int = 16) -> str:
    """`[ 3/10] GunPoint  vibcreg/warp w=0.10 s0  val/svm_acc 0.812  14 s  ETA 1 min 20 s`; `outcome`
    (failed, stopped early) replaces the objectives where the trial has no final score."""
    width = len(str(total))
    scores = outcome or "  ".join(f"{m} {_value(result.get(m))}" for m in objectives)
    return (f"[{done:>{width}}/{total}] {config.get('dataset', '?'):<{name_width}} {run_label(config):<28} "
            f"{scores}  {duration(seconds)}  ETA {duration(eta_s)}")


def _value(v: Any) -> str:
    try:
        return f"{float(v):.3f}" if math.isfinite(float(v)) else "-"
    except (TypeError, ValueError):
        return "-"


class TrialLines(Callback):
    """Tune callback (driver side): one line per trial that ends, finished, stopped or failed."""

    def __init__(self, total: int, slots: int, objectives: list[str], epochs: dict[str, int] | None = None,
                 already_done: int = 0, printer=print):
        self.total, self.slots, self.objectives = total, slots, objectives
        self.epochs = epochs or {}                       # dataset -> planned epochs: fewer means stopped early
        self.name_width = max(map(len, self.epochs), default=8)
        self.done, self.printer = already_done, printer
        self.started: dict[str, float] = {}
        self.seconds_sum, self.timed = 0.0, 0     # running sums: a line costs the same at trial 6,000 as at 6

    def on_trial_start(self, iteration, trials, trial, **info):
        self.started.setdefault(trial.trial_id, time.monotonic())

    def on_trial_complete(self, iteration, trials, trial, **info):
        result = trial.last_result or {}
        outcome = ""
        if result.get(FAILED_KEY):
            outcome = f"failed: {str(result[FAILED_KEY])[:80]}"
        else:
            planned, ran = self.epochs.get(trial.config.get("dataset")), result.get("epochs_done")
            if planned and ran and ran < planned:
                outcome = f"stopped early at epoch {ran} of {planned} ({self.objectives[0]} " \
                          f"{_value(result.get(self.objectives[0]))})"
        self._line(trial, result, outcome)

    def on_trial_error(self, iteration, trials, trial, **info):
        self._line(trial, trial.last_result or {}, "failed after its retries (see its MLflow run's error tag)")

    def _line(self, trial, result: dict, outcome: str) -> None:
        seconds = time.monotonic() - self.started.pop(trial.trial_id, time.monotonic())
        self.seconds_sum += seconds
        self.done += 1
        self.timed += 1
        left = eta(self.seconds_sum / self.timed, self.total - self.done, self.slots)
        self.printer(trial_line(self.done, self.total, trial.config, result, self.objectives, seconds, left,
                                outcome, self.name_width), flush=True)


@contextlib.contextmanager
def phase(what: str, printer=print) -> Iterator[None]:
    """`what ...` before a phase after the search, `  done in 12 s` after it."""
    printer(f"{what} ...", flush=True)
    started = time.monotonic()
    yield
    printer(f"  done in {duration(time.monotonic() - started)}", flush=True)


UI_PORT = 5000


def mlflow_ui_command(tracking_uri: str) -> str:
    if tracking_uri.startswith("sqlite"):
        return f"mlflow ui --backend-store-uri {tracking_uri} --host 127.0.0.1 --port {UI_PORT}"
    return f"open {tracking_uri}"


def experiment_url(tracking_uri: str, experiment_id: str) -> str:
    """The experiment's runs table. MLflow 3.17's UI opens every experiment on its GenAI overview unless the
    browser was switched to "Model training" once (workflowType, kept in its local storage) or the URL says so."""
    base = f"http://127.0.0.1:{UI_PORT}" if tracking_uri.startswith("sqlite") else tracking_uri.rstrip("/")
    return f"{base}/#/experiments/{experiment_id}/runs?workflowType=machine_learning"


def start_lines(name: str, total: int, datasets: list[str], slots: int, tracking_uri: str,
                dashboard: str | None, experiment_id: str = "") -> list[str]:
    """Where to watch a study that starts."""
    lines = [f"Study {name}: {total} trials on {len(datasets)} dataset(s), {slots} at a time"]
    if dashboard:
        lines.append(f"Ray dashboard: {dashboard}  (Actors: one Stage1Trial per running trial, named by "
                     f"dataset, configuration and seed)")
    lines.append(f"MLflow: {mlflow_ui_command(tracking_uri)}")
    if experiment_id:
        lines.append(f"  then {experiment_url(tracking_uri, experiment_id)}")
    return lines


def answer_line(summary, budget: str) -> str:
    """The study's answer in one line, from summarize()'s table: where the best SSL configuration (chosen
    by validation) beats the baseline on test SVM accuracy."""
    best, base = summary_key(BEST_SSL_PREFIX, TEST_SVM), summary_key(BASELINE_PREFIX, TEST_SVM)
    if summary is None or not len(summary) or best not in summary or base not in summary:
        return "Answer: no dataset has both a finished SSL configuration and a finished baseline."
    both = summary.dropna(subset=[best, base])
    if not len(both):
        return "Answer: no dataset has both a finished SSL configuration and a finished baseline."
    diff = both[best] - both[base]
    text = (f"Answer: the best SSL configuration (by validation) beats the baseline's test SVM accuracy on "
            f"{int((diff > 0).sum())} of {len(both)} dataset(s), mean difference {diff.mean():+.3f}")
    if budget in PLUMBING_BUDGETS:
        text += f" ({budget} budget: a plumbing check, not a result)"
    return text + "."

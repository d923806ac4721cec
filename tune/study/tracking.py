"""The MLflow layout of DESIGN.md section 6: one experiment per study, one parent run per dataset,
one nested child run per Ray trial (tagged with its trial id, so a retried or resumed trial finds
its run again instead of writing a duplicate).

Everything goes through MlflowClient with explicit run ids: trial processes run in other working
directories and other processes than the driver, so no fluent "active run" state is shared.
"""
from __future__ import annotations

import contextlib
import getpass
import json
import math
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
from mlflow.entities import Dataset, DatasetInput, InputTag, Metric, Param, RunTag
import ray
from ray.tune import Callback

from results.contract import (CONFIG_TAG, DATA_CONTEXT_TAG, DATASET_TAG, ERROR_TAG, EXPERIMENT_KIND,
                              EXPERIMENT_KIND_TAG, GIT_BRANCH_TAG, GIT_COMMIT_TAG, GIT_DIRTY_TAG, KEY_TAG, MLFLOW_S,
                              PARENT_TAG, ROLE_PARENT, ROLE_TAG, ROLE_TRIAL, SOURCE_NAME_TAG, SOURCE_TYPE_TAG,
                              STUDY_TAG, TEST_SVM, TRAIN_LOSS, TRIAL_TAG, FAILED_KEY, USER_TAG, config_id, trial_key)
from tune.study.interrupts import STOP, STORE_EXIT, guarded, store_identity, store_lost, study_failure
from tune.study.retry import StoreUnavailable, retrying_client

NODE_TAG = "ray.node_id"
BATCH = 900                          # MLflow accepts at most 1000 metrics per log_batch
REPO = Path(__file__).resolve().parents[2]


def code_version_tags(entry_point: str | None = None, repo: Path = REPO) -> dict[str, str]:
    """The tags MLflow's fluent runs carry and client-created runs lack: user, source (the entry point,
    relative to the repository) and the git commit, branch and dirty flag (tracked files changed).
    Computed once by the study driver; trials may run on nodes without a checkout."""
    script = Path(entry_point or sys.argv[0] or "python").resolve()
    try:
        source = str(script.relative_to(repo))
    except ValueError:
        source = str(script)
    tags = {USER_TAG: _user(), SOURCE_NAME_TAG: source, SOURCE_TYPE_TAG: "LOCAL"}
    commit = _git(repo, "rev-parse", "HEAD")
    if commit:
        tags[GIT_COMMIT_TAG] = commit
        tags[GIT_DIRTY_TAG] = str(bool(_git(repo, "status", "--porcelain", "--untracked-files=no"))).lower()
        branch = _git(repo, "rev-parse", "--abbrev-ref", "HEAD")
        if branch and branch != "HEAD":
            tags[GIT_BRANCH_TAG] = branch
    return tags


def _git(repo: Path, *args: str) -> str:
    try:
        done = subprocess.run(["git", "-C", str(repo), *args], capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.SubprocessError):
        return ""
    return done.stdout.strip() if done.returncode == 0 else ""


def _user() -> str:
    try:
        return getpass.getuser()
    except (KeyError, OSError):     # no name for the uid (a container)
        return "unknown"


def dataset_digest(x_train: np.ndarray, y_train: np.ndarray) -> str:
    """What the tokenizer trained on: a hash of the preprocessed train split (series and labels)."""
    from tune.engine.checkpoints import fingerprint     # imports torch: not in a simulated trial's process

    return fingerprint(x_train, y_train)[:12]


def dataset_input(data) -> DatasetInput:
    """A UCRDataset (datasets.ucr) as an MLflow dataset input: its name, the digest of the preprocessed
    train split, where it was read from, the tensor schema and the split sizes (the runs table's Dataset)."""
    spec = lambda dtype, shape: json.dumps([{"type": "tensor", "tensor-spec": {"dtype": str(dtype), "shape": shape}}])
    schema = {"mlflow_tensorspec": {"features": spec(data.x_train.dtype, [-1, int(data.x_train.shape[1])]),
                                    "targets": spec(data.y_train.dtype, [-1])}}
    profile = {"train": len(data.y_train), "val": len(data.y_val), "test": len(data.y_test),
               "length": int(data.x_train.shape[1]), "classes": len(data.classes)}
    entity = Dataset(name=data.name, digest=dataset_digest(data.x_train, data.y_train), source_type="local",
                     source=json.dumps({"uri": data.source or data.name}), schema=json.dumps(schema),
                     profile=json.dumps(profile))
    return DatasetInput(entity, tags=[InputTag(DATA_CONTEXT_TAG, "train")])


def artifact_root(tracking_uri: str, results_dir: Path, study: str) -> str | None:
    """Artifacts beside a local store; a tracking server decides for itself."""
    if tracking_uri.startswith(("sqlite:", "file:")) or "://" not in tracking_uri:
        return (results_dir / "mlartifacts" / study).resolve().as_uri()
    return None


def numeric(metrics: dict[str, Any]) -> dict[str, float]:
    """The loggable part of a metrics dict: finite numbers, no bookkeeping counters."""
    return {k: float(v) for k, v in metrics.items()
            if k != "epochs_done" and isinstance(v, (int, float)) and math.isfinite(float(v))}


class StudyTracker:
    """Driver side: the study's experiment and its per-dataset parent runs."""

    def __init__(self, tracking_uri: str, study: str, artifact_location: str | None, create: bool = True,
                 run_tags: dict[str, str] | None = None):
        """create=False: the study must be in the store already (a resumed study, the driver's callbacks);
        run_tags: code_version_tags(), on every parent run."""
        self.uri, self.study, self.run_tags = tracking_uri, study, dict(run_tags or {})
        self.client = retrying_client(tracking_uri)
        exp = self.client.get_experiment_by_name(study)
        if exp is None and not create:
            raise StoreUnavailable(f"the MLflow store {tracking_uri} has no study {study} (a store recreated empty, "
                                   f"or another --mlflow-uri than the study's?); nothing was written into it")
        self.experiment_id = exp.experiment_id if exp else self.client.create_experiment(
            study, artifact_location=artifact_location, tags={EXPERIMENT_KIND_TAG: EXPERIMENT_KIND})
        if exp and exp.tags.get(EXPERIMENT_KIND_TAG) != EXPERIMENT_KIND:   # made before this tag
            self.client.set_experiment_tag(self.experiment_id, EXPERIMENT_KIND_TAG, EXPERIMENT_KIND)

    def parent_run(self, dataset: str, params: dict[str, Any]) -> str:
        """Get or create the parent run of `dataset` (a resumed study reuses its parents)."""
        found = self.client.search_runs(
            [self.experiment_id], f"tags.`{ROLE_TAG}` = '{ROLE_PARENT}' and tags.dataset = '{dataset}'", max_results=1)
        if found:
            run_id = found[0].info.run_id
            self.client.update_run(run_id, status="RUNNING")
            return run_id
        run = self.client.create_run(self.experiment_id, run_name=dataset, tags={
            **self.run_tags, ROLE_TAG: ROLE_PARENT, DATASET_TAG: dataset, STUDY_TAG: self.study})
        self.client.log_batch(run.info.run_id, params=[Param(k, str(v)) for k, v in params.items()])
        return run.info.run_id

    def log_dataset(self, run_id: str, data) -> None:
        """A parent run's dataset input (the whole train split, as its trials see it without a validation split)."""
        self.client.log_inputs(run_id, datasets=[dataset_input(data)])

    def child_runs(self, parent_run_id: str) -> list:
        return self.client.search_runs([self.experiment_id], f"tags.`{PARENT_TAG}` = '{parent_run_id}'",
                                       max_results=10_000)

    def find_trial_run(self, trial_id: str):
        found = self.client.search_runs([self.experiment_id], f"tags.`{TRIAL_TAG}` = '{trial_id}'", max_results=1)
        return found[0] if found else None

    def close_trial(self, trial_id: str, status: str, error: str | None = None) -> None:
        """Give a trial's run its final status when its process could not (killed, crashed)."""
        run = self.find_trial_run(trial_id)
        if run is None or run.info.status in ("FINISHED", "FAILED"):
            return
        if error:
            self.client.set_tag(run.info.run_id, ERROR_TAG, error[-5000:])
        self.client.set_terminated(run.info.run_id, status)

    def finish_parent(self, run_id: str, metrics: dict[str, float], tags: dict[str, str],
                      artifacts: dict[str, Any]) -> None:
        self.client.log_batch(run_id, metrics=[Metric(k, v, _now(), 0) for k, v in numeric(metrics).items()],
                              tags=[RunTag(k, str(v)) for k, v in tags.items()])
        for name, obj in artifacts.items():
            self.client.log_dict(run_id, obj, name)
        self.client.set_terminated(run_id, "FINISHED")


class TrialRun:
    """Trial side: the child run of one Ray trial, created once and found again after a retry.

    A retried trial keeps its Ray trial id. A trial that Tune had not yet recorded when the driver
    was killed comes back under a new id but the same configuration and seed (the searcher is
    restored and deterministic), so runs are found by its trial key too: nothing is logged twice.
    `params` is the trial's whole resolved config (flat dotted keys); keys starting with one of `unused`
    (e.g. "stage2." when the study trains no prior) are not logged as params. `tags`: code_version_tags().
    """

    def __init__(self, tracking_uri: str, experiment_id: str, parent_run_id: str, trial_id: str,
                 run_name: str, params: dict[str, Any], tags: dict[str, str] | None = None,
                 unused: tuple[str, ...] = ()):
        started = time.perf_counter()
        self.client = retrying_client(tracking_uri)
        found = self.client.search_runs(
            [experiment_id], f"tags.`{TRIAL_TAG}` = '{trial_id}'", max_results=1) or self.client.search_runs(
            [experiment_id], f"tags.`{KEY_TAG}` = '{trial_key(params)}'", max_results=1)
        if found:
            self.run = found[0]
            self.client.set_tag(self.run_id, TRIAL_TAG, trial_id)
            if self.run.info.status != "FINISHED":
                # epochs already written: a trial resumed from an older Tune checkpoint trains them again
                self.logged_through = max((m.step for m in self.client.get_metric_history(self.run_id, TRAIN_LOSS)),
                                          default=0)
                self.client.update_run(self.run_id, status="RUNNING")
                if ERROR_TAG in self.run.data.tags:      # why it stopped before (an interrupt): no longer true
                    self.client.delete_tag(self.run_id, ERROR_TAG)
        else:
            self.run = self.client.create_run(experiment_id, run_name=run_name, tags={
                **(tags or {}), TRIAL_TAG: trial_id, KEY_TAG: trial_key(params), CONFIG_TAG: config_id(params), ROLE_TAG: ROLE_TRIAL,
                PARENT_TAG: parent_run_id,
                "dataset": params.get("dataset", ""), "ssl_method": params.get("ssl_method", "")})
            self.client.log_batch(self.run_id, params=[Param(k, str(v)) for k, v in params.items()
                                                       if not (unused and k.startswith(unused))])
        if ray.is_initialized():   # where the trial ran: a cluster study spreads them over its nodes
            self.client.set_tag(self.run_id, NODE_TAG, ray.get_runtime_context().get_node_id())
        self._pending: list[Metric] = []
        self.seconds = time.perf_counter() - started    # time spent in MLflow calls, for the overhead benchmark

    @property
    def run_id(self) -> str:
        return self.run.info.run_id

    def finished_metrics(self, require: tuple[str, ...] = ()) -> dict[str, float] | None:
        """The final metrics of a run that had already finished (the trial is being re-run after a kill)."""
        needed = {TEST_SVM, *require}
        if self.run.info.status == "FINISHED" and needed <= self.run.data.metrics.keys():
            return dict(self.run.data.metrics)
        return None

    def log_dataset(self, data) -> None:
        """The trial's dataset as the run's input (MLflow keeps one copy per run, name and digest)."""
        with self._timed():
            self.client.log_inputs(self.run_id, datasets=[dataset_input(data)])

    logged_through = 0    # the last epoch of a reopened run whose metrics are in the store

    def log_metrics(self, metrics: dict[str, Any], step: int, flush: bool = False) -> None:
        """Buffer per-epoch metrics; write them in one batch at evaluations (SQLite writes cost ms each).
        An epoch the run already holds (a resumed trial repeating the epochs after its checkpoint) is not
        written twice."""
        if TRAIN_LOSS in metrics and step <= self.logged_through:
            if flush:
                self.flush()
            return
        ts = _now()
        self._pending += [Metric(k, v, ts, step) for k, v in numeric(metrics).items()]
        if flush:
            self.flush()

    def flush(self) -> None:
        with self._timed():
            for i in range(0, len(self._pending), BATCH):
                self.client.log_batch(self.run_id, metrics=self._pending[i:i + BATCH])
            self._pending = []

    def log_artifact(self, path: str | Path, artifact_path: str | None = None) -> None:
        with self._timed():
            self.client.log_artifact(self.run_id, str(path), artifact_path)

    def log_figure(self, figure, name: str) -> None:
        with self._timed():
            self.client.log_figure(self.run_id, figure, name)

    def log_dict(self, obj: dict, name: str) -> None:
        with self._timed():
            self.client.log_text(self.run_id, json.dumps(obj, indent=2, default=str), name)

    def finish(self, status: str = "FINISHED", error: str | None = None) -> None:
        self._pending.append(Metric(MLFLOW_S, self.seconds, _now(), 0))
        self.flush()
        if error:
            self.client.set_tag(self.run_id, ERROR_TAG, error[-5000:])
        self.client.set_terminated(self.run_id, status)

    @contextlib.contextmanager
    def _timed(self):
        started = time.perf_counter()
        try:
            yield
        finally:
            self.seconds += time.perf_counter() - started


def _now() -> int:
    return int(time.time() * 1000)


class TrialStatus(Callback):
    """Close MLflow runs whose trial process could not: crashed after its retries, or stopped by Tune
    (by the early-stopping scheduler when the study has one: KILLED, with the epoch as the reason)."""

    def __init__(self, tracking_uri: str, study: str, early_stopping: bool = False):
        self.tracking_uri, self.study, self.early_stopping = tracking_uri, study, early_stopping
        self._tracker = None

    CHECK_EVERY_S = 30.0

    def _get(self):
        if self._tracker is None:
            self._tracker = StudyTracker(self.tracking_uri, self.study, None, create=False)
        return self._tracker

    def __getstate__(self):
        return {**self.__dict__, "_tracker": None}

    @guarded
    def setup(self, **info):
        self._identity, self._checked = store_identity(self.tracking_uri), time.monotonic()
        self._get()

    @guarded
    def on_step_end(self, iteration, trials, **info):
        """Every CHECK_EVERY_S: does the store still hold the study? (a deleted SQLite file comes back empty)"""
        if time.monotonic() - getattr(self, "_checked", 0.0) < self.CHECK_EVERY_S:
            return
        self._checked = time.monotonic()
        tracker = self._get()       # made in setup(), while the store was whole
        lost = store_lost(lambda: tracker.client.raw, self.tracking_uri, getattr(self, "_identity", None),
                          tracker.experiment_id, self.study, [])
        if lost:
            raise StoreUnavailable(lost)

    @guarded
    def on_trial_recover(self, iteration, trials, trial, **info):
        self._stop_for_study_failure(trial)

    def _stop_for_study_failure(self, trial) -> bool:
        """A trial failed because the study's store or disk did: stop the study (one line) instead of retrying
        it, and of failing the next trials the same way."""
        reason = study_failure(_trial_exception(trial))
        if reason:
            STOP.request(reason, STORE_EXIT)
        return bool(reason)

    @guarded
    def on_trial_error(self, iteration, trials, trial, **info):
        if self._stop_for_study_failure(trial):
            return      # the store or disk that failed it cannot take its close either: --resume closes it
        error = None
        if trial.error_file and Path(trial.error_file).exists():
            error = Path(trial.error_file).read_text()
        self._get().close_trial(trial.trial_id, "FAILED", error=error or "trial failed after its retries")

    @guarded
    def on_trial_complete(self, iteration, trials, trial, **info):
        last = trial.last_result or {}
        if TEST_SVM in last or FAILED_KEY in last:
            return      # it reached its end and closed its own run: no store lookup per trial (archive scale)
        epochs = last.get("epochs_done")
        reason = (f"stopped early at epoch {epochs} by the early-stopping scheduler: its validation score "
                  f"was below the rung of the trials of its dataset and method" if self.early_stopping and epochs
                  else "stopped by Tune before it finished")
        self._get().close_trial(trial.trial_id, "KILLED", error=reason)


def _trial_exception(trial) -> BaseException | None:
    """The exception of a trial's latest failure, as Tune pickled it (None where it could not)."""
    import ray.cloudpickle as cloudpickle

    path = trial.pickled_error_file
    try:
        with open(path, "rb") as fh:
            return cloudpickle.load(fh)
    except Exception:  # noqa: BLE001 - no pickled error (a lost actor) is no study failure
        return None

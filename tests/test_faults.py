"""Faults during a study, piece by piece (fast): MLflow retries, the store-lost check, stop requests and
callbacks that never raise into Tune, resume binding, a damaged Tune state, resources no node has, an
undefined objective, the exit code, and the entry points' one-line errors."""
from __future__ import annotations

import argparse
import errno
import json
import os
import pickle
import signal
import time

import numpy as np
import pytest
from mlflow.exceptions import MlflowException
from mlflow.protos.databricks_pb2 import RESOURCE_DOES_NOT_EXIST
from mlflow.tracking import MlflowClient

from results.cli import run_cli
from results.errors import UsageError
from results.report import main as report_main
from tune.study import interrupts
from tune.study.interrupts import STOP, StudyStopped, guarded, store_identity, store_lost, study_failure
from tune.study.plan import SETTINGS_FILE, restore_settings
from tune.study.preflight import check_node_resources
from tune.study.retry import RetryingClient, StoreUnavailable, retry_seconds, transient, with_retries
from tune.study.run import check_tune_state, exit_code


class Flaky:
    """A client whose calls fail `failures` times with `error`, then succeed."""

    def __init__(self, failures: int, error: Exception):
        self.failures, self.error, self.calls, self.created = failures, error, 0, []

    def log_batch(self, run_id, metrics=()):
        self.calls += 1
        if self.calls <= self.failures:
            raise self.error
        return "ok"

    def create_run(self, experiment_id, start_time=None, tags=None, run_name=None):
        self.calls += 1
        self.created.append(run_name)      # the write reached the store ...
        if self.calls <= self.failures:
            raise self.error               # ... but its answer was lost
        return run_name

    def search_runs(self, experiment_ids, query, max_results=1):
        return list(self.created)


DOWN = MlflowException("API request failed: Max retries exceeded (Connection refused)")   # INTERNAL_ERROR


def test_a_store_that_comes_back_is_retried_until_the_call_succeeds():
    client = Flaky(3, DOWN)
    slept = []
    call = RetryingClient(client, "http://store", seconds=60)._client.log_batch
    assert with_retries(lambda: call("r"), store="http://store", what="log_batch", seconds=60,
                        sleep=slept.append) == "ok"
    assert client.calls == 4 and slept == [1.0, 2.0, 4.0]        # backoff doubles


def test_a_store_that_stays_away_fails_in_one_line_naming_it(capsys):
    client = Flaky(10 ** 6, DOWN)
    with pytest.raises(StoreUnavailable) as err:
        with_retries(lambda: client.log_batch("r"), store="http://store:5000", what="log_batch", seconds=2.5,
                     sleep=lambda s: None)
    assert "http://store:5000" in str(err.value) and "--resume" in str(err.value) and "\n" not in str(err.value)
    assert capsys.readouterr().err.count("\n") == 1           # one warning when the retries start


def test_errors_a_retry_cannot_change_are_raised_at_once():
    client = Flaky(1, MlflowException("no run", error_code=RESOURCE_DOES_NOT_EXIST))
    with pytest.raises(MlflowException):
        with_retries(lambda: client.log_batch("r"), store="s", what="log_batch", seconds=60, sleep=lambda s: None)
    assert client.calls == 1
    assert not transient(ValueError("a bug")) and transient(OSError(28, "No space left on device"))


def test_a_run_created_whose_answer_was_lost_is_found_not_created_twice(monkeypatch):
    monkeypatch.setattr("time.sleep", lambda s: None)
    client = Flaky(1, DOWN)
    retrying = RetryingClient(client, "s", seconds=60)
    assert retrying.create_run("1", tags={"ray.trial_id": "abc"}, run_name="run-a") == "run-a"
    assert client.created == ["run-a"]             # the retry found it instead of creating a second one


def test_retry_window_from_the_environment(monkeypatch):
    monkeypatch.setenv("SSLVQ_MLFLOW_RETRY_S", "12")
    assert retry_seconds() == 12
    monkeypatch.setenv("SSLVQ_MLFLOW_RETRY_S", "")
    assert retry_seconds() == 600


def test_a_deleted_and_recreated_sqlite_store_is_detected(tmp_path):
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    client = MlflowClient(uri)
    exp = client.create_experiment("study")
    parent = client.create_run(exp).info.run_id
    identity = store_identity(uri)
    assert store_lost(lambda: client, uri, identity, exp, "study", [parent]) == ""
    (tmp_path / "mlflow.db").unlink()           # this process keeps the deleted file open; a trial's recreates it
    assert "deleted or replaced" in store_lost(lambda: client, uri, identity, exp, "study", [parent])
    empty = f"sqlite:///{tmp_path / 'empty.db'}"    # what the trials and a resumed study see: an empty store
    assert "lost study study" in store_lost(lambda: MlflowClient(empty), empty, None, exp, "study", [parent])



def test_the_driver_stops_the_study_within_a_check_of_the_store_file_being_deleted(tmp_path):
    """The driver's check needs no store call to see the file replaced (a call could wait out the retries)."""
    from tune.study.tracking import TrialStatus

    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    MlflowClient(uri).create_experiment("study")
    status = TrialStatus(uri, "study")
    status.setup()
    (tmp_path / "mlflow.db").unlink()
    status._checked = 0.0                       # the next step checks
    started = time.monotonic()
    try:
        status.on_step_end(1, [])
        assert "deleted or replaced" in STOP.reason and STOP.code == interrupts.STORE_EXIT
    finally:
        STOP.reset()
    assert time.monotonic() - started < 5


class Callback:
    def __init__(self, error):
        self.error = error

    @guarded
    def on_trial_error(self):
        raise self.error


def test_callbacks_never_raise_into_tune(monkeypatch, capsys):
    kills = []
    monkeypatch.setattr(os, "kill", lambda pid, sig: kills.append(sig))
    STOP.reset()
    STOP.in_tune = True
    try:
        Callback(ValueError("a bug")).on_trial_error()
        assert not STOP and "warning: Callback.on_trial_error failed: a bug" in capsys.readouterr().err
        Callback(StoreUnavailable("the MLflow store s failed")).on_trial_error()
        assert STOP.reason == "the MLflow store s failed" and STOP.code == 1 and kills == [signal.SIGUSR1]
        Callback(DOWN).on_trial_error()            # a second request keeps the first reason, no second SIGUSR1
        assert STOP.reason == "the MLflow store s failed" and kills == [signal.SIGUSR1]
    finally:
        STOP.reset()


def test_a_signal_outside_tune_stops_at_once_and_a_second_one_always():
    STOP.reset()
    try:
        with pytest.raises(StudyStopped):
            interrupts._on_signal(signal.SIGTERM, None)
        assert STOP.code == 143
        with pytest.raises(StudyStopped):
            interrupts._on_signal(signal.SIGINT, None)
        assert STOP.code == 143                  # the first reason stays
    finally:
        STOP.reset()


def _saved(tmp_path, **settings):
    path = tmp_path / SETTINGS_FILE
    path.write_text(json.dumps({"space": "aug_weight", "budget": "smoke", "datasets": "GunPoint", "seeds": None,
                                "mlflow_uri": "http://old:5000", **settings}))
    return path


def test_resume_uses_the_recorded_settings(tmp_path):
    args = argparse.Namespace(space="aug_weight", budget="quick", datasets="small", seeds=None, mlflow_uri=None,
                              explicit={"space"})
    restored = restore_settings(args, _saved(tmp_path))
    assert (restored.budget, restored.datasets, restored.mlflow_uri) == ("smoke", "GunPoint", "http://old:5000")


@pytest.mark.parametrize("flag, value, shown", [("budget", "quick", "--budget 'quick'"),
                                                ("mlflow_uri", "sqlite:////x.db", "--mlflow-uri 'sqlite:////x.db'"),
                                                ("seeds", 4, "--seeds 4")])
def test_resume_refuses_a_flag_that_contradicts_the_study(tmp_path, flag, value, shown):
    args = argparse.Namespace(space="aug_weight", budget="quick", datasets="small", seeds=None, mlflow_uri=None,
                              explicit={flag})
    setattr(args, flag, value)
    with pytest.raises(UsageError) as err:
        restore_settings(args, _saved(tmp_path))
    assert str(err.value).startswith(shown + " conflicts with the resumed study's recorded")
    assert "\n" not in str(err.value)


@pytest.mark.parametrize("name, text", [("experiment_state-2026.json", '{"trial_data": [["a"'),
                                        ("searcher-state-2026.pkl", pickle.dumps({"asked": 3})[:-5])])
def test_a_truncated_tune_state_is_refused(tmp_path, name, text):
    check_tune_state(tmp_path)                                  # none: Tuner.can_restore's business
    path = tmp_path / name
    path.write_bytes(text.encode() if isinstance(text, str) else text)
    with pytest.raises(UsageError, match="Tune state .* is damaged"):
        check_tune_state(tmp_path)


def test_a_trial_failed_by_the_store_or_the_disk_stops_the_study_not_the_trial():
    """Tune would retry such a trial into the same failure; the study stops with one line instead."""
    from ray.exceptions import RayTaskError

    def as_trial_error(err):     # what Tune pickles for a failed trial: the trial's exception as a RayTaskError's cause
        return RayTaskError("train", "Traceback ...", err)

    store = study_failure(as_trial_error(StoreUnavailable("the MLflow store x failed for 60 s (log_batch: full)")))
    assert store.startswith("the MLflow store x failed") and "\n" not in store
    disk = study_failure(as_trial_error(OSError(errno.ENOSPC, "No space left on device", "/r/ckpt")))
    assert disk.startswith("cannot write /r/ckpt (No space left on device)")
    assert study_failure(OSError(errno.EROFS, "Read-only file system"))
    assert study_failure(as_trial_error(ValueError("nan loss"))) == ""        # the trial's own failure: retried
    assert study_failure(as_trial_error(OSError(errno.ENOENT, "No such file"))) == ""
    assert study_failure(None) == ""


def test_resources_no_node_can_give_are_refused_in_one_line():
    nodes = [{"CPU": 2.0}, {"CPU": 4.0, "GPU": 1.0}]
    check_node_resources(nodes, 4, 1)
    check_node_resources(nodes, 2, 0.25)
    with pytest.raises(UsageError, match=r"--cpus-per-trial 3 --gpus-per-trial 2 but no node .* 4 CPUs and 1 GPUs"):
        check_node_resources(nodes, 3, 2)
    with pytest.raises(UsageError, match=r"--cpus-per-trial 8 but no node"):
        check_node_resources(nodes, 8, 0)


def test_a_study_with_nan_objectives_does_not_exit_0(capsys):
    assert exit_code(["FINISHED", "FINISHED"], finite=0) == 1
    assert "none has a defined objective" in capsys.readouterr().err
    assert exit_code(["FINISHED", "FAILED"], finite=1) == 0


def _fungi_like(root):
    """18 classes of one training series each (the archive's Fungi: 18 x 201 train, 186 test)."""
    rng = np.random.default_rng(0)
    folder = root / "Fungi"
    folder.mkdir(parents=True)
    for split, n in (("TRAIN", 18), ("TEST", 186)):
        y = np.arange(n) % 18 + 1
        np.savetxt(folder / f"Fungi_{split}.tsv", np.column_stack([y, rng.normal(size=(n, 201))]), fmt="%.6g",
                   delimiter="\t")


def _cli(capsys, main, argv):
    with pytest.raises(SystemExit) as exit_info:
        run_cli(main, argv)
    err = capsys.readouterr().err.strip()
    return exit_info.value.code, err


def test_a_dataset_whose_objective_is_undefined_is_refused_in_the_plan(capsys, tmp_path):
    from tune.run_ablation import main

    _fungi_like(tmp_path / "ucr")
    code, err = _cli(capsys, main, ["--space", "aug_weight", "--ucr-root", str(tmp_path / "ucr"), "--datasets",
                                    "Fungi", "--results-dir", str(tmp_path / "r"), "--dry-run"])
    assert code == 2 and err.startswith("error: Fungi: every class has a single training series") and "\n" not in err


def test_a_cpu_request_this_machine_cannot_give_is_refused_before_ray(capsys, tmp_path):
    from tune.run_ablation import main

    code, err = _cli(capsys, main, ["--space", "aug_weight", "--datasets", "GunPoint", "--results-dir",
                                    str(tmp_path), "--cpus-per-trial", str(os.cpu_count() + 1)])
    assert code == 2 and "but no node of this machine has that much" in err and "\n" not in err
    assert not (tmp_path / "ray_results").exists()


def test_train_one_on_series_too_short_for_the_stft_is_one_line(capsys):
    from tune.train_one import main

    code, err = _cli(capsys, main, ["--dataset", "GunPoint", "--set", "tokenizer.n_fft=512", "--epochs", "1"])
    assert code == 2 and err.startswith("error: GunPoint has series of length 150, shorter than") and "\n" not in err


def test_report_study_names_never_leave_the_results_dir(capsys, tmp_path):
    code, err = _cli(capsys, report_main, ["--study", "../../x", "--results-dir", str(tmp_path)])
    assert code == 2 and "study name '../../x' must be" in err and "\n" not in err
    assert list(tmp_path.iterdir()) == []


def test_the_study_callbacks_only_define_hooks_tune_calls():
    """A misnamed hook (on_step: Tune has on_step_begin / on_step_end) is never called, silently."""
    from ray.tune import Callback as TuneCallback

    from tune.study.console import TrialLines
    from tune.study.tracking import TrialStatus
    from tune.study.trial_storage import DropEndedTrialCheckpoints

    hooks = {name for name in dir(TuneCallback) if name.startswith("on_")}
    for callback in (TrialStatus, TrialLines, DropEndedTrialCheckpoints):
        assert issubclass(callback, TuneCallback)
        defined = {name for name in vars(callback) if name.startswith("on_")}
        assert defined <= hooks, f"{callback.__name__}: {defined - hooks} are no Tune hooks"

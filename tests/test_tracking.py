"""What the MLflow UI shows of a study: readable run names, the code version, the dataset input, the
experiment kind, and no params that did not apply (real MLflow on a temporary SQLite store)."""
import json
import subprocess
from pathlib import Path

import numpy as np
import pytest
from mlflow.tracking import MlflowClient

from datasets.ucr import load_dataset
from results.contract import (EXPERIMENT_KIND, EXPERIMENT_KIND_TAG, GIT_COMMIT_TAG, GIT_DIRTY_TAG, SOURCE_NAME_TAG,
                              USER_TAG, config_label, default_tracking_uri, format_weight, run_label)
from tune.study.tracking import StudyTracker, TrialRun, artifact_root, code_version_tags, dataset_digest, dataset_input


@pytest.mark.parametrize("params, name", [
    ({"ssl_method": "vibcreg", "aug_set": "warp", "aug_recon_weight": 0.1, "seed": 0}, "vibcreg/warp w=0.10 s0"),
    ({"ssl_method": "barlowtwins", "aug_set": "slice+gauss", "aug_recon_weight": "0.05", "seed": 3},
     "barlowtwins/slice+gauss w=0.05 s3"),
    ({"ssl_method": "vibcreg", "aug_set": "warp", "aug_recon_weight": 0.1234567, "seed": 1}, "vibcreg/warp w=0.123 s1"),
    ({"ssl_method": "none", "aug_set": "warp", "aug_recon_weight": 0.1, "seed": 2}, "none s2"),
])
def test_run_names_read_as_the_configuration(params, name):
    assert run_label(params) == name
    assert config_label(params) == name.rsplit(" s", 1)[0]


def test_format_weight_keeps_small_weights_apart():
    assert format_weight(0.0) == "0.00" and format_weight(0.3) == "0.30"
    assert format_weight(0.0003) == "0.0003" and format_weight("n/a") == "n/a"


def _git(repo: Path, *args: str) -> None:
    subprocess.run(["git", "-C", str(repo), *args], check=True, capture_output=True)


def test_code_version_tags_name_the_commit_and_a_dirty_checkout(tmp_path: Path):
    _git(tmp_path, "init", "-q")
    (tmp_path / "a.py").write_text("x = 1\n")
    _git(tmp_path, "add", "a.py")
    _git(tmp_path, "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", "one")
    head = subprocess.run(["git", "-C", str(tmp_path), "rev-parse", "HEAD"], capture_output=True, text=True).stdout.strip()
    tags = code_version_tags(str(tmp_path / "a.py"), repo=tmp_path)
    assert tags[GIT_COMMIT_TAG] == head and tags[GIT_DIRTY_TAG] == "false"
    assert tags[SOURCE_NAME_TAG] == "a.py" and tags[USER_TAG]
    (tmp_path / "a.py").write_text("x = 2\n")
    assert code_version_tags(str(tmp_path / "a.py"), repo=tmp_path)[GIT_DIRTY_TAG] == "true"
    outside = code_version_tags("x.py", repo=tmp_path / "no-repo")      # not a checkout: no commit, no error
    assert GIT_COMMIT_TAG not in outside and USER_TAG in outside


def test_dataset_digest_follows_the_preprocessed_train_split():
    x, y = np.zeros((4, 8), np.float32), np.arange(4)
    assert dataset_digest(x, y) == dataset_digest(x.copy(), y.copy())
    assert dataset_digest(x, y) != dataset_digest(x + 1, y)
    assert dataset_digest(x, y) != dataset_digest(x, y[::-1].copy())


def test_a_trial_run_records_name_code_version_dataset_and_only_params_that_apply(tmp_path: Path):
    uri = default_tracking_uri(tmp_path)
    tracker = StudyTracker(uri, "ui", artifact_root(uri, tmp_path, "ui"), run_tags={GIT_COMMIT_TAG: "abc", USER_TAG: "me"})
    client = MlflowClient(uri)
    assert client.get_experiment(tracker.experiment_id).tags[EXPERIMENT_KIND_TAG] == EXPERIMENT_KIND
    parent = tracker.parent_run("GunPoint", {"seeds": 1})
    assert client.get_run(parent).data.tags[GIT_COMMIT_TAG] == "abc"
    params = {"dataset": "GunPoint", "ssl_method": "vibcreg", "aug_set": "warp", "aug_recon_weight": 0.1, "seed": 0,
              "stage2.epochs": 100, "tokenizer.codebook_size": 32}
    run = TrialRun(uri, tracker.experiment_id, parent, "t1", run_label(params), params,
                   tags={GIT_COMMIT_TAG: "abc", USER_TAG: "me"}, unused=("stage2.",))
    data = load_dataset("GunPoint")
    run.log_dataset(data)
    run.log_dataset(data)                    # a retried trial logs it again: still one input
    got = client.get_run(run.run_id)
    assert got.info.run_name == "vibcreg/warp w=0.10 s0" and got.data.tags[GIT_COMMIT_TAG] == "abc"
    assert "stage2.epochs" not in got.data.params and got.data.params["tokenizer.codebook_size"] == "32"
    inputs = got.inputs.dataset_inputs
    assert len(inputs) == 1
    ds = inputs[0].dataset
    assert ds.name == "GunPoint" and ds.digest == dataset_digest(data.x_train, data.y_train)
    assert json.loads(ds.profile) == {"train": 50, "val": 0, "test": 150, "length": 150, "classes": 2}
    assert {t.key: t.value for t in inputs[0].tags}["mlflow.data.context"] == "train"
    assert Path(json.loads(ds.source)["uri"]).name == "GunPoint"
    # a store made before the kind tag gets it when the study opens it again
    client.delete_experiment_tag(tracker.experiment_id, EXPERIMENT_KIND_TAG)
    StudyTracker(uri, "ui", None)
    assert client.get_experiment(tracker.experiment_id).tags[EXPERIMENT_KIND_TAG] == EXPERIMENT_KIND
    assert dataset_input(data).dataset.digest == ds.digest


def test_a_resumed_trial_does_not_write_the_epochs_its_run_already_holds(tmp_path: Path):
    """A trial restored from a checkpoint older than its last flush trains epochs 3-4 again: written once."""
    uri = default_tracking_uri(tmp_path)
    tracker = StudyTracker(uri, "resumed", artifact_root(uri, tmp_path, "resumed"))
    parent = tracker.parent_run("GunPoint", {"seeds": 1})
    params = {"dataset": "GunPoint", "ssl_method": "none", "seed": 0}
    first = TrialRun(uri, tracker.experiment_id, parent, "t1", "none s0", params)
    for epoch in range(1, 5):
        first.log_metrics({"train/loss": 1.0 / epoch}, epoch, flush=epoch == 4)
    again = TrialRun(uri, tracker.experiment_id, parent, "t1", "none s0", params)   # from the epoch-2 checkpoint
    for epoch in range(3, 7):
        again.log_metrics({"train/loss": 9.0}, epoch, flush=epoch in (4, 6))
    history = MlflowClient(uri).get_metric_history(first.run_id, "train/loss")
    assert sorted((m.step, m.value) for m in history) == [(1, 1.0), (2, 0.5), (3, 1 / 3), (4, 0.25), (5, 9.0), (6, 9.0)]

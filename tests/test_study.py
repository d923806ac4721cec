"""End-to-end studies with a real local Ray cluster, real Optuna and a real MLflow store."""
from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections import Counter

import pytest

from results.contract import GIT_COMMIT_TAG, run_label
from study_helpers import CLI, CONTRACT, REPO, cli, client, runs, study_env

pytestmark = pytest.mark.slow
SMOKE = ["--space", "aug_weight", "--budget", "smoke", "--set", "proj_dim=64", "--methods", "vibcreg"]   # 2 cells


def _validation_means(children):
    """Mean validation accuracy per searched configuration, recomputed from the children."""
    by_group = {}
    for r in children:
        if r.data.params["ssl_method"] == "none":
            continue
        key = (r.data.params["ssl_method"], r.data.params["aug_set"], r.data.params["aug_recon_weight"])
        by_group.setdefault(key, []).append(r.data.metrics["val/svm_acc"])
    return {k: sum(v) / len(v) for k, v in by_group.items()}


def _get(url: str, data: bytes | None = None) -> tuple[int, bytes]:
    request = urllib.request.Request(url, data=data, headers={"Content-Type": "application/json"} if data else {})
    with urllib.request.urlopen(request, timeout=10) as response:
        return response.status, response.read()


def test_smoke_study_on_two_bundled_datasets(tmp_path):
    args = [sys.executable, str(CLI), "--results-dir", str(tmp_path), "--no-report", *SMOKE,
            "--datasets", "GunPoint,ItalyPowerDemand", "--num-samples", "2", "--stage2", "off", "--name", "smoke"]
    err_file = (tmp_path / "stderr.log").open("w")
    proc = subprocess.Popen(args, cwd=REPO, env=study_env(), stdout=subprocess.PIPE, stderr=err_file, text=True)
    lines = []
    for line in proc.stdout:                          # the dashboard answers while the study runs
        lines.append(line)
        if line.startswith("Ray dashboard: "):
            url = line.split()[2]
            assert _get(url)[0] == 200
            break
    out, _ = proc.communicate(timeout=600)
    err_file.close()
    err = (tmp_path / "stderr.log").read_text()
    stdout = "".join(lines) + out
    assert proc.returncode == 0, err[-3000:]
    assert any(l.startswith("Ray dashboard: http://127.0.0.1:") for l in lines), stdout[-2000:]
    assert "mlflow ui --backend-store-uri sqlite:///" in stdout
    trial_lines = [l for l in stdout.splitlines() if l.startswith("[")]             # one line per trial, no tables
    assert [l[:6] for l in trial_lines] == [f"[{i}/6] " for i in range(1, 7)] and "ETA" in trial_lines[-1]
    assert "Trial status" not in stdout and "Checkpoint successfully created" not in stdout

    parents = runs(tmp_path, "smoke", "parent")
    children = runs(tmp_path, "smoke", "trial")
    assert sorted(p.data.tags["dataset"] for p in parents) == ["GunPoint", "ItalyPowerDemand"]
    assert len(children) == 2 * (1 + 2)                                   # (baseline + 2 configs) x 1 seed
    assert len({c.data.tags["ray.trial_id"] for c in children}) == len(children)
    for parent in parents:
        mine = [c for c in children if c.data.tags["mlflow.parentRunId"] == parent.info.run_id]
        assert len(mine) == 3 and {c.data.params["dataset"] for c in mine} == {parent.data.tags["dataset"]}
        assert sum(c.data.params["ssl_method"] == "none" for c in mine) == 1
        best = (parent.data.tags["best_ssl.ssl_method"], parent.data.tags["best_ssl.aug_set"],
                parent.data.tags["best_ssl.aug_recon_weight"])
        means = _validation_means(mine)
        assert means[best] == max(means.values())     # selection by validation (ties allowed), never by test
        assert parent.data.metrics["best_ssl/val_svm_acc"] == pytest.approx(means[best])
        assert "best_ssl/test_svm_acc" in parent.data.metrics and "baseline/test_svm_acc" in parent.data.metrics
    c = client(tmp_path)
    for child in children:
        assert child.info.status == "FINISHED"
        assert child.info.run_name == run_label(child.data.params)                 # e.g. vibcreg/warp w=0.10 s0
        assert child.inputs.dataset_inputs[0].dataset.name == child.data.params["dataset"]
        assert GIT_COMMIT_TAG in child.data.tags and not [k for k in child.data.params if k.startswith("stage2.")]
        assert CONTRACT <= child.data.metrics.keys()
        assert {"dataset", "ssl_method", "aug_set", "aug_recon_weight", "seed", "tokenizer.codebook_size",
                "proj_dim", "lr"} <= child.data.params.keys()
        assert len(c.get_metric_history(child.info.run_id, "train/loss")) == 2    # per epoch
        arts = {a.path for a in c.list_artifacts(child.info.run_id)}
        assert {"config.json", "plots", "checkpoint"} <= arts
    _check_mlflow_ui(tmp_path, parents, children)


def _check_mlflow_ui(results, parents, children):
    """The printed `mlflow ui` command serves the study: one experiment, its parents and nested trials."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    env = {**study_env(), "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"}
    server = subprocess.Popen([sys.executable, "-m", "mlflow", "ui", "--backend-store-uri",
                               f"sqlite:///{results / 'mlflow.db'}", "--host", "127.0.0.1", "--port", str(port),
                               "--workers", "1"], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.time() + 90
        while True:
            try:
                if _get(f"{base}/health")[0] == 200:
                    break
            except OSError:
                if time.time() > deadline:
                    pytest.fail("mlflow ui did not answer within 90 s")
                time.sleep(1)
        experiments = json.loads(_get(f"{base}/api/2.0/mlflow/experiments/search?max_results=100")[1])
        exp = [e for e in experiments["experiments"] if e["name"] == "smoke"]
        assert len(exp) == 1
        body = json.dumps({"experiment_ids": [exp[0]["experiment_id"]], "max_results": 1000}).encode()
        found = json.loads(_get(f"{base}/api/2.0/mlflow/runs/search", body)[1])["runs"]
        assert len(found) == len(parents) + len(children)
        nested = [r for r in found if any(t["key"] == "mlflow.parentRunId" for t in r["data"].get("tags", []))]
        assert len(nested) == len(children)
    finally:
        server.terminate()
        server.wait(timeout=30)


def test_ray_train_executor_on_cpu(tmp_path):
    """Trials, and the priors of --stage2 best, each as a Ray Train run (as on a GPU)."""
    proc = cli(tmp_path, *SMOKE, "--datasets", "GunPoint", "--num-samples", "1", "--executor", "train",
               "--stage2", "best", "--name", "train-path")
    assert proc.returncode == 0, proc.stderr[-3000:]
    children = runs(tmp_path, "train-path", "trial")
    assert len(children) == 3 and all(c.info.status == "FINISHED" for c in children)
    assert all(CONTRACT <= c.data.metrics.keys() for c in children)
    with_gen = [c for c in children if "gen/fid" in c.data.metrics]        # the baseline and vibcreg's selection
    assert sorted(c.data.params["ssl_method"] for c in with_gen) == ["none", "vibcreg"]
    for c in with_gen:                                                     # GunPoint has 2 classes
        m = c.data.metrics
        assert m["gen/fid"] >= 0 and 1 <= m["gen/is"] <= 2 and 0 <= m["gen/cas"] <= 1
        assert m["gen/fid_low"] <= m["gen/fid"] <= m["gen/fid_high"]
        assert "plots/samples.png" in {a.path for a in client(tmp_path).list_artifacts(c.info.run_id, "plots")}
    storage = tmp_path / "ray_results" / "train-path-train"                # Ray Train's own run storage
    assert {p.name for p in storage.iterdir() if p.name.startswith("stage2-")} == {
        f"stage2-{c.data.tags['ray.trial_id']}" for c in with_gen}


def test_kill_and_resume_neither_loses_nor_repeats_trials(tmp_path):
    args = [sys.executable, str(CLI), "--results-dir", str(tmp_path), "--no-report", *SMOKE,
            "--datasets", "GunPoint", "--num-samples", "2", "--set", "epochs=3", "--stage2", "off", "--name", "killed"]
    proc = subprocess.Popen(args, cwd=REPO, env=study_env(), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            start_new_session=True)
    deadline = time.time() + 300
    while time.time() < deadline:
        if any(r.info.status == "FINISHED" for r in runs(tmp_path, "killed", "trial")):
            break
        time.sleep(1)
    else:
        proc.kill()
        pytest.fail("no trial finished within 300 s")
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    finished_before = {r.data.tags["ssl_vqvae.trial_key"]: r.info.run_id
                       for r in runs(tmp_path, "killed", "trial") if r.info.status == "FINISHED"}
    time.sleep(5)                                   # let the killed cluster's processes go

    resumed = cli(tmp_path, "--resume", "--name", "killed", "--space", "aug_weight", "--budget", "smoke")
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    children = runs(tmp_path, "killed", "trial")
    keys = Counter(r.data.tags["ssl_vqvae.trial_key"] for r in children)
    assert len(keys) == 1 + 2 and set(keys.values()) == {1}, keys         # every trial once, none twice
    assert all(r.info.status == "FINISHED" for r in children)
    for key, run_id in finished_before.items():                           # finished trials were not re-trained
        history = client(tmp_path).get_metric_history(run_id, "train/loss")
        assert sorted(m.step for m in history) == [1, 2, 3], (key, history)

"""A tracking server that goes away mid-study and comes back: the trials and the driver retry their MLflow
writes, the study finishes with every trial exactly once and no run left RUNNING. The study is simulated
(`--simulate`), so the store, not training, is what the ~2 minutes go to."""
from __future__ import annotations

import subprocess
import sys
import threading
import time

import pytest
from mlflow.tracking import MlflowClient

from results.contract import KEY_TAG, ROLE_TAG, ROLE_TRIAL
from study_helpers import CLI, REPO, study_env
from tune.tracking_server import free_port, mlflow_server

pytestmark = pytest.mark.slow
DOWN_S = 20


def test_a_server_restart_mid_study_loses_and_duplicates_nothing(tmp_path):
    backend, artifacts, port = f"sqlite:///{tmp_path / 'server.db'}", (tmp_path / "mlartifacts").as_uri(), free_port()
    lines: list[str] = []
    with mlflow_server(backend, artifacts, port, workers=1) as uri:
        proc = subprocess.Popen([sys.executable, str(CLI), "--results-dir", str(tmp_path / "results"), "--space",
                                 "aug_weight", "--grid", "--datasets", "GunPoint", "--seeds", "2", "--simulate", "0.01",
                                 "--name", "outage", "--mlflow-uri", uri, "--no-report"],
                                cwd=REPO, env=study_env(), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        reader = threading.Thread(target=lambda: lines.extend(proc.stdout), daemon=True)
        reader.start()
        deadline = time.monotonic() + 300
        while not any(line.startswith("[ 1/") for line in lines) and proc.poll() is None:
            assert time.monotonic() < deadline, "".join(lines[-30:])
            time.sleep(0.5)
    stopped_at = sum(line.startswith("[") for line in lines)
    time.sleep(DOWN_S)                                          # the server is down: trials and driver retry
    with mlflow_server(backend, artifacts, port, workers=1):
        code = proc.wait(timeout=600)
        reader.join(timeout=10)
        assert code == 0, "".join(lines[-40:])
        client = MlflowClient(uri)
        found = client.search_runs([client.get_experiment_by_name("outage").experiment_id], max_results=1000)
    trials = [r for r in found if r.data.tags.get(ROLE_TAG) == ROLE_TRIAL]
    keys = [r.data.tags[KEY_TAG] for r in trials]
    assert stopped_at < 34, "the study ended before the server went down: the test proves nothing"
    assert len(trials) == 17 * 2 and len(set(keys)) == len(keys)       # every trial once
    assert {r.info.status for r in found} == {"FINISHED"}               # nothing left RUNNING

"""A cluster's tracking store: `mlflow server` on PostgreSQL (tune.tracking_server), with a study that
writes every trial once through it. The study is simulated (`--simulate`): the store, not training, is
what is tested; its trials write the same runs, params, per-epoch metrics and artifacts as real ones."""
from __future__ import annotations

import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest
from mlflow.tracking import MlflowClient

from results.contract import KEY_TAG, ROLE_PARENT, ROLE_TAG, ROLE_TRIAL, SELECTION_METRIC, SIMULATE_PARAM
from study_helpers import CLI, REPO, study_env
from tune.tracking_server import mlflow_server, postgres, postgres_bin

pytestmark = [pytest.mark.slow,
              pytest.mark.skipif(postgres_bin() is None, reason="PostgreSQL is not installed (no pg_ctl): "
                                                                "`apt install postgresql` to run this test")]


@pytest.fixture
def db_folder():
    """A folder the postgres user can reach (pytest's temp folders are private to root)."""
    folder = Path(tempfile.mkdtemp(prefix="pg-", dir="/tmp"))
    folder.chmod(0o755)
    yield folder
    shutil.rmtree(folder, ignore_errors=True)


def test_a_study_on_a_postgresql_backed_server(tmp_path, db_folder):
    with postgres(db_folder) as db, mlflow_server(db, (tmp_path / "mlartifacts").as_uri(), workers=2,
                                                         log=tmp_path / "server.log") as uri:
        proc = subprocess.run([sys.executable, str(CLI), "--results-dir", str(tmp_path / "results"), "--space",
                               "aug_weight", "--grid", "--datasets", "GunPoint,Coffee", "--seeds", "2", "--simulate",
                               "0.002", "--name", "pg", "--mlflow-uri", uri, "--no-report"],
                              cwd=REPO, env=study_env(), capture_output=True, text=True, timeout=900)
        assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-3000:]
        assert "SIMULATED" in proc.stdout
        client = MlflowClient(uri)
        exp = client.get_experiment_by_name("pg")
        found = client.search_runs([exp.experiment_id], max_results=1000)
    parents = [r for r in found if r.data.tags.get(ROLE_TAG) == ROLE_PARENT]
    trials = [r for r in found if r.data.tags.get(ROLE_TAG) == ROLE_TRIAL]
    assert len(parents) == 2 and all(p.data.params[SIMULATE_PARAM] == "0.002" for p in parents)
    assert len(trials) == 2 * 17 * 2                       # the grid's 17 configurations x 2 seeds per dataset
    keys = [r.data.tags[KEY_TAG] for r in trials]
    assert len(set(keys)) == len(keys)                     # nothing written twice
    assert {r.info.status for r in [*parents, *trials]} == {"FINISHED"}
    assert all(SELECTION_METRIC in r.data.metrics for r in trials)

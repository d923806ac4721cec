"""Studies that fail as they should: every trial diverging, and two launches with one name (real Ray,
real Optuna, real MLflow)."""
from __future__ import annotations

import subprocess
import sys

import pytest

from study_helpers import CLI, REPO, runs, study_env

pytestmark = pytest.mark.slow
SMOKE = ["--space", "aug_weight", "--budget", "smoke", "--set", "proj_dim=64", "--datasets", "ItalyPowerDemand",
         "--num-samples", "1", "--methods", "vibcreg", "--stage2", "off"]      # 3 trials: baseline + 2 cells


def test_a_study_where_every_trial_diverges_fails(tmp_path):
    """lr=1e30 makes every loss non-finite: each trial ends FAILED once (no retries) with the reason,
    the study exits non-zero, and nothing is named best."""
    proc = subprocess.run([sys.executable, str(CLI), "--results-dir", str(tmp_path), *SMOKE, "--set", "lr=1e30",
                           "--name", "diverged"], cwd=REPO, env=study_env(), capture_output=True, text=True,
                          timeout=600)
    assert proc.returncode == 1, proc.stderr[-3000:]
    assert "none of the study's 3 trial(s) finished (3 failed)" in proc.stderr
    children = runs(tmp_path, "diverged", "trial")
    assert len(children) == 3 and {r.info.status for r in children} == {"FAILED"}
    assert all("diverged at epoch" in r.data.tags["error"] and "lower lr" in r.data.tags["error"] for r in children)
    assert proc.stdout.count("diverged at epoch") <= 3 * 2    # reported once per trial (plus Tune's echo), no retry
    (parent,) = runs(tmp_path, "diverged", "parent")
    assert not any(k.startswith("best_ssl.") for k in parent.data.tags)
    summary = (tmp_path / "diverged" / "summary.md").read_text()
    assert "finished 0, failed 3" in summary and "diverged at epoch" in summary


def test_two_launches_with_one_name(tmp_path):
    """Both start together; the folder is claimed atomically, so one runs and the other is refused in one line."""
    args = [sys.executable, str(CLI), "--results-dir", str(tmp_path), "--no-report", *SMOKE, "--name", "clash"]
    procs = [subprocess.Popen(args, cwd=REPO, env=study_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                              text=True) for _ in range(2)]
    results = [(p.wait(timeout=600), p.stderr.read()) for p in procs]
    codes = sorted(code for code, _ in results)
    assert codes == [0, 2], results
    refused = next(err for code, err in results if code == 2).strip()
    assert refused.startswith("error: study clash already exists") and "\n" not in refused
    children = runs(tmp_path, "clash", "trial")
    assert len(children) == 3 and {r.info.status for r in children} == {"FINISHED"}
    assert all(len(r.data.metrics) for r in children)

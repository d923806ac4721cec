"""End to end: a multi-objective smoke study (real Ray, Optuna and MLflow) whose `pareto` tags, report files and
stage-2 `front` selection match a brute-force front computed from the runs in its MLflow store."""
from __future__ import annotations

import subprocess
import sys

import numpy as np
import pandas as pd
import pytest

from study_helpers import CLI, REPO, client, runs, study_env
from test_pareto import brute_force

pytestmark = pytest.mark.slow
OBJECTIVES = [("val/svm_acc", "max"), ("val/recon_loss", "min")]


def test_multi_objective_smoke_study_tags_and_reports_its_front(tmp_path):
    proc = subprocess.run([sys.executable, str(CLI), "--results-dir", str(tmp_path), "--space", "aug_weight",
                           "--budget", "smoke", "--set", "proj_dim=64", "--datasets", "ItalyPowerDemand",
                           "--num-samples", "4", "--objectives", "probe,recon", "--stage2", "front", "--name", "mo"],
                          cwd=REPO, env=study_env(), capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "Pareto-optimal configurations and the baselines" in proc.stdout

    [parent] = runs(tmp_path, "mo", "parent")
    children = runs(tmp_path, "mo", "trial")
    assert parent.data.params["objectives"] == "probe,recon"
    assert len(children) == 1 + 4 and all(c.info.status == "FINISHED" for c in children)
    points: dict[str, list] = {}
    for c in children:
        points.setdefault(c.data.tags["ssl_vqvae.config_id"], []).append([c.data.metrics[m] for m, _ in OBJECTIVES])
    ids = sorted(points)
    flags = dict(zip(ids, brute_force([np.mean(points[i], axis=0).tolist() for i in ids], [s for _, s in OBJECTIVES])))
    on_front = {i for i, on in flags.items() if on}
    assert on_front
    for c in children:                                      # every trial run tagged by the brute-force front
        assert c.data.tags["pareto"] == ("true" if flags[c.data.tags["ssl_vqvae.config_id"]] else "false")

    out = tmp_path / "mo"
    table = pd.read_csv(out / "pareto.csv")
    assert set(table["config_id"]) == on_front and (table["dataset"] == "ItalyPowerDemand").all()
    assert (out / "pareto_ItalyPowerDemand.png").stat().st_size > 0 and "## Pareto front" in (out / "summary.md").read_text()
    c = client(tmp_path)
    names = {a.path for a in c.list_artifacts(parent.info.run_id)}
    assert "pareto_front.json" in names and "pareto_ItalyPowerDemand.png" not in names   # drawn once, by the report
    assert {"report/pareto.csv", "report/pareto.md", "report/pareto_ItalyPowerDemand.png"} <= {
        a.path for a in c.list_artifacts(parent.info.run_id, "report")}

    baseline = {ch.data.tags["ssl_vqvae.config_id"] for ch in children if ch.data.params["ssl_method"] == "none"}
    with_gen = {ch.data.tags["ssl_vqvae.config_id"] for ch in children if "gen/fid" in ch.data.metrics}
    assert with_gen == on_front | baseline                  # stage 2 along the front, and the baseline as reference

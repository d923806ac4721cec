"""Multi-objective studies: the Pareto front against a brute-force dominance check, on random points and on a
small real MLflow store written in the study's layout (tests/test_report.make_study), through the report, the
study's summary (child `pareto` tags, the front on the parent runs) and stage 2's `front` selection."""
import itertools
import json
import math
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest
from mlflow.tracking import MlflowClient

from results.contract import OBJECTIVES, OBJECTIVES_PARAM, PARETO_TAG, default_tracking_uri
from results.pareto import front, front_counts, objective_specs, pareto_mask, stage2_front
from results.runs import load_study
from results.study_report import write_report
from test_report import make_study
from tune.spaces import SPACES
from tune.study.summary import summarize
from tune.study.tracking import StudyTracker

SPECS = [OBJECTIVES["probe"], OBJECTIVES["recon"]]          # val/svm_acc up, val/recon_loss down
DATASETS = ["GunPoint", "ItalyPowerDemand"]
GROUPS = {"baseline": ("none", "none", 0.0), "0000": ("barlowtwins", "warp", 0.1),
          "0001": ("barlowtwins", "warp", 0.2), "0002": ("vibcreg", "slice", 0.1),
          "0003": ("vibcreg", "slice", 0.25), "0004": ("barlowtwins", "slice", 0.05)}


def brute_force(points, senses) -> list[bool]:
    """O(n^2) by the definition: a row is optimal unless another is >= everywhere and > somewhere."""
    sign = [1 if s == "max" else -1 for s in senses]
    out = []
    for i, p in enumerate(points):
        if not all(math.isfinite(v) for v in p):
            out.append(False)
            continue
        dominated = False
        for j, q in enumerate(points):
            if j == i or not all(math.isfinite(v) for v in q):
                continue
            at_least = all(a * s >= b * s for a, b, s in zip(q, p, sign))
            better = any(a * s > b * s for a, b, s in zip(q, p, sign))
            dominated |= at_least and better
        out.append(not dominated)
    return out


@pytest.mark.parametrize("seed", range(40))
def test_pareto_mask_equals_brute_force_with_ties_duplicates_and_nans(seed):
    rng = np.random.default_rng(seed)
    n, k = int(rng.integers(1, 30)), int(rng.integers(1, 4))
    points = rng.integers(0, 5, size=(n, k)).astype(float)        # few levels: many ties and duplicates
    if n > 2:
        points[rng.integers(0, n)] = points[0]                     # an exact duplicate
    if seed % 3 == 0:
        points[rng.integers(0, n), rng.integers(0, k)] = np.nan
    senses = [("max", "min")[int(b)] for b in rng.integers(0, 2, size=k)]
    mask = pareto_mask(points, senses)
    assert mask.tolist() == brute_force(points.tolist(), senses)
    if np.isfinite(points).all(axis=1).any():
        assert mask.any()                                          # a finite set always has a front


def test_pareto_mask_small_cases():
    pts = [[0.9, 0.2], [0.9, 0.2], [0.8, 0.1], [0.7, 0.3], [1.0, np.nan], [0.9, 0.25]]
    assert pareto_mask(pts, ["max", "min"]).tolist() == [True, True, True, False, False, False]
    assert pareto_mask(np.empty((0, 2)), ["max", "min"]).tolist() == []
    assert pareto_mask([[0.7 + 0.1 + 0.1, 1.0], [0.9, 1.0]], ["max", "min"]).tolist() == [True, True]  # rounding
    with pytest.raises(ValueError):
        pareto_mask([[1.0, 2.0]], ["max", "up"])
    assert objective_specs("probe,recon") == SPECS and objective_specs("") == [SPECS[0]]


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    """Two datasets x (baseline + 5 configurations) x 2 seeds; ItalyPowerDemand-0003-s1 FAILED; on GunPoint,
    0004 copies 0000's validation metrics (a duplicate point: both or neither on the front)."""
    results = tmp_path_factory.mktemp("results")
    uri = default_tracking_uri(results)
    rng = np.random.default_rng(7)
    make_study(uri, results, "mo", DATASETS, 2, GROUPS, fail={"ItalyPowerDemand-0003-s1"}, rng=rng,
               raw={"GunPoint": 0.9, "ItalyPowerDemand": 0.95})
    client = MlflowClient(uri)
    exp = client.get_experiment_by_name("mo")
    runs = client.search_runs([exp.experiment_id], max_results=1000)
    copy = {}
    for r in sorted(runs, key=lambda r: r.info.run_name):
        if r.data.tags.get("ssl_vqvae.role") == "parent":
            client.log_param(r.info.run_id, OBJECTIVES_PARAM, "probe,recon")
        elif r.info.status == "FINISHED":
            ds, group, seed = r.info.run_name.split("-")                  # make_study names runs by their key
            metrics = {"val/recon_loss": float(rng.uniform(0.05, 0.4)), "val/svm_acc": float(rng.uniform(0.6, 0.9))}
            if ds == "GunPoint" and group in ("0000", "0004"):
                metrics = copy.setdefault(seed, metrics)
            for name, value in metrics.items():
                client.log_metric(r.info.run_id, name, value, step=5)
    return {"uri": uri, "results": results}


def brute_force_front(uri: str, study: str) -> dict[tuple[str, str], bool]:
    """Per (dataset, config id) of the study's runs in the store: on its dataset's front (mean over finished seeds)."""
    client = MlflowClient(uri)
    exp = client.get_experiment_by_name(study)
    points = {}
    for r in client.search_runs([exp.experiment_id], "tags.`ssl_vqvae.role` = 'trial'", max_results=1000):
        if r.info.status == "FINISHED":
            key = (r.data.params["dataset"], r.data.tags["ssl_vqvae.config_id"])
            points.setdefault(key, []).append([r.data.metrics[m] for m, _ in SPECS])
    flags = {}
    for ds in {d for d, _ in points}:
        keys = sorted(k for k in points if k[0] == ds)
        means = [np.mean(points[k], axis=0).tolist() for k in keys]
        flags |= dict(zip(keys, brute_force(means, [s for _, s in SPECS])))
    return flags


def test_report_front_equals_brute_force(store):
    out = write_report("mo", tracking_uri=store["uri"], results_dir=store["results"])
    expected = brute_force_front(store["uri"], "mo")
    table = pd.read_csv(out / "pareto.csv")
    assert set(zip(table["dataset"], table["config_id"])) == {k for k, on in expected.items() if on}
    assert len(expected) == 2 * len(GROUPS)
    gp = {k[1]: v for k, v in expected.items() if k[0] == "GunPoint"}
    trials = load_study("mo", store["uri"]).trials
    ids = {g: trials.loc[trials["run_name"] == f"GunPoint-{g}-s0", "config_id"].iloc[0]
           for g in ("0000", "0004")}
    assert gp[ids["0000"]] == gp[ids["0004"]]                       # duplicates share their fate
    for ds in DATASETS:                                               # ordered along the front
        acc = table.loc[table["dataset"] == ds, "val_svm_acc_mean"].tolist()
        rec = table.loc[table["dataset"] == ds, "val_recon_loss_mean"].tolist()
        assert acc == sorted(acc, reverse=True) and rec == sorted(rec, reverse=True)
        assert (out / f"pareto_{ds}.png").stat().st_size > 0 and (out / f"pareto_{ds}.svg").exists()
    md = (out / "pareto.md").read_text()
    assert "## How often on the front, across datasets" in md and "datasets_on_front" in md
    summary = (out / "summary.md").read_text()
    assert "## Pareto front" in summary
    for ds in DATASETS:
        n = sum(on for k, on in expected.items() if k[0] == ds)
        assert f"- {ds}: {n} of {len(GROUPS)} configurations on the front" in summary
    client = MlflowClient(store["uri"])
    for p in client.search_runs([client.get_experiment_by_name("mo").experiment_id], "tags.`ssl_vqvae.role` = 'parent'"):
        names = {Path(a.path).name for a in client.list_artifacts(p.info.run_id, "report")}
        ds = p.data.tags["dataset"]
        assert {"pareto.csv", "pareto.md", f"pareto_{ds}.png"} <= names


def test_single_objective_study_writes_no_front(store, tmp_path):
    uri = default_tracking_uri(tmp_path)
    make_study(uri, tmp_path, "single", ["GunPoint"], 1, dict(list(GROUPS.items())[:3]), rng=np.random.default_rng(1))
    out = write_report("single", tracking_uri=uri, results_dir=tmp_path)
    assert not (out / "pareto.csv").exists() and "## Pareto front" not in (out / "summary.md").read_text()


def test_summary_tags_every_trial_and_logs_the_front_to_its_parent(store):
    runs = load_study("mo", store["uri"])
    tracker = StudyTracker(store["uri"], "mo", None)
    parents = dict(zip(runs.parents["dataset"], runs.parents["run_id"]))
    plan = SimpleNamespace(name="mo", datasets=DATASETS, space=SPACES["aug_weight"], objective_specs=SPECS)
    frame = summarize(runs, plan, tracker, parents, wall_s=1.0)
    expected = brute_force_front(store["uri"], "mo")
    client = MlflowClient(store["uri"])
    children = client.search_runs([tracker.experiment_id], "tags.`ssl_vqvae.role` = 'trial'", max_results=1000)
    assert len(children) == 2 * len(GROUPS) * 2
    for c in children:
        key = (c.data.params["dataset"], c.data.tags["ssl_vqvae.config_id"])
        assert c.data.tags[PARETO_TAG] == ("true" if expected.get(key, False) else "false"), key
    failed = [c for c in children if c.info.status == "FAILED"]
    assert len(failed) == 1                                           # its config still has a finished seed
    for ds, run_id in parents.items():
        names = {a.path for a in client.list_artifacts(run_id)}
        assert "pareto_front.json" in names and f"pareto_{ds}.png" not in names    # the report logs the figure
        table = json.loads(Path(client.download_artifacts(run_id, "pareto_front.json")).read_text())
        ids = {row[table["columns"].index("config_id")] for row in table["data"]}
        assert ids == {k[1] for k, on in expected.items() if on and k[0] == ds}
        assert int(frame.set_index("dataset").loc[ds, "pareto"]) == len(ids)


def test_stage2_front_takes_every_optimal_configuration_and_the_baseline(store):
    trials = load_study("mo", store["uri"]).trials
    picks = stage2_front(trials, SPECS)
    expected = brute_force_front(store["uri"], "mo")
    baseline = set(trials.loc[trials["ssl_method"] == "none", "config_id"])
    assert set(picks["config_id"]) - baseline == {k[1] for k, on in expected.items() if on} - baseline
    for ds in DATASETS:
        assert len(set(picks.loc[picks["dataset"] == ds, "config_id"]) & baseline) == 1


def test_front_counts_across_datasets():
    table = pd.DataFrame({"dataset": ["A", "A", "A", "B", "B", "B"], "n_seeds": [1, 1, 1, 1, 1, 0],
                          "method": ["none", "bt/warp", "bt/warp", "none", "bt/warp", "vc/slice"],
                          "aug_recon_weight": [0.0, 0.07, 0.29, 0.0, 0.07, 0.1],
                          "pareto": [True, True, False, False, True, False]})
    by_method, by_weight = front_counts(table)
    assert by_method.set_index("method").loc["bt/warp"].tolist() == [3, 2, 2, 2]
    assert by_method.set_index("method").loc["none"].tolist() == [2, 1, 1, 2]
    assert "vc/slice" not in set(by_method["method"])                  # no finished seed: not counted
    assert by_weight.set_index("aug_recon_weight").loc["[0.05, 0.10)"].tolist() == [2, 2, 2, 2]
    assert by_weight.set_index("aug_recon_weight").loc[">= 0.25"].tolist() == [1, 0, 0, 1]


def test_front_per_dataset_never_mixes_datasets():
    trials = pd.DataFrame([{"dataset": ds, "config_id": f"{ds}{i}", "status": "FINISHED",
                            "val/svm_acc": acc, "val/recon_loss": rec}
                           for ds, pts in {"A": [(0.9, 0.1), (0.5, 0.5)], "B": [(0.6, 0.4), (0.55, 0.45)]}.items()
                           for i, (acc, rec) in enumerate(pts)])
    flags = front(trials, SPECS).set_index("config_id")["pareto"]
    assert flags.to_dict() == {"A0": True, "A1": False, "B0": True, "B1": False}
    assert list(itertools.chain(*front(trials.iloc[0:0], SPECS).values.tolist())) == []


def test_dry_run_names_the_objectives_probe_first(capsys, tmp_path):
    from results.cli import run_cli
    from tune.run_ablation import main

    with pytest.raises(SystemExit) as exit_:
        run_cli(main, ["--results-dir", str(tmp_path), "--space", "aug_weight", "--datasets", "GunPoint",
                       "--objectives", "recon,probe", "--stage2", "front", "--dry-run"])
    out = capsys.readouterr().out
    assert exit_.value.code == 0
    assert "objectives: val/svm_acc (max), val/recon_loss (min) (multi-objective: a Pareto front per dataset)" in out
    assert not (tmp_path / "mlflow.db").exists()

"""--simulate: plans the whole archive without its data, and a simulated trial writes what a real one
writes (the real metric keys at the real evaluation points, one MLflow run) and resumes without
logging anything twice."""
import math

import pytest
from mlflow import MlflowClient

from results.contract import SELECTION_METRIC, TEST_METRICS
from tune.run_ablation import parse_args
from tune.study.context import TrialContext
from tune.study.plan import make_plan
from tune.study.simulate import archive_shapes, final_level, run_simulated_trial, simulated_metrics
from tune.study.tracking import StudyTracker

GUNPOINT = {"dataset": "GunPoint", "ssl_method": "vibcreg", "aug_set": "warp", "aug_recon_weight": 0.1, "seed": 0,
            "epochs": 10, "eval_every": 4, "batch_size": 128}


def test_the_whole_archive_plans_without_its_data(tmp_path, monkeypatch):
    monkeypatch.setenv("UCR_ARCHIVE_DIR", str(tmp_path / "nowhere"))
    plan = make_plan(parse_args(["--space", "aug_weight", "--grid", "--datasets", "all", "--seeds", "3", "--simulate",
                                 "--results-dir", str(tmp_path)]))
    assert plan.simulate == 0.01 and len(plan.datasets) == 128
    assert plan.total_trials == 128 * 17 * 3
    assert plan.shapes["GunPoint"] == (50, 150) and "SIMULATED" in plan.describe()
    assert archive_shapes(["PLAID"], 0.0)["PLAID"][1] == 512      # "Vary" in the archive table


def test_bad_scale_is_refused(tmp_path):
    from results.errors import UsageError

    with pytest.raises(UsageError, match="--simulate 2"):
        make_plan(parse_args(["--space", "aug_weight", "--simulate", "2", "--results-dir", str(tmp_path)]))


def test_metrics_differ_by_configuration_and_repeat_exactly():
    other = {**GUNPOINT, "aug_set": "slice"}
    assert final_level(GUNPOINT) == final_level(dict(GUNPOINT)) != final_level(other)
    assert final_level(GUNPOINT) != final_level({**GUNPOINT, "seed": 1})
    # MLflow hands stage 2 the params as strings: the same configuration still gets the same level
    assert final_level({k: str(v) for k, v in GUNPOINT.items()}) == final_level(GUNPOINT)
    last = simulated_metrics(GUNPOINT, 10, 10, 1.0)
    assert set(TEST_METRICS) <= last.keys() and all(math.isfinite(v) for v in last.values())
    assert not set(TEST_METRICS) & simulated_metrics(GUNPOINT, 4, 10, 1.0).keys()


def test_a_simulated_trial_logs_once_and_resumes(tmp_path):
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    tracker = StudyTracker(uri, "sim", None)
    parent = tracker.parent_run("GunPoint", {"seeds": 1})
    context = TrialContext(tracking_uri=uri, experiment_id=tracker.experiment_id, parent_runs={"GunPoint": parent},
                           simulate=1e-4, shapes={"GunPoint": (50, 150)})
    reports = []

    def stop_after_first(metrics, checkpoint):
        reports.append(metrics)
        raise SystemExit(0)            # what tune.report raises in a trial Tune stopped

    with pytest.raises(SystemExit):
        run_simulated_trial(dict(GUNPOINT), context, trial_id="t1", report=stop_after_first, checkpoint_dir=tmp_path)
    assert reports[0]["epochs_done"] == 4 and SELECTION_METRIC in reports[0]
    run_simulated_trial(dict(GUNPOINT), context, trial_id="t1", report=lambda m, c: reports.append(m),
                        checkpoint_dir=tmp_path)          # resumed from the checkpoint's epoch 4
    assert [r["epochs_done"] for r in reports] == [4, 8, 10]
    runs = tracker.child_runs(parent)
    assert len(runs) == 1 and runs[0].info.status == "FINISHED"
    history = MlflowClient(uri).get_metric_history(runs[0].info.run_id, SELECTION_METRIC)
    assert [m.step for m in history] == [4, 8, 10]

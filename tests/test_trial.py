"""A trial's MLflow run when Tune stops it: closed KILLED by the driver with the reason, never FAILED (real MLflow,
real training)."""
from pathlib import Path

import pytest
from mlflow.tracking import MlflowClient

from results.contract import default_tracking_uri
from tune.study.tracking import StudyTracker, artifact_root
from tune.study.trial import TrialContext, run_trial


def test_a_trial_stopped_by_tune_is_killed_not_failed(tmp_path: Path):
    uri = default_tracking_uri(tmp_path)
    tracker = StudyTracker(uri, "stop", artifact_root(uri, tmp_path, "stop"))
    parent = tracker.parent_run("ItalyPowerDemand", {"seeds": 1, "num_samples": 1})
    context = TrialContext(tracking_uri=uri, experiment_id=tracker.experiment_id,
                           parent_runs={"ItalyPowerDemand": parent})

    def stopped_by_tune(metrics, attach):        # what tune.report does in a trial its scheduler stopped
        raise SystemExit(0)

    config = {"dataset": "ItalyPowerDemand", "ssl_method": "none", "epochs": 4, "eval_every": 1, "proj_dim": 64}
    with pytest.raises(SystemExit):
        run_trial(config, context, trial_id="t1", to_tune=stopped_by_tune, workdir=tmp_path / "work")
    run = tracker.find_trial_run("t1")
    assert run.info.status == "RUNNING"     # the trial cannot know why it stopped: the driver closes its run
    assert run.info.run_name == "none s0" and run.inputs.dataset_inputs[0].dataset.name == "ItalyPowerDemand"
    assert "tokenizer.codebook_size" in run.data.params
    assert not [k for k in run.data.params if k.startswith("stage2.")]       # stage 2 off: its params do not apply
    tracker.close_trial("t1", "KILLED", error="stopped early at epoch 1 by the early-stopping scheduler")
    closed = MlflowClient(uri).get_run(run.info.run_id)
    assert closed.info.status == "KILLED" and "early-stopping" in closed.data.tags["error"]

"""`--stage2 best` runs each pick as a Ray Train run where trials run through Ray Train (GPU studies,
--executor train) and as a bare Ray task otherwise. Here with the runs replaced by stand-ins; the slow
tests in test_study.py run both for real (test_stage2_for_the_best_tokenizer_per_method: tasks;
test_ray_train_executor_on_cpu: Ray Train)."""
from types import SimpleNamespace

import pandas as pd
import ray

import tune.study.trial as trial
from results.contract import SELECTION_METRIC
from tune.study.run import stage2_for_best

METRICS = {"gen/fid": 1.0, "gen/is": 1.5, "gen/cas": 0.5}


def _runs():
    rows = [("t1", "c1", "none", 0.8), ("t2", "c2", "vibcreg", 0.9), ("t3", "c3", "vibcreg", 0.7)]
    trials = pd.DataFrame([{"trial_id": t, "config_id": c, "status": "FINISHED", "seed": 0, "dataset": "GunPoint",
                            "ssl_method": m, "aug_set": "warp", "lr": 0.001, SELECTION_METRIC: score}
                           for t, c, m, score in rows])
    return SimpleNamespace(trials=trials, params=["dataset", "ssl_method", "aug_set", "seed", "lr"])


def _plan(executor: str):
    return SimpleNamespace(stage2="best", executor=executor, max_concurrent=None, cpus_per_trial=1.0,
                           gpus_per_trial=0.25 if executor == "train" else 0.0, objective_specs=[])


def _never(*args, **kwargs):
    raise AssertionError("this path must not run")


def test_ray_train_studies_run_each_pick_as_a_ray_train_run(monkeypatch, capsys):
    seen = []

    def fake_train_run(params, trial_id, context):
        seen.append((trial_id, params["ssl_method"], context))
        if trial_id == "t1":
            raise RuntimeError("stage 2 diverged")
        return METRICS

    monkeypatch.setattr(trial, "stage2_in_ray_train", fake_train_run)
    monkeypatch.setattr(ray, "cluster_resources", lambda: {"CPU": 4.0, "GPU": 1.0})
    monkeypatch.setattr(ray, "remote", _never)
    stage2_for_best(_runs(), _plan("train"), "ctx")
    assert sorted(seen) == [("t1", "none", "ctx"), ("t2", "vibcreg", "ctx")]     # the best per method
    out = capsys.readouterr().out
    assert "GunPoint vibcreg warp s0: FID 1" in out and "GunPoint none warp s0: stage 2 failed: stage 2 diverged" in out


def test_cpu_studies_run_bare_ray_tasks(monkeypatch, capsys):
    submitted = []

    def fake_remote(**resources):
        assert resources == {"num_cpus": 1.0, "num_gpus": 0.0}
        return lambda fn: SimpleNamespace(remote=lambda *args: submitted.append((fn.__name__, args[1])) or METRICS)

    monkeypatch.setattr(ray, "remote", fake_remote)
    monkeypatch.setattr(ray, "get", lambda ref: ref)
    monkeypatch.setattr(trial, "stage2_in_ray_train", _never)
    stage2_for_best(_runs(), _plan("function"), "ctx")
    assert sorted(submitted) == [("_stage2_task", "t1"), ("_stage2_task", "t2")]
    assert capsys.readouterr().out.count("FID 1") == 2

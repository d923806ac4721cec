"""The study's console: one line per trial with done/total and an ETA from measured trial times, and the answer."""
import math
from types import SimpleNamespace

import pandas as pd

from tune.study.console import TrialLines, answer_line, duration, eta, start_lines, trial_line

CFG = {"dataset": "GunPoint", "ssl_method": "vibcreg", "aug_set": "warp", "aug_recon_weight": 0.1, "seed": 0}


def test_durations_read_at_their_scale():
    assert duration(12.4) == "12 s" and duration(245) == "4 min 05 s" and duration(7380) == "2 h 03 min"
    assert duration(math.nan) == "?"


def test_eta_uses_the_mean_trial_time_and_the_slots():
    assert eta(15.0, remaining=4, slots=2) == 30.0                 # 2 rounds of 15 s
    assert eta(10.0, remaining=3, slots=2) == 20.0                 # a partial round is a round
    assert eta(10.0, remaining=0, slots=2) == 0.0


def test_a_trial_line_names_dataset_configuration_seed_objective_duration_and_eta():
    line = trial_line(3, 10, CFG, {"val/svm_acc": 0.8125, "val/recon_loss": 0.5}, ["val/svm_acc"], 14.2, 80)
    assert line.startswith("[ 3/10] GunPoint ")
    assert "vibcreg/warp w=0.10 s0" in line and "val/svm_acc 0.812" in line and "val/recon_loss" not in line
    assert line.endswith("14 s  ETA 1 min 20 s")
    failed = trial_line(1, 2, {**CFG, "ssl_method": "none"}, {}, ["val/svm_acc"], 1, 1, outcome="failed: diverged")
    assert "none s0" in failed and "failed: diverged" in failed and "val/svm_acc" not in failed


def test_trial_lines_count_every_ending_once_and_say_why_it_ended():
    printed = []
    lines = TrialLines(3, 1, ["val/svm_acc"], {"GunPoint": 10}, printer=lambda text, flush: printed.append(text))
    trials = [SimpleNamespace(trial_id=f"t{i}", config={**CFG, "seed": i}, last_result=r) for i, r in enumerate(
        [{"val/svm_acc": 0.9, "epochs_done": 10}, {"val/svm_acc": 0.5, "epochs_done": 3},
         {"trial_failed": "loss diverged"}])]
    for t in trials:
        lines.on_trial_start(0, [], t)
    lines.on_trial_complete(0, [], trials[0])
    lines.on_trial_complete(0, [], trials[1])
    lines.on_trial_complete(0, [], trials[2])
    assert [p[:6] for p in printed] == ["[1/3] ", "[2/3] ", "[3/3] "]
    assert "val/svm_acc 0.900" in printed[0]
    assert "stopped early at epoch 3 of 10" in printed[1]
    assert "failed: loss diverged" in printed[2] and printed[2].endswith("ETA 0 s")


def test_the_start_says_where_to_watch():
    text = "\n".join(start_lines("s1", 6, ["GunPoint"], 2, "sqlite:////tmp/x/mlflow.db", "http://127.0.0.1:8265", "7"))
    assert "6 trials" in text and "http://127.0.0.1:8265" in text
    assert "mlflow ui --backend-store-uri sqlite:////tmp/x/mlflow.db" in text
    assert "http://127.0.0.1:5000/#/experiments/7/runs?workflowType=machine_learning" in text    # the runs table
    server = start_lines("s1", 6, ["GunPoint"], 2, "http://mlflow:5000/", None, "7")
    assert server[-1].endswith("http://mlflow:5000/#/experiments/7/runs?workflowType=machine_learning")


def test_the_answer_counts_datasets_and_marks_smoke_studies():
    summary = pd.DataFrame({"dataset": ["A", "B", "C"], "best_ssl/test_svm_acc": [0.9, 0.7, math.nan],
                            "baseline/test_svm_acc": [0.8, 0.75, 0.6]})
    text = answer_line(summary, "quick")
    assert "on 1 of 2 dataset(s)" in text and "+0.025" in text and "plumbing" not in text
    assert "plumbing check, not a result" in answer_line(summary, "smoke")
    assert answer_line(pd.DataFrame(), "quick").startswith("Answer: no dataset")

"""The per-dataset early-stopping scheduler, on Ray's real ASHA brackets (no cluster needed)."""
from dataclasses import dataclass, field

from ray.tune.schedulers import TrialScheduler

from tune.study.scheduler import PerDatasetASHA


@dataclass
class FakeTrial:           # the two attributes the schedulers read
    trial_id: str
    config: dict = field(default_factory=dict)


def _trial(tid, dataset, method="vibcreg"):
    return FakeTrial(tid, {"dataset": dataset, "ssl_method": method})


def test_trials_are_compared_within_their_dataset_only():
    asha = PerDatasetASHA({"A": 9, "B": 9}, {"A": 1, "B": 1}, metric="m", mode="max")
    strong = [_trial(f"a{i}", "A") for i in range(6)]
    weak_b = _trial("b0", "B")
    for t in [*strong, weak_b]:
        asha.on_trial_add(None, t)
    for i, t in enumerate(strong):      # A's trials reach the first rung with high scores
        assert asha.on_trial_result(None, t, {"epochs_done": 1, "m": 0.9 + 0.01 * i}) == TrialScheduler.CONTINUE
    # B's first trial is far below A's rung but alone in its own bracket: it continues
    assert asha.on_trial_result(None, weak_b, {"epochs_done": 1, "m": 0.1}) == TrialScheduler.CONTINUE
    weak_a = _trial("a-weak", "A")
    asha.on_trial_add(None, weak_a)
    assert asha.on_trial_result(None, weak_a, {"epochs_done": 1, "m": 0.1}) == TrialScheduler.STOP
    assert asha.stopped == {"a-weak": 1}


def test_baseline_runs_whole_and_failed_results_are_ignored():
    asha = PerDatasetASHA({"A": 9}, {"A": 1}, metric="m", mode="max")
    trials = [_trial(f"a{i}", "A") for i in range(6)]
    for i, t in enumerate(trials):
        asha.on_trial_add(None, t)
        asha.on_trial_result(None, t, {"epochs_done": 1, "m": 0.9})
    base = _trial("base", "A", method="none")
    asha.on_trial_add(None, base)
    assert asha.on_trial_result(None, base, {"epochs_done": 1, "m": 0.0}) == TrialScheduler.CONTINUE
    failing = _trial("nan", "A")
    asha.on_trial_add(None, failing)
    assert asha.on_trial_result(None, failing, {"epochs_done": 1, "m": float("nan")}) == TrialScheduler.CONTINUE
    asha.on_trial_complete(None, failing, {"m": float("nan"), "trial_failed": "diverged"})
    assert not asha.stopped

"""The early-stopping scheduler (races per dataset, method and seed), on Ray's real ASHA brackets (no cluster needed)."""
from dataclasses import dataclass, field

from ray.tune.schedulers import TrialScheduler

from tune.study.scheduler import PerDatasetASHA


@dataclass
class FakeTrial:           # the two attributes the schedulers read
    trial_id: str
    config: dict = field(default_factory=dict)


def _trial(tid, dataset, method="vibcreg", aug_set="warp", seed=0):
    return FakeTrial(tid, {"dataset": dataset, "ssl_method": method, "aug_set": aug_set, "seed": seed})


def test_trials_are_compared_within_their_dataset_only():
    asha = PerDatasetASHA({"A": 9, "B": 9}, {"A": 1, "B": 1}, metric="m", mode="max")
    strong = [_trial(f"a{i}", "A") for i in range(6)]
    weak_b = _trial("b0", "B")
    for t in [*strong, weak_b]:
        asha.on_trial_add(None, t)
    for i, t in enumerate(strong):      # A's trials reach the first rung with high scores
        assert asha.on_trial_result(None, t, {"epochs_done": 3, "m": 0.9 + 0.01 * i}) == TrialScheduler.CONTINUE
    # B's first trial is far below A's rung but alone in its own bracket: it continues
    assert asha.on_trial_result(None, weak_b, {"epochs_done": 3, "m": 0.1}) == TrialScheduler.CONTINUE
    weak_a = _trial("a-weak", "A")
    asha.on_trial_add(None, weak_a)
    assert asha.on_trial_result(None, weak_a, {"epochs_done": 3, "m": 0.1}) == TrialScheduler.STOP
    assert asha.stopped == {"a-weak": 3}


def test_baseline_runs_whole_and_failed_results_are_ignored():
    asha = PerDatasetASHA({"A": 9}, {"A": 1}, metric="m", mode="max")
    trials = [_trial(f"a{i}", "A") for i in range(6)]
    for i, t in enumerate(trials):
        asha.on_trial_add(None, t)
        asha.on_trial_result(None, t, {"epochs_done": 3, "m": 0.9})
    base = _trial("base", "A", method="none")
    asha.on_trial_add(None, base)
    assert asha.on_trial_result(None, base, {"epochs_done": 3, "m": 0.0}) == TrialScheduler.CONTINUE
    failing = _trial("nan", "A")
    asha.on_trial_add(None, failing)
    assert asha.on_trial_result(None, failing, {"epochs_done": 3, "m": float("nan")}) == TrialScheduler.CONTINUE
    asha.on_trial_complete(None, failing, {"m": float("nan"), "trial_failed": "diverged"})
    assert not asha.stopped


def test_trials_race_only_their_method_augmentations_and_seed():
    """A slow starter (VIbCReg trails Barlow Twins early in the learning curves) is not stopped for it."""
    asha = PerDatasetASHA({"A": 9}, {"A": 1}, metric="m", mode="max")
    fast = [_trial(f"bt{i}", "A", method="barlowtwins") for i in range(6)]
    for i, t in enumerate(fast):
        asha.on_trial_add(None, t)
        assert asha.on_trial_result(None, t, {"epochs_done": 3, "m": 0.9 + 0.01 * i}) == TrialScheduler.CONTINUE
    slow = _trial("vib", "A", method="vibcreg")
    asha.on_trial_add(None, slow)
    assert asha.on_trial_result(None, slow, {"epochs_done": 3, "m": 0.1}) == TrialScheduler.CONTINUE
    other_aug = _trial("bt-slice", "A", method="barlowtwins", aug_set="slice")    # another row of the report
    asha.on_trial_add(None, other_aug)
    assert asha.on_trial_result(None, other_aug, {"epochs_done": 3, "m": 0.1}) == TrialScheduler.CONTINUE
    other_seed = _trial("bt-s1", "A", method="barlowtwins", seed=1)     # races only configurations of seed 1
    asha.on_trial_add(None, other_seed)
    assert asha.on_trial_result(None, other_seed, {"epochs_done": 3, "m": 0.1}) == TrialScheduler.CONTINUE
    weak_bt = _trial("bt-weak", "A", method="barlowtwins")
    asha.on_trial_add(None, weak_bt)
    assert asha.on_trial_result(None, weak_bt, {"epochs_done": 3, "m": 0.1}) == TrialScheduler.STOP


def test_no_trial_is_stopped_before_a_third_of_its_run():
    asha = PerDatasetASHA({"A": 30}, {"A": 4}, metric="m", mode="max")
    assert asha.grace_period("A") == 12          # the first evaluation point at or after epoch 10
    trials = [_trial(f"a{i}", "A") for i in range(7)]
    for i, t in enumerate(trials[:6]):
        asha.on_trial_add(None, t)
        for epoch in (4, 8, 12):
            asha.on_trial_result(None, t, {"epochs_done": epoch, "m": 0.9 + 0.01 * i})
    weak = trials[6]
    asha.on_trial_add(None, weak)
    for epoch in (4, 8):
        assert asha.on_trial_result(None, weak, {"epochs_done": epoch, "m": 0.0}) == TrialScheduler.CONTINUE
    assert asha.on_trial_result(None, weak, {"epochs_done": 12, "m": 0.0}) == TrialScheduler.STOP

"""The early-stopping scheduler: seed-complete decisions on configuration means, per (dataset, method, aug set)."""
from dataclasses import dataclass, field

from ray.tune.schedulers import TrialScheduler

from tune.study.scheduler import SeedMeanHalving, keeps_going

GO, STOP = TrialScheduler.CONTINUE, TrialScheduler.STOP


@dataclass
class FakeTrial:           # the two attributes the scheduler reads
    trial_id: str
    config: dict = field(default_factory=dict)


def _trial(dataset, weight, seed, method="vibcreg", aug_set="warp"):
    return FakeTrial(f"{dataset}-{method}-{aug_set}-{weight}-s{seed}",
                     {"dataset": dataset, "ssl_method": method, "aug_set": aug_set, "aug_recon_weight": weight,
                      "seed": seed})


def _rung(sched, trial, value, epoch=3):
    return sched.on_trial_result(None, trial, {"epochs_done": epoch, "m": value})


def test_keeps_going_is_ashas_cutoff_on_means():
    assert keeps_going(0.1, [], "max")                     # the first of a race always goes on
    assert keeps_going(0.9, [0.5, 0.6, 0.7], "max")         # the best so far goes on
    assert not keeps_going(0.5, [0.6, 0.7, 0.8], "max")
    assert keeps_going(0.1, [0.2, 0.3, 0.4], "min")         # lower is better


def test_a_configuration_goes_on_or_stops_with_all_its_seeds_on_their_mean():
    sched = SeedMeanHalving({"A": 9}, {"A": 1}, seeds=2, metric="m", mode="max")
    for w, (v0, v1) in zip((0.05, 0.1, 0.15), ((0.8, 0.8), (0.85, 0.85), (0.9, 0.9))):
        assert _rung(sched, _trial("A", w, 0), v0) == GO
        assert _rung(sched, _trial("A", w, 1), v1) == GO
    # seed 0 alone looks best (0.95) but the mean over both seeds (0.6) is the worst: both stop together
    lucky, unlucky = _trial("A", 0.2, 0), _trial("A", 0.2, 1)
    assert _rung(sched, lucky, 0.95) == GO        # undecided until every seed has reported at the rung
    assert _rung(sched, unlucky, 0.25) == STOP
    assert _rung(sched, lucky, 0.96, epoch=4) == STOP    # the decision reaches the other seed at its next result
    assert sched.stopped == {unlucky.trial_id: 3, lucky.trial_id: 4}


def test_races_are_per_dataset_and_cell_and_the_baseline_runs_whole():
    sched = SeedMeanHalving({"A": 9, "B": 9}, {"A": 1, "B": 1}, seeds=1, metric="m", mode="max")
    for i, w in enumerate((0.05, 0.1, 0.15)):
        assert _rung(sched, _trial("A", w, 0), 0.9 + 0.01 * i) == GO
    assert _rung(sched, _trial("B", 0.05, 0), 0.1) == GO                  # alone in its dataset's race
    assert _rung(sched, _trial("A", 0.05, 0, aug_set="slice"), 0.1) == GO  # alone in its cell's race
    assert _rung(sched, _trial("A", 0.0, 0, method="none", aug_set="none"), 0.0) == GO
    assert _rung(sched, _trial("A", 0.2, 0), 0.1) == STOP


def test_a_failed_seed_does_not_hold_the_decision_and_nothing_is_decided_before_the_rung():
    sched = SeedMeanHalving({"A": 9}, {"A": 1}, seeds=2, metric="m", mode="max")
    assert sched.grace_period("A") == 3
    for w in (0.05, 0.1):
        for s in (0, 1):
            _rung(sched, _trial("A", w, s), 0.9)
    early = _trial("A", 0.2, 0)
    assert _rung(sched, early, 0.1, epoch=2) == GO                 # before the rung: no decision
    failed = _trial("A", 0.2, 1)
    sched.on_trial_error(None, failed)                             # seed 1 failed without a score
    assert _rung(sched, early, 0.1) == STOP                        # decided on the seed that scored


def test_state_survives_save_and_restore(tmp_path):
    sched = SeedMeanHalving({"A": 9}, {"A": 1}, seeds=1, metric="m", mode="max")
    for w in (0.05, 0.1, 0.15):
        _rung(sched, _trial("A", w, 0), 0.9)
    sched.save(str(tmp_path / "s.pkl"))
    restored = SeedMeanHalving({"A": 9}, {"A": 1}, seeds=1, metric="m", mode="max")
    restored.restore(str(tmp_path / "s.pkl"))
    assert _rung(restored, _trial("A", 0.2, 0), 0.1) == STOP

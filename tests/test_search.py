"""The per-dataset Optuna searches behind the study's one Tune searcher (no Ray cluster needed)."""
import math

import optuna
import pytest
from ray.tune.search import Searcher

from tune.study.search import StudySearch
from tune.spaces import SPACES

optuna.logging.set_verbosity(optuna.logging.WARNING)


def _drain(search):
    configs = []
    while (c := search.suggest(str(len(configs)))) != Searcher.FINISHED:
        configs.append(c)
    return configs


def test_baselines_first_then_reference_points_then_tpe_round_robin():
    search = StudySearch(["A", "B"], SPACES["aug_weight"], num_samples=3, seeds=2, metric="m", mode="max",
                         base={"A": {"epochs": 5}, "B": {"epochs": 5}})
    configs = _drain(search)
    assert len(configs) == search.total_trials == 2 * 2 * (1 + 3)
    assert [(c["dataset"], c["ssl_method"], c["seed"]) for c in configs[:4]] == [
        ("A", "none", 0), ("A", "none", 1), ("B", "none", 0), ("B", "none", 1)]
    for ds in "AB":
        searched = [c for c in configs if c["dataset"] == ds and c["ssl_method"] != "none"]
        assert [c["ssl_method"] for c in searched[:4:2]] == ["barlowtwins", "vibcreg"]    # reference points
        assert all(c["aug_set"] == "warp" and c["aug_recon_weight"] == 0.1 for c in searched[:4])
        assert all(c["epochs"] == 5 for c in searched)
        assert all(0 <= c["aug_recon_weight"] <= 0.3 and c["aug_set"] in ("warp", "slice") for c in searched)
    assert configs[4]["dataset"] == "A" and configs[6]["dataset"] == "B"                   # interleaved


def test_optuna_is_told_the_mean_over_seeds_once_all_seeds_finish():
    search = StudySearch(["A"], SPACES["aug_weight"], num_samples=1, seeds=2, metric="m", mode="max")
    configs = _drain(search)
    first, second = [str(i) for i, c in enumerate(configs) if c["ssl_method"] != "none"]
    search.on_trial_complete(first, {"m": 0.6})
    assert not search.optuna_study("A").trials[0].state.is_finished()
    search.on_trial_complete(second, {"m": 0.8})
    assert search.optuna_study("A").trials[0].value == pytest.approx(0.7)


def test_grid_runs_every_reference_combination_once():
    search = StudySearch(["A"], SPACES["aug_weight"], num_samples=1, seeds=1, metric="m", mode="max", grid=True)
    configs = [c for c in _drain(search) if c["ssl_method"] != "none"]
    combos = {(c["ssl_method"], c["aug_set"], c["aug_recon_weight"]) for c in configs}
    assert len(configs) == len(combos) == 16
    assert {w for _, _, w in combos} == {0.05, 0.1, 0.15, 0.2}


def test_state_survives_save_and_restore(tmp_path):
    search = StudySearch(["A"], SPACES["ssl"], num_samples=3, seeds=1, metric="m", mode="max", seed=3)
    before = [search.suggest(str(i)) for i in range(2)]
    search.save(tmp_path / "state.pkl")
    restored = StudySearch(["A"], SPACES["ssl"], num_samples=3, seeds=1, metric="m", mode="max", seed=99)
    restored.restore(tmp_path / "state.pkl")
    assert restored.suggest("2") == search.suggest("2") and before[0]["ssl_method"] == "none"


def test_a_repeated_proposal_is_answered_not_rerun():
    """The ssl space has 6 distinct points: asking for 10 runs each once and ends the search early, and
    Optuna hears every repeat with its original's score (so a repeat is never a pseudo-seed)."""
    search = StudySearch(["A"], SPACES["ssl"], num_samples=10, seeds=2, metric="m", mode="max", seed=1)
    trial_ids = []
    while True:          # finish every trial at once, so repeats are answered from finished originals
        tid = str(len(trial_ids))
        config = search.suggest(tid)
        if config == Searcher.FINISHED:
            break
        trial_ids.append((tid, config))
        search.on_trial_complete(tid, {"m": 0.5 + 0.01 * (config["aug_set"] == "gauss") + 0.001 * config["seed"]})
    searched = [c for _, c in trial_ids if c["ssl_method"] != "none"]
    combos = [(c["ssl_method"], c["aug_set"]) for c in searched if c["seed"] == 0]
    assert len(combos) == len(set(combos)) == 6 == search.distinct_configs("A") - 1
    assert {c["ssl_method"] for c in searched} == {"barlowtwins", "vibcreg"}       # never `none` as a method
    study = search.optuna_study("A")
    assert len(study.trials) > 6 and search.repeats == len(study.trials) - 6
    assert all(t.value is not None for t in study.trials)
    for t in study.trials:
        assert t.value == pytest.approx(0.5005 + 0.01 * (t.params["aug_set"] == "gauss"))


def test_repeat_of_a_running_configuration_is_told_when_it_finishes():
    search = StudySearch(["A"], SPACES["ssl"], num_samples=10, seeds=1, metric="m", mode="max", seed=1)
    configs = _drain(search)        # nothing finished: repeats wait for their originals
    assert len(configs) == 7
    study = search.optuna_study("A")
    waiting = [t for t in study.trials if not t.state.is_finished()]
    assert len(waiting) == len(study.trials)
    for tid, c in enumerate(configs):
        search.on_trial_complete(str(tid), {"m": 0.7})
    assert all(t.state.is_finished() and t.value == pytest.approx(0.7) for t in study.trials)


def test_full_space_tunes_the_baseline_on_the_shared_parameters():
    search = StudySearch(["A"], SPACES["full"], num_samples=4, seeds=1, metric="m", mode="max", seed=0)
    configs = _drain(search)
    baselines = [c for c in configs if c["ssl_method"] == "none"]
    assert len(baselines) == 2 == len(configs) - 4                        # ceil(4 / 2 SSL methods)
    assert baselines[0]["lr"] == 1e-3 and baselines[0]["tokenizer.codebook_size"] == 32   # reference first
    assert all(set(c) >= {"lr", "tokenizer.codebook_size"} and "proj_dim" not in c for c in baselines)
    assert len({(c["lr"], c["tokenizer.codebook_size"]) for c in baselines}) == 2


def test_a_configuration_stopped_early_is_pruned_in_optuna():
    search = StudySearch(["A"], SPACES["aug_weight"], num_samples=2, seeds=1, metric="m", mode="max",
                         base={"A": {"epochs": 10}})
    configs = _drain(search)
    first, second = [str(i) for i, c in enumerate(configs) if c["ssl_method"] != "none"]
    search.on_trial_complete(first, {"m": 0.4, "epochs_done": 3})      # the scheduler stopped it at epoch 3
    search.on_trial_complete(second, {"m": 0.8, "epochs_done": 10})
    states = [t.state for t in search.optuna_study("A").trials]
    assert states == [optuna.trial.TrialState.PRUNED, optuna.trial.TrialState.COMPLETE]


def test_multi_objective_search_tells_optuna_both_means():
    """metric / mode lists: every lane is a multi-objective Optuna study told each objective's mean over the
    seeds that scored on both; Tune sees the first objective; a seed without every score is left out, a
    configuration without any FAILED, and a repeat hears both of its original's means."""
    search = StudySearch(["A"], SPACES["ssl"], num_samples=10, seeds=2, metric=["acc", "rec"], mode=["max", "min"],
                         seed=1)
    assert (search.metric, search.mode) == ("acc", "max")
    study = search.optuna_study("A")
    assert [d.name for d in study.directions] == ["MAXIMIZE", "MINIMIZE"]
    trials = []
    while (config := search.suggest(str(len(trials)))) != Searcher.FINISHED:
        trials.append(config)
        tid, first_config = str(len(trials) - 1), sum(c["ssl_method"] != "none" for c in trials) <= 2
        if first_config and config["seed"] == 1:
            result = {"acc": math.nan}                                         # seed 1 of the first config failed
        elif config["aug_set"] == "gauss" and config["ssl_method"] == "vibcreg":
            result = {"acc": math.nan, "rec": math.nan}                        # every seed of this one failed
        else:
            result = {"acc": 0.6 + 0.1 * config["seed"] + 0.01 * (config["aug_set"] == "warp"),
                      "rec": 0.2 + 0.05 * config["seed"]}
        search.on_trial_complete(tid, result)
    by_params = {}
    for t in study.trials:
        key = (t.params["ssl_method"], t.params["aug_set"])
        if key == ("vibcreg", "gauss"):
            assert t.state == optuna.trial.TrialState.FAIL and t.values is None
            continue
        warp = 0.01 * (t.params["aug_set"] == "warp")
        first = key == (trials[2]["ssl_method"], trials[2]["aug_set"])
        expected = [0.6 + warp, 0.2] if first else [0.65 + warp, 0.225]
        assert t.state == optuna.trial.TrialState.COMPLETE and t.values == pytest.approx(expected), key
        by_params.setdefault(key, []).append(t.values)
    assert search.repeats > 0 and len(study.trials) > len(by_params) + 1     # repeats told like their originals

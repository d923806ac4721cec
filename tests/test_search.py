"""What a study runs (tune.spaces.search_cells: the grid-or-TPE rule) and the searcher that runs it,
with Optuna's ask / tell behind each TPE cell (no Ray cluster needed)."""
import math

import optuna
import pytest
from ray import tune
from ray.tune.search import Searcher

from tune.spaces import SPACES, SearchSpace, search_cells
from tune.study.search import StudySearch

optuna.logging.set_verbosity(optuna.logging.WARNING)
TrialState = optuna.trial.TrialState


def _search(space, num_samples, seeds=1, how="auto", datasets=("A",), **kw):
    return StudySearch(list(datasets), search_cells(SPACES[space] if isinstance(space, str) else space,
                                                    num_samples, how), seeds=seeds, **{"metric": "m", "mode": "max", **kw})


def _drain(search):
    configs = []
    while (c := search.suggest(str(len(configs)))) != Searcher.FINISHED:
        configs.append(c)
    return configs


def test_the_grid_runs_when_it_fits_the_budget_every_weight_and_seed():
    cells = search_cells(SPACES["aug_weight"], 16)
    assert [c.name for c in cells] == ["none", "barlowtwins/warp", "barlowtwins/slice", "vibcreg/warp", "vibcreg/slice"]
    assert all(c.grid for c in cells) and [c.quota for c in cells] == [1, 4, 4, 4, 4]
    search = StudySearch(["A", "B"], cells, seeds=2, metric="m", mode="max", base={"A": {"epochs": 5}, "B": {}})
    configs = _drain(search)
    assert len(configs) == search.total_trials == 2 * 17 * 2
    assert [(c["dataset"], c["ssl_method"], c["seed"]) for c in configs[:4]] == [
        ("A", "none", 0), ("A", "none", 1), ("B", "none", 0), ("B", "none", 1)]        # baselines first
    for ds in "AB":
        ssl = [c for c in configs if c["dataset"] == ds and c["ssl_method"] != "none"]
        combos = {(c["ssl_method"], c["aug_set"], c["aug_recon_weight"], c["seed"]) for c in ssl}
        assert len(ssl) == len(combos) == 16 * 2
        assert {c[2] for c in combos} == {0.05, 0.1, 0.15, 0.2}
    # the cells take turns, so an interrupted study has covered every cell before any cell's second point
    first_cells = [(c["dataset"], c["ssl_method"], c["aug_set"]) for c in configs[4:4 + 16:2]]
    assert len(set(first_cells)) == 8
    assert all(c["epochs"] == 5 for c in configs if c["dataset"] == "A")


def test_tpe_runs_where_the_space_is_larger_than_the_budget_with_equal_tries_per_cell():
    cells = search_cells(SPACES["aug_weight"], 8)           # 2 per cell < 4 grid weights: TPE
    assert all(not c.grid and c.quota == 2 for c in cells[1:]) and cells[0].quota == 1
    configs = _drain(_search("aug_weight", 8, seeds=1, seed=3))
    ssl = [c for c in configs if c["ssl_method"] != "none"]
    per_cell = {}
    for c in ssl:
        per_cell.setdefault((c["ssl_method"], c["aug_set"]), []).append(c["aug_recon_weight"])
    assert len(per_cell) == 4 and all(len(w) == 2 for w in per_cell.values())       # equal tries
    assert all(w[0] == 0.1 and 0 <= w[1] <= 0.3 and w[1] != 0.1 for w in per_cell.values())   # reference first
    assert [c.quota for c in search_cells(SPACES["aug_weight"], 16, "tpe")[1:]] == [4] * 4   # --search tpe
    assert all(c.grid for c in search_cells(SPACES["aug_weight"], 2, "grid"))               # --search grid


def test_a_grid_that_misses_a_searched_key_is_no_grid_and_the_shared_baseline_is_tuned():
    cells = search_cells(SPACES["full"], 16)                 # lr and proj_dim have no grid values
    assert not cells[0].grid and set(cells[0].searched) == {"lr", "tokenizer.codebook_size"}
    assert all(not c.grid and c.quota == cells[0].quota == 2 for c in cells[1:])
    configs = _drain(_search("full", 16))
    baselines = [c for c in configs if c["ssl_method"] == "none"]
    assert len(baselines) == 2 and baselines[0]["lr"] == 1e-3 and baselines[0]["tokenizer.codebook_size"] == 32
    assert all("proj_dim" not in c for c in baselines)


def test_optuna_is_told_the_mean_over_seeds_once_all_seeds_finish():
    search = _search("aug_weight", 4, seeds=2)
    configs = _drain(search)
    first, second = [str(i) for i, c in enumerate(configs) if c["ssl_method"] == "barlowtwins"
                     and c["aug_set"] == "warp"]
    study = search.optuna_study("A", "barlowtwins/warp")
    search.on_trial_complete(first, {"m": 0.6})
    assert study.trials[0].state == TrialState.RUNNING
    search.on_trial_complete(second, {"m": 0.8})
    assert study.trials[0].value == pytest.approx(0.7)


def test_a_configuration_stopped_early_is_pruned_and_one_without_a_score_failed():
    search = _search("aug_weight", 8, base={"A": {"epochs": 10}})
    configs = _drain(search)
    bw = [str(i) for i, c in enumerate(configs) if (c["ssl_method"], c["aug_set"]) == ("barlowtwins", "warp")]
    search.on_trial_complete(bw[0], {"m": 0.4, "epochs_done": 3})      # the scheduler stopped it at epoch 3
    search.on_trial_complete(bw[1], {"m": math.nan, "epochs_done": 10})
    assert [t.state for t in search.optuna_study("A", "barlowtwins/warp").trials] == [TrialState.PRUNED,
                                                                                      TrialState.FAIL]


def test_a_repeated_proposal_is_answered_not_rerun():
    """A TPE cell over categorical values alone proposes repeats: each distinct configuration runs once, the
    repeats are told its score, and the cell ends early when only repeats come."""
    space = SearchSpace("t", "", params={"ssl_method": tune.choice(["vibcreg"]), "aug_set": tune.choice(["warp"]),
                                         "tokenizer.codebook_size": tune.choice([32, 64])}, grid={})
    search = _search(space, 6, seed=1)
    configs = []
    while (config := search.suggest(str(len(configs)))) != Searcher.FINISHED:
        configs.append(config)
        search.on_trial_complete(str(len(configs) - 1), {"m": config.get("tokenizer.codebook_size", 0) / 100})
    ssl = [c["tokenizer.codebook_size"] for c in configs if c["ssl_method"] != "none"]
    assert sorted(ssl) == [32, 64] and search.configs_run("A") == 3
    study = search.optuna_study("A", "vibcreg/warp")
    assert len(study.trials) > 2
    assert all(t.value == pytest.approx(t.params["tokenizer.codebook_size"] / 100) for t in study.trials
               if t.state == TrialState.COMPLETE)


def test_state_survives_save_and_restore(tmp_path):
    search = _search("aug_weight", 8, seed=3)
    before = [search.suggest(str(i)) for i in range(3)]
    search.save(tmp_path / "state.pkl")
    restored = _search("aug_weight", 8, seed=99)
    restored.restore(tmp_path / "state.pkl")
    assert restored.suggest("3") == search.suggest("3") and before[0]["ssl_method"] == "none"


def test_multi_objective_cells_hear_each_objectives_mean():
    search = _search("aug_weight", 4, seeds=2, metric=["acc", "rec"], mode=["max", "min"])
    assert (search.metric, search.mode) == ("acc", "max")
    configs = _drain(search)
    study = search.optuna_study("A", "vibcreg/slice")
    assert [d.name for d in study.directions] == ["MAXIMIZE", "MINIMIZE"]
    for i, c in enumerate(configs):
        result = {"acc": 0.6 + 0.1 * c["seed"], "rec": 0.2} if c["seed"] == 0 or c["aug_set"] == "slice" else {
            "acc": math.nan}                                 # seed 1 of the warp cells failed: left out
        search.on_trial_complete(str(i), result)
    assert study.trials[0].values == pytest.approx([0.65, 0.2])
    assert search.optuna_study("A", "vibcreg/warp").trials[0].values == pytest.approx([0.6, 0.2])


def test_methods_keep_only_their_cells_and_the_baseline():
    cells = search_cells(SPACES["aug_weight"], 16, methods=("vibcreg",))
    assert [c.name for c in cells] == ["none", "vibcreg/warp", "vibcreg/slice"]
    assert [c.quota for c in cells] == [1, 4, 4] and all(c.grid for c in cells)
    assert [c.quota for c in search_cells(SPACES["aug_weight"], 2, methods=("vibcreg",))] == [1, 1, 1]

"""The report on a small real MLflow store written through tune.study.tracking, in the study's exact layout.

Study "main": 3 datasets x (baseline + 4 configurations) x 2 seeds = 30 trials expected, of which
ArrowHead-0003-s1 FAILED, GunPoint-0001-s1 was never started and ItalyPowerDemand-0003-s0 is RUNNING: those
configurations are incomplete, so selection, ranks and tests must skip them.
Study "one-seed": one dataset, one seed. Study "empty": a parent run and no trial yet. Study "partial":
vibcreg/slice fails on ItalyPowerDemand, so ranks may only use the other two datasets. Parents of
"main" carry raw-series yardsticks (RAW).
"""
import math
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from mlflow.tracking import MlflowClient

from results.cli import run_cli
from results.contract import default_tracking_uri
from results.report import main
from results.study_report import write_report
from tune.study.tracking import StudyTracker, TrialRun, artifact_root

REPO = Path(__file__).resolve().parents[1]
T_975_DF1 = 12.706204736     # Student t quantile (0.975, 1 degree of freedom), from a table
GROUPS = {"baseline": ("none", "none", 0.0), "0000": ("barlowtwins", "warp", 0.1),
          "0001": ("barlowtwins", "warp", 0.2), "0002": ("vibcreg", "slice", 0.1), "0003": ("vibcreg", "slice", 0.2)}
DATASETS = ["ArrowHead", "GunPoint", "ItalyPowerDemand"]
FAILED, MISSING, RUNNING = "ArrowHead-0003-s1", "GunPoint-0001-s1", "ItalyPowerDemand-0003-s0"
RAW = {"ArrowHead": 0.99, "GunPoint": 0.01, "ItalyPowerDemand": 0.5}    # raw/svm_acc: above / below every method


def final_metrics(rng, ds: str, group: str) -> dict[str, float]:
    m = {"val/svm_acc": rng.uniform(0.6, 0.8), "val/knn_acc": rng.uniform(0.5, 0.8),
         "test/svm_acc": rng.uniform(0.6, 0.9), "test/knn_acc": rng.uniform(0.5, 0.9),
         "test/recon_loss": rng.uniform(0.05, 0.3), "codebook/perplexity": rng.uniform(5, 30),
         "codebook/usage": rng.uniform(0.3, 1), "time/train_s": rng.uniform(10, 20)}
    if ds == "GunPoint" and group == "0001":      # best on validation but one seed never ran: never selected
        m["val/svm_acc"], m["test/svm_acc"] = 0.95, rng.uniform(0.5, 0.55)
    if group == "0003":                           # best on validation wherever both seeds finished
        m["val/svm_acc"], m["test/svm_acc"] = 0.9, rng.uniform(0.5, 0.55)
    return m


def make_study(uri: str, results: Path, name: str, datasets: list[str], seeds: int, groups: dict, skip=(), fail=(),
               running=(), rng=None, raw=None, budget: tuple[str, int] | None = None) -> dict:
    """Parents and child runs as run_ablation.py writes them; returns {(dataset, group, seed): metrics}."""
    tracker = StudyTracker(uri, name, artifact_root(uri, results, name))
    logged = {}
    for ds in datasets:
        parent = tracker.parent_run(ds, {"study": name, "seeds": seeds, "num_samples": len(groups) - 1, "epochs": 2,
                                         **({"budget": budget[0], "steps": budget[1]} if budget else {})})
        if raw:
            for key, value in {"raw/svm_acc": raw[ds], "raw/knn_acc": raw[ds], "raw/1nn_acc": 0.75,
                               "raw/minirocket_acc": 0.97}.items():
                tracker.client.log_metric(parent, key, value)
        for group, (ssl, aug, weight) in groups.items():
            for seed in range(seeds):
                key = f"{ds}-{group}-s{seed}"
                if key in skip:
                    continue
                params = {"dataset": ds, "ssl_method": ssl, "aug_set": aug, "aug_recon_weight": weight, "seed": seed,
                          "epochs": 2, "proj_dim": 256, "tokenizer.codebook_size": 32}
                run = TrialRun(uri, tracker.experiment_id, parent, f"t{len(logged)}-{key}", key, params)
                run.log_metrics({"train/loss": 1.0, "val/svm_acc": 0.5}, step=0, flush=True)
                if key in running:
                    continue
                if key in fail:
                    run.finish("FAILED", error="Traceback (most recent call last):\n  ...\nRuntimeError: boom")
                    continue
                logged[(ds, group, seed)] = final_metrics(rng, ds, group)
                run.log_metrics(logged[(ds, group, seed)], step=2, flush=True)
                run.finish()
    return logged


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    results = tmp_path_factory.mktemp("results")
    uri = default_tracking_uri(results)
    rng = np.random.default_rng(0)
    main_logged = make_study(uri, results, "main", DATASETS, 2, GROUPS, skip={MISSING}, fail={FAILED},
                             running={RUNNING}, rng=rng, raw=RAW, budget=("quick", 200))
    make_study(uri, results, "partial", DATASETS, 2, GROUPS, fail={f"ItalyPowerDemand-{g}-s{s}" for g in ("0002", "0003")
                                                                   for s in (0, 1)},
               rng=rng)
    make_study(uri, results, "one-seed", ["GunPoint"], 1,
               {"baseline": GROUPS["baseline"], "0000": ("vibcreg", "gauss", 0.15)}, rng=rng, budget=("smoke", 2))
    make_study(uri, results, "empty", ["ArrowHead"], 1, {"baseline": GROUPS["baseline"], "0000": GROUPS["0000"]},
               skip={"ArrowHead-baseline-s0", "ArrowHead-0000-s0"}, rng=rng)
    out = write_report("main", tracking_uri=uri, results_dir=results)
    return {"results": results, "uri": uri, "out": out, "logged": main_logged}


def table_row(table: pd.DataFrame, ds: str, group: str) -> pd.Series:
    ssl, aug, weight = GROUPS[group]
    row = table[(table["dataset"] == ds) & (table["ssl_method"] == ssl) & (table["aug_set"] == aug)
                & np.isclose(table["aug_recon_weight"], weight)]
    assert len(row) == 1
    return row.iloc[0]


def test_per_config_means_intervals_and_counts(store):
    out, logged = store["out"], store["logged"]
    table = pd.read_csv(out / "per_config.csv")
    assert len(table) == len(DATASETS) * len(GROUPS)
    for ds in DATASETS:
        for group in GROUPS:
            row = table_row(table, ds, group)
            seeds = [logged[(ds, group, s)] for s in range(2) if (ds, group, s) in logged]
            assert row["n_seeds"] == len(seeds)
            for metric in ("test/svm_acc", "test/knn_acc", "test/recon_loss", "codebook/perplexity", "codebook/usage",
                           "time/train_s", "val/svm_acc"):
                values = [m[metric] for m in seeds]
                c = metric.replace("/", "_")
                assert row[f"{c}_mean"] == pytest.approx(sum(values) / len(values))
                if len(values) == 2:   # t-interval with n = 2: t(0.975, 1) * sd / sqrt(2) = t * |a - b| / 2
                    assert row[f"{c}_ci95"] == pytest.approx(T_975_DF1 * abs(values[0] - values[1]) / 2)
                else:
                    assert math.isnan(row[f"{c}_ci95"])
    assert table_row(table, "ArrowHead", "0003")[["n_seeds", "n_failed", "n_running"]].tolist() == [1, 1, 0]
    assert table_row(table, "ItalyPowerDemand", "0003")[["n_seeds", "n_failed", "n_running"]].tolist() == [1, 0, 1]
    assert "gen_fid_mean" not in table        # stage-2 columns only when some run has them
    md = (out / "per_config.md").read_text()
    gp = table_row(table, "GunPoint", "0000")
    assert f"{gp['test_svm_acc_mean']:.4g} ± {gp['test_svm_acc_ci95']:.4g}" in md


def test_selection_by_validation_ranks_and_baseline_tests(store):
    out, logged = store["out"], store["logged"]
    selected = pd.read_csv(out / "selected.csv")
    gp = selected[(selected["dataset"] == "GunPoint") & (selected["method"] == "barlowtwins/warp")].iloc[0]
    assert gp["aug_recon_weight"] == 0.1 and gp["n_seeds"] == 2     # 0.2 is best on validation but incomplete
    vs = selected[(selected["dataset"] == "GunPoint") & (selected["method"] == "vibcreg/slice")].iloc[0]
    assert vs["aug_recon_weight"] == 0.2       # complete there: best validation, worse test than 0.1
    methods = {"none": ["baseline"], "barlowtwins/warp": ["0000", "0001"], "vibcreg/slice": ["0002", "0003"]}
    scores = pd.DataFrame(index=DATASETS, columns=list(methods), dtype=float)
    complete = lambda ds, g: all((ds, g, s) in logged for s in range(2))
    for ds in DATASETS:
        for method, groups in methods.items():
            best = max([g for g in groups if complete(ds, g)],
                       key=lambda g: np.mean([logged[k]["val/svm_acc"] for k in logged if k[:2] == (ds, g)]))
            scores.loc[ds, method] = np.mean([logged[k]["test/svm_acc"] for k in logged if k[:2] == (ds, best)])
    ranks = pd.read_csv(out / "ranks.csv").set_index("method")
    expected_rank = scores.rank(axis=1, ascending=False).mean()
    assert ranks["avg_rank"].to_dict() == pytest.approx(expected_rank.to_dict())
    for method in ("barlowtwins/warp", "vibcreg/slice"):
        diff = scores[method] - scores["none"]
        assert ranks.loc[method, ["wins", "losses", "n_paired"]].tolist() == [(diff > 0).sum(), (diff < 0).sum(), 3]
    assert (out / "cd_diagram.png").stat().st_size > 0 and (out / "cd_diagram.svg").exists()
    assert "Critical-difference diagram (aeon) over 3 datasets" in (out / "ranks.md").read_text()


def test_figures_summary_and_trial_accounting(store):
    out = store["out"]
    for ds in DATASETS:
        assert (out / f"weight_{ds}.png").stat().st_size > 0 and (out / f"weight_{ds}.svg").exists()
    summary = (out / "summary.md").read_text()
    assert "Expected 30, finished 27, failed 1, killed 0, running 1, missing 1." in summary
    assert f"- {FAILED} (FAILED): RuntimeError: boom" in summary
    assert f"- {RUNNING} (RUNNING)" in summary
    assert "not significantly different from none" in summary and "cannot reach p < 0.05" in summary
    assert "Means over up to 2 seeds with 95% t-intervals; 3 configuration(s) have one finished seed" in summary
    assert "Budget: quick (200 optimizer steps per trial)." in summary and "plumbing" not in summary
    trials = pd.read_csv(out / "trials.csv")
    assert len(trials) == 29 and set(trials["status"]) == {"FINISHED", "FAILED", "RUNNING"}


def test_artifacts_logged_to_parent_runs(store):
    client = MlflowClient(store["uri"])
    exp = client.get_experiment_by_name("main")
    parents = client.search_runs([exp.experiment_id], "tags.`ssl_vqvae.role` = 'parent'")
    assert len(parents) == 3
    for p in parents:
        names = {Path(a.path).name for a in client.list_artifacts(p.info.run_id, "report")}
        ds = p.data.tags["dataset"]
        assert {"per_config.csv", "per_config.md", "ranks.csv", "ranks.md", "summary.md", "cd_diagram.png",
                f"weight_{ds}.png"} <= names
        assert not any(n.startswith("weight_") and n != f"weight_{ds}.png" and n != f"weight_{ds}.svg" for n in names)


def test_one_seed_study_says_no_intervals(store, capsys):
    with pytest.raises(SystemExit) as exit_:
        run_cli(main, ["--study", "one-seed", "--results-dir", str(store["results"])])
    assert exit_.value.code == 0 and "report:" in capsys.readouterr().out
    out = store["results"] / "one-seed"
    summary = (out / "summary.md").read_text()
    assert "One seed per configuration: the tables show means without confidence intervals" in summary
    assert "Budget: smoke (2 optimizer steps per trial). **A plumbing check, not a result**" in summary
    assert "No critical-difference diagram" in summary and (out / "cd_diagram.png").exists()
    table = pd.read_csv(out / "per_config.csv")
    assert table["test_svm_acc_ci95"].isna().all() and (table["n_seeds"] == 1).all()
    assert "±" not in (out / "per_config.md").read_text()


def test_study_without_finished_trials(store):
    out = write_report("empty", tracking_uri=store["uri"], results_dir=store["results"])
    summary = (out / "summary.md").read_text()
    assert "No finished trial yet" in summary
    assert "missing 2." in summary


def test_unknown_study_is_one_error_line(store, capsys):
    with pytest.raises(SystemExit) as exit_:
        run_cli(main, ["--study", "nope", "--results-dir", str(store["results"])])
    err = capsys.readouterr().err
    assert exit_.value.code == 2 and err.count("\n") == 1
    assert err.startswith("error: no study 'nope'") and "main" in err


def test_cli_missing_store_exits_2_without_creating_one(tmp_path):
    proc = subprocess.run([sys.executable, "results/report.py", "--study", "x", "--results-dir", str(tmp_path)],
                          cwd=REPO, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2 and proc.stderr.startswith("error: no MLflow store at ")
    assert proc.stderr.count("\n") == 1 and not (tmp_path / "mlflow.db").exists()


def test_ranks_only_over_datasets_where_every_method_finished(store):
    out = write_report("partial", tracking_uri=store["uri"], results_dir=store["results"])
    ranks = pd.read_csv(out / "ranks.csv").set_index("method")
    assert set(ranks["n_datasets"]) == {2}          # every method ranked over the same two datasets
    assert set(ranks.index) == {"none", "barlowtwins/warp", "vibcreg/slice"}
    assert "Dropped from ranks and tests, as some method has no finished trial there: ItalyPowerDemand." in (
        out / "ranks.md").read_text()


def test_yardsticks_beside_every_method(store):
    out = store["out"]
    selected = pd.read_csv(out / "selected.csv")
    raw = selected[selected["method"] == "raw series: linear probes"].set_index("dataset")
    assert raw["test_svm_acc_mean"].to_dict() == pytest.approx(RAW)
    assert (selected["method"] == "raw series: 1-NN ED").sum() == 3
    assert (selected["method"] == "raw series: MiniRocket (supervised)").sum() == 3
    summary = (out / "summary.md").read_text()
    assert "## Against the raw series" in summary
    assert "- ArrowHead: the tokens chosen by validation among all methods, the baseline included" in summary and "do not beat the same probe on the raw series (0.990)" in summary
    gun = next(line for line in summary.splitlines() if line.startswith("- GunPoint:"))
    assert " beat the same probe on the raw series (0.010)" in gun and "1-NN ED 0.750" in gun


def test_weight_figure_keeps_its_panel_labels_beside_the_yardstick_lines(store):
    from results.figures import weight_figure
    from results.runs import load_study, per_config

    runs = load_study("main", store["uri"])
    table = per_config(runs)
    fig = weight_figure(table, "GunPoint", {"barlowtwins": "C0", "vibcreg": "C1", "none": "k"}, "none",
                        {"raw/svm_acc": 0.8, "raw/knn_acc": 0.7, "raw/1nn_acc": 0.75, "raw/minirocket_acc": 0.9})
    labels = [ax.get_ylabel() for ax in fig.axes if ax.get_ylabel()]
    assert labels == ["validation SVM acc.\n(CV on train: the objective)", "test SVM accuracy", "test KNN accuracy",
                      "test reconstruction loss"]
    lines = {line.get_label() for ax in fig.axes for line in ax.get_lines()}
    assert {"raw series (same probe)", "1-NN ED (raw)", "MiniRocket (supervised)"} <= lines
    fig.canvas.draw()
    assert all(ax.yaxis.get_major_formatter().get_offset() == "" for ax in fig.axes)   # no offset notation
    assert [t.get_text() for t in fig.axes[-1].get_xticklabels()] == ["0.1", "0.2"]
    # methods at one weight sit side by side, not on one another
    svm = fig.axes[2]              # first augmentation set's test SVM panel (rows first, then columns)
    xs = [tuple(line.get_xdata()) for line in svm.get_lines() if line.get_label() in ("barlowtwins", "vibcreg")]
    assert len(xs) == len(set(xs))

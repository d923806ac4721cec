"""The study's answer: tables, figures and significance tests read back from its MLflow store.

Writes `<results-dir>/<study>/` and logs the same files to the study's MLflow parent runs under
`report/`. Works on a partial or running study: only FINISHED trials enter the tables, and the
summary names the trials that are missing, failed or still running. The CLI is results/report.py.
"""
from __future__ import annotations

import math
import sys
from pathlib import Path

import pandas as pd
from mlflow.exceptions import MlflowException
from mlflow.tracking import MlflowClient

from results.ablation import answer_lines, aug_effects, thesis_verdict, weight_effects
from results.contract import (BASELINE_METHOD, BUDGET_PARAM, GEN_METRICS, INTERRUPTED_TAG, PLUMBING_BUDGETS, RAW_1NN,
                              RAW_KNN, RAW_MINIROCKET, RAW_SVM, SEEDS_PARAM, SIMULATE_PARAM, STUDY_NAME, column)
from results.errors import UsageError
from results.figures import cd_figure, method_colours, pareto_figure, save_figure, weight_figure
from results.pareto import front_counts, pareto_table, study_objectives
from results.runs import REFERENCE_HIDDEN, StudyRuns, load_study, per_config, with_method
from results.selection import select_best
from results.stats import average_ranks, wilcoxon_holm

REFERENCE_PROJ_DIM = 4096
SELECT_BY, SCORE, ALPHA = "val_svm_acc_mean", "test_svm_acc_mean", 0.05
BASELINE = BASELINE_METHOD


def check_study_name(study: str) -> None:
    """A study name names a folder under --results-dir: never a path that leaves it."""
    if not STUDY_NAME.fullmatch(study):
        raise UsageError(f"study name {study!r} must be 1-100 letters, digits, '.', '_' or '-' and start with a "
                         f"letter or digit (it names a folder under --results-dir)")


def best_per_method(runs: StudyRuns, table: pd.DataFrame, level: str = "method") -> pd.DataFrame:
    """Per dataset and method (or `level`), the row of `table` that results.selection picks (never by test)."""
    picks = select_best(with_method(runs.trials).assign(method=lambda t: t[level]), by=["dataset", "method"])
    if picks.empty or SCORE not in table:
        return table.iloc[0:0].assign(n_tied=pd.Series(dtype=int))
    chosen = table.drop(columns="method").merge(picks[["dataset", "config_id", "method", "n_tied"]],
                                                on=["dataset", "config_id"])
    return chosen.dropna(subset=[SCORE]).reset_index(drop=True)


def trial_status(runs: StudyRuns) -> pd.DataFrame:
    """Per dataset: trials expected (seeds x the configurations the plan had from the start), found by
    status, missing."""
    rows = []
    for p in runs.parents.itertuples():
        kids = runs.trials[runs.trials["parent"] == p.run_id]
        counts = kids["status"].value_counts()
        row = {"dataset": p.dataset, "expected": math.nan, "found": len(kids),
               **{s.lower(): int(counts.get(s, 0)) for s in ("FINISHED", "FAILED", "KILLED", "RUNNING")},
               "missing": math.nan}
        if not (math.isnan(p.seeds) or math.isnan(p.configs)):
            expected = int(p.seeds) * int(p.configs)
            row["expected"], row["missing"] = expected, max(expected - len(kids), 0)
        rows.append(row)
    return pd.DataFrame(rows, columns=["dataset", "expected", "found", "finished", "failed", "killed", "running",
                                       "missing"])


def write_report(study: str, *, tracking_uri: str, results_dir: str | Path) -> Path:
    """Write results_dir/<study>/ and log it to the study's parent runs; returns that folder."""
    check_study_name(study)
    runs = load_study(study, tracking_uri)
    out = Path(results_dir) / study
    out.mkdir(parents=True, exist_ok=True)
    table, status = per_config(runs), trial_status(runs)
    shared = _tables(out, "per_config", table, _display(table, runs.config))
    runs.trials.sort_values("key").to_csv(out / "trials.csv", index=False)
    shared.append(out / "trials.csv")
    colours = method_colours(table["ssl_method"], BASELINE)
    per_dataset: dict[str, list[Path]] = {}
    for ds in table["dataset"].unique():
        fig = weight_figure(table, ds, colours, BASELINE, yardsticks_of(runs.parents, ds))
        if fig is not None:
            per_dataset[ds] = save_figure(fig, out / f"weight_{ds}")
    best, scores, compare_note = compared_methods(runs, table)
    ranks = average_ranks(scores)
    if BASELINE in scores and scores.shape[1] > 1:
        ranks = ranks.join(wilcoxon_holm(scores, BASELINE, alpha=ALPHA))
    cd_note = "No dataset with every method finished yet: no ranks."
    if len(scores.columns) and len(scores):
        fig, cd_note = cd_figure(scores, ALPHA)
        cd_note = compare_note + cd_note
        shared += save_figure(fig, out / "cd_diagram")
    shared += _tables(out, "ranks", ranks.reset_index(), _fmt_frame(ranks.reset_index()), cd_note)
    best = best.reindex(columns=["dataset", "method", *runs.config[2:], "config_id", "n_seeds", "n_tied", SELECT_BY,
                                 SCORE, SCORE.replace("svm", "knn")])
    yardsticks = yardstick_rows(runs.parents)
    selected = pd.concat([best, yardsticks], ignore_index=True).sort_values(["dataset"], kind="stable")
    shared += _tables(out, "selected", selected, _fmt_frame(selected), SELECTION_NOTE + YARDSTICK_NOTE)
    weights, augs = weight_effects(runs.trials), aug_effects(runs.trials)
    ablation = answer_lines(weights, augs) + ["", thesis_verdict(weights, augs)]
    shared += _tables(out, "ablation_weight", weights, _fmt_frame(weights), ABLATION_NOTE)
    shared += _tables(out, "ablation_aug_set", augs, _fmt_frame(augs), ABLATION_NOTE)
    generation = generation_table(table)
    if len(generation):
        shared += _tables(out, "generation", generation, _display(generation, runs.config, counts=("n_seeds", "n_gen")),
                          GENERATION_NOTE)
    objectives, pareto_lines = study_objectives(runs), []
    if len(objectives) > 1:     # a multi-objective study: its fronts, figures and how often each method is on one
        files, figures, pareto_lines = write_pareto(out, runs, table, objectives, colours)
        shared += files
        for ds, paths in figures.items():
            per_dataset.setdefault(ds, []).extend(paths)
    (out / "summary.md").write_text(summary_text(runs, table, status, ranks, cd_note, best, yardsticks)
                                    + _section("The ablation: does aug_recon_weight matter?", ablation)
                                    + _section("Generation (stage 2)", generation_lines(generation))
                                    + "".join(f"{line}\n" for line in pareto_lines))
    shared.append(out / "summary.md")
    _log_to_parents(tracking_uri, runs.parents, shared, per_dataset)
    return out


ABLATION_NOTE = ("ablation_weight: per SSL method and augmentation set, a Friedman test across aug_recon_weight "
                 "on blocks (dataset, seed) finished at every weight; kendall_w: agreement of the blocks' orderings; "
                 "weight_gap: mean over blocks of the mean absolute difference between two weights. "
                 "ablation_aug_set: per SSL method, a two-sided Wilcoxon signed-rank test of the first set minus "
                 "the second on blocks (dataset, weight, seed); aug_gap: mean absolute difference. Holm's "
                 "step-down within each table. Test metrics, reported only: nothing is selected on them.")
GENERATION_NOTE = ("Stage 2 (MaskGIT prior; FID and IS in the features of the dataset's supervised FCN, CAS: an "
                   "FCN trained on generated series, tested on the real test split) for the configuration selected "
                   "per dataset and SSL method by validation, the baseline included; mean and 95% t-interval over "
                   "its seeds (n_gen: seeds with stage-2 metrics).")
GEN_COLUMNS = tuple(column(m) for m in GEN_METRICS)


def generation_table(table: pd.DataFrame) -> pd.DataFrame:
    """per_config's rows that have stage-2 metrics, with their FID / IS / CAS columns only."""
    if "gen_fid_mean" not in table:
        return table.iloc[0:0]
    rows = table[table["gen_fid_mean"].notna()]
    keep = [c for c in rows.columns if not c.endswith(("_mean", "_ci95")) or c.startswith(GEN_COLUMNS)]
    return rows[keep].reset_index(drop=True)


def generation_lines(generation: pd.DataFrame) -> list[str]:
    if generation.empty:
        return ["No stage-2 metrics (run with `--stage2 best`, the default, or `--stage2 all`)."]
    lines = []
    for ds, g in generation.groupby("dataset", sort=True):
        parts = [f"{r.method} FID {_num(r.gen_fid_mean)}" + ("" if pd.isna(r.gen_fid_ci95) else f" ± {_num(r.gen_fid_ci95)}")
                 + f", IS {_num(r.gen_is_mean)}, CAS {_num(r.gen_cas_mean)} (n={int(r.n_gen)})" for r in g.itertuples()]
        lines.append(f"- {ds}: " + "; ".join(parts) + ".")
    return lines + ["", "Lower FID is better; see generation.md for the intervals of IS and CAS."]


def _section(title: str, lines: list[str]) -> str:
    return "\n".join(["", f"## {title}", "", *lines]) + "\n"


PARETO_NOTE = ("The Pareto-optimal configurations of each dataset on the study's objectives ({}), means over "
               "finished seeds with 95% t-intervals: no other configuration of the dataset, the baseline included, "
               "is at least as good on every objective and better on one. Objectives are train-split estimates; "
               "test columns are reported only. Rows are ordered along the front.")


def write_pareto(out: Path, runs: StudyRuns, table: pd.DataFrame, objectives: list[tuple[str, str]],
                 colours: dict[str, str]) -> tuple[list[Path], dict[str, list[Path]], list[str]]:
    """pareto.csv / pareto.md (the fronts and how often each method and weight range is on them) and
    pareto_<dataset>.png; returns (shared files, per-dataset figures, summary.md lines)."""
    flagged = pareto_table(runs, table, objectives)
    figures = {}
    for ds in flagged["dataset"].unique():
        fig = pareto_figure(flagged, ds, colours, objectives, BASELINE, yardsticks_of(runs.parents, ds))
        if fig is not None:
            figures[ds] = save_figure(fig, out / f"pareto_{ds}")
    cols = [f"{column(m)}_{s}" for m, _ in objectives for s in ("mean", "ci95")]
    reported = [f"{c}_{s}" for c in ("test_svm_acc", "test_recon_loss", "gen_fid") if f"{c}_mean" in flagged
                for s in ("mean", "ci95")]
    on_front = flagged[flagged["pareto"]].sort_values(
        ["dataset", f"{column(objectives[0][0])}_mean"], ascending=[True, objectives[0][1] == "min"])
    on_front = on_front.reindex(columns=["dataset", "method", *runs.config[2:], "config_id", "n_seeds", *cols,
                                         *reported])
    on_front.to_csv(out / "pareto.csv", index=False)
    by_method, by_weight = front_counts(flagged)
    shown = _display(on_front, runs.config, counts=("n_seeds",))
    names = ", ".join(f"{m} ({sense})" for m, sense in objectives)
    (out / "pareto.md").write_text(
        "\n\n".join([markdown(shown), PARETO_NOTE.format(names), "## How often on the front, across datasets",
                      markdown(_fmt_frame(by_method)), markdown(_fmt_frame(by_weight)),
                      "configs: configurations with a finished seed; on_front: of them on their dataset's front; "
                      "datasets_on_front: datasets where one of them is on the front, of `datasets` they ran on. "
                      "Weight ranges count the SSL configurations only."]) + "\n")
    lines = ["", "## Pareto front", "", f"Objectives: {names}; see pareto.md and pareto_<dataset>.png.", ""]
    for ds, g in flagged.groupby("dataset"):
        base = g[g["method"] == BASELINE]
        where = ("" if base.empty else
                 " (the baseline is on it)" if base["pareto"].any() else " (the baseline is not)")
        lines.append(f"- {ds}: {int(g['pareto'].sum())} of {len(g)} configurations on the front{where}.")
    lines += [""] + [f"- {r.method}: on the front in {r.datasets_on_front} of {r.datasets} dataset(s) "
                     f"({r.on_front} of {r.configs} configurations)." for r in by_method.itertuples()]
    return [out / "pareto.csv", out / "pareto.md"], figures, lines


def compared_methods(runs: StudyRuns, table: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame, str]:
    """The best configuration per dataset and method, and the (datasets x methods) test scores that ranks,
    Wilcoxon-Holm and the CD diagram compare: only datasets where every method has a score, so every
    average rank is over the same competitors. Methods are (SSL method, augmentation set) pairs, or SSL
    methods alone where that keeps more datasets. Returns (best rows, scores, a note of what was dropped)."""
    candidates = []
    for level in ("method", "ssl_method"):
        best = best_per_method(runs, table, level=level)
        scores = best.pivot(index="dataset", columns="method", values=SCORE) if len(best) else pd.DataFrame()
        candidates.append((len(scores.dropna()), level, best, scores))
    kept, level, best, scores = max(candidates, key=lambda c: c[0])     # ties keep the finer level (first)
    dropped = sorted(set(scores.index) - set(scores.dropna().index))
    note = ("Methods are compared at the level of the SSL method (its best augmentation set and weight per dataset, "
            "chosen by validation), which keeps more datasets complete. " if level == "ssl_method" else "")
    if dropped:
        note += (f"Dropped from ranks and tests, as some method has no finished trial there: {', '.join(dropped)}. ")
    return best, scores.dropna(), note


YARDSTICK_METRICS = {RAW_SVM: "raw series: linear SVM", RAW_KNN: "raw series: 5-NN",
                     RAW_1NN: "raw series: 1-NN ED", RAW_MINIROCKET: "raw series: MiniRocket (supervised)"}
YARDSTICK_NOTE = (" Rows `raw series: ...` are the yardsticks: the same probes on the z-normalised raw series, "
                  "1-NN with Euclidean distance and MiniRocket (a supervised ceiling), test accuracy, fitted on "
                  "the train split.")


def yardsticks_of(parents: pd.DataFrame, dataset: str) -> dict[str, float]:
    row = parents[parents["dataset"] == dataset]
    return {k: float(row[k].iloc[0]) for k in YARDSTICK_METRICS if k in row and len(row) and pd.notna(row[k].iloc[0])}


def yardstick_rows(parents: pd.DataFrame) -> pd.DataFrame:
    """selected.csv rows for the yardsticks: the raw-series probes as one row (SVM and 5-NN), the others alone."""
    rows = []
    for ds in parents["dataset"]:
        y = yardsticks_of(parents, ds)
        if RAW_SVM in y:
            rows.append({"dataset": ds, "method": "raw series: linear probes", SCORE: y[RAW_SVM],
                         SCORE.replace("svm", "knn"): y.get(RAW_KNN)})
        for key in (RAW_1NN, RAW_MINIROCKET):
            if key in y:
                rows.append({"dataset": ds, "method": YARDSTICK_METRICS[key], SCORE: y[key]})
    return pd.DataFrame(rows, columns=["dataset", "method", SCORE, SCORE.replace("svm", "knn")])


SELECTION_NOTE = ("Per dataset and method, the configuration with the best mean validation SVM accuracy over its "
                  "seeds; ties (n_tied > 1) go to the better mean validation 5-NN accuracy, then the lower mean "
                  "validation reconstruction loss, then the smaller config id.")


def summary_text(runs: StudyRuns, table: pd.DataFrame, status: pd.DataFrame, ranks: pd.DataFrame,
                 cd_note: str, best: pd.DataFrame, yardsticks: pd.DataFrame) -> str:
    n_exp = status["expected"].sum(min_count=len(status)) if len(status) else math.nan
    stopped = sorted({n for n in runs.parents.get(INTERRUPTED_TAG, []) if n})
    lines = [f"# Study {runs.name}", "", *[f"**{n}**\n" for n in stopped],
             f"{len(runs.parents)} dataset(s): {', '.join(runs.parents['dataset'])}. Only FINISHED trials enter "
             "the tables; each method's configuration is chosen per dataset by validation SVM accuracy (mean over "
             "seeds), and test accuracy is only reported.", "", *budget_lines(runs.parents), "## Trials", "",
             f"Expected {'unknown' if pd.isna(n_exp) else int(n_exp)}, finished {status['finished'].sum()}, "
             f"failed {status['failed'].sum()}, killed {status['killed'].sum()}, running {status['running'].sum()}, "
             f"missing {'unknown' if pd.isna(n_exp) else int(status['missing'].sum())}.", "",
             markdown(_fmt_frame(status))]
    for label, states in (("Failed or killed", ["FAILED", "KILLED"]),
                          ("Running (or stopped without closing its run)", ["RUNNING"])):
        bad = runs.trials[runs.trials["status"].isin(states)].sort_values("run_name")
        if len(bad):
            lines += ["", f"{label} trials:"] + [f"- {r.run_name} ({r.status}){': ' + r.error if r.error else ''}"
                                                 for r in bad.itertuples()]
    lines += ["", "## Configurations per cell", "", CELLS_NOTE, "", markdown(cell_counts(table, runs.parents))]
    small = sorted({int(v) for v in runs.parents["proj_dim"].dropna() if v != REFERENCE_PROJ_DIM})
    if small:
        lines += ["", f"Model size: the SSL projector has {', '.join(map(str, small))} units, not the reference's "
                      f"{REFERENCE_PROJ_DIM}: IterNorm's groups and Barlow Twins' off-diagonal balance differ, so read "
                      f"the SSL results as a scaled-down study (`--set proj_dim={REFERENCE_PROJ_DIM}` restores it)."]
    lines += ["", "## Seeds", ""]
    done = table[table["n_seeds"] > 0]
    if not len(done):
        lines.append("No finished trial yet: no tables, figures or tests.")
    elif done["n_seeds"].max() <= 1:
        lines.append("One seed per configuration: the tables show means without confidence intervals "
                     "(a t-interval needs at least two seeds).")
    else:
        one = int((done["n_seeds"] == 1).sum())
        lines.append(f"Means over up to {done['n_seeds'].max()} seeds with 95% t-intervals"
                     + (f"; {one} configuration(s) have one finished seed and no interval." if one else "."))
    lines += ["", "## Against the raw series", "", *raw_series_lines(runs, best), "", "## Against the baseline", "",
              cd_note, ""]
    if "p_holm" not in ranks:
        lines.append(f"No comparison: the `{BASELINE}` baseline and at least one other method need finished trials.")
    else:
        for method, r in ranks.drop(index=BASELINE).sort_values("p_holm").iterrows():
            if not r.n_paired:
                lines.append(f"- {method}: no dataset where both it and {BASELINE} finished; not tested.")
                continue
            verdict = (("significantly better than" if r.mean_diff > 0 else "significantly worse than") if r.significant
                       else "not significantly different from")
            lines.append(f"- {method} is {verdict} {BASELINE} (test SVM accuracy, Holm p = {r.p_holm:.3g}, "
                         f"Wilcoxon p = {r.p_value:.3g}): better on {int(r.wins)}, tied on {int(r.ties)}, worse on "
                         f"{int(r.losses)} of {int(r.n_paired)} dataset(s), mean difference {r.mean_diff:+.4f}.")
        if ranks["n_paired"].max() < 6:
            lines += ["", "With fewer than 6 datasets a two-sided Wilcoxon test cannot reach p < 0.05: "
                          "no difference can be significant yet."]
    return "\n".join(lines) + "\n"


CELLS_NOTE = ("Each (SSL method, augmentation set) cell of a dataset's search gets the same share of "
              "configurations (the space's grid where it fits, else TPE); `run / complete` counts the "
              "configurations that ran and those whose planned seeds all finished: only complete ones can be "
              "selected, ranked or tested.")


def cell_counts(table: pd.DataFrame, parents: pd.DataFrame) -> pd.DataFrame:
    """Per dataset (rows) and method (columns): `run / complete` configurations."""
    planned = dict(zip(parents["dataset"], parents[SEEDS_PARAM]))
    t = table.assign(complete=[n >= planned.get(ds, n) for ds, n in zip(table["dataset"], table["n_seeds"])])
    counts = t.groupby(["dataset", "method"]).agg(run=("config_id", "size"), complete=("complete", "sum"))
    shown = counts.apply(lambda r: f"{int(r['run'])} / {int(r['complete'])}", axis=1).unstack("method")
    return shown.fillna("–").reset_index()


def budget_lines(parents: pd.DataFrame) -> list[str]:
    """The study's budget, and for a smoke study that it checks the plumbing and shows no result."""
    budgets = sorted({b for b in parents.get(BUDGET_PARAM, pd.Series(dtype=object)).dropna() if b})
    if not budgets:
        return []
    steps = sorted({int(v) for v in parents["steps"].dropna()})
    text = (f"Budget: {', '.join(budgets)}" + (f" ({', '.join(map(str, steps))} optimizer steps per trial)" if steps
                                               else "") + ".")
    if SIMULATE_PARAM in parents and parents[SIMULATE_PARAM].notna().any():
        text = ("**SIMULATED** (`--simulate`): no model was trained; every metric below is a synthetic draw "
                "(tune/study/simulate.py) and says nothing about the methods; this study rehearsed the cluster, the "
                "searches, MLflow and the report. " + text)
    if set(budgets) & set(PLUMBING_BUDGETS):
        text += (" **A plumbing check, not a result**: this budget only shows that the study runs end to end "
                 "(trials, MLflow, selection, report); the tokens are barely trained, so no number below says "
                 "anything about the methods.")
    hidden = sorted({int(v) for v in parents["hidden"].dropna()})
    seeds = sorted({int(v) for v in parents[SEEDS_PARAM].dropna()})
    if hidden and seeds:
        text += (f" Model: tokenizer width {'/'.join(map(str, hidden))} at the token grid (the reference's "
                 f"{REFERENCE_HIDDEN}); {'/'.join(map(str, seeds))} seed(s) per configuration; {len(parents)} "
                 f"dataset(s). The quick budget's datasets, seeds, steps and model size are chosen by measurement "
                 f"to fit 30 minutes on 2 cores: docs/quick-budget.md.")
    return [text, ""]


def raw_series_lines(runs: StudyRuns, best: pd.DataFrame) -> list[str]:
    """Per dataset: do the best tokens (by validation) beat the same probe on the raw series, and 1-NN?"""
    lines = []
    for ds in runs.parents["dataset"]:
        y = yardsticks_of(runs.parents, ds)
        picks = best[best["dataset"] == ds].dropna(subset=[SCORE])
        if RAW_SVM not in y or not len(picks):
            lines.append(f"- {ds}: {'no yardstick computed' if RAW_SVM not in y else 'no finished method'}.")
            continue
        top = picks.loc[picks[SELECT_BY].idxmax()]      # the method chosen by validation, never by test
        verdict = "beat" if top[SCORE] > y[RAW_SVM] else "do not beat"
        extra = "".join(f", {YARDSTICK_METRICS[k].split(': ')[1]} {y[k]:.3f}" for k in (RAW_1NN,
                                                                                      RAW_MINIROCKET) if k in y)
        lines.append(f"- {ds}: the tokens chosen by validation among all methods, the baseline included "
                     f"({top['method']}, test SVM {top[SCORE]:.3f}) {verdict} "
                     f"the same probe on the raw series ({y[RAW_SVM]:.3f}){extra}.")
    return lines


def markdown(frame: pd.DataFrame) -> str:
    head = "| " + " | ".join(map(str, frame.columns)) + " |\n|" + "---|" * len(frame.columns)
    return "\n".join([head] + ["| " + " | ".join(map(str, row)) + " |" for row in frame.itertuples(index=False)])


def _display(table: pd.DataFrame, config: list[str],
             counts: tuple[str, ...] = ("n_seeds", "n_failed", "n_running")) -> pd.DataFrame:
    """per_config.md: `mean ± ci` per metric, the mean alone where there is no interval."""
    shown = _fmt_frame(table[["dataset", "method", *config[2:], *counts]])
    for c in [c[:-5] for c in table if c.endswith("_mean")]:
        shown[c] = [_num(m) + ("" if pd.isna(h) else f" ± {_num(h)}")
                    for m, h in zip(table[f"{c}_mean"], table[f"{c}_ci95"])]
    return shown


def _fmt_frame(frame: pd.DataFrame) -> pd.DataFrame:
    return frame.apply(lambda c: c.map(_num) if c.dtype.kind == "f" else c.where(c.notna(), "–"))


def _num(v) -> str:
    return "–" if pd.isna(v) else f"{v:.4g}"


def _tables(out: Path, name: str, frame: pd.DataFrame, shown: pd.DataFrame, note: str = "") -> list[Path]:
    frame.to_csv(out / f"{name}.csv", index=False)
    (out / f"{name}.md").write_text(markdown(shown) + (f"\n\n{note}\n" if note else "\n"))
    return [out / f"{name}.csv", out / f"{name}.md"]


def _log_to_parents(tracking_uri: str, parents: pd.DataFrame, shared: list[Path],
                    per_dataset: dict[str, list[Path]]) -> None:
    """Cross-dataset files to every parent run, a dataset's figures to its own; warn, don't fail, on errors."""
    client = MlflowClient(tracking_uri)
    try:
        for p in parents.itertuples():
            for f in shared + per_dataset.get(p.dataset, []):
                client.log_artifact(p.run_id, str(f), "report")
    except (MlflowException, OSError) as err:
        print(f"warning: report not logged to MLflow ({str(err).splitlines()[0]})", file=sys.stderr)



"""The report's figures (matplotlib, headless): metrics against aug_recon_weight, and the ranks across datasets."""
from __future__ import annotations

import warnings
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import pandas as pd  # noqa: E402

from results.contract import RAW_1NN, RAW_KNN, RAW_MINIROCKET, RAW_SVM, VAL_RECON, VAL_SVM
from results.stats import average_ranks  # noqa: E402

PANELS = [("val_svm_acc", "validation SVM acc.\n(CV on train: the objective)"), ("test_svm_acc", "test SVM accuracy"),
          ("test_knn_acc", "test KNN accuracy"), ("test_recon_loss", "test reconstruction loss")]


YARDSTICK_LINES = {"test_svm_acc": [(RAW_SVM, "raw series (same probe)"), (RAW_1NN, "1-NN ED (raw)"),
                                     (RAW_MINIROCKET, "MiniRocket (supervised)")],
                   "test_knn_acc": [(RAW_KNN, "raw series (same probe)"), (RAW_1NN, "1-NN ED (raw)"),
                                     (RAW_MINIROCKET, "MiniRocket (supervised)")]}
YARDSTICK_STYLE = {RAW_SVM: ":", RAW_KNN: ":", RAW_1NN: "-.", RAW_MINIROCKET: "--"}
DODGE = 0.15        # of the smallest gap between weights: methods sit side by side, not on one another


def method_colours(ssl_methods, baseline: str = "none") -> dict[str, str]:
    """One colour per SSL method (sorted), black for the baseline: the same in every figure of a study."""
    return {s: f"C{i}" for i, s in enumerate(sorted(set(ssl_methods) - {baseline}))} | {baseline: "k"}


def weight_figure(table: pd.DataFrame, dataset: str, colours: dict[str, str], baseline: str = "none",
                  yardsticks: dict[str, float] | None = None):
    """The ablation's figure for one dataset: the validation objective, test probe accuracies and test
    reconstruction loss against aug_recon_weight, one column per augmentation set, one line per SSL method
    (mean over seeds, a 95% t-interval where there are several seeds), the baseline as a band and the
    raw-series yardsticks as lines; `table` is report.per_config's. None if nothing searched."""
    d = table[table["dataset"] == dataset]
    base, searched = d[d["method"] == baseline], d[(d["method"] != baseline) & (d["n_seeds"] > 0)]
    augs = sorted(searched["aug_set"].unique())
    if not augs:
        return None
    weights = sorted(searched["aug_recon_weight"].dropna().unique())
    gap = min((b - a for a, b in zip(weights, weights[1:])), default=0.05)
    methods = sorted(searched["ssl_method"].unique())
    fig, axes = plt.subplots(len(PANELS), len(augs), figsize=(3.6 * len(augs) + 1, 9), squeeze=False, sharex=True,
                             sharey="row", gridspec_kw={"wspace": 0.15, "hspace": 0.15})
    for j, aug in enumerate(augs):
        for i, (metric, label) in enumerate(PANELS):
            ax, mean, ci = axes[i, j], f"{metric}_mean", f"{metric}_ci95"
            if mean not in d:
                continue
            if len(base) and pd.notna(base[mean].iloc[0]):
                mu, half = base[mean].iloc[0], base[ci].iloc[0]
                ax.axhline(mu, color="grey", lw=1, label=f"{baseline} (baseline)")
                if pd.notna(half):
                    ax.axhspan(mu - half, mu + half, color="grey", alpha=0.2, lw=0)
            for key, line_label in YARDSTICK_LINES.get(metric, []):
                if key in (yardsticks or {}):
                    ax.axhline(yardsticks[key], color="tab:brown", lw=1, ls=YARDSTICK_STYLE[key], label=line_label)
            for k, (ssl, g) in enumerate(searched[searched["aug_set"] == aug].groupby("ssl_method")):
                g = g.sort_values("aug_recon_weight")
                x = g["aug_recon_weight"] + DODGE * gap * (k - (len(methods) - 1) / 2)
                half = g[ci].where(g["n_seeds"] > 1)
                ax.errorbar(x, g[mean], yerr=None if half.isna().all() else half.fillna(0), color=colours[ssl],
                            marker="os^D"[k % 4], ms=4, capsize=3, lw=1.2,
                            ls="-" if g["aug_recon_weight"].is_unique else "none", label=ssl)
            ax.set_ylabel(label if j == 0 else "", fontsize=8)
            ax.ticklabel_format(axis="y", useOffset=False, style="plain")
            ax.grid(alpha=0.3)
        axes[0, j].set_title(f"{dataset}, aug {aug}", fontsize=10)
        axes[-1, j].set_xlabel("aug_recon_weight")
        axes[-1, j].set_xticks(weights)
        axes[-1, j].set_xticklabels([f"{w:g}" for w in weights])
    for i, (metric, _) in enumerate(PANELS):     # the means decide the view; wide intervals (2 seeds) are cut
        values = [*searched.get(f"{metric}_mean", pd.Series(dtype=float)).dropna(),
                  *base.get(f"{metric}_mean", pd.Series(dtype=float)).dropna(),
                  *[(yardsticks or {})[k] for k, _ in YARDSTICK_LINES.get(metric, []) if k in (yardsticks or {})]]
        if values:
            lo, hi = min(values), max(values)
            pad = 0.15 * (hi - lo) or 0.05 * abs(hi) or 0.05
            lo, hi = lo - pad, hi + pad
            if "acc" in metric:
                lo, hi = max(lo, 0.0), min(hi, 1.0)
            axes[i, 0].set_ylim(lo, hi)
    seeds = sorted(int(n) for n in searched["n_seeds"].unique())
    legend = {label: h for ax in axes.flat for h, label in zip(*ax.get_legend_handles_labels())}
    fig.legend(legend.values(), legend.keys(), loc="upper left", bbox_to_anchor=(0.91, 0.88), fontsize=8,
               title=f"mean over {'/'.join(map(str, seeds))} seed(s)" + (", 95% t-interval\n(cut at the axes)"
                                                                          if max(seeds) > 1 else ""),
               title_fontsize=8)
    return fig


def cd_figure(scores: pd.DataFrame, alpha: float = 0.05) -> tuple[object, str]:
    """aeon's critical-difference diagram on the methods scored on every dataset, else a rank plot.

    scores: (datasets x methods), higher is better. Returns the figure and a sentence that says what it shows.
    """
    complete = scores.loc[:, scores.notna().all()]
    dropped = sorted(set(scores.columns) - set(complete.columns))
    note = f" ({', '.join(dropped)} left out: not scored on every dataset)" if dropped else ""
    if len(complete) >= 2 and complete.shape[1] >= 3:
        from aeon.visualisation import plot_critical_difference

        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            fig, _ = plot_critical_difference(complete.to_numpy(), list(complete.columns), alpha=alpha,
                                              test="wilcoxon", correction="holm")
        k = complete.shape[1]
        return fig, (f"Critical-difference diagram (aeon) over {len(complete)} datasets: a Friedman test gates it, "
                     f"then methods are joined by a bar where aeon's pairwise one-sided Wilcoxon signed-rank tests "
                     f"do not separate them at alpha/(k-1) = {alpha / (k - 1):.3g} (k = {k} methods). The p-values "
                     f"against the baseline below are this report's own two-sided Wilcoxon tests with Holm's "
                     f"step-down{note}.")
    ranks = average_ranks(scores)
    fig, ax = plt.subplots(figsize=(6, 1 + 0.35 * max(len(ranks), 1)))
    ax.barh(list(ranks.index), ranks["avg_rank"], color="C0")
    ax.invert_yaxis()
    ax.set_xlabel("average rank of test SVM accuracy (1 = best)")
    why = (f"No critical-difference diagram: it needs at least 2 datasets and 3 methods scored on all of them; "
           f"the study has {len(complete)} dataset(s) and {complete.shape[1]} such method(s){note}; "
           f"cd_diagram.png shows the average ranks instead.")
    ax.set_title("average rank (no significance test possible)", fontsize=9)
    return fig, why


def save_figure(fig, stem: Path) -> list[Path]:
    files = [stem.parent / f"{stem.name}.png", stem.parent / f"{stem.name}.svg"]
    for f in files:
        fig.savefig(f, dpi=150, bbox_inches="tight")
    plt.close(fig)
    return files


OBJECTIVE_LABELS = {VAL_SVM: "validation SVM accuracy (CV, train split)",
                    VAL_RECON: "validation reconstruction loss (train split)"}


def pareto_figure(table: pd.DataFrame, dataset: str, colours: dict[str, str], objectives: list[tuple[str, str]],
                  baseline: str = "none", yardsticks: dict[str, float] | None = None):
    """One dataset's configurations on its two objectives (x: the second, e.g. validation reconstruction loss;
    y: the first, validation SVM accuracy), mean and 95% t-interval over seeds; coloured by SSL method, sized
    and labelled by aug_recon_weight; the Pareto front ringed and joined, the baseline a star, the raw-series
    probe a line. `table` is report.pareto_table's (per_config rows with `pareto`). None if nothing scored."""
    (y_metric, y_sense), (x_metric, x_sense) = objectives[:2]
    x, y = x_metric.replace("/", "_"), y_metric.replace("/", "_")
    d = table[(table["dataset"] == dataset)].dropna(subset=[f"{x}_mean", f"{y}_mean"])
    if d.empty:
        return None
    fig, ax = plt.subplots(figsize=(6.4, 4.6))
    front = d[d["pareto"]].sort_values(f"{x}_mean", ascending=x_sense == "min")
    ax.step(front[f"{x}_mean"], front[f"{y}_mean"], where="post", color="grey", lw=1, ls="--", zorder=1,
            label="Pareto front")
    for _, r in d.iterrows():
        is_base = r["ssl_method"] == baseline
        weight = float(r["aug_recon_weight"]) if pd.notna(r["aug_recon_weight"]) else 0.0
        colour = colours.get(r["ssl_method"], "k")
        ax.errorbar(r[f"{x}_mean"], r[f"{y}_mean"], xerr=0 if pd.isna(r[f"{x}_ci95"]) else r[f"{x}_ci95"],
                    yerr=0 if pd.isna(r[f"{y}_ci95"]) else r[f"{y}_ci95"], color=colour, alpha=0.35, lw=0.6,
                    capsize=2, zorder=2)
        ax.scatter(r[f"{x}_mean"], r[f"{y}_mean"], s=250 if is_base else 30 + 600 * weight,
                   marker="*" if is_base else {"warp": "o", "slice": "s"}.get(r["aug_set"], "D"),
                   color=colour, edgecolor="k" if r["pareto"] else "none", linewidth=1.5, zorder=3,
                   alpha=1.0 if r["pareto"] else 0.55)
        ax.annotate("baseline" if is_base else f"{weight:.2f}", (r[f"{x}_mean"], r[f"{y}_mean"]),
                    textcoords="offset points", xytext=(6, 4), fontsize=7)
    if RAW_SVM in (yardsticks or {}) and y_metric == VAL_SVM:
        ax.axhline(yardsticks[RAW_SVM], color="tab:brown", lw=1, ls=":",
                   label="raw series, same probe (test accuracy)")
    handles = [plt.Line2D([], [], color=c, marker="*" if m == baseline else "o", ls="none",
                          label=f"{m} (baseline)" if m == baseline else m)
               for m, c in colours.items() if m in set(d["ssl_method"])]
    handles += [plt.Line2D([], [], color="grey", marker=mk, ls="none", label=f"aug {a}")
                for a, mk in (("warp", "o"), ("slice", "s")) if a in set(d["aug_set"])]
    handles += [plt.Line2D([], [], color="w", marker="o", markeredgecolor="k", ls="none",
                           label="on the front (ringed)")]
    ax.legend(handles=handles + ax.get_legend_handles_labels()[0], fontsize=7, loc="best",
              title="size / label: aug_recon_weight", title_fontsize=7)
    for axis, values in ((ax.set_xlim, d[f"{x}_mean"]), (ax.set_ylim, [*d[f"{y}_mean"], *(
            [yardsticks[RAW_SVM]] if RAW_SVM in (yardsticks or {}) and y_metric == VAL_SVM else [])])):
        lo, hi = min(values), max(values)           # the means decide the view; wide intervals (2 seeds) are cut
        pad = 0.12 * (hi - lo) or 0.05 * abs(hi) or 0.05
        axis(lo - pad, hi + pad)
    arrow = {"max": "higher is better", "min": "lower is better"}
    ax.set_xlabel(f"{OBJECTIVE_LABELS.get(x_metric, x_metric)}, {arrow[x_sense]}")
    ax.set_ylabel(f"{OBJECTIVE_LABELS.get(y_metric, y_metric)}, {arrow[y_sense]}")
    ax.set_title(f"{dataset}: {int(d['pareto'].sum())} of {len(d)} configurations on the front", fontsize=10)
    ax.grid(alpha=0.3)
    return fig

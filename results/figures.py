"""The report's figures (matplotlib, headless): metrics against aug_recon_weight, and the ranks across datasets."""
from __future__ import annotations

import warnings
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import pandas as pd  # noqa: E402

from results.stats import average_ranks  # noqa: E402

PANELS = [("test_svm_acc", "test SVM accuracy"), ("test_knn_acc", "test KNN accuracy"),
          ("test_recon_loss", "test reconstruction loss")]


YARDSTICK_LINES = {"test_svm_acc": [("raw/svm_acc", "raw series (same probe)"), ("raw/1nn_acc", "1-NN ED (raw)"),
                                     ("raw/minirocket_acc", "MiniRocket (supervised)")],
                   "test_knn_acc": [("raw/knn_acc", "raw series (same probe)"), ("raw/1nn_acc", "1-NN ED (raw)"),
                                     ("raw/minirocket_acc", "MiniRocket (supervised)")]}
YARDSTICK_STYLE = {"raw/svm_acc": ":", "raw/knn_acc": ":", "raw/1nn_acc": "-.", "raw/minirocket_acc": "--"}


def weight_figure(table: pd.DataFrame, dataset: str, colours: dict[str, str], baseline: str = "none",
                  yardsticks: dict[str, float] | None = None):
    """Probe accuracies and reconstruction loss against aug_recon_weight, one column per augmentation set,
    one colour per SSL method, the baseline as a band and the raw-series yardsticks as lines; `table` is
    report.per_config's. None if nothing searched."""
    d = table[table["dataset"] == dataset]
    base, searched = d[d["method"] == baseline], d[d["method"] != baseline]
    augs = sorted(searched["aug_set"].unique())
    if not augs:
        return None
    fig, axes = plt.subplots(len(PANELS), len(augs), figsize=(3.4 * len(augs), 7), squeeze=False, sharex=True,
                             sharey="row", gridspec_kw={"wspace": 0.3, "hspace": 0.12})
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
            for key, label in YARDSTICK_LINES.get(metric, []):
                if key in (yardsticks or {}):
                    ax.axhline(yardsticks[key], color="tab:brown", lw=1, ls=YARDSTICK_STYLE[key], label=label)
            for ssl, g in searched[searched["aug_set"] == aug].groupby("ssl_method"):
                g = g.sort_values("aug_recon_weight")
                ax.errorbar(g["aug_recon_weight"], g[mean], yerr=g[ci].fillna(0), color=colours[ssl], marker="o",
                            ms=4, capsize=3, ls="-" if g["aug_recon_weight"].is_unique else "none", label=ssl)
            ax.set_ylabel(label if j == 0 else "")
            ax.grid(alpha=0.3)
        axes[0, j].set_title(f"{dataset}, aug {aug}", fontsize=10)
        axes[-1, j].set_xlabel("aug_recon_weight")
    legend = {label: h for ax in axes.flat for h, label in zip(*ax.get_legend_handles_labels())}
    fig.legend(legend.values(), legend.keys(), loc="upper left", bbox_to_anchor=(0.91, 0.88), fontsize=8,
               title="mean, 95% t-interval", title_fontsize=8)
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
        return fig, (f"Critical-difference diagram over {len(complete)} datasets: Wilcoxon signed-rank, Holm, "
                     f"alpha {alpha}; methods joined by a bar are not significantly different{note}.")
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

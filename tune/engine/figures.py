"""Figures logged with every trial: reconstructions and real-vs-generated samples (matplotlib, headless)."""
from __future__ import annotations

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402


def reconstruction_figure(x: np.ndarray, x_hat: np.ndarray, labels: np.ndarray, title: str):
    """Series and their reconstructions side by side; x, x_hat: (n, l)."""
    n = len(x)
    fig, axes = plt.subplots(n, 1, figsize=(8, 1.6 * n), sharex=True, squeeze=False)
    for ax, a, b, y in zip(axes[:, 0], x, x_hat, labels):
        ax.plot(a, lw=1.2, label="x")
        ax.plot(b, lw=1.0, ls="--", label="x_hat")
        ax.set_ylabel(f"class {y}", fontsize=8)
    axes[0, 0].legend(loc="upper right", fontsize=8)
    axes[0, 0].set_title(title, fontsize=9)
    fig.tight_layout()
    return fig


def samples_figure(x_real: np.ndarray, y_real: np.ndarray, x_gen: np.ndarray, y_gen: np.ndarray, title: str,
                   classes: tuple = (), per_class: int = 3, max_classes: int = 8):
    """Real (left) and generated (right) series, a few per class, one row per class (the first max_classes);
    `classes` names the encoded labels (the archive's own labels)."""
    rows = int(min(max(y_real.max(initial=0), y_gen.max(initial=0)) + 1, max_classes))
    fig, axes = plt.subplots(rows, 2, figsize=(9, 1.5 * rows + 0.6), sharex=True, sharey="row", squeeze=False)
    for c in range(rows):
        for ax, x, y in ((axes[c, 0], x_real, y_real), (axes[c, 1], x_gen, y_gen)):
            for series in x[y == c][:per_class]:
                ax.plot(series, lw=1.0)
        axes[c, 0].set_ylabel(f"class {classes[c] if c < len(classes) else c}", fontsize=8)
    axes[0, 0].set_title("real (train)", fontsize=9)
    axes[0, 1].set_title("generated", fontsize=9)
    fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    return fig

"""Figures logged with every trial (matplotlib, headless)."""
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

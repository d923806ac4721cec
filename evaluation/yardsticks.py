"""Raw-series yardsticks: what a token representation's probe accuracy is read against.

A probe accuracy on tokens means little alone: 1-NN with Euclidean distance on the raw series is the
floor a useful representation must clear, MiniRocket (supervised) the practical ceiling, and the same
linear probes on the raw series say what tokenizing adds. All are fitted on the archive's train split
and scored on its test split.
"""
from __future__ import annotations

import numpy as np
from sklearn.neighbors import KNeighborsClassifier

from evaluation.probes import linear_probes

YARDSTICKS = ("svm_acc", "knn_acc", "1nn_acc", "minirocket_acc")   # the study logs them as raw/<name>


def one_nn_accuracy(x_train: np.ndarray, y_train: np.ndarray, x_test: np.ndarray, y_test: np.ndarray) -> float:
    """1-NN, Euclidean, unscaled: the archive's "ED (w=0)" baseline (one global z-normalisation is an
    affine map of every value, so it leaves the neighbours, and the accuracy, unchanged)."""
    knn = KNeighborsClassifier(n_neighbors=1, algorithm="brute").fit(x_train, y_train)
    return float((knn.predict(x_test) == y_test).mean())


def minirocket_accuracy(x_train: np.ndarray, y_train: np.ndarray, x_test: np.ndarray, y_test: np.ndarray,
                        seed: int = 0) -> float:
    """aeon's MiniRocketClassifier (10,000 kernels + RidgeClassifierCV), seeded, one thread.

    The first call in a fresh environment compiles aeon's numba kernels (~1 min on 2 cores); numba
    caches them on disk, later processes start in about a second.
    """
    from aeon.classification.convolution_based import MiniRocketClassifier   # heavy import: only when used

    clf = MiniRocketClassifier(random_state=seed, n_jobs=1)
    clf.fit(np.asarray(x_train, dtype=np.float64)[:, None, :], y_train)
    return float((clf.predict(np.asarray(x_test, dtype=np.float64)[:, None, :]) == y_test).mean())


def raw_yardsticks(x_train: np.ndarray, y_train: np.ndarray, x_test: np.ndarray, y_test: np.ndarray,
                   seed: int = 0) -> dict[str, float]:
    """Test accuracies on the raw z-normalised series x_*: (n, l), fitted on the train split only.

    svm_acc, knn_acc: `linear_probes` with each time step as a feature; 1nn_acc: 1-NN Euclidean;
    minirocket_acc: MiniRocket, the supervised ceiling.
    """
    probes = linear_probes(x_train, y_train, x_test, y_test)
    return {"svm_acc": probes["svm_acc"], "knn_acc": probes["knn_acc"],
            "1nn_acc": one_nn_accuracy(x_train, y_train, x_test, y_test),
            "minirocket_acc": minirocket_accuracy(x_train, y_train, x_test, y_test, seed)}

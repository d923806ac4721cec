"""Linear probes on frozen tokenizer features: how linearly separable are the tokens' classes?

Two uses: `linear_probes` scores a held-out split (the test metrics), `cv_probe_accuracy` estimates
the same accuracy from the train split alone by repeated stratified k-fold (model selection: UCR
validation splits of 7-13 series are too noisy to select with).
"""
from __future__ import annotations

import math
import warnings

import numpy as np
from sklearn.exceptions import ConvergenceWarning
from sklearn.model_selection import RepeatedStratifiedKFold
from sklearn.neighbors import KNeighborsClassifier
from sklearn.preprocessing import MinMaxScaler, StandardScaler
from sklearn.svm import SVC

SCALERS = ("minmax", "standard")
# libsvm's solver has no iteration cap by default and can cycle forever on near-duplicate feature rows (seen on
# a GunPoint baseline's tokens, single-threaded: a study trial hung in the probe); at the cap a fit takes well
# under a second and predicts with its last iterate. Fits that converge stop long before it.
SVM_MAX_ITER = 1_000_000


def _make_scaler(scaler: str):
    """The reference study's MinMaxScaler(-1, 1), or StandardScaler; always fitted on probe-train features."""
    if scaler == "minmax":
        return MinMaxScaler(feature_range=(-1, 1))
    if scaler == "standard":
        return StandardScaler()
    raise ValueError(f"unknown probe scaler {scaler!r}; use one of {', '.join(SCALERS)}")


def _fit_predict(f_train, y_train, f_eval, *, scaler: str, svm_c: float, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Scale with statistics of f_train only, fit a linear SVM and a k-NN, predict f_eval with both."""
    s = _make_scaler(scaler).fit(f_train)
    a, b = s.transform(f_train), s.transform(f_eval)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        svm = SVC(kernel="linear", C=svm_c, max_iter=SVM_MAX_ITER).fit(a, y_train)
    knn = KNeighborsClassifier(n_neighbors=min(k, len(a))).fit(a, y_train)
    return svm.predict(b), knn.predict(b)


def linear_probes(f_train: np.ndarray, y_train: np.ndarray, f_eval: np.ndarray, y_eval: np.ndarray,
                  *, svm_c: float = 1.0, k: int = 5, scaler: str = "minmax") -> dict[str, float]:
    """Fit a linear SVM (C=1) and a k-NN on train features, score both on the eval features.

    f_*: (n, d). Features are scaled as the reference study does (MinMaxScaler to [-1, 1];
    scaler="standard" for z-scores) with statistics of the train features only, so the eval split
    never shapes the probe.
    """
    _check_scaler_and_classes(scaler, y_train)
    svm_pred, knn_pred = _fit_predict(f_train, y_train, f_eval, scaler=scaler, svm_c=svm_c, k=k)
    return {"svm_acc": float((svm_pred == y_eval).mean()), "knn_acc": float((knn_pred == y_eval).mean())}


def _check_scaler_and_classes(scaler: str, y: np.ndarray) -> None:
    _make_scaler(scaler)
    if len(np.unique(y)) < 2:
        raise ValueError("linear probes need at least two classes in the probe's training features")


def cv_probe_accuracy(features: np.ndarray, y: np.ndarray, *, folds: int = 5, repeats: int = 3, seed: int = 0,
                      svm_c: float = 1.0, k: int = 5, scaler: str = "minmax") -> dict[str, float]:
    """Cross-validated `linear_probes` accuracy on one labelled split (the train split): for model selection.

    Repeated stratified k-fold (seeded: the same seed gives the same folds and result); the scaler is
    fitted inside each fold on that fold's training part only. Accuracy is pooled over every held-out
    prediction of every repeat (each repeat scores each scored series once).

    Tiny classes: k = min(folds, smallest class count), at least 2. A class with a single series cannot
    be held out (its class would be missing from training), so such series are always in the training
    part of every fold and never scored; the folds are drawn over the other series. If every class has
    a single series (Fungi), nothing can be scored: the accuracies are NaN and n_folds is 0.
    Returns svm_acc, knn_acc, n_folds (the k used) and n_repeats.
    """
    features, y = np.asarray(features), np.asarray(y)
    _check_scaler_and_classes(scaler, y)
    if folds < 2 or repeats < 1:
        raise ValueError(f"cv_probe_accuracy needs folds >= 2 and repeats >= 1, got folds={folds}, repeats={repeats}")
    classes, counts = np.unique(y, return_counts=True)
    scored = np.flatnonzero(np.isin(y, classes[counts >= 2]))     # series that may be held out
    always_train = np.flatnonzero(np.isin(y, classes[counts < 2]))
    if scored.size == 0:
        return {"svm_acc": math.nan, "knn_acc": math.nan, "n_folds": 0, "n_repeats": repeats}
    n_folds = max(2, min(folds, int(counts[counts >= 2].min())))
    splitter = RepeatedStratifiedKFold(n_splits=n_folds, n_repeats=repeats, random_state=seed)
    svm_hits = knn_hits = total = 0
    for fit, held in splitter.split(features[scored], y[scored]):
        train_idx, eval_idx = np.concatenate([always_train, scored[fit]]), scored[held]
        svm_pred, knn_pred = _fit_predict(features[train_idx], y[train_idx], features[eval_idx],
                                          scaler=scaler, svm_c=svm_c, k=k)
        svm_hits += int((svm_pred == y[eval_idx]).sum())
        knn_hits += int((knn_pred == y[eval_idx]).sum())
        total += len(eval_idx)
    return {"svm_acc": svm_hits / total, "knn_acc": knn_hits / total, "n_folds": n_folds, "n_repeats": repeats}

"""Linear probes on frozen tokenizer features: how linearly separable are the tokens' classes?"""
from __future__ import annotations

import numpy as np
from sklearn.neighbors import KNeighborsClassifier
from sklearn.preprocessing import StandardScaler
from sklearn.svm import SVC


def linear_probes(f_train: np.ndarray, y_train: np.ndarray, f_eval: np.ndarray, y_eval: np.ndarray,
                  *, svm_c: float = 1.0, k: int = 5) -> dict[str, float]:
    """Fit a linear SVM (C=1) and a k-NN on train features, score both on the eval features.

    f_*: (n, d). Features are standardised with statistics of the train features only, so the
    eval split never shapes the probe.
    """
    if len(np.unique(y_train)) < 2:
        raise ValueError("linear probes need at least two classes in the probe's training features")
    scaler = StandardScaler().fit(f_train)
    a, b = scaler.transform(f_train), scaler.transform(f_eval)
    svm = SVC(kernel="linear", C=svm_c).fit(a, y_train)
    knn = KNeighborsClassifier(n_neighbors=min(k, len(a))).fit(a, y_train)
    return {"svm_acc": float((svm.predict(b) == y_eval).mean()),
            "knn_acc": float((knn.predict(b) == y_eval).mean())}

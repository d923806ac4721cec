"""The dataset's raw-series yardsticks, computed once per dataset and preprocessing, cached as JSON.

Concurrency: no lock. Two processes that miss the same key at once both compute, and both get the
same value (every yardstick is deterministic for a seed and row order, and the rows come in a canonical
order); each writes a temp file of its own and renames it over `<key>.json`, so a reader only ever sees
a whole file and the last rename wins. A race costs one extra computation (ECG5000: ~2 s; FordA: ~25 s).
"""
from __future__ import annotations

import json
import os
import time
from pathlib import Path

import numpy as np

from datasets.ucr import UCRDataset
from evaluation.yardsticks import raw_yardsticks
from results.contract import RAW_PREFIX, YARDSTICK_KEYS
from tune.engine.checkpoints import atomic_write, fingerprint

VERSION = 1   # of the yardsticks' protocol (probe scaler, MiniRocket settings): bump to recompute every cache


def archive_train(data: UCRDataset) -> tuple[np.ndarray, np.ndarray]:
    """The archive's whole train split (train + validation) with rows sorted by label, then values: the
    same arrays whatever validation seed carved `data`, so every trial of a dataset shares one cache entry."""
    x, y = np.concatenate([data.x_train, data.x_val]), np.concatenate([data.y_train, data.y_val])
    order = np.lexsort(np.column_stack([y, x]).T[::-1])
    return x[order], y[order]


def yardstick_key(data: UCRDataset, seed: int = 0) -> str:
    """Dataset name + a hash of its preprocessed train (archive train = train + validation, in a canonical
    order, so the trial's validation seed does not matter) and test arrays and the protocol."""
    x, y = archive_train(data)
    settings = [VERSION, seed, data.mean, data.std, data.classes]
    digest = fingerprint(x, y, data.x_test, data.y_test, np.frombuffer(repr(settings).encode(), np.uint8))
    return f"{data.name}-{digest[:12]}"


def _read(path: Path) -> dict[str, float] | None:
    """The cached yardsticks, or None if the file is missing, unreadable or lacks a key (then recompute)."""
    try:
        metrics = json.loads(path.read_text())["metrics"]
        return {k: float(metrics[k]) for k in YARDSTICK_KEYS}
    except (OSError, ValueError, KeyError, TypeError):
        return None


def cached_yardsticks(data: UCRDataset, cache_dir: str | os.PathLike, seed: int = 0) -> dict[str, float]:
    """raw/svm_acc, raw/knn_acc, raw/1nn_acc, raw/minirocket_acc of `data` (test accuracy, fitted on the
    archive's whole train split), read from `<cache_dir>/<key>.json` or computed once and stored there."""
    cache_dir = Path(cache_dir)
    key = yardstick_key(data, seed)
    path = cache_dir / f"{key}.json"
    if (hit := _read(path)) is not None:
        return hit
    x, y = archive_train(data)
    t0 = time.perf_counter()
    metrics = {RAW_PREFIX + k: v for k, v in raw_yardsticks(x, y, data.x_test, data.y_test, seed=seed).items()}
    entry = {"dataset": data.name, "key": key, "version": VERSION, "seed": seed, "n_train": len(y),
             "n_test": len(data.y_test), "seconds": round(time.perf_counter() - t0, 3), "metrics": metrics}
    atomic_write(path, lambda f: json.dump(entry, f, indent=2), mode="w")
    return metrics

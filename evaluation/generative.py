"""Generative metrics of stage 2 as pure functions: FID with a bootstrap interval and IS on FCN outputs,
and the label draws and holdouts they need.

FID (Heusel et al. 2017) compares Gaussian fits of FCN features of real test series and of generated
ones; IS (Salimans et al. 2016) rewards confident and diverse FCN predictions. CAS, which trains an FCN,
is a training loop and lives with the engines (tune/engine/generation.py).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import scipy.linalg
import torch
from threadpoolctl import threadpool_limits  # a dependency of scikit-learn


def _as_features(f, name: str) -> np.ndarray:
    f = np.asarray(f, dtype=np.float64)
    if f.ndim != 2 or len(f) < 2:
        raise ValueError(f"{name} must be a (n, d) array with n >= 2, got shape {f.shape}")
    return f


def gaussian_stats(feats: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Mean (d,) and unbiased covariance (d, d) of features (n, d)."""
    return feats.mean(axis=0), np.atleast_2d(np.cov(feats, rowvar=False))


def _psd_sqrt(cov: np.ndarray) -> np.ndarray:
    w, v = scipy.linalg.eigh(cov)
    return (v * np.sqrt(np.clip(w, 0.0, None))) @ v.T


def frechet_from_stats(mu_a, cov_a, mu_b, cov_b) -> float:
    """|mu_a - mu_b|^2 + tr(cov_a + cov_b - 2 (cov_a cov_b)^(1/2)), the Frechet distance of two Gaussians.

    tr (cov_a cov_b)^(1/2) is computed as tr (r cov_b r)^(1/2) with r = cov_a^(1/2): the same number as
    pytorch-fid's scipy.linalg.sqrtm(cov_a @ cov_b), but from symmetric eigendecompositions, which stay
    exact when a covariance is singular (fewer series than feature dimensions, common for UCR test
    splits) where sqrtm of the non-symmetric product warns and may return complex noise.
    """
    root_a = _psd_sqrt(cov_a)
    inner = root_a @ cov_b @ root_a
    eig = scipy.linalg.eigvalsh((inner + inner.T) / 2)
    diff = mu_a - mu_b
    fid = diff @ diff + np.trace(cov_a) + np.trace(cov_b) - 2.0 * np.sqrt(np.clip(eig, 0.0, None)).sum()
    return max(0.0, float(fid))  # rounding can leave a tiny negative for identical sets


def frechet_distance(feats_a, feats_b) -> float:
    """FID between two feature sets (n_a, d) and (n_b, d)."""
    a, b = _as_features(feats_a, "feats_a"), _as_features(feats_b, "feats_b")
    if a.shape[1] != b.shape[1]:
        raise ValueError(f"feature sets differ in dimension: {a.shape[1]} vs {b.shape[1]}")
    return frechet_from_stats(*gaussian_stats(a), *gaussian_stats(b))


@dataclass(frozen=True)
class FIDResult:
    fid: float    # on the full sets
    low: float    # 95% bootstrap interval of the FID at these sample sizes (see fid_with_ci)
    high: float
    n_real: int
    n_fake: int


def fid_with_ci(feats_real, feats_fake, n_boot: int = 200, seed: int = 0) -> FIDResult:
    """FID with a 95% bootstrap interval, both sets resampled with replacement.

    Duplicates in a resample shrink its covariance's rank, so bootstrap FIDs sit well above the
    estimate when n is not >> d (e.g. 27 -> 48..58 for 200 vs 1000 series of N(0, I) in d = 128); the
    percentile interval is therefore re-centred on the estimate: fid + (q2.5, q97.5) - mean(boot). It
    gives the spread of the FID at these sample sizes, not a correction of FID's own small-sample bias,
    so compare methods at equal sample counts.
    """
    real, fake = _as_features(feats_real, "feats_real"), _as_features(feats_fake, "feats_fake")
    fid = frechet_distance(real, fake)
    if n_boot < 1:
        return FIDResult(fid, float("nan"), float("nan"), len(real), len(fake))
    rng = np.random.default_rng(seed)
    # d x d eigendecompositions (d = 128) gain nothing from BLAS threads and slow down 5x on a busy CPU
    with threadpool_limits(1, user_api="blas"):
        boots = np.array([frechet_distance(real[rng.integers(0, len(real), len(real))],
                                           fake[rng.integers(0, len(fake), len(fake))]) for _ in range(n_boot)])
    low, high = fid + np.percentile(boots, [2.5, 97.5]) - boots.mean()
    return FIDResult(fid, max(0.0, float(low)), float(high), len(real), len(fake))


def inception_score(probs, splits: int = 10) -> tuple[float, float]:
    """exp(E_x KL(p(y|x) || p(y))) per split of probs (n, k); returns (mean, std) over splits."""
    p = np.asarray(probs, dtype=np.float64)
    if p.ndim != 2 or len(p) == 0:
        raise ValueError(f"probs must be a non-empty (n, n_classes) array, got shape {p.shape}")
    if splits < 1:
        raise ValueError(f"splits must be >= 1, got {splits}")
    scores = []
    for part in np.array_split(p, min(splits, len(p))):
        marginal = part.mean(axis=0, keepdims=True)
        kl = np.sum(part * (np.log(np.clip(part, 1e-12, None)) - np.log(np.clip(marginal, 1e-12, None))), axis=1)
        scores.append(np.exp(kl.mean()))
    return float(np.mean(scores)), float(np.std(scores))


def class_balanced_labels(y_train, n: int, generator: torch.Generator | None = None) -> torch.Tensor:
    """n labels (shuffled) in the train split's class proportions (largest remainder), each class at least once."""
    counts = np.bincount(np.asarray(y_train, dtype=np.int64))
    present = np.flatnonzero(counts)
    if n < len(present):
        raise ValueError(f"n={n} labels cannot cover the {len(present)} classes of the train split; raise n")
    quota = counts / counts.sum() * n
    alloc = np.floor(quota).astype(np.int64)
    alloc[np.argsort(-(quota - alloc), kind="stable")[: n - alloc.sum()]] += 1
    for c in present[alloc[present] == 0]:  # a rare class rounded away: take one from the largest
        alloc[np.argmax(alloc)] -= 1
        alloc[c] = 1
    labels = torch.repeat_interleave(torch.arange(len(counts)), torch.as_tensor(alloc))
    return labels[torch.randperm(n, generator=generator)]


def stratified_holdout(y, fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Indices (fit, held_out) with `fraction` of each class held out; each class keeps >= 1 to fit on."""
    y = np.asarray(y)
    rng = np.random.default_rng(seed)
    fit, held = [], []
    for c in np.unique(y):
        idx = rng.permutation(np.flatnonzero(y == c))
        k = min(int(round(fraction * len(idx))), len(idx) - 1)
        held.append(idx[:k])
        fit.append(idx[k:])
    return np.sort(np.concatenate(fit)), np.sort(np.concatenate(held))

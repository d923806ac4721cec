import warnings

import numpy as np
import pytest
import scipy.linalg
import torch

from evaluation.generative import (class_balanced_labels, fid_with_ci, frechet_distance, inception_score,
                                   stratified_holdout)
from models.fcn import FCN
from tune.engine.generation import classification_accuracy_score, evaluate_generation




def with_moments(rng, n: int, mean: np.ndarray, cov: np.ndarray) -> np.ndarray:
    """n samples whose sample mean and (unbiased) covariance are exactly `mean` and `cov`."""
    z = rng.normal(size=(n, len(mean)))
    z -= z.mean(0)
    z = z @ np.linalg.inv(np.linalg.cholesky(np.cov(z, rowvar=False))).T   # sample covariance = I
    return z @ np.linalg.cholesky(cov).T + mean


def random_spd(rng, d: int) -> np.ndarray:
    a = rng.normal(size=(d, d))
    return a @ a.T / d + 0.1 * np.eye(d)


def test_fid_of_a_set_with_itself_is_zero():
    f = np.random.default_rng(0).normal(size=(500, 16))
    assert frechet_distance(f, f) == pytest.approx(0.0, abs=1e-6)


def test_fid_of_two_gaussians_equals_closed_form_diagonal():
    rng = np.random.default_rng(0)
    mu1, mu2 = np.array([0.0, 1.0, -2.0]), np.array([1.0, 1.0, 0.5])
    v1, v2 = np.array([1.0, 4.0, 0.25]), np.array([9.0, 1.0, 0.25])
    a, b = with_moments(rng, 300, mu1, np.diag(v1)), with_moments(rng, 200, mu2, np.diag(v2))
    closed = np.sum((mu1 - mu2) ** 2) + np.sum((np.sqrt(v1) - np.sqrt(v2)) ** 2)  # commuting covariances
    assert frechet_distance(a, b) == pytest.approx(closed, rel=1e-8)
    assert frechet_distance(b, a) == pytest.approx(closed, rel=1e-8)


def test_fid_of_two_gaussians_equals_closed_form_general():
    rng = np.random.default_rng(1)
    d = 6
    mu1, mu2 = rng.normal(size=d), rng.normal(size=d)
    c1, c2 = random_spd(rng, d), random_spd(rng, d)
    a, b = with_moments(rng, 400, mu1, c1), with_moments(rng, 400, mu2, c2)
    # the closed form as pytorch-fid's calculate_frechet_distance writes it (sqrtm of the product):
    # https://github.com/mseitzer/pytorch-fid/blob/af953a98e1e9c50a5e51d9a5294a282bfaee5e07/src/pytorch_fid/fid_score.py
    closed = np.sum((mu1 - mu2) ** 2) + np.trace(c1 + c2) - 2 * np.trace(scipy.linalg.sqrtm(c1 @ c2).real)
    assert frechet_distance(a, b) == pytest.approx(closed, rel=1e-8)


def test_fid_with_fewer_series_than_dimensions_is_finite():
    rng = np.random.default_rng(2)
    a, b = rng.normal(size=(20, 64)), rng.normal(size=(30, 64)) + 0.5
    fid = frechet_distance(a, b)
    assert np.isfinite(fid) and fid > 0
    ca, cb = np.cov(a, rowvar=False), np.cov(b, rowvar=False)  # rank 19 and 29 of 64
    mean_term = np.sum((a.mean(0) - b.mean(0)) ** 2)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", scipy.linalg.LinAlgWarning)  # sqrtm of a singular product may warn
        via_sqrtm = mean_term + np.trace(ca + cb) - 2 * np.trace(scipy.linalg.sqrtm(ca @ cb).real)
    assert fid == pytest.approx(via_sqrtm, rel=1e-6)


def test_fid_bootstrap_interval():
    rng = np.random.default_rng(3)
    real, fake = rng.normal(size=(400, 4)), rng.normal(size=(300, 4)) + 1.0
    res = fid_with_ci(real, fake, n_boot=100, seed=0)
    assert res.low <= res.fid <= res.high and (res.n_real, res.n_fake) == (400, 300)
    assert res == fid_with_ci(real, fake, n_boot=100, seed=0)
    # few series for the dimension: resampled FIDs are biased far upward; the interval stays on the estimate
    small = fid_with_ci(rng.normal(size=(60, 32)), rng.normal(size=(80, 32)), n_boot=50, seed=0)
    assert small.low <= small.fid <= small.high and small.high - small.low < small.fid


def test_inception_score_bounds_and_uniform_confident_case():
    rng = np.random.default_rng(0)
    k = 5
    is_mean, is_std = inception_score(rng.dirichlet(np.ones(k) * 0.3, size=200), splits=4)
    assert 1.0 <= is_mean <= k and is_std >= 0
    one_hot = np.eye(k)[np.arange(100) % k]  # confident, every class equally often in every split
    assert inception_score(one_hot, splits=10) == pytest.approx((k, 0.0), abs=1e-6)
    assert inception_score(np.tile(np.eye(k)[:1], (50, 1)))[0] == pytest.approx(1.0)  # one class only
    with pytest.raises(ValueError, match=r"\(n, n_classes\)"):
        inception_score(np.ones(4))


def test_class_balanced_labels_follow_train_proportions():
    y_train = np.array([0] * 60 + [1] * 30 + [2] * 9 + [3] * 1)
    y = class_balanced_labels(y_train, 1000, torch.Generator().manual_seed(0))
    assert y.shape == (1000,) and y.dtype == torch.long
    assert torch.bincount(y).tolist() == [600, 300, 90, 10]
    assert torch.equal(y, class_balanced_labels(y_train, 1000, torch.Generator().manual_seed(0)))
    rare = class_balanced_labels(y_train, 20, torch.Generator().manual_seed(0))
    assert rare.numel() == 20 and torch.bincount(rare).min() >= 1  # the rare class is not rounded away
    with pytest.raises(ValueError, match="cannot cover the 4 classes"):
        class_balanced_labels(y_train, 3)


def test_stratified_holdout():
    y = np.array([0] * 10 + [1] * 5 + [2])
    fit, held = stratified_holdout(y, 0.2, seed=0)
    assert set(fit).isdisjoint(held) and sorted([*fit, *held]) == list(range(16))
    assert np.bincount(y[held], minlength=3).tolist() == [2, 1, 0] and set(y[fit]) == {0, 1, 2}


def sines(n: int, seed: int, length: int = 32):
    rng = np.random.default_rng(seed)
    y = np.arange(n) % 2
    t = np.linspace(0, 1, length)
    x = np.sin(2 * np.pi * np.where(y == 0, 1.0, 4.0)[:, None] * t + rng.uniform(0, 6.3, (n, 1)))
    return (x + 0.1 * rng.normal(size=x.shape)).astype(np.float32), y


def test_cas_is_high_when_generated_data_match_the_real_classes():
    x_gen, y_gen = sines(60, seed=0)
    x_test, y_test = sines(40, seed=1)
    res = classification_accuracy_score(x_gen, y_gen, x_test, y_test, n_classes=2, epochs=10,
                                        batch_size=16, lr=1e-2, seed=0)
    assert res.accuracy >= 0.9 and (res.n_fit, res.n_val) == (48, 12)
    flipped = classification_accuracy_score(x_gen, 1 - y_gen, x_test, y_test, n_classes=2, epochs=10,
                                            batch_size=16, lr=1e-2, seed=0)
    assert flipped.accuracy <= 0.1  # generated labels that contradict the real classes score badly


def test_cas_errors():
    x_gen, y_gen = sines(4, seed=0)
    with pytest.raises(ValueError, match="no validation part"):
        classification_accuracy_score(x_gen, y_gen, x_gen, y_gen, n_classes=2, val_fraction=0.01)
    x_gen, y_gen = sines(20, seed=0)
    with pytest.raises(ValueError, match="no training series"):
        classification_accuracy_score(x_gen, y_gen, x_gen, y_gen, n_classes=3, epochs=1)


def test_evaluate_generation_gives_finite_gen_metrics():
    torch.manual_seed(0)
    fcn = FCN(1, 2).eval()
    x_gen, y_gen = sines(30, seed=0)
    x_test, y_test = sines(20, seed=1)
    out = evaluate_generation(fcn, x_gen, y_gen, x_test, y_test, n_boot=10, is_splits=3,
                              cas_kwargs={"epochs": 2, "batch_size": 8})
    d = out.as_dict()
    assert {"gen/fid", "gen/fid_low", "gen/fid_high", "gen/is", "gen/cas"} <= set(d)
    assert all(np.isfinite(v) for v in d.values()) and d["gen/n_gen"] == 30 and d["gen/n_real"] == 20

from pathlib import Path

import numpy as np
import pytest
import torch
from sklearn.neighbors import KNeighborsClassifier
from sklearn.preprocessing import MinMaxScaler, StandardScaler
from sklearn.svm import SVC

from evaluation import probes
from evaluation.probes import cv_probe_accuracy, linear_probes
from evaluation.tokens import codebook_redundancy, evaluate_split
from models.modes import eval_mode
from models.tokenizer import Tokenizer, TokenizerConfig


def _state(module):
    return {k: v.detach().clone() for k, v in module.state_dict().items()}


def test_evaluating_changes_no_parameter_and_no_buffer():
    """The reference evaluated in training mode: BatchNorm statistics and the EMA codebook moved."""
    torch.manual_seed(0)
    tok = Tokenizer(64, TokenizerConfig(hidden=16, code_dim=8, n_res_blocks=1)).train()
    before = _state(tok)
    evaluate_split(tok, torch.randn(20, 1, 64) * 3 + 1, batch_size=7)
    after = _state(tok)
    assert before.keys() == after.keys()
    for k in before:
        assert torch.equal(before[k], after[k]), k
    assert tok.training, "evaluation must restore the previous mode"


def test_the_leak_check_can_fail():
    """Same forward passes in training mode do change the buffers, so the test above is not vacuous."""
    torch.manual_seed(0)
    tok = Tokenizer(64, TokenizerConfig(hidden=16, code_dim=8, n_res_blocks=1)).train()
    before = _state(tok)
    with torch.no_grad():
        tok(torch.randn(20, 1, 64) * 3 + 1)
    assert any(not torch.equal(before[k], v) for k, v in tok.state_dict().items())


def test_eval_mode_restores_mixed_modes():
    net = torch.nn.Sequential(torch.nn.BatchNorm1d(2), torch.nn.Dropout())
    net.train()
    net[1].eval()
    with eval_mode(net):
        assert not any(m.training for m in net.modules())
    assert net.training and net[0].training and not net[1].training


def test_split_statistics_cover_the_whole_split():
    torch.manual_seed(0)
    tok = Tokenizer(64, TokenizerConfig(hidden=16, code_dim=8, n_res_blocks=1))
    x = torch.randn(23, 1, 64)
    a, b = evaluate_split(tok, x, batch_size=5), evaluate_split(tok, x, batch_size=23)
    assert a.features.shape == (23, 8)
    assert a.recon_loss == pytest.approx(b.recon_loss, rel=1e-5)
    assert a.perplexity == pytest.approx(b.perplexity, rel=1e-5)
    h, w = tok.token_shape
    assert a.code_counts.sum() == 23 * h * w
    assert 0 < a.usage <= 1 and 1 <= a.perplexity <= tok.cfg.codebook_size


def test_codebook_redundancy_bounds():
    assert codebook_redundancy(torch.eye(6)) < 0.25
    row = torch.randn(1, 5)
    assert codebook_redundancy(torch.cat([row, 2 * row, row + 1])) == pytest.approx(1.0, abs=1e-5)


def test_linear_probes_separate_separable_classes():
    rng = np.random.default_rng(0)
    f = np.concatenate([rng.normal(-2, 1, (30, 4)), rng.normal(2, 1, (30, 4))])
    y = np.repeat([0, 1], 30)
    acc = linear_probes(f[::2], y[::2], f[1::2], y[1::2])
    assert acc["svm_acc"] > 0.9 and acc["knn_acc"] > 0.9
    shuffled = linear_probes(f[::2], rng.permutation(y[::2]), f[1::2], y[1::2])
    assert shuffled["svm_acc"] < acc["svm_acc"]


def test_probe_needs_two_classes():
    with pytest.raises(ValueError, match="two classes"):
        linear_probes(np.zeros((4, 2)), np.zeros(4), np.zeros((2, 2)), np.zeros(2))


def _outlier_features(seed=1, n=40):
    """Two noisy classes and one outlier: min-max and z-score scaling give different probes here."""
    rng = np.random.default_rng(seed)
    y = np.repeat([0, 1], n // 2)
    f = rng.normal(size=(n, 3))
    f[:, 0] += y
    f[0, 1] = 40.0
    return f[::2], y[::2], f[1::2], y[1::2]


def _sklearn_probes(scaler, a, ya, b, yb):
    s = scaler.fit(a)
    a, b = s.transform(a), s.transform(b)
    return {"svm_acc": float((SVC(kernel="linear", C=1.0).fit(a, ya).predict(b) == yb).mean()),
            "knn_acc": float((KNeighborsClassifier(5).fit(a, ya).predict(b) == yb).mean())}


def test_probes_scale_like_the_reference_study_by_default():
    """MinMaxScaler(-1, 1) fitted on the probe's training features; StandardScaler when asked."""
    a, ya, b, yb = _outlier_features()
    minmax = _sklearn_probes(MinMaxScaler(feature_range=(-1, 1)), a, ya, b, yb)
    standard = _sklearn_probes(StandardScaler(), a, ya, b, yb)
    assert minmax != standard, "the data must tell the two scalers apart for this test to mean anything"
    assert linear_probes(a, ya, b, yb) == minmax
    assert linear_probes(a, ya, b, yb, scaler="standard") == standard
    with pytest.raises(ValueError, match="scaler"):
        linear_probes(a, ya, b, yb, scaler="robust")


def _blobs(sizes, seed=0, gap=6.0, d=4):
    rng = np.random.default_rng(seed)
    y = np.repeat(np.arange(len(sizes)), sizes)
    return rng.normal(size=(len(y), d)) + gap * np.eye(len(sizes), d)[y], y


def test_cv_probe_is_deterministic_for_a_seed():
    f, y = _blobs([15, 15], gap=0.5)
    a, b = cv_probe_accuracy(f, y, seed=3), cv_probe_accuracy(f, y, seed=3)
    assert a == b
    assert a["n_folds"] == 5 and a["n_repeats"] == 3
    others = [cv_probe_accuracy(f, y, seed=s) for s in range(4, 10)]
    assert any(o != a for o in others), "the seed must choose the folds"


def test_cv_probe_separable_vs_shuffled_labels():
    f, y = _blobs([30, 30, 30])
    assert cv_probe_accuracy(f, y)["svm_acc"] == pytest.approx(1.0, abs=0.02)
    assert cv_probe_accuracy(f, y)["knn_acc"] == pytest.approx(1.0, abs=0.02)
    shuffled = np.random.default_rng(1).permutation(y)
    chance = cv_probe_accuracy(f, shuffled, repeats=5)
    assert abs(chance["svm_acc"] - 1 / 3) < 0.15 and abs(chance["knn_acc"] - 1 / 3) < 0.15


def test_cv_probe_folds_adapt_to_small_classes():
    f, y = _blobs([12, 12, 3])
    assert cv_probe_accuracy(f, y)["n_folds"] == 3
    f, y = _blobs([12, 12, 2])
    out = cv_probe_accuracy(f, y)
    assert out["n_folds"] == 2 and out["svm_acc"] > 0.9


def _record_folds(monkeypatch):
    """Spy on every fold's (training rows, held-out rows), identified by the features' first column."""
    seen, fit_predict = [], probes._fit_predict

    def spy(f_train, y_train, f_eval, **kw):
        seen.append((set(f_train[:, 0]), set(f_eval[:, 0])))
        return fit_predict(f_train, y_train, f_eval, **kw)
    monkeypatch.setattr(probes, "_fit_predict", spy)
    return seen


def test_cv_probe_keeps_a_single_series_class_in_training(monkeypatch):
    """Documented rule: a one-series class is in every fold's training part and never scored."""
    f, y = _blobs([10, 10, 1])
    f[:, 0] = np.arange(len(y))                  # row ids, to follow rows through the folds
    seen = _record_folds(monkeypatch)
    out = cv_probe_accuracy(f, y, folds=5, repeats=2)
    assert out["n_folds"] == 5 and len(seen) == 10
    lonely = float(np.flatnonzero(y == 2)[0])
    scored = set(map(float, np.flatnonzero(y != 2)))
    for train, held in seen:
        assert lonely in train and lonely not in held
        assert not train & held, "the scaler and probes must be fitted on the fold's training rows only"
    for r in range(2):
        assert set().union(*(held for _, held in seen[5 * r:5 * r + 5])) == scored
    assert out["svm_acc"] > 0.9


def test_cv_probe_with_only_single_series_classes_is_nan():
    f, y = _blobs([1, 1, 1])
    out = cv_probe_accuracy(f, y)
    assert np.isnan(out["svm_acc"]) and np.isnan(out["knn_acc"]) and out["n_folds"] == 0
    with pytest.raises(ValueError, match="two classes"):
        cv_probe_accuracy(f[:2], np.zeros(2))


@pytest.mark.timeout(300, method="thread")
def test_probe_returns_on_features_where_libsvm_cycles():
    """A GunPoint baseline's tokens (38 series x 63 features, from a study trial that hung single-threaded):
    libsvm without an iteration cap never converges on them; the capped probe returns within seconds."""
    d = np.load(Path(__file__).parent / "data" / "svm_cycles.npz")
    out = linear_probes(d["x"], d["y"], d["x"], d["y"])
    assert 0.5 <= out["svm_acc"] <= 1 and 0.5 <= cv_probe_accuracy(d["x"], d["y"])["svm_acc"] <= 1

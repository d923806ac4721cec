import numpy as np
import pytest
import torch

from models.fcn import FCN, accuracy, check_labels, predict
from tune.engine.checkpoints import load_model
from tune.engine.fcn import FCNTrainInfo, cached_fcn, save_fcn, train_fcn




def easy_problem(n: int, length: int = 32, seed: int = 0):
    """Class 0: a slow sine; class 1: a fast one; random phase and noise."""
    rng = np.random.default_rng(seed)
    y = np.arange(n) % 2
    t = np.linspace(0, 1, length)
    phase = rng.uniform(0, 2 * np.pi, (n, 1))
    freq = np.where(y == 0, 1.0, 4.0)[:, None]
    x = np.sin(2 * np.pi * freq * t + phase) + 0.1 * rng.normal(size=(n, length))
    return x.astype(np.float32), y.astype(np.int64)


@pytest.fixture(scope="module")
def trained():
    x, y = easy_problem(40, seed=0)
    xv, yv = easy_problem(20, seed=1)
    log = []
    model, info = train_fcn(x, y, xv, yv, epochs=15, batch_size=16, lr=1e-2, seed=0,
                            report=lambda m, e: log.append((e, m)))
    return model, info, log, (xv, yv)


def test_shapes():
    model = FCN(in_channels=2, n_classes=5).eval()
    x = torch.randn(3, 2, 50)
    assert model(x).shape == (3, 5)
    assert model.features(x).shape == (3, 128)


def test_trains_to_high_accuracy_on_easy_problem(trained):
    model, info, log, _ = trained
    x_test, y_test = easy_problem(100, seed=2)
    assert accuracy(model, x_test, y_test) >= 0.95
    assert isinstance(info, FCNTrainInfo) and not model.training


def test_keeps_best_validation_epoch(trained):
    model, info, log, (xv, yv) = trained
    assert [e for e, _ in log] == list(range(1, info.epochs_run + 1))
    assert set(log[0][1]) == {"train_loss", "val_loss", "val_acc"}
    best = max(m["val_acc"] for _, m in log)
    assert info.best_val_acc == best == log[info.best_epoch - 1][1]["val_acc"]
    assert accuracy(model, xv, yv) == pytest.approx(best)


def test_early_stopping_stops_before_epochs():
    x, y = easy_problem(20, seed=0)
    _, info = train_fcn(x, y, x, y, epochs=50, batch_size=8, lr=1e-2, seed=0, patience=2)
    assert info.epochs_run < 50 and info.epochs_run - info.best_epoch == 2


def test_seeded_training_is_deterministic():
    x, y = easy_problem(12, seed=0)
    a, _ = train_fcn(x, y, x, y, epochs=2, batch_size=4, seed=3)
    b, _ = train_fcn(x, y, x, y, epochs=2, batch_size=4, seed=3)
    assert np.allclose(predict(a, x).probs, predict(b, x).probs, atol=1e-6)


def test_predict_is_eval_mode_and_restores_mode():
    model = FCN(1, 3).train()
    before = model.body[0][2].running_mean.clone()
    out = predict(model, np.random.randn(7, 20).astype(np.float32), batch_size=3)
    assert out.features.shape == (7, 128) and out.probs.shape == (7, 3)
    assert np.allclose(out.probs.sum(1), 1, atol=1e-5)
    assert torch.equal(model.body[0][2].running_mean, before) and model.training


def test_save_load_round_trip(tmp_path, trained):
    model = trained[0]
    save_fcn(tmp_path / "fcn.pt", model)
    loaded = load_model(tmp_path / "fcn.pt", FCN, "FCN", keys=("meta",))[0]
    x = torch.randn(4, 1, 32)
    assert not loaded.training and loaded.kwargs == model.kwargs
    assert torch.allclose(loaded(x), model.eval()(x))
    assert list(tmp_path.iterdir()) == [tmp_path / "fcn.pt"]  # no temp file left behind


def test_cache_trains_once_then_reuses(tmp_path):
    x, y = easy_problem(8, seed=0)
    calls = []

    def train_fn():
        calls.append(1)
        return train_fcn(x, y, x, y, epochs=1, batch_size=4, seed=0)

    first = cached_fcn(tmp_path, "Easy-abc123", train_fn)
    second = cached_fcn(tmp_path, "Easy-abc123", train_fn)
    assert len(calls) == 1 and not first.reused and second.reused
    assert second.meta == first.meta and second.meta["epochs_run"] == 1
    assert np.allclose(predict(first.model, x).probs, predict(second.model, x).probs, atol=1e-6)
    with pytest.raises(ValueError, match="cache key"):
        cached_fcn(tmp_path, "../escape", train_fn)


def one_line(exc_info) -> str:
    msg = str(exc_info.value)
    assert "\n" not in msg
    return msg


def test_more_classes_than_head_is_an_error():
    x, y = easy_problem(8)
    with pytest.raises(ValueError, match="head has 2 classes") as e:
        train_fcn(x, np.where(y == 1, 2, 0), x, y, epochs=1, n_classes=2)
    one_line(e)


def test_class_without_training_series_is_an_error():
    x, y = easy_problem(8)
    with pytest.raises(ValueError, match=r"class\(es\) \[1\] have no training series") as e:
        train_fcn(x, np.where(y == 1, 2, 0), x, y, epochs=1)  # labels 0 and 2: class 1 is empty
    one_line(e)
    with pytest.raises(ValueError, match=r"\[2\]"):
        check_labels(np.array([0, 1, 1]), 3)


def test_bad_input_errors():
    x, y = easy_problem(8)
    with pytest.raises(ValueError, match="non-empty validation"):
        train_fcn(x, y, x[:0], y[:0], epochs=1)
    with pytest.raises(ValueError, match="8 series but 7 labels"):
        train_fcn(x, y[:7], x, y, epochs=1)
    with pytest.raises(ValueError, match=r"shape \(n, l\) or \(n, c, l\)"):
        train_fcn(x[:, None, None], y, x, y, epochs=1)
    with pytest.raises(ValueError, match="n_classes >= 2"):
        FCN(1, 1)

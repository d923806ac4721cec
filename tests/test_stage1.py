"""The stage-1 loop on real bundled UCR data, driven directly (no Ray)."""
import dataclasses

import numpy as np
import pytest
import torch

from datasets.ucr import load_dataset
from tune.config import TrainConfig
from tune.engine.checkpoints import CheckpointError
from tune.engine.loop import TrainingDiverged
from tune.engine.tokenizer_training import TOKENIZER_FILE, load_tokenizer, train_stage1

CONTRACT_EPOCH = {"train/loss", "time/epoch_s", "time/train_s"}
CONTRACT_EVAL = {"val/recon_loss", "val/svm_acc", "val/knn_acc", "codebook/perplexity", "codebook/usage"}
CONTRACT_FINAL = {"test/svm_acc", "test/knn_acc", "test/recon_loss"}
SMALL = {"proj_dim": 64}


@pytest.fixture(scope="module")
def gunpoint():
    return load_dataset("GunPoint")


def _cfg(**kw):
    return TrainConfig(**{"dataset": "GunPoint", "epochs": 4, "eval_every": 2, **SMALL, **kw})


@pytest.mark.parametrize("ssl_method, aug_set", [("none", "none"), ("barlowtwins", "slice"), ("vibcreg", "warp")])
def test_reports_the_contract_keys(gunpoint, ssl_method, aug_set):
    reports = []
    final = train_stage1(_cfg(ssl_method=ssl_method, aug_set=aug_set, epochs=2, eval_every=1), gunpoint,
                         on_epoch=lambda m, e: reports.append((e, m)))
    assert [e for e, _ in reports] == [1, 2]
    for _, m in reports:
        assert CONTRACT_EPOCH | CONTRACT_EVAL <= m.keys()
        assert all(np.isfinite(v) for v in m.values())
    assert CONTRACT_FINAL <= final.keys() and not CONTRACT_FINAL & reports[0][1].keys()


def test_short_training_beats_the_majority_class():
    data = load_dataset("ItalyPowerDemand")
    final = train_stage1(_cfg(dataset="ItalyPowerDemand", epochs=30, eval_every=30), data)
    majority = np.bincount(data.y_test).max() / len(data.y_test)
    assert final["test/svm_acc"] > majority + 0.1, (final, majority)
    assert final["test/recon_loss"] < 0.5   # z-normalised data: predicting zeros scores about 1


def test_resume_equals_an_uninterrupted_run(gunpoint, tmp_path):
    torch.set_num_threads(1)
    cfg = _cfg(ssl_method="barlowtwins", aug_set="warp")
    straight = train_stage1(cfg, gunpoint)

    class Killed(Exception):
        pass

    def die_after_first_eval(metrics, epoch):
        if epoch == 3:
            raise Killed
    with pytest.raises(Killed):
        train_stage1(cfg, gunpoint, on_epoch=die_after_first_eval, checkpoint_dir=tmp_path)
    resumed_epochs = []
    resumed = train_stage1(cfg, gunpoint, on_epoch=lambda m, e: resumed_epochs.append(e), checkpoint_dir=tmp_path)
    assert resumed_epochs == [3, 4]
    for key in CONTRACT_FINAL | {"val/svm_acc", "train/loss"}:
        assert resumed[key] == pytest.approx(straight[key], rel=1e-4, abs=1e-6), key


def test_finished_run_re_reports_its_final_metrics(gunpoint, tmp_path):
    cfg = _cfg(epochs=2, eval_every=2)
    final = train_stage1(cfg, gunpoint, checkpoint_dir=tmp_path)
    again = []
    assert train_stage1(cfg, gunpoint, on_epoch=lambda m, e: again.append((e, m)), checkpoint_dir=tmp_path) == final
    assert again == [(2, final)]
    tokenizer, trained_on = load_tokenizer(tmp_path / TOKENIZER_FILE)
    assert trained_on == {"dataset": "GunPoint", "seed": 0, "val_fraction": cfg.val_fraction,
                          "nan_policy": cfg.nan_policy}
    assert tokenizer.cfg == cfg.tokenizer and not tokenizer.training


def test_missing_tokenizer_checkpoint(tmp_path):
    with pytest.raises(CheckpointError, match="no tokenizer checkpoint"):
        load_tokenizer(tmp_path / "nope.pt")


@pytest.fixture(scope="module")
def italy():
    return load_dataset("ItalyPowerDemand")


@pytest.fixture(scope="module")
def saved_tokenizer(tmp_path_factory, italy):
    root = tmp_path_factory.mktemp("tokenizer")
    train_stage1(_cfg(dataset="ItalyPowerDemand", epochs=1, eval_every=1), italy, checkpoint_dir=root)
    return root / TOKENIZER_FILE


def test_tokenizer_checkpoint_outlives_a_renamed_training_option(saved_tokenizer, monkeypatch):
    """The file holds the tokenizer's own arguments, so loading never reads TrainConfig or its loader."""
    blob = torch.load(saved_tokenizer, weights_only=True)
    assert set(blob) == {"format", "kwargs", "state_dict", "data"}

    @dataclasses.dataclass(frozen=True)
    class Renamed:                     # TrainConfig after `lr` became `learning_rate`
        learning_rate: float = 1e-3

    def no_config_loading(*args, **kwargs):
        raise AssertionError("load_tokenizer read the training config")
    monkeypatch.setattr("tune.config.TrainConfig", Renamed)
    monkeypatch.setattr("tune.engine.tokenizer_training.TrainConfig", Renamed)
    monkeypatch.setattr("tune.config.from_flat_dict", no_config_loading)
    tokenizer, trained_on = load_tokenizer(saved_tokenizer)
    assert trained_on == {"dataset": "ItalyPowerDemand", "seed": 0, "val_fraction": 0.0, "nan_policy": "resample"}
    assert all(torch.equal(v, blob["state_dict"][k]) for k, v in tokenizer.state_dict().items())


def test_what_is_not_a_tokenizer_checkpoint_fails_with_one_line(saved_tokenizer, tmp_path):
    blob = torch.load(saved_tokenizer, weights_only=True)
    cases = {"text.pt": "not a checkpoint", "no_keys.pt": {"format": 1, "weights": {}},
             "old.pt": {"config": {"dataset": "GunPoint"}, "length": 24, "tokenizer": blob["state_dict"]},
             "future.pt": {**blob, "format": 99}, "no_data.pt": {k: v for k, v in blob.items() if k != "data"},
             "bad_data.pt": {**blob, "data": {"dataset": "ItalyPowerDemand"}}}
    for name, content in cases.items():
        path = tmp_path / name
        if isinstance(content, str):
            path.write_text(content)
        else:
            torch.save(content, path)
        with pytest.raises(CheckpointError, match="checkpoint") as err:
            load_tokenizer(path)
        assert "\n" not in str(err.value) and str(path) in str(err.value), name
    torch.save({**blob, "notes": "written by a later version"}, tmp_path / "extra.pt")
    assert load_tokenizer(tmp_path / "extra.pt")[1]["dataset"] == "ItalyPowerDemand"


def test_a_huge_lr_raises_training_diverged(italy, tmp_path):
    cfg = _cfg(dataset="ItalyPowerDemand", epochs=3, eval_every=3, lr=1e6, batch_size=8)
    with pytest.raises(TrainingDiverged, match=r"diverged at epoch \d: train/loss is (nan|inf); lower lr") as err:
        train_stage1(cfg, italy, checkpoint_dir=tmp_path)
    assert "\n" not in str(err.value) and not (tmp_path / TOKENIZER_FILE).exists()


def test_features_that_are_not_finite_stop_before_the_probes(italy, monkeypatch):
    from tune.engine import tokenizer_training
    real = tokenizer_training.evaluate_split

    def nan_features(tokenizer, x):
        out = real(tokenizer, x)
        return dataclasses.replace(out, features=np.full_like(out.features, np.nan))
    monkeypatch.setattr(tokenizer_training, "evaluate_split", nan_features)
    with pytest.raises(TrainingDiverged, match="diverged at epoch 1: train features is not finite"):
        train_stage1(_cfg(dataset="ItalyPowerDemand", epochs=1, eval_every=1), italy)

"""The stage-1 loop on real bundled UCR data, driven directly (no Ray)."""
import numpy as np
import pytest
import torch

from datasets.ucr import load_dataset
from tune.config import TrainConfig
from tune.engine.checkpoints import CheckpointError
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
    tokenizer, loaded_cfg = load_tokenizer(tmp_path / TOKENIZER_FILE)
    assert loaded_cfg == cfg and not tokenizer.training


def test_missing_tokenizer_checkpoint(tmp_path):
    with pytest.raises(CheckpointError, match="no tokenizer checkpoint"):
        load_tokenizer(tmp_path / "nope.pt")

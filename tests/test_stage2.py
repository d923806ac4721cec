"""Stage 2 for a trained tokenizer, driven directly (no Ray): prior loop, FCN cache, FID / IS / CAS, errors."""
import dataclasses
import json

import numpy as np
import pytest
import torch

from datasets.ucr import load_dataset
from models.fcn import FCN
from models.prior import MaskGIT
from results.cli import run_cli
from tune.config import TrainConfig, stage2_config
from tune.engine.checkpoints import CheckpointError, load_model
from tune.engine.fcn import fcn_cache_key, save_fcn
from tune.engine.generation import evaluate_stage2, load_tokenizer_for
from tune.engine.loop import TrainingDiverged
from tune.engine.prior_training import PRIOR_FILE, decode, masked_loss, tokenize, train_prior
from tune.engine.tokenizer_training import TOKENIZER_FILE, train_stage1
from tune.generate_one import main

# a tiny prior and short FCN / CAS runs: checks the plumbing in seconds, not the science
TINY = {"width": 32, "depth": 1, "heads": 2, "epochs": 3, "eval_every": 1, "batch_size": 16, "min_generate": 60,
        "n_boot": 10, "is_splits": 5, "fcn_epochs": 3, "fcn_patience": 3, "cas_epochs": 2, "cas_patience": 2,
        "device": "cpu"}
GEN_KEYS = {"gen/fid", "gen/fid_low", "gen/fid_high", "gen/is", "gen/is_std", "gen/cas", "gen/n_real", "gen/n_gen",
            "fcn/test_acc", "time/stage2_s"}




@pytest.fixture(scope="module")
def trained(tmp_path_factory, one_thread):
    """GunPoint with a validation split (the prior's validation loss needs one), a 1-epoch tokenizer on it,
    and an FCN cache folder shared by the tests."""
    root = tmp_path_factory.mktemp("stage2")
    data = load_dataset("GunPoint", val_fraction=0.2)
    train_stage1(TrainConfig(dataset="GunPoint", epochs=1, eval_every=1, proj_dim=64, val_fraction=0.2), data,
                 checkpoint_dir=root)
    return data, root / TOKENIZER_FILE, root / "fcn"


def test_evaluate_stage2_scores_and_reuses_the_fcn(trained, monkeypatch):
    data, path, cache = trained
    tokenizer, _ = load_tokenizer_for(path, data)
    cfg = stage2_config(TINY)
    reports = []
    metrics, fig = evaluate_stage2(tokenizer, data, cfg, cache_dir=cache, on_epoch=lambda m, e: reports.append(e))
    assert reports == [1, 2, 3]
    assert GEN_KEYS <= metrics.keys() and all(np.isfinite(v) for v in metrics.values()), metrics
    assert 1.0 <= metrics["gen/is"] <= data.n_classes + 1e-6
    assert metrics["gen/n_real"] == len(data.x_test) and metrics["gen/n_gen"] == max(60, len(data.x_test))
    assert metrics["gen/fid_low"] <= metrics["gen/fid"] <= metrics["gen/fid_high"]
    assert len(fig.axes) == 2 * data.n_classes
    assert len(list(cache.glob("GunPoint-*.pt"))) == 1

    def no_retraining(*args, **kwargs):
        raise AssertionError("the cached FCN was retrained")
    monkeypatch.setattr("tune.engine.fcn.train_fcn", no_retraining)
    again, _ = evaluate_stage2(tokenizer.train(), data, cfg, cache_dir=cache)   # evaluated in eval mode all the same
    assert tokenizer.training                                                    # and handed back as it came
    assert again["fcn/test_acc"] == metrics["fcn/test_acc"]
    assert again["gen/fid"] == pytest.approx(metrics["gen/fid"])    # seeded end to end


def test_fcn_key_ignores_the_trial_seed_but_not_the_fcn_settings(trained):
    data, _, _ = trained
    cfg = stage2_config(TINY)
    assert fcn_cache_key(load_dataset("GunPoint", seed=1), cfg) == fcn_cache_key(load_dataset("GunPoint", seed=0), cfg)
    # another validation split normalises with other statistics: other preprocessed series, another FCN
    other_split = load_dataset("GunPoint", val_fraction=0.2, seed=1)
    assert fcn_cache_key(other_split, cfg) != fcn_cache_key(data, cfg)
    assert fcn_cache_key(data, stage2_config({**TINY, "fcn_epochs": 4})) != fcn_cache_key(data, cfg)
    assert fcn_cache_key(data, cfg).startswith("GunPoint-")


def test_tokenize_is_eval_mode_and_flat(trained):
    data, path, _ = trained
    tokenizer, _ = load_tokenizer_for(path, data)
    tokenizer.train()
    codebook = tokenizer.codebook.clone()
    tokens = tokenize(tokenizer, data.x_train)
    h, w = tokenizer.token_shape
    assert tokens.shape == (len(data.x_train), h * w) and tokens.dtype == torch.long
    assert torch.equal(tokenizer.codebook, codebook) and tokenizer.training
    assert tokenize(tokenizer, data.x_val[:0]).shape == (0, h * w)   # no validation split (one series per class)
    assert decode(tokenizer, tokens[:3]).shape == (3, data.length) and tokenizer.training


def test_prior_resume_equals_an_uninterrupted_run(trained, tmp_path):
    data, path, _ = trained
    tokenizer, _ = load_tokenizer_for(path, data)
    tokens, y = tokenize(tokenizer, data.x_train), data.y_train
    val = (tokenize(tokenizer, data.x_val), data.y_val)
    cfg = stage2_config({**TINY, "epochs": 4, "eval_every": 2})
    k = tokenizer.cfg.codebook_size
    straight = train_prior(tokens, y, data.n_classes, k, cfg, val=val)

    class Killed(Exception):
        pass

    def die_at_3(metrics, epoch):
        if epoch == 3:
            raise Killed
    with pytest.raises(Killed):
        train_prior(tokens, y, data.n_classes, k, cfg, val=val, on_epoch=die_at_3, checkpoint_dir=tmp_path)
    epochs = []
    resumed = train_prior(tokens, y, data.n_classes, k, cfg, val=val, on_epoch=lambda m, e: epochs.append((e, m)),
                          checkpoint_dir=tmp_path)
    assert [e for e, _ in epochs] == [3, 4] and "prior/val_loss" in epochs[-1][1]
    for a, b in zip(straight.state_dict().values(), resumed.state_dict().values()):
        torch.testing.assert_close(a, b)
    assert not resumed.training
    masked_loss(resumed.train(), tokens, torch.as_tensor(y), seed=0)
    assert resumed.training

    finished = []
    train_prior(tokens, y, data.n_classes, k, cfg, val=val, on_epoch=lambda m, e: finished.append(e),
                checkpoint_dir=tmp_path)
    assert finished == [4]                         # a finished run re-reports, it does not retrain
    reloaded = load_model(tmp_path / PRIOR_FILE, MaskGIT, "prior")[0]
    torch.testing.assert_close(reloaded.state_dict()["head.weight"], resumed.state_dict()["head.weight"])
    with pytest.raises(CheckpointError, match="other data or settings"):
        train_prior(tokens, y, data.n_classes, k, stage2_config({**TINY, "epochs": 4, "eval_every": 2, "lr": 0.01}),
                    checkpoint_dir=tmp_path)


def test_tokenizer_that_does_not_match_the_data(trained, tmp_path):
    data, path, cache = trained
    with pytest.raises(CheckpointError, match="no tokenizer checkpoint"):
        load_tokenizer_for(tmp_path / "missing.pt", data)
    with pytest.raises(ValueError, match="trained on GunPoint, not ArrowHead"):
        load_tokenizer_for(path, dataclasses.replace(data, name="ArrowHead"))
    shorter = dataclasses.replace(data, x_train=data.x_train[:, :100], x_val=data.x_val[:, :100],
                                  x_test=data.x_test[:, :100])
    with pytest.raises(ValueError, match="length 150 but GunPoint has length 100"):
        load_tokenizer_for(path, shorter)


def _three_classes(data, y_train):
    three = lambda y: np.arange(len(y)) % 3
    return dataclasses.replace(data, y_train=y_train, y_val=three(data.y_val), y_test=three(data.y_test),
                               classes=(1, 2, 3))


def test_bad_datasets_fail_with_one_line(trained):
    data, path, cache = trained
    tokenizer, _ = load_tokenizer_for(path, data)
    cfg = stage2_config(TINY)
    no_train_series = _three_classes(data, np.arange(len(data.y_train)) % 2)
    with pytest.raises(ValueError, match=r"class\(es\) \[3\] of GunPoint have no train series") as err:
        evaluate_stage2(tokenizer, no_train_series, cfg, cache_dir=cache)
    assert "\n" not in str(err.value)

    three = _three_classes(data, np.arange(len(data.y_train)) % 3)
    save_fcn(cache / f"{fcn_cache_key(three, cfg)}.pt", FCN(1, 2))   # a stale two-class FCN under its key
    with pytest.raises(ValueError, match="has 2 classes but GunPoint has 3"):
        evaluate_stage2(tokenizer, three, cfg, cache_dir=cache)


def test_config_rejects_unknown_keys_and_bad_values():
    with pytest.raises(ValueError, match="unknown config key.*widht"):
        stage2_config({"widht": 64})
    with pytest.raises(ValueError, match="multiple of heads"):
        stage2_config({"width": 30, "heads": 4})
    with pytest.raises(ValueError, match="expects int"):
        stage2_config({"epochs": "many"})
    assert stage2_config({"guidance_scale": "2.5"}).guidance_scale == 2.5


def _cli(argv, capsys):
    with pytest.raises(SystemExit) as exit_:
        run_cli(main, argv)
    return exit_.value.code, capsys.readouterr()


def test_cli_errors_are_one_line_and_exit_2(trained, tmp_path, capsys):
    _, path, _ = trained
    code, out = _cli(["--checkpoint", str(tmp_path / "none.pt")], capsys)
    assert code == 2 and out.err.startswith("error: no tokenizer checkpoint") and out.err.count("\n") == 1
    code, out = _cli(["--checkpoint", str(path), "--set", "nonsense=1"], capsys)
    assert code == 2 and out.err.startswith("error: unknown config key(s) nonsense")
    code, out = _cli(["--checkpoint", str(path), "--set", "epochs"], capsys)
    assert code == 2 and "KEY=VALUE" in out.err
    text = tmp_path / "notes.txt"
    text.write_text("not a checkpoint")
    code, out = _cli(["--checkpoint", str(text)], capsys)
    assert code == 2 and out.err.startswith("error: ") and out.err.count("\n") == 1 and str(text) in out.err
    code, out = _cli(["--checkpoint", str(path), "--json", str(tmp_path / "missing-dir" / "m.json")], capsys)
    assert code == 2 and out.err.startswith("error: cannot write --json") and "prior epoch" not in out.out


def test_cli_runs_a_saved_tokenizer(trained, tmp_path, capsys):
    _, path, cache = trained
    sets = [a for k, v in TINY.items() for a in ("--set", f"{k}={v}")]
    code, out = _cli(["--checkpoint", str(path), "--fcn-cache", str(cache), "--json", str(tmp_path / "m.json"),
                      "--figure", str(tmp_path / "samples.png"), *sets], capsys)
    assert code == 0, out.err
    metrics = json.loads((tmp_path / "m.json").read_text())
    assert GEN_KEYS <= metrics.keys() and (tmp_path / "samples.png").stat().st_size > 0


def test_a_huge_prior_lr_raises_training_diverged():
    gen = torch.Generator().manual_seed(0)
    tokens, y = torch.randint(0, 8, (64, 10), generator=gen), torch.arange(64) % 2
    cfg = stage2_config({**TINY, "batch_size": 8, "lr": 1e6})
    with pytest.raises(TrainingDiverged, match=r"diverged at epoch \d: prior/train_loss is (nan|inf); lower the prior"):
        train_prior(tokens, y, 2, 8, cfg, val=(tokens[:8], y[:8]))

"""Mixed precision of the training steps, checked on the CPU: CPU autocast in bf16 stands in for a GPU's
(tests/test_cuda.py repeats the loops on a GPU). The float32 islands (STFT / ISTFT, the quantizer, the
SSL losses and IterNorm) are checked by spying on what they are handed inside the autocast step."""
from collections import defaultdict

import numpy as np
import pytest
import torch
from torch import nn

import models.quantizer
import models.ssl
from datasets.ucr import load_dataset
from models.quantizer import VectorQuantizer, nearest_code
from tune.config import ConfigError, Stage2Config, TrainConfig, from_flat_dict
from tune.engine.loop import autocast_dtype, mixed_precision, step_generator, to_device
from tune.engine.prior_training import train_prior
from tune.engine.tokenizer_training import build_model, make_optimizer, train_stage1, train_tokenizer_epoch

CPU = torch.device("cpu")
FLOAT32 = (torch.float32, torch.complex64)


def test_auto_is_float32_on_the_cpu_and_bf16_is_autocast():
    assert autocast_dtype("auto", CPU) is None and autocast_dtype("fp32", CPU) is None
    assert autocast_dtype("bf16", CPU) is torch.bfloat16
    with mixed_precision("auto", CPU):
        assert not torch.is_autocast_enabled("cpu")
    with mixed_precision("bf16", CPU):
        assert torch.is_autocast_enabled("cpu") and torch.get_autocast_dtype("cpu") is torch.bfloat16
    with pytest.raises(ConfigError, match="precision"):
        autocast_dtype("fp16", CPU)


def test_config_accepts_the_precisions_and_rejects_others():
    assert from_flat_dict({"precision": "bf16", "stage2.precision": "fp32"}).stage2.precision == "fp32"
    with pytest.raises(ConfigError, match="unknown precision 'fp16'"):
        from_flat_dict({"precision": "fp16"})
    with pytest.raises(ConfigError, match="unknown precision 'half'"):
        from_flat_dict({"stage2.precision": "half"})


def test_cpu_helpers_leave_tensors_and_generators_as_they_are():
    t, gen = torch.arange(5), torch.Generator().manual_seed(0)
    assert to_device(t, CPU) is t
    assert step_generator(gen, CPU) is gen


def _spy(seen: dict, name: str, fn):
    """fn, recording the dtype of its first argument and whether autocast was on when it was called."""
    def wrapped(*args, **kwargs):
        seen[name].append((args[0].dtype, torch.is_autocast_enabled("cpu")))
        return fn(*args, **kwargs)
    return wrapped


@pytest.mark.parametrize("ssl_method", ["barlowtwins", "vibcreg"])
def test_float32_islands_inside_a_bf16_step(monkeypatch, ssl_method):
    seen = defaultdict(list)
    monkeypatch.setattr(torch, "stft", _spy(seen, "stft", torch.stft))
    monkeypatch.setattr(torch, "istft", _spy(seen, "istft", torch.istft))
    monkeypatch.setattr(models.quantizer, "nearest_code", _spy(seen, "quantizer", models.quantizer.nearest_code))
    monkeypatch.setattr(models.ssl, "_cross_sq_sum", _spy(seen, "ssl loss", models.ssl._cross_sq_sum))
    monkeypatch.setattr(models.ssl, "newton_inverse_sqrt", _spy(seen, "iternorm", models.ssl.newton_inverse_sqrt))
    cfg = TrainConfig(ssl_method=ssl_method, aug_set="warp", proj_dim=64, batch_size=8, precision="bf16", device="cpu")
    torch.manual_seed(0)
    model = build_model(cfg, 64)
    model.tokenizer.encoder[0].register_forward_hook(
        lambda module, args, out: seen["encoder conv"].append((out.dtype, torch.is_autocast_enabled("cpu"))))
    opt, sched = make_optimizer(model, cfg, 2)
    x = torch.randn(16, 1, 64, generator=torch.Generator().manual_seed(1))

    loss, _ = train_tokenizer_epoch(model, opt, sched, x, cfg, torch.Generator().manual_seed(2), steps=2)

    assert loss.dtype == torch.float32 and torch.isfinite(loss)
    assert seen["encoder conv"] and all(d == (torch.bfloat16, True) for d in seen["encoder conv"])  # autocast ran
    islands = ["stft", "istft", "quantizer", "ssl loss"] + (["iternorm"] if ssl_method == "vibcreg" else [])
    for name in islands:
        assert seen[name], f"{name} was never called"
        assert all(dtype in FLOAT32 and not autocast for dtype, autocast in seen[name]), (name, seen[name])
    assert all(p.dtype == torch.float32 for p in model.parameters())
    assert all(b.dtype == torch.float32 for b in model.buffers() if b.is_floating_point())


def test_quantizer_under_autocast_picks_the_float32_codes_and_keeps_float32_buffers():
    torch.manual_seed(0)
    vq = VectorQuantizer(16, 8)
    z = torch.randn(4, 8, 3, 5)
    expected = nearest_code(z.permute(0, 2, 3, 1).reshape(-1, 8), vq.codebook).view(4, 3, 5)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = vq(z)
    assert torch.equal(out.indices, expected)
    assert out.z_q.dtype == torch.float32 and out.commitment_loss.dtype == torch.float32
    assert all(b.dtype == torch.float32 for b in vq.buffers())


@pytest.fixture(scope="module")
def gunpoint():
    return load_dataset("GunPoint")


@pytest.mark.parametrize("ssl_method", ["none", "vibcreg"])
def test_bf16_stage1_is_finite_and_near_float32(gunpoint, ssl_method):
    losses = {}
    for precision in ("fp32", "bf16"):
        cfg = TrainConfig(dataset="GunPoint", ssl_method=ssl_method, epochs=2, eval_every=2, proj_dim=64,
                          device="cpu", precision=precision)
        reports = []
        final = train_stage1(cfg, gunpoint, on_epoch=lambda m, e: reports.append(m["train/loss"]))
        assert all(np.isfinite(v) for v in final.values())
        losses[precision] = reports
    np.testing.assert_allclose(losses["bf16"], losses["fp32"], rtol=0.05)


def test_auto_on_the_cpu_is_bitwise_float32(gunpoint):
    runs = [train_stage1(TrainConfig(dataset="GunPoint", epochs=1, proj_dim=64, device="cpu", precision=p), gunpoint)
            for p in ("auto", "fp32")]
    assert runs[0]["train/loss"] == runs[1]["train/loss"]


def test_bf16_prior_is_finite_and_near_float32():
    gen = torch.Generator().manual_seed(0)
    tokens, y = torch.randint(0, 16, (40, 12), generator=gen), torch.randint(0, 3, (40,), generator=gen)
    linear_dtypes = set()
    hook = nn.modules.module.register_module_forward_hook(
        lambda module, args, out: linear_dtypes.add(out.dtype) if isinstance(module, nn.Linear) else None)
    losses = {}
    try:
        for precision in ("fp32", "bf16"):
            linear_dtypes.clear()
            reports = []
            cfg = Stage2Config(width=32, depth=1, heads=2, epochs=3, eval_every=3, batch_size=16, device="cpu",
                               precision=precision)
            train_prior(tokens, y, 3, 16, cfg, on_epoch=lambda m, e: reports.append(m["prior/train_loss"]))
            assert all(np.isfinite(reports))
            assert (torch.bfloat16 in linear_dtypes) == (precision == "bf16")     # autocast ran exactly when asked
            losses[precision] = reports
    finally:
        hook.remove()
    np.testing.assert_allclose(losses["bf16"], losses["fp32"], rtol=0.02)

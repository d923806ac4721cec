"""The engine loops on an NVIDIA GPU (marked cuda: skipped without one; benchmarks/gpu_check.sh runs them).

bf16 autocast on the GPU is compared with float32 on the CPU from the same initial weights and batches:
the losses agree loosely (augmentations and masks are drawn on the GPU, so SSL runs are checked to be
finite only). Synthetic series, not the aeon-bundled datasets: the GPU machine may lack aeon.
"""
import math
import warnings

import numpy as np
import pytest
import torch

from datasets.ucr import UCRDataset
from models.prior import MaskGIT
from tune.config import Stage2Config, TrainConfig
from tune.engine.generation import evaluate_stage2
from tune.engine.loop import autocast_dtype, mixed_precision, select_device, step_generator, to_device, train_epoch
from tune.engine.prior_training import train_prior
from tune.engine.tokenizer_training import (TOKENIZER_FILE, build_model, load_tokenizer, make_optimizer,
                                            train_stage1, train_tokenizer_epoch)

pytestmark = pytest.mark.cuda
CUDA = torch.device("cuda")
CPU = torch.device("cpu")


def synthetic(n_per_class: int = 16, length: int = 96, n_classes: int = 3, seed: int = 0) -> UCRDataset:
    """Noisy sines whose frequency is the class; train and test splits of the same size."""
    rng = np.random.default_rng(seed)

    def split():
        y = np.repeat(np.arange(n_classes), n_per_class)
        t = np.linspace(0, 1, length)
        x = np.sin(2 * np.pi * (y[:, None] + 1) * 2 * t + rng.uniform(0, 2 * np.pi, (len(y), 1)))
        return (x + 0.1 * rng.standard_normal(x.shape)).astype(np.float32), y.astype(np.int64)

    (x_train, y_train), (x_test, y_test) = split(), split()
    return UCRDataset("Synthetic", x_train, y_train, np.zeros((0, length), np.float32), np.zeros(0, np.int64),
                      x_test, y_test, tuple(range(n_classes)), 0.0, 1.0)


def stage1_losses(cfg: TrainConfig, x: torch.Tensor, device: torch.device, epochs: int = 2) -> list[float]:
    """Mean loss per epoch of train_tokenizer_epoch, from weights initialised on the CPU (same on every device)."""
    torch.manual_seed(cfg.seed)
    model = build_model(cfg, x.shape[-1]).to(device)
    x = to_device(x, device)
    steps = math.ceil(len(x) / cfg.batch_size)
    opt, sched = make_optimizer(model, cfg, epochs * steps)
    gen = torch.Generator().manual_seed(cfg.seed)
    return [train_tokenizer_epoch(model, opt, sched, x, cfg, gen, steps)[0].item() for _ in range(epochs)]


def test_select_device_and_auto_precision_on_the_gpu():
    assert select_device("cuda").type == "cuda" and select_device("auto").type == "cuda"
    native = torch.cuda.is_bf16_supported(including_emulation=False)
    assert autocast_dtype("auto", CUDA) is (torch.bfloat16 if native else None)
    assert autocast_dtype("fp32", CUDA) is None


def test_host_copies_and_step_generators_reach_the_gpu():
    t = torch.arange(10)
    moved = to_device(t, CUDA)
    assert moved.is_cuda and torch.equal(moved.cpu(), t)
    draws = [torch.rand(4, generator=step_generator(torch.Generator().manual_seed(0), CUDA), device=CUDA)
             for _ in range(2)]
    assert draws[0].is_cuda and torch.equal(draws[0], draws[1])     # seeded from the CPU generator's state


def test_stage1_bf16_on_the_gpu_matches_float32_on_the_cpu():
    x = torch.as_tensor(synthetic().x_train).unsqueeze(1)
    cfg = TrainConfig(batch_size=16, precision="auto")
    gpu, cpu = stage1_losses(cfg, x, CUDA), stage1_losses(cfg, x, CPU)
    assert all(math.isfinite(v) for v in gpu)
    np.testing.assert_allclose(gpu, cpu, rtol=0.1)


@pytest.mark.parametrize("ssl_method, aug_set", [("barlowtwins", "warp"), ("vibcreg", "slice+gauss")])
def test_ssl_stage1_at_the_reference_size_is_finite_in_bf16(ssl_method, aug_set):
    x = torch.as_tensor(synthetic().x_train).unsqueeze(1)
    cfg = TrainConfig(ssl_method=ssl_method, aug_set=aug_set, proj_dim=4096, batch_size=16, precision="bf16")
    assert all(math.isfinite(v) for v in stage1_losses(cfg, x, CUDA))


def test_train_stage1_then_stage2_end_to_end_on_the_gpu(tmp_path):
    data = synthetic()
    cfg = TrainConfig(dataset="Synthetic", ssl_method="barlowtwins", proj_dim=256, epochs=2, eval_every=1,
                      batch_size=16, device=str(CUDA))
    final = train_stage1(cfg, data, checkpoint_dir=tmp_path)
    assert {"test/svm_acc", "test/recon_loss"} <= final.keys() and all(np.isfinite(v) for v in final.values())
    tokenizer, _ = load_tokenizer(tmp_path / TOKENIZER_FILE)
    s2 = Stage2Config(width=32, depth=1, heads=2, epochs=2, eval_every=1, batch_size=16, min_generate=60,
                      gen_batch=30, n_boot=10, is_splits=2, fcn_epochs=3, fcn_patience=3, cas_epochs=3,
                      cas_patience=3, device=str(CUDA))
    metrics, _ = evaluate_stage2(tokenizer, data, s2, cache_dir=tmp_path / "fcn")
    assert all(np.isfinite(metrics[k]) for k in ("gen/fid", "gen/is", "gen/cas", "fcn/test_acc"))


def test_prior_bf16_on_the_gpu_matches_float32_on_the_cpu():
    gen = torch.Generator().manual_seed(0)
    tokens, y = torch.randint(0, 32, (64, 40), generator=gen), torch.randint(0, 3, (64,), generator=gen)
    losses = {}
    for device in (CUDA, CPU):
        reports = []
        cfg = Stage2Config(width=64, depth=2, heads=2, epochs=2, eval_every=2, batch_size=16, device=str(device))
        train_prior(tokens, y, 3, 32, cfg, on_epoch=lambda m, e: reports.append(m["prior/train_loss"]))
        losses[device] = reports
    assert all(math.isfinite(v) for v in losses[CUDA])
    np.testing.assert_allclose(losses[CUDA], losses[CPU], rtol=0.1)


def _host_syncs(step) -> int:
    """How many times `step()` made the host wait for the GPU (torch's sync debug mode)."""
    torch.cuda.synchronize()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        torch.cuda.set_sync_debug_mode("warn")
        try:
            step()
        finally:
            torch.cuda.set_sync_debug_mode("default")
    return sum("synchroniz" in str(w.message) for w in caught)


@pytest.mark.parametrize("ssl_method", ["none", "barlowtwins", "vibcreg"])
def test_stage1_steps_wait_for_the_gpu_only_inside_torch_istft(monkeypatch, ssl_method):
    """torch.istft checks its window envelope on the host (one sync per call, in ATen); nothing else in a
    step may wait: batches are indexed on the GPU and augmentations draw there."""
    x = to_device(torch.as_tensor(synthetic().x_train).unsqueeze(1), CUDA)
    cfg = TrainConfig(ssl_method=ssl_method, aug_set="warp+slice+gauss", proj_dim=256, batch_size=16)
    torch.manual_seed(0)
    model = build_model(cfg, x.shape[-1]).to(CUDA)
    opt, sched = make_optimizer(model, cfg, 4 * 3)
    gen = torch.Generator().manual_seed(0)
    train_tokenizer_epoch(model, opt, sched, x, cfg, gen, 3)        # warm-up: first allocations, kernel choice
    istft_calls = 0
    istft = torch.istft

    def counted(*args, **kwargs):
        nonlocal istft_calls
        istft_calls += 1
        return istft(*args, **kwargs)

    monkeypatch.setattr(torch, "istft", counted)
    syncs = _host_syncs(lambda: train_tokenizer_epoch(model, opt, sched, x, cfg, gen, 3))
    assert istft_calls == 3 * (1 if ssl_method == "none" else 2)
    assert syncs <= istft_calls, f"{syncs} host syncs in 3 steps, {istft_calls} of them may be torch.istft's"


@pytest.mark.xfail(strict=True, raises=AssertionError,
                   reason="MaskGIT.loss (models/prior.py) checks token and label ranges with int(...) and indexes "
                          "logits with a boolean mask: host syncs every step")
def test_prior_steps_do_not_wait_for_the_gpu():
    prior = MaskGIT(32, 40, 3, width=64, depth=2, heads=2).to(CUDA)
    gen = torch.Generator().manual_seed(0)
    tokens = to_device(torch.randint(0, 32, (64, 40), generator=gen), CUDA)
    y = to_device(torch.randint(0, 3, (64,), generator=gen), CUDA)
    opt = torch.optim.AdamW(prior.parameters(), fused=True)
    mask_gen = step_generator(gen, CUDA)

    def loss_fn(idx):
        with mixed_precision("auto", CUDA):
            return prior.loss(tokens[idx], y[idx], generator=mask_gen).float()

    train_epoch(loss_fn, opt, len(tokens), 4, gen, CUDA)           # warm-up
    assert _host_syncs(lambda: train_epoch(loss_fn, opt, len(tokens), 4, gen, CUDA)) == 0

"""What every engine loop shares: the progress callback's type, the minibatch epoch, the divergence
check, the choice of device and precision, and the ways data reaches the device.

On a GPU the loops make no training step wait for the device: the training split lives there, batches
are indexed there, per-step random draws (masks, augmentation parameters) come from a generator there,
and the loss is read once per epoch. Copies from the host that remain are pinned and asynchronous.
"""
from __future__ import annotations

import contextlib
from typing import Callable

import numpy as np
import torch

from results.errors import ConfigError, TrainingDiverged
from tune.config import PRECISIONS

OnEpoch = Callable[[dict, int], None]   # on_epoch(metrics, epoch): how progress leaves a loop (Ray wraps it)


def select_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise ConfigError(f"device {name} was asked for but torch sees no GPU; use --set device=cpu (or auto)")
    return torch.device(name)


def autocast_dtype(precision: str, device: torch.device) -> torch.dtype | None:
    """The autocast dtype of training steps, None for plain float32: bf16 when asked, and for "auto" on a
    GPU with native bf16; "auto" on the CPU stays float32, so CPU runs are unchanged."""
    if precision not in PRECISIONS:
        raise ConfigError(f"unknown precision {precision!r}; use {', '.join(PRECISIONS)}")
    native = device.type == "cuda" and torch.cuda.is_bf16_supported(including_emulation=False)
    if precision == "bf16" and device.type == "cuda" and not native:
        raise ConfigError(f"precision bf16 was asked for but {torch.cuda.get_device_name(device)} has no native bf16; "
                          f"use --set precision=fp32 (or auto)")
    return torch.bfloat16 if precision == "bf16" or (precision == "auto" and native) else None


def mixed_precision(precision: str, device: torch.device) -> contextlib.AbstractContextManager:
    """Autocast for a training step's forward pass (see autocast_dtype); weights and optimizer state stay
    float32, and the STFT / ISTFT, the quantizer and the SSL losses turn autocast off inside (models/).
    torch's TF32 defaults stay (float32 matmuls in full precision): the SSL losses subtract large sums."""
    dtype = autocast_dtype(precision, device)
    return contextlib.nullcontext() if dtype is None else torch.autocast(device.type, dtype=dtype)


def to_device(t: torch.Tensor, device: torch.device) -> torch.Tensor:
    """A host tensor on `device`: on a GPU through pinned memory without blocking the host (a plain copy
    from pageable memory waits for every queued kernel); unchanged on the CPU."""
    if device.type != "cuda" or t.device.type != "cpu":
        return t.to(device)
    return t.pin_memory().to(device, non_blocking=True)


def step_generator(generator: torch.Generator, device: torch.device) -> torch.Generator:
    """The generator of an epoch's per-step draws (augmentation parameters, masks): `generator` itself
    when it lives on `device`; else a generator on `device` seeded from it, so no draw crosses from the
    host. Made once per epoch from the checkpointed `generator`, so a resumed run draws the same."""
    if generator.device.type == device.type:
        return generator
    seed = int(torch.randint(2**62, (1,), generator=generator, device=generator.device))
    return torch.Generator(device=device).manual_seed(seed)


def train_epoch(loss_fn: Callable[[torch.Tensor], torch.Tensor], optimizer: torch.optim.Optimizer, n: int,
                steps: int, generator: torch.Generator, device: torch.device,
                scheduler: torch.optim.lr_scheduler.LRScheduler | None = None) -> torch.Tensor:
    """One pass over n examples in `steps` near-equal shuffled batches; loss_fn(batch indices on `device`)
    returns the batch's scalar loss. Returns the mean batch loss as a float32 tensor on `device`: nothing
    here waits for the device, so the caller reads the loss once per epoch.

    The shuffle is drawn from `generator` and moved to `device` once per epoch, not once per batch.
    Near-equal batches (tensor_split, not fixed-size chunks) never leave a last batch of one series,
    on which BatchNorm cannot train.
    """
    total = torch.zeros((), device=device)
    for idx in torch.tensor_split(to_device(torch.randperm(n, generator=generator), device), steps):
        loss = loss_fn(idx)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        if scheduler is not None:
            scheduler.step()
        total += loss.detach().float()
    return total / steps


def check_diverged(epoch: int, values: dict, advice: str) -> None:
    """Raise TrainingDiverged naming the first of `values` (numbers or arrays) that holds a NaN or inf."""
    for name, value in values.items():
        a = np.asarray(value)
        if not np.isfinite(a).all():
            shown = a.item() if a.ndim == 0 else "not finite"
            raise TrainingDiverged(f"diverged at epoch {epoch}: {name} is {shown}; {advice}")

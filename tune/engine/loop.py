"""What every engine loop shares: the progress callback's type, the minibatch epoch, the divergence
check and the choice of device."""
from __future__ import annotations

from typing import Callable

import numpy as np
import torch

from results.cli import UsageError
from tune.config import ConfigError

OnEpoch = Callable[[dict, int], None]   # on_epoch(metrics, epoch): how progress leaves a loop (Ray wraps it)


class TrainingDiverged(UsageError):
    """A loss or evaluation that stopped being finite: more epochs cannot recover, so the run stops and
    says which setting to lower."""


def select_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise ConfigError(f"device {name} was asked for but torch sees no GPU; use --set device=cpu (or auto)")
    return torch.device(name)


def train_epoch(loss_fn: Callable[[torch.Tensor], torch.Tensor], optimizer: torch.optim.Optimizer, n: int,
                steps: int, generator: torch.Generator, device: torch.device,
                scheduler: torch.optim.lr_scheduler.LRScheduler | None = None) -> torch.Tensor:
    """One pass over n examples in `steps` near-equal shuffled batches; loss_fn(batch indices on `device`)
    returns the batch's scalar loss. Returns the mean batch loss as a tensor on `device`: nothing here
    waits for the device, so the caller reads the loss once per epoch.

    Near-equal batches (tensor_split, not fixed-size chunks) never leave a last batch of one series,
    on which BatchNorm cannot train.
    """
    total = torch.zeros((), device=device)
    for idx in torch.tensor_split(torch.randperm(n, generator=generator), steps):
        loss = loss_fn(idx.to(device))
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        if scheduler is not None:
            scheduler.step()
        total += loss.detach()
    return total / steps


def check_finite(epoch: int, values: dict, advice: str) -> None:
    """Raise TrainingDiverged naming the first of `values` (numbers or arrays) that holds a NaN or inf."""
    for name, value in values.items():
        a = np.asarray(value)
        if not np.isfinite(a).all():
            shown = a.item() if a.ndim == 0 else "not finite"
            raise TrainingDiverged(f"diverged at epoch {epoch}: {name} is {shown}; {advice}")

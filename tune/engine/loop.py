"""What every engine loop shares: the progress callback's type and the choice of device."""
from __future__ import annotations

from typing import Callable

import torch

from tune.config import ConfigError

OnEpoch = Callable[[dict, int], None]   # on_epoch(metrics, epoch): how progress leaves a loop (Ray wraps it)


def select_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise ConfigError(f"device {name} was asked for but torch sees no GPU; use --set device=cpu (or auto)")
    return torch.device(name)

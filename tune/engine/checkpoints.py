"""Checkpoint files: written atomically, versioned, read back with one-line errors, and the resumable
training state both loops (stage 1, the prior) share.

A model file is `{"format", "kwargs", "state_dict", ...}`: the model's constructor arguments, not the
training config, so renaming a training option never breaks a saved model. Keys a reader does not
know are ignored; a format it does not know is refused.
"""
from __future__ import annotations

import contextlib
import hashlib
import os
import tempfile
from pathlib import Path
from typing import IO, Callable

import numpy as np
import torch
from torch import nn

from results.errors import CheckpointError

FORMAT = 1   # of model files and training states; bump when their layout changes


def atomic_save(path: str | os.PathLike, obj: dict) -> None:
    """torch.save through atomic_write."""
    atomic_write(path, lambda f: torch.save(obj, f))


def atomic_write(path: str | os.PathLike, write: Callable[[IO], None], mode: str = "wb") -> None:
    """write(file) into a temp file in the same folder, then rename it to `path`: a kill mid-write never
    leaves a broken file and concurrent readers never see half of one."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, mode) as f:
            write(f)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.remove(tmp)
        raise


def fingerprint(*arrays) -> str:
    """A short hash of arrays' dtypes, shapes and bytes."""
    h = hashlib.sha256()
    for a in arrays:
        a = np.ascontiguousarray(np.asarray(a))
        h.update(str((a.dtype, a.shape)).encode())
        h.update(a.tobytes())
    return h.hexdigest()[:16]


def read_checkpoint(path: str | os.PathLike, what: str, keys: tuple[str, ...], device: str | torch.device = "cpu",
                    missing_hint: str = "") -> dict:
    """The dict saved at `path`, checked to be a `what` checkpoint of a known format holding `keys`."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"no {what} checkpoint at {path}{missing_hint}")
    try:
        blob = torch.load(path, map_location=device, weights_only=True)
    except Exception as err:      # torch.load of a text or foreign file raises anything from KeyError to EOFError
        raise CheckpointError(f"{path} is not a {what} checkpoint (torch.load failed: {type(err).__name__})") from None
    if not isinstance(blob, dict) or "format" not in blob:
        raise CheckpointError(f"{path} is not a {what} checkpoint of this code (no format version); "
                              f"train it again or use a checkpoint this version wrote")
    if blob["format"] != FORMAT:
        raise CheckpointError(f"{path} has {what} checkpoint format {blob['format']!r} but this code reads format "
                              f"{FORMAT}; use the code version that wrote it")
    missing = [k for k in keys if k not in blob]
    if missing:
        raise CheckpointError(f"{path} is not a {what} checkpoint: it lacks {', '.join(missing)}")
    return blob


def save_model(path: str | os.PathLike, model: nn.Module, kwargs: dict, **extra) -> None:
    """A model file: `kwargs` rebuild the model, the CPU state dict fills it; `extra` rides along."""
    atomic_save(path, {"format": FORMAT, "kwargs": kwargs,
                       "state_dict": {k: v.cpu() for k, v in model.state_dict().items()}, **extra})


def load_model(path: str | os.PathLike, build: Callable[..., nn.Module], what: str,
               device: str | torch.device = "cpu", keys: tuple[str, ...] = (), missing_hint: str = ""
               ) -> tuple[nn.Module, dict]:
    """Rebuild `build(**kwargs)` from a model file and load its weights -> (model in eval mode, the whole file)."""
    blob = read_checkpoint(path, what, ("kwargs", "state_dict", *keys), device, missing_hint)
    try:
        model = build(**blob["kwargs"])
        model.load_state_dict(blob["state_dict"])
    except (TypeError, ValueError, RuntimeError) as err:
        reason = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise CheckpointError(f"{path}: the saved {what} does not rebuild with this code ({reason})") from None
    return model.to(device).eval(), blob


def save_training_state(path: Path, model: nn.Module, optimizer, scheduler, generator: torch.Generator, *,
                        epoch: int, train_s: float, metrics: dict, identity=None) -> None:
    """What a loop needs to resume as if never stopped: weights, optimizer, schedule, its generator, the
    global generator of its device (dropout and code restarts draw from it), epoch, training time and the
    epoch's metrics (re-reported when a finished run is resumed)."""
    device = next(model.parameters()).device
    atomic_save(path, {"format": FORMAT, "model": model.state_dict(), "optimizer": optimizer.state_dict(),
                       "scheduler": scheduler.state_dict(), "generator": generator.get_state(),
                       "rng": _get_rng(device), "rng_device": device.type, "epoch": epoch, "train_s": train_s,
                       "metrics": metrics, "identity": identity})


def load_training_state(path: Path | None, model: nn.Module, optimizer, scheduler, generator: torch.Generator, *,
                        identity=None) -> tuple[int, float, dict | None]:
    """Restore what save_training_state wrote into the given objects -> (epoch, train_s, metrics);
    (0, 0.0, None) when there is nothing to resume. A state of another `identity` is refused."""
    if path is None or not path.exists():
        return 0, 0.0, None
    device = next(model.parameters()).device
    state = read_checkpoint(path, "training state", ("model", "optimizer", "scheduler", "generator", "rng",
                                                     "rng_device", "epoch", "train_s", "metrics"), device)
    if state.get("identity") != identity:
        raise CheckpointError(f"{path} holds a run of other data or settings; use an empty checkpoint directory "
                              f"or the settings it was trained with")
    model.load_state_dict(state["model"])
    optimizer.load_state_dict(state["optimizer"])
    scheduler.load_state_dict(state["scheduler"])
    generator.set_state(state["generator"])
    if state["rng_device"] == device.type:
        _set_rng(state["rng"], device)
    return state["epoch"], state["train_s"], state["metrics"]


def _get_rng(device: torch.device) -> torch.Tensor:
    return torch.cuda.get_rng_state(device) if device.type == "cuda" else torch.get_rng_state()


def _set_rng(state: torch.Tensor, device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.set_rng_state(state.cpu(), device)
    else:
        torch.set_rng_state(state.cpu())

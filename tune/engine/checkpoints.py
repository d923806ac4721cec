"""Checkpoint files: written atomically, and fingerprints that tell whether a saved state still fits."""
from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
import torch

from results.cli import UsageError


class CheckpointError(UsageError):
    """A checkpoint that is missing, unreadable or does not fit what it is used for."""


def atomic_save(path: Path, obj: dict) -> None:
    """Write atomically (temp file + rename): a kill mid-write never leaves a broken checkpoint."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    torch.save(obj, tmp)
    tmp.replace(path)


def fingerprint(*arrays) -> str:
    """A short hash of arrays' dtypes, shapes and bytes."""
    h = hashlib.sha256()
    for a in arrays:
        a = np.ascontiguousarray(np.asarray(a))
        h.update(str((a.dtype, a.shape)).encode())
        h.update(a.tobytes())
    return h.hexdigest()[:16]

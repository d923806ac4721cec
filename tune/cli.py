"""What the tune entry points share beyond results.cli: --set overrides and their output files."""
from __future__ import annotations

import json
import os
from pathlib import Path

from results.cli import UsageError


def check_output_file(path: str | None, flag: str) -> None:
    """Fail before the work starts, not after it, when an output file cannot be written (root ignores
    permission bits, so a missing folder or a folder in the file's place is what this catches there)."""
    if not path:
        return
    target = Path(path).expanduser().resolve()
    if target.is_dir():
        problem = "it is a folder"
    elif not target.parent.is_dir() or not os.access(target.parent, os.W_OK):
        problem = f"{target.parent} is not a writable folder"
    elif target.exists() and not os.access(target, os.W_OK):
        problem = "the file is read-only"
    else:
        return
    raise UsageError(f"cannot write {flag} {path}: {problem}; pass another path")


def write_json(path: str | None, obj: dict) -> None:
    """--json FILE of the single-run CLIs: the final metrics, machine-readable."""
    if path:
        with open(path, "w") as fh:
            json.dump(obj, fh, indent=2)


def parse_overrides(pairs: list[str]) -> dict[str, str]:
    """["tokenizer.codebook_size=64", ...] -> {"tokenizer.codebook_size": "64"}."""
    out = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise UsageError(f"--set expects KEY=VALUE, got {pair!r} (for example --set tokenizer.codebook_size=64)")
        out[key.strip()] = value.strip()
    return out


def check_trainable(data, cfg) -> None:
    """A dataset a trial can train and select on, else one line: series long enough for the tokenizer's STFT,
    and some class with two training series (the cross-validated probe, the search's objective, holds out
    only series whose class keeps another one in training: with none, every objective is NaN)."""
    import numpy as np

    from models.tokenizer import min_length

    if data.length < min_length(cfg.tokenizer):
        raise UsageError(f"{data.name} has series of length {data.length}, shorter than the tokenizer's minimum "
                         f"{min_length(cfg.tokenizer)} (tokenizer.n_fft {cfg.tokenizer.n_fft}); drop the dataset "
                         f"or lower tokenizer.n_fft")
    counts = np.unique(np.asarray(data.y_train), return_counts=True)[1]
    if not len(counts) or counts.max() < 2:
        raise UsageError(f"{data.name}: every class has a single training series, so the cross-validated probe "
                         f"(the search's objective) is undefined; drop it from --datasets")

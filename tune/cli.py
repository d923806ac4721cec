"""What the tune entry points share beyond results.cli: --set overrides and the --json output."""
from __future__ import annotations

import json

from results.cli import UsageError


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

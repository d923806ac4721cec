"""What the single-run entry points share beyond results.cli: their output files (--json, --figure)."""
from __future__ import annotations

import json
import os
from pathlib import Path

from results.errors import UsageError


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

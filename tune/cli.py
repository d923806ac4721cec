"""What every entry point shares: bad input becomes one line on stderr and exit code 2."""
from __future__ import annotations

import json
import sys
from typing import Callable


class UsageError(ValueError):
    """Bad command-line input; the message says what is wrong and how to fix it."""


def run_cli(main: Callable[[list[str] | None], int | None], argv: list[str] | None = None) -> None:
    """Run `main`, turning expected input errors into `error: <one line>` and exit code 2."""
    try:
        code = main(argv)
    except (ValueError, FileNotFoundError, PermissionError) as err:  # DataError is a ValueError
        print(f"error: {str(err).splitlines()[0] if str(err) else type(err).__name__}", file=sys.stderr)
        sys.exit(2)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        sys.exit(130)
    sys.exit(code or 0)


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

"""The runner every entry point shares (the study, the single runs, the report): an expected failure
(results.errors) is one `error:` line and exit code 2; anything else is a bug and keeps its traceback."""
from __future__ import annotations

import os
import sys
from typing import Callable

from results.errors import EXPECTED

DEBUG_ENV = "SSL_VQVAE_DEBUG"     # set to 1 to see the traceback of an expected failure too


def run_cli(main: Callable[[list[str] | None], int | None], argv: list[str] | None = None) -> None:
    """Run `main`; the project's own usage / config / data errors become `error: <one line>` and exit 2."""
    try:
        code = main(argv)
    except EXPECTED as err:
        if os.environ.get(DEBUG_ENV, "") not in ("", "0"):
            raise
        print(f"error: {str(err).splitlines()[0] if str(err) else type(err).__name__}", file=sys.stderr)
        sys.exit(2)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        sys.exit(130)
    sys.exit(code or 0)

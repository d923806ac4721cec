"""The project's expected failures: each says in one line what is wrong and how to fix it, and every entry
point prints it as `error: <line>` with exit code 2 (results.cli); anything else is a bug and keeps its
traceback. Every layer above `datasets` imports its errors from here.

It lives in `results`, the lower of the two packages (`tune` imports it, `results` never imports `tune`);
`DataError` stays in `datasets`, which imports nothing of the project above it, and is re-exported here.
"""
from __future__ import annotations

from datasets.ucr import DataError


class UsageError(ValueError):
    """Bad input (flags, config values, files): the message says what is wrong and how to fix it."""


class ConfigError(UsageError):
    """A config key or value that cannot run; the message names the key and what it accepts."""


class CheckpointError(UsageError):
    """A checkpoint that is missing, unreadable or does not fit what it is used for."""


class TrainingDiverged(UsageError):
    """A loss or evaluation that stopped being finite: more epochs cannot recover, so the run stops and
    says which setting to lower."""


EXPECTED = (UsageError, DataError)

__all__ = ["CheckpointError", "ConfigError", "DataError", "EXPECTED", "TrainingDiverged", "UsageError"]

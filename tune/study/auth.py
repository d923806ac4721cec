"""Joining a cluster that uses Ray's token authentication, the default for `ray start` since Ray 2.59.

A driver sends the token only when RAY_AUTH_MODE=token, and Ray reads that when it is imported: so the
entry point calls `use_cluster_token` before anything imports ray (this module imports nothing of it).
"""
from __future__ import annotations

import os
from pathlib import Path

TOKEN_FILE = Path.home() / ".ray" / "auth_token"


def use_cluster_token() -> bool:
    """Set RAY_AUTH_MODE=token when a token is at hand (RAY_AUTH_TOKEN, RAY_AUTH_TOKEN_PATH or TOKEN_FILE) and
    the user chose no mode; returns whether the driver will send a token."""
    if "RAY_AUTH_MODE" in os.environ:
        return os.environ["RAY_AUTH_MODE"] == "token"
    path = Path(os.environ.get("RAY_AUTH_TOKEN_PATH", TOKEN_FILE))
    if os.environ.get("RAY_AUTH_TOKEN") or path.is_file():
        os.environ["RAY_AUTH_MODE"] = "token"
        return True
    return False

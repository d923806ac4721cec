"""The MLflow store, checked before it is used: a bad URI or an unreachable server is one line in seconds."""
from __future__ import annotations

import os
import urllib.request
from pathlib import Path
from urllib.parse import unquote

from results.errors import UsageError

TRACKING_SCHEMES = {"sqlite", "http", "https", "postgresql", "mysql", "mssql", "databricks"}


def check_tracking_store(uri: str, must_exist: bool = False) -> None:
    """Refuse an MLflow store that cannot work, within seconds: a local SQLite file must be creatable (or be
    SQLite), a server must answer /health; MLflow itself would retry an unreachable server for minutes."""
    scheme = uri.split("://", 1)[0] if "://" in uri else ""
    if scheme == "sqlite":
        path = Path(unquote(uri[len("sqlite:///"):]))
        if must_exist and not path.is_file():
            raise UsageError(f"no MLflow store at {path}; pass the study's --results-dir or --mlflow-uri")
        parent = next((p for p in [path.parent, *path.parent.parents] if p.exists()), None)
        if parent is None or not parent.is_dir() or (path.exists() and not path.is_file()):
            raise UsageError(f"cannot create the MLflow store {path}: {parent} is not a directory; "
                             f"pass another --mlflow-uri or --results-dir")
        if not os.access(parent, os.W_OK) or (path.exists() and not os.access(path, os.W_OK)):
            raise UsageError(f"cannot write the MLflow store {path}; pass a writable --results-dir or --mlflow-uri")
        if path.is_file() and path.stat().st_size and path.open("rb").read(16) != b"SQLite format 3\x00":
            raise UsageError(f"{path} is not an SQLite database; pass another --mlflow-uri")
    elif scheme in ("http", "https"):
        try:
            with urllib.request.urlopen(uri.rstrip("/") + "/health", timeout=5) as answer:
                answer.read()
        except (OSError, ValueError) as err:
            reason = getattr(err, "reason", None) or err
            raise UsageError(f"cannot reach the MLflow server at {uri} ({reason}); start it (mlflow server "
                             f"--host 127.0.0.1 --port PORT) or drop --mlflow-uri") from None
    elif scheme not in TRACKING_SCHEMES:
        raise UsageError(f"unsupported --mlflow-uri {uri!r}; use sqlite:////abs/path.db, http(s)://host:port or "
                         f"a database URI ({', '.join(sorted(TRACKING_SCHEMES - {'sqlite', 'http', 'https'}))})")

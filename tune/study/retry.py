"""MLflow writes that survive a tracking store that goes away for a while (a server restart, a locked or
briefly unreachable database): every call of the client is retried with backoff for up to
`retry_seconds()` (env SSLVQ_MLFLOW_RETRY_S, default 600 s), then fails with one line naming the store.

Retries write nothing twice: MLflow deduplicates a metric logged again with its key, step, timestamp and
value; params and tags of the same value, artifacts and run status overwrite themselves; and a
`create_run` or `create_experiment` whose answer was lost is looked up (by its tags, by its name) before
it is sent again. Errors that a retry cannot change (a missing run, a bad value) are raised at once.
"""
from __future__ import annotations

import functools
import os
import sys
import time
from typing import Any, Callable

from mlflow.exceptions import MlflowException

RETRY_ENV = "SSLVQ_MLFLOW_RETRY_S"
DEFAULT_RETRY_S = 600.0
# MLflow error codes of a request that is wrong, not of a store that is away: retrying cannot help
PERMANENT = {"RESOURCE_DOES_NOT_EXIST", "RESOURCE_ALREADY_EXISTS", "INVALID_PARAMETER_VALUE", "BAD_REQUEST",
             "INVALID_STATE", "PERMISSION_DENIED", "UNAUTHENTICATED", "NOT_FOUND", "FEATURE_DISABLED"}


RESUME_HINT = "; the study stopped, continue it with --resume once the store is back"


class StoreUnavailable(RuntimeError):
    """The tracking store stayed away for the whole retry window (or lost the study): one line naming it."""


def retry_seconds() -> float:
    text = os.environ.get(RETRY_ENV, "")
    try:
        return max(0.0, float(text)) if text else DEFAULT_RETRY_S
    except ValueError:
        return DEFAULT_RETRY_S


def transient(err: BaseException) -> bool:
    """A failure of the store, not of the request: worth retrying."""
    if isinstance(err, MlflowException):
        return err.error_code not in PERMANENT
    return isinstance(err, (OSError, ConnectionError, TimeoutError)) or type(err).__module__.startswith(
        ("sqlalchemy", "requests", "urllib3", "sqlite3"))


def first_line(err: BaseException) -> str:
    """The line of an error a reader needs: SQLAlchemy's first line can be a note on autoflush, its cause's
    ("(sqlite3.OperationalError) database or disk is full") comes next."""
    lines = [ln for ln in str(err).strip().splitlines() if ln.strip() and not ln.startswith("(raised as a result of")]
    return lines[0][:200] if lines else type(err).__name__


def with_retries(call: Callable[[], Any], *, store: str, what: str, seconds: float | None = None,
                 before_retry: Callable[[], Any] | None = None, sleep: Callable[[float], None] = time.sleep) -> Any:
    """call() until it succeeds, a permanent error, or `seconds` have passed (then StoreUnavailable).
    before_retry(): looked up before every retry; a result other than None is returned instead."""
    seconds = retry_seconds() if seconds is None else seconds
    start, delay, attempt = time.monotonic(), 1.0, 0
    while True:
        if attempt and before_retry is not None:
            try:
                found = before_retry()
            except Exception as err:  # the store is still away: the lookup fails like the call would
                if not transient(err):
                    raise
                found = None
            else:
                if found is not None:
                    return found
        try:
            return call()
        except Exception as err:
            if not transient(err):
                raise
            waited = time.monotonic() - start
            if waited + delay > seconds:
                raise StoreUnavailable(f"the MLflow store {store} failed for {waited:.0f} s ({what}: "
                                       f"{first_line(err)}){RESUME_HINT}") from None
            if attempt == 0:
                print(f"warning: MLflow store {store} failed ({what}: {first_line(err)}); retrying for up to "
                      f"{seconds:.0f} s", file=sys.stderr, flush=True)
        sleep(delay)
        delay, attempt = min(delay * 2, 30.0), attempt + 1


class RetryingClient:
    """An MlflowClient whose every method call goes through with_retries (create_run and create_experiment
    look for what an earlier attempt may have created before they are sent again)."""

    def __init__(self, client, store: str, seconds: float | None = None):
        self._client, self._store, self._seconds = client, store, seconds

    @property
    def raw(self):
        """The client without retries (for checks that must not wait)."""
        return self._client

    def __getattr__(self, name: str):
        attr = getattr(self._client, name)
        if not callable(attr):
            return attr

        @functools.wraps(attr)
        def call(*args, **kwargs):
            return with_retries(lambda: attr(*args, **kwargs), store=self._store, what=name, seconds=self._seconds,
                                before_retry=self._lookup(name, args, kwargs))
        return call

    def _lookup(self, name: str, args: tuple, kwargs: dict) -> Callable[[], Any] | None:
        if name == "create_experiment":
            exp_name = kwargs.get("name", args[0] if args else None)

            def experiment():
                exp = self._client.get_experiment_by_name(exp_name)
                return exp.experiment_id if exp else None
            return experiment
        if name == "create_run":
            experiment_id = kwargs.get("experiment_id", args[0] if args else None)
            tags = kwargs.get("tags") or (args[2] if len(args) > 2 else None) or {}
            if not tags:
                return None
            query = " and ".join(f"tags.`{k}` = '{v}'" for k, v in tags.items())

            def run():
                found = self._client.search_runs([experiment_id], query, max_results=1)
                return found[0] if found else None
            return run
        return None


def retrying_client(tracking_uri: str, seconds: float | None = None) -> RetryingClient:
    from mlflow.tracking import MlflowClient

    return RetryingClient(MlflowClient(tracking_uri), tracking_uri, seconds)

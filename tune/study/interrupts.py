"""How a study stops before its end, cleanly: a signal (Ctrl-C, SIGTERM) or a tracking store that failed.

Ray Tune ends `fit()` cleanly on SIGUSR1: it saves its experiment state one last time and its trials
resume from their last checkpoints with `--resume`. So while Tune runs, the study's own SIGINT / SIGTERM
handlers record why the study stops and raise SIGUSR1 (Tune's own SIGINT handler is turned off: it would
swallow the signal and let `fit()` return as if the study were done). Outside Tune (start-up, summary)
the first signal raises StudyStopped at once. A second signal always raises StudyStopped.

The study then closes what its killed trial processes could not (their MLflow runs end KILLED, with the
reason as their `error` tag; the parents too, tagged INTERRUPTED_TAG) and exits 130 (SIGINT), 143
(SIGTERM) or 1 (the store), never 0.
"""
from __future__ import annotations

import contextlib
import errno
import functools
import os
import signal
import sys
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import unquote

from results.contract import ERROR_TAG, INTERRUPTED_TAG, PARENT_TAG, ROLE_TAG, ROLE_TRIAL
from tune.study.retry import StoreUnavailable, first_line, transient

EXIT_CODES = {signal.SIGINT: 130, signal.SIGTERM: 143}
STORE_EXIT = 1
DISK_ERRNOS = {errno.ENOSPC, errno.EACCES, errno.EROFS, errno.EDQUOT, errno.EPERM}   # a full or unwritable disk


class StudyStopped(BaseException):
    """Raised where the study cannot hand the stop to Tune (before or after fit, or a second signal)."""


@dataclass
class StopRequest:
    reason: str = ""          # "" until the study is asked to stop
    code: int = 0             # the exit code it will end with
    in_tune: bool = False     # Tune's fit() is running: hand the stop to Tune (SIGUSR1)

    def __bool__(self) -> bool:
        return bool(self.reason)

    def request(self, reason: str, code: int, *, from_signal: bool = False) -> None:
        """The first reason wins; Tune is told to stop, or (outside Tune, or a repeated signal) StudyStopped."""
        repeated = bool(self.reason)
        if not repeated:
            self.reason, self.code = reason, code
        if self.in_tune and not repeated:
            os.kill(os.getpid(), signal.SIGUSR1)     # Tune's documented stop: save the state, end fit()
        elif from_signal:
            raise StudyStopped(self.reason)

    def reset(self) -> None:
        self.reason, self.code, self.in_tune = "", 0, False


STOP = StopRequest()    # one per driver process; Tune callbacks restored by --resume find it here too


def disk_failure(err: BaseException) -> str:
    """The stop reason when `err` is a full or unwritable disk ("" otherwise)."""
    if not isinstance(err, OSError) or err.errno not in DISK_ERRNOS:
        return ""
    return f"cannot write {err.filename or 'the study outputs'} ({err.strerror}); the finished trials are kept"


def study_failure(err: BaseException | None) -> str:
    """The stop reason when a trial failed for the study's sake (its tracking store away, its disk full or
    read-only), "" when for its own: Tune would retry the trial into the same failure, trial after trial."""
    cause = getattr(err, "cause", None) or err       # a RayTaskError holds the trial's exception as its cause
    if isinstance(cause, StoreUnavailable):
        return str(cause)
    return disk_failure(cause) if isinstance(cause, BaseException) else ""


def _on_signal(signum, frame) -> None:
    name = signal.Signals(signum).name
    STOP.request(f"{name} received", EXIT_CODES[signum], from_signal=True)


@contextlib.contextmanager
def stop_on_signals():
    """SIGINT / SIGTERM stop the study cleanly inside the block (the main thread's handlers)."""
    os.environ["TUNE_DISABLE_SIGINT_HANDLER"] = "1"      # read by Tune at each fit()
    STOP.reset()
    old = {s: signal.signal(s, _on_signal) for s in EXIT_CODES}
    try:
        yield STOP
    finally:
        for s, handler in old.items():
            signal.signal(s, handler)


def claim_signals() -> None:
    """Install the study's handlers again: ray.init installs Ray's own SIGTERM handler (a C++ stack dump and
    SIGABRT, exit 134)."""
    for s in EXIT_CODES:
        signal.signal(s, _on_signal)


@contextlib.contextmanager
def tune_running():
    """Inside: a stop request reaches Tune as SIGUSR1 (a request made just before is handed over now)."""
    STOP.in_tune = True
    try:
        if STOP:
            os.kill(os.getpid(), signal.SIGUSR1)
        yield
    finally:
        STOP.in_tune = False


def guarded(method):
    """A Tune callback method that never raises into Tune (an exception there is a TuneError and thousands
    of traceback lines): a failed MLflow write stops the study with one line, anything else is a warning."""
    @functools.wraps(method)
    def wrapper(self, *args, **kwargs):
        try:
            return method(self, *args, **kwargs)
        except StoreUnavailable as err:
            STOP.request(str(err), STORE_EXIT)
        except Exception as err:   # noqa: BLE001 - see the docstring
            reason = f"{type(self).__name__}.{method.__name__} failed: {first_line(err)}"
            if transient(err):
                STOP.request(f"the MLflow store failed ({reason}); continue the study with --resume", STORE_EXIT)
            else:
                print(f"warning: {reason}", file=sys.stderr, flush=True)
    return wrapper


def sqlite_file(uri: str) -> Path | None:
    return Path(unquote(uri[len("sqlite:///"):])) if uri.startswith("sqlite:///") else None


def store_identity(uri: str) -> tuple[int, int] | None:
    """(device, inode) of a local SQLite store: a store deleted and silently recreated by MLflow has another."""
    path = sqlite_file(uri)
    if path is None:
        return None
    try:
        st = path.stat()
    except OSError:
        return (-1, -1)
    return (st.st_dev, st.st_ino)


def store_lost(get_client, uri: str, identity, experiment_id: str, study: str, parents: list[str]) -> str:
    """Why the store no longer holds the study ("" when it does): its file replaced, the study's
    experiment or a parent run gone. Failures to reach it are the retries' business, not this check's:
    get_client() gives a client without retries, so that the check never holds up Tune's loop; it is
    called after the file check, which needs no client (making one can wait on a broken store)."""
    from mlflow.exceptions import MlflowException

    if identity is not None and store_identity(uri) != identity:
        return (f"the MLflow store {sqlite_file(uri)} was deleted or replaced during the study (MLflow recreates "
                f"it empty); the study stopped without writing into it: restore the file, then --resume")
    lost = (f"the MLflow store {uri} lost study {study} (its experiment or parent runs vanished: a store "
            f"recreated empty?); the study stopped without writing into it")
    try:
        client = get_client()
        exp = client.get_experiment(experiment_id)
        if exp is None or exp.name != study:
            return lost
        for run_id in parents:
            client.get_run(run_id)
    except MlflowException as err:
        return lost if err.error_code == "RESOURCE_DOES_NOT_EXIST" else ""    # away: the retries' business
    except Exception as err:  # noqa: BLE001 - unreachable is not lost
        if not transient(err):
            raise
    return ""


def close_stopped(client, experiment_id: str, parents: dict[str, str], reason: str, note: str) -> int:
    """End the study's RUNNING trial runs KILLED with `reason` as their error tag, tag every parent with
    `note` and end it KILLED; returns how many trial runs were closed."""
    closed = close_running_trials(client, experiment_id, parents, reason)
    for run_id in parents.values():
        client.set_tag(run_id, INTERRUPTED_TAG, note)
        client.set_terminated(run_id, "KILLED")
    return closed


def close_running_trials(client, experiment_id: str, parents: dict[str, str], reason: str) -> int:
    """End the study's RUNNING trial runs KILLED with `reason` as their error tag; returns how many."""
    closed = 0
    for run_id in parents.values():
        kids = client.search_runs([experiment_id], f"tags.`{PARENT_TAG}` = '{run_id}' and "
                                                   f"tags.`{ROLE_TAG}` = '{ROLE_TRIAL}' and "
                                                   f"attributes.status = 'RUNNING'", max_results=10_000)
        for run in kids:
            client.set_tag(run.info.run_id, ERROR_TAG, reason)
            client.set_terminated(run.info.run_id, "KILLED")
            closed += 1
    return closed


def clear_stopped(client, experiment_id: str, parents: dict[str, str]) -> None:
    """A resumed study is no longer interrupted: drop the parents' INTERRUPTED_TAG (where it was set), and end
    KILLED the trial runs its stop could not close (the store was away or full); a trial that runs again
    reopens its own run."""
    close_running_trials(client, experiment_id, parents, "its study stopped before this run could be closed")
    for run_id in parents.values():
        if INTERRUPTED_TAG in client.get_run(run_id).data.tags:
            client.delete_tag(run_id, INTERRUPTED_TAG)


def interrupted_note(finished: int, total: int) -> str:
    return f"interrupted: {finished} of {total} trials finished; continue with `--resume`"

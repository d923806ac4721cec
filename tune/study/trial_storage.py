"""What Tune writes under the results folder: whole files only, and trial checkpoints deleted when a trial ends.

Whole files (`whole_files()`, Tune's storage filesystem): Tune copies its experiment state, the
searcher's state and the trial checkpoints from a staging folder onto the results folder, each file
rewritten in place; on a full disk that leaves them truncated, and `--resume` then cannot read the
state (Ray logs "Failed to restore the run state" and starts afresh). Written to a hidden partial file
and renamed over the old one once complete, a file is either the new one or the old one, so a full or
read-only disk stops the study with its last state intact, and `--resume` continues it.

Checkpoints: every one kept while its trial runs, all deleted when it ends.

Tune's own `CheckpointConfig(num_to_keep=K)` deletes old checkpoints as trials go, and to stay
consistent with them it saves the whole experiment state (every trial, as JSON) after each K
checkpoints of any trial: a cost that grows with the number of trials, paid per checkpoint, so the
driver's work per trial grew with the study (0.30 CPU s per trial at 510 trials, 0.56 at 1,020;
docs/archive_scale.md). Keeping them all (`num_to_keep=None`) lets Tune save its state on its own
clock (at least 10 s apart, at most ~5% of the time), and DropEndedTrialCheckpoints frees the disk instead: a
trial that ended (finished, or stopped early) is never restored, so its checkpoints go; a trial that
was interrupted, failed or is still running keeps them for `--resume` and Tune's retries. Disk in use
is then the running trials' checkpoints, not the study's.
"""
from __future__ import annotations

import os
import sys
import uuid

import pyarrow
from pyarrow import fs as pafs
from ray.tune import Callback

PREFIX = "checkpoint_"      # Tune's name for a trial's checkpoint folders


class DropEndedTrialCheckpoints(Callback):
    def on_trial_complete(self, iteration, trials, trial, **info):
        # the trial's folder, not its latest checkpoint's: a trial restored by --resume may not know the
        # checkpoints it wrote after Tune's last saved state, and they are there all the same
        filesystem, folder = trial.storage.storage_filesystem, trial.path
        try:
            for entry in filesystem.get_file_info(pafs.FileSelector(folder, allow_not_found=True)):
                if entry.type == pafs.FileType.Directory and entry.base_name.startswith(PREFIX):
                    filesystem.delete_dir(entry.path)
        except OSError as err:      # the disk keeps them; the study goes on
            print(f"warning: could not delete the checkpoints of ended trial {trial.trial_id}: {err}",
                  file=sys.stderr, flush=True)


def whole_files() -> pafs.FileSystem:
    """The local filesystem, with every file Tune writes renamed into place once whole (see the docstring)."""
    return pafs.PyFileSystem(WholeFiles())


class WholeFiles(pafs.FileSystemHandler):
    """pyarrow's LocalFileSystem, except for output streams: a _PartialFile each."""

    def __init__(self):
        self.local = pafs.LocalFileSystem()

    def __reduce__(self):       # trial processes get the filesystem pickled
        return (WholeFiles, ())

    def __eq__(self, other):
        return isinstance(other, WholeFiles)

    def __ne__(self, other):
        return not self == other

    def get_type_name(self):
        return "local-whole-files"

    def normalize_path(self, path):
        return self.local.normalize_path(path)

    def get_file_info(self, paths):
        return self.local.get_file_info(paths)

    def get_file_info_selector(self, selector):
        return self.local.get_file_info(selector)

    def create_dir(self, path, recursive):
        self.local.create_dir(path, recursive=recursive)

    def delete_dir(self, path):
        self.local.delete_dir(path)

    def delete_dir_contents(self, path, missing_dir_ok=False):
        self.local.delete_dir_contents(path, missing_dir_ok=missing_dir_ok)

    def delete_root_dir_contents(self):
        raise OSError("refusing to empty the root folder")

    def delete_file(self, path):
        self.local.delete_file(path)

    def move(self, src, dest):
        self.local.move(src, dest)

    def copy_file(self, src, dest):
        with self.local.open_input_stream(src) as source, self.open_output_stream(dest, None) as out:
            while chunk := source.read(1 << 24):
                out.write(chunk)

    def open_input_stream(self, path):
        return self.local.open_input_stream(path)

    def open_input_file(self, path):
        return self.local.open_input_file(path)

    def open_output_stream(self, path, metadata):
        return pyarrow.PythonFile(_PartialFile(path), mode="w")

    def open_append_stream(self, path, metadata):
        return self.local.open_append_stream(path, metadata=metadata)


class _PartialFile:
    """A file written beside its target as .<name>.<random>.partial and renamed over it when closed; a write
    that fails (a full disk) removes the partial file and leaves the target as it was."""

    def __init__(self, path: str):
        head, tail = os.path.split(path)
        self.path, self.partial = path, os.path.join(head, f".{tail}.{uuid.uuid4().hex[:8]}.partial")
        self.file = open(self.partial, "wb", buffering=0)    # unbuffered: a full disk fails the write, not close
        self.closed = False

    def writable(self) -> bool:
        return True

    def readable(self) -> bool:
        return False

    def seekable(self) -> bool:
        return False

    def tell(self) -> int:
        return self.file.tell()

    def flush(self) -> None:
        pass

    def write(self, data) -> int:
        try:
            return self.file.write(data)
        except BaseException:
            self._discard()
            raise

    def close(self) -> None:
        if self.closed:
            return
        try:
            self.file.close()
            os.replace(self.partial, self.path)
        except BaseException:
            self._discard()
            raise
        self.closed = True

    def _discard(self) -> None:
        self.closed = True
        self.file.close()
        try:
            os.unlink(self.partial)
        except OSError:
            pass

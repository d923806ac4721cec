"""Tune's trial checkpoints: every one kept while its trial runs, all deleted when it ends.

Tune's own `CheckpointConfig(num_to_keep=K)` deletes old checkpoints as trials go, and to stay
consistent with them it saves the whole experiment state (every trial, as JSON) after each K
checkpoints of any trial: a cost that grows with the number of trials, paid per checkpoint, so the
driver's work per trial grew with the study (0.30 CPU s per trial at 510 trials, 0.56 at 1,020;
docs/archive_scale.md). Keeping them all (`num_to_keep=None`) lets Tune save its state on its own
clock (at least 10 s apart, at most ~5% of the time), and this callback frees the disk instead: a
trial that ended (finished, or stopped early) is never restored, so its checkpoints go; a trial that
was interrupted, failed or is still running keeps them for `--resume` and Tune's retries. Disk in use
is then the running trials' checkpoints, not the study's.
"""
from __future__ import annotations

import sys

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

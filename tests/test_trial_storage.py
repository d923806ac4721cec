"""Ended trials' Tune checkpoints are deleted; the files beside them (results, params) stay. Tune's files
are written whole or not at all."""
from __future__ import annotations

import errno
import pickle
from types import SimpleNamespace

import pytest
from pyarrow import fs as pafs
from pyarrow.fs import LocalFileSystem

from tune.study import trial_storage
from tune.study.trial_storage import DropEndedTrialCheckpoints, whole_files


def test_an_ended_trial_loses_its_checkpoints_and_keeps_its_other_files(tmp_path):
    trial_dir = tmp_path / "trial_1"
    for i in range(3):
        (trial_dir / f"checkpoint_00000{i}").mkdir(parents=True)
        (trial_dir / f"checkpoint_00000{i}" / "state.pt").write_bytes(b"x" * 100)
    (trial_dir / "result.json").write_text("{}")
    trial = SimpleNamespace(trial_id="1", path=str(trial_dir), storage=SimpleNamespace(storage_filesystem=LocalFileSystem()))
    DropEndedTrialCheckpoints().on_trial_complete(0, [trial], trial)
    assert [p.name for p in trial_dir.iterdir()] == ["result.json"]


def test_a_trial_folder_that_is_gone_is_no_error(tmp_path):
    trial = SimpleNamespace(trial_id="2", path=str(tmp_path / "gone"), storage=SimpleNamespace(storage_filesystem=LocalFileSystem()))
    DropEndedTrialCheckpoints().on_trial_complete(0, [trial], trial)
    assert not (tmp_path / "gone").exists()


def test_tune_copies_whole_files_and_a_failed_write_keeps_the_old_one(tmp_path, monkeypatch):
    staging, storage = tmp_path / "staging", tmp_path / "storage"
    (staging / "trial_1").mkdir(parents=True)
    (staging / "experiment_state.json").write_text('{"new": true}')
    (staging / "trial_1" / "result.json").write_text("{}")
    filesystem = pickle.loads(pickle.dumps(whole_files()))          # as a trial process gets it
    pafs.copy_files(str(staging), str(storage), destination_filesystem=filesystem)
    assert (storage / "experiment_state.json").read_text() == '{"new": true}'
    assert (storage / "trial_1" / "result.json").read_text() == "{}"

    (staging / "experiment_state.json").write_text('{"newer": true, "long": "' + "x" * 10_000 + '"}')
    real_open = open

    def full_disk(path, mode="r", *args, **kwargs):       # the partial file's disk is full after 100 bytes
        handle = real_open(path, mode, *args, **kwargs)
        if str(path).endswith(".partial"):
            write = handle.write
            handle = SimpleNamespace(write=lambda data: write(data[:100]) and (_ for _ in ()).throw(
                OSError(errno.ENOSPC, "No space left on device")), close=handle.close, tell=handle.tell)
        return handle
    monkeypatch.setattr(trial_storage, "open", full_disk, raising=False)
    with pytest.raises(OSError, match="No space left"):
        pafs.copy_files(str(staging), str(storage), destination_filesystem=filesystem)
    assert (storage / "experiment_state.json").read_text() == '{"new": true}'     # the old state, whole
    assert not list(storage.rglob("*.partial"))

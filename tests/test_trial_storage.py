"""Ended trials' Tune checkpoints are deleted; the files beside them (results, params) stay."""
from __future__ import annotations

from types import SimpleNamespace

from pyarrow.fs import LocalFileSystem

from tune.study.trial_storage import DropEndedTrialCheckpoints


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

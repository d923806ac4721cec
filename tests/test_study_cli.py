"""Bad input to the study CLI: one line on stderr, exit code 2, nothing written to MLflow."""
import time

import pytest

from study_helpers import cli
from results.cli import run_cli
from tune.run_ablation import main
from tune.spaces import QUICK_STEPS


def _run(capsys, results, *argv):
    with pytest.raises(SystemExit) as exit_info:
        run_cli(main, ["--results-dir", str(results), *argv])
    return exit_info.value.code, capsys.readouterr()


@pytest.mark.parametrize("argv, expected", [
    ([], "--space is required"),
    (["--space", "augweight"], "unknown space 'augweight'"),
    (["--space", "aug_weight", "--budget", "huge"], "unknown budget 'huge'"),
    (["--space", "aug_weight", "--datasets", "GunPiont"], "GunPoint"),
    (["--space", "aug_weight", "--num-samples", "0"], "--num-samples must be at least 1"),
    (["--space", "aug_weight", "--set", "epochz=3"], "unknown config key"),
    (["--space", "aug_weight", "--address", "127.0.0.1:1"], "cannot reach the Ray cluster at 127.0.0.1:1"),
    (["--space", "aug_weight", "--resume", "--name", "never-ran"], "no study named never-ran"),
    (["--space", "aug_weight", "--executor", "function", "--gpus-per-trial", "1"], "GPU trials run through Ray Train"),
    (["--space", "aug_weight", "--dry-run", "--set", "lr=-1"], "lr must be > 0"),
    (["--space", "aug_weight", "--dry-run", "--set", "device=tpu"], "unknown device 'tpu'"),
    (["--space", "aug_weight", "--dry-run", "--set", "tokenizer.codebook_size=0"], "tokenizer sizes must be positive"),
    (["--space", "aug_weight", "--dry-run", "--set", "stage2.width=31"], "multiple of heads"),
    (["--space", "aug_weight", "--mlflow-uri", "bogus://x"], "unsupported --mlflow-uri 'bogus://x'"),
    (["--space", "aug_weight", "--mlflow-uri", "http://127.0.0.1:1"], "cannot reach the MLflow server"),
    (["--space", "aug_weight", "--name", "../../x"], "study name '../../x' must be"),
    (["--space", "aug_weight", "--gpus-per-trial", "2"], "--gpus-per-trial 2 but this machine has 0 GPU"),
    (["--space", "aug_weight", "--objectives", "recon"], "--objectives 'recon': give probe"),
    (["--space", "aug_weight", "--methods", "simclr"], "--methods 'simclr': give any of barlowtwins, vibcreg"),
    (["--space", "aug_weight", "--objectives", "probe,fid"], "unknown: fid"),
    (["--space", "aug_weight", "--stage2", "front"], "--stage2 front needs a multi-objective study"),
])
def test_bad_input(capsys, tmp_path, argv, expected):
    code, out = _run(capsys, tmp_path, *argv, "--datasets" if "--datasets" not in argv else "--search-seed",
                     "GunPoint" if "--datasets" not in argv else "0")
    err = out.err.strip()
    assert code == 2 and err.startswith("error: ") and "\n" not in err and expected in err, err
    assert not (tmp_path / "mlflow.db").exists() and not (tmp_path / "ray_results").exists()


def test_archive_root_without_the_dataset(capsys, tmp_path):
    root = tmp_path / "archive"
    root.mkdir()
    code, out = _run(capsys, tmp_path / "results", "--space", "aug_weight", "--ucr-root", str(root),
                     "--datasets", "GunPoint")
    assert code == 2 and "GunPoint" in out.err and str(root) in out.err
    assert not (tmp_path / "results" / "mlflow.db").exists()


def test_results_dir_that_cannot_be_written(capsys, tmp_path):
    blocker = tmp_path / "a-file"
    blocker.write_text("not a directory")
    code, out = _run(capsys, blocker / "results", "--space", "aug_weight", "--datasets", "GunPoint")
    assert code == 2 and "cannot write the results directory" in out.err


def test_dry_run_prints_the_plan_and_writes_nothing(capsys, tmp_path):
    code, out = _run(capsys, tmp_path, "--space", "aug_weight", "--grid", "--dry-run", "--datasets", "GunPoint,ArrowHead")
    assert code == 0
    assert "trials: 2 dataset(s) x 17 configurations x 2 seed(s) = 68" in out.out and "estimated time" in out.out
    assert f"GunPoint [50x150, {QUICK_STEPS}]" in out.out     # the quick budget's steps at one step per epoch
    assert not (tmp_path / "mlflow.db").exists()


def test_list_spaces(capsys, tmp_path):
    code, out = _run(capsys, tmp_path, "--list-spaces")
    assert code == 0 and all(name in out.out for name in ("aug_weight", "aug_set", "ssl", "full", "paper"))


def test_sqlite_store_under_a_regular_file(capsys, tmp_path):
    blocker = tmp_path / "a-file"
    blocker.write_text("not a directory")
    code, out = _run(capsys, tmp_path / "results", "--space", "aug_weight", "--datasets", "GunPoint",
                     "--mlflow-uri", f"sqlite:///{blocker}/mlflow.db")
    assert code == 2 and "cannot create the MLflow store" in out.err and "\n" not in out.err.strip()
    assert not (tmp_path / "results" / "ray_results").exists()


def test_unreachable_tracking_server_fails_in_seconds(tmp_path):
    """MLflow alone retries an unreachable server for minutes; the plan asks /health with a short timeout."""
    started = time.monotonic()
    proc = cli(tmp_path, "--space", "aug_weight", "--datasets", "GunPoint", "--mlflow-uri", "http://127.0.0.1:1",
               timeout=120)
    assert proc.returncode == 2 and proc.stderr.strip().count("\n") == 0, proc.stderr
    assert time.monotonic() - started < 30

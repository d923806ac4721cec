"""A study stopped by a signal, then resumed; --resume bound to the study it resumes (real Ray, real
Optuna, real MLflow, smoke studies of 3 trials)."""
from __future__ import annotations

import os
from pathlib import Path
import signal
import subprocess
import sys
import time

import pytest

from study_helpers import CLI, REPO, cli, runs, study_env

pytestmark = pytest.mark.slow
SMOKE = ["--space", "aug_weight", "--budget", "smoke", "--datasets", "GunPoint", "--set", "epochs=10",
         "--set", "proj_dim=64", "--methods", "vibcreg", "--num-samples", "2", "--stage2", "off"]   # 3 trials


def start(results, name, *extra):
    out, err = (open(results.parent / f"{name}.{s}", "w+") for s in ("out", "err"))
    proc = subprocess.Popen([sys.executable, str(CLI), "--results-dir", str(results), "--name", name, *SMOKE, *extra],
                            cwd=REPO, env=study_env(), stdout=out, stderr=err, text=True, start_new_session=True)
    return proc, err


def wait_for_first_checkpoint(proc, err, timeout=300):
    out = Path(err.name).with_suffix(".out")          # the console's one line per finished trial
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and proc.poll() is None:
        if out.exists() and "[1/3]" in out.read_text():
            return
        time.sleep(0.5)
    raise AssertionError("no trial finished before the timeout")


# SIGINT only: SIGTERM takes the same path (tune/study/interrupts.py, tests/test_faults.py) and its end-to-end
# case is a row of benchmarks/fault_cases.py, which keeps the suite under its time budget
@pytest.mark.parametrize("sig, code", [(signal.SIGINT, 130)])
def test_a_signal_stops_the_study_cleanly_and_resume_finishes_it(tmp_path, sig, code):
    results = tmp_path / "results"
    proc, err = start(results, "stopped")
    wait_for_first_checkpoint(proc, err)
    if sig == signal.SIGINT:
        os.killpg(proc.pid, sig)         # Ctrl-C in a terminal: the whole process group
    else:
        proc.send_signal(sig)            # a scheduler's SIGTERM: the driver alone
    assert proc.wait(timeout=300) == code
    err.seek(0)
    last = err.read().strip().splitlines()[-1]
    assert last.startswith(f"error: {signal.Signals(sig).name} received: study stopped interrupted: ")
    assert "of 3 trials finished; continue with python tune/run_ablation.py --name stopped" in last
    children, (parent,) = runs(results, "stopped", "trial"), runs(results, "stopped", "parent")
    assert "RUNNING" not in {r.info.status for r in children} and parent.info.status == "KILLED"
    assert parent.data.tags["ssl_vqvae.interrupted"].endswith("trials finished; continue with `--resume`")
    assert all("interrupted" in r.data.tags["error"] for r in children if r.info.status == "KILLED")
    assert "**interrupted: " in (results / "stopped" / "summary.md").read_text()

    resumed = cli(results, "--name", "stopped", "--resume", timeout=600)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    children, (parent,) = runs(results, "stopped", "trial"), runs(results, "stopped", "parent")
    assert len(children) == 3 and {r.info.status for r in children} == {"FINISHED"}     # none lost or repeated
    assert len({r.data.tags["ssl_vqvae.trial_key"] for r in children}) == 3
    assert parent.info.status == "FINISHED" and "ssl_vqvae.interrupted" not in parent.data.tags
    assert not any("error" in r.data.tags for r in children)


def test_resume_is_bound_to_its_study(tmp_path):
    """A flag that contradicts the study's settings and a damaged Tune state are refused in one line."""
    results = tmp_path / "results"
    proc, err = start(results, "bound")
    wait_for_first_checkpoint(proc, err)
    proc.send_signal(signal.SIGINT)
    assert proc.wait(timeout=300) == 130
    for extra, expected in ((["--budget", "quick"], "--budget 'quick' conflicts with the resumed study's recorded "
                                                    "'smoke'"),
                            (["--mlflow-uri", f"sqlite:///{tmp_path / 'other.db'}"], "--mlflow-uri 'sqlite:///")):
        refused = cli(results, "--name", "bound", "--resume", *extra, timeout=120)
        assert refused.returncode == 2 and refused.stderr.strip().startswith("error: " + expected), refused.stderr
        assert "\n" not in refused.stderr.strip()
    state = max((results / "ray_results" / "bound").glob("experiment_state-*.json"), key=os.path.getmtime)
    state.write_text(state.read_text()[:100])            # what a full disk leaves
    refused = cli(results, "--name", "bound", "--resume", timeout=300)
    assert refused.returncode == 2 and "is damaged" in refused.stderr and "\n" not in refused.stderr.strip()
    assert "RUNNING" not in {r.info.status for r in runs(results, "bound", "trial")}

"""Check a finished study in a real browser: start `mlflow ui` on its store, load the runs table, a trial's run
page and the compare view in headless Chromium, check that the readable run names, the dataset input and the
metric values are on the pages, and save screenshots (docs/img/ by default).

With --run-study it first runs a smoke study (GunPoint, Ray token authentication off for the browser) and
screenshots the Ray dashboard's actor list while its trials run.

examples:
  python benchmarks/mlflow_ui_check.py --run-study --results-dir /tmp/ui-check          # study + every check
  python benchmarks/mlflow_ui_check.py --results-dir /tmp/ui-check --study NAME         # an existing study
Needs Chromium (Debian: apt-get install -y chromium). Exit 0 when every check passes, 1 otherwise.
"""
from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import socket
import subprocess
import sys
import time
import urllib.parse
import urllib.request
from pathlib import Path


from results.contract import GIT_COMMIT_TAG, ROLE_TAG, ROLE_TRIAL, TEST_SVM, default_tracking_uri
from tune.study.console import experiment_url

REPO = Path(__file__).resolve().parents[1]
CHROME_FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                "--disable-component-update", "--no-first-run", "--disable-sync", "--disable-dev-shm-usage",
                "--hide-scrollbars", "--virtual-time-budget=30000"]


def chromium() -> str:
    found = next((shutil.which(c) for c in ("chromium", "chromium-browser", "google-chrome") if shutil.which(c)), None)
    if not found:
        sys.exit("error: no Chromium on PATH (Debian: apt-get install -y chromium)")
    return found


def browse(url: str, screenshot: Path | None = None, size: str = "1900,900") -> str:
    """The page's DOM after its scripts ran (and a screenshot when asked)."""
    base = [chromium(), *CHROME_FLAGS, f"--window-size={size}"]
    if screenshot:
        subprocess.run([*base, f"--screenshot={screenshot}", url], capture_output=True, timeout=180)
    return subprocess.run([*base, "--dump-dom", url], capture_output=True, text=True, timeout=180).stdout


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_http(url: str, seconds: float) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(url, timeout=5):
                return
        except OSError:
            time.sleep(1)
    raise TimeoutError(f"{url} did not answer in {seconds:.0f} s")


def alive_trials(dashboard: str) -> list[str]:
    """The reprs of the dashboard's live trial actors (State API)."""
    from ray.util.state import list_actors

    try:
        actors = list_actors(address=dashboard, detail=True, filters=[("state", "=", "ALIVE")])
    except Exception:      # noqa: BLE001 - the API server is still starting
        return []
    return [a.repr_name for a in actors if a.class_name == "Stage1Trial" and a.repr_name]


def run_study(results: Path, img: Path, checks: dict[str, bool]) -> str:
    """A smoke study on GunPoint; the dashboard's actor list is screenshot while its trials run."""
    env = {**os.environ, "RAY_AUTH_MODE": "disabled", "MLFLOW_DISABLE_TELEMETRY": "true",
           "RAY_USAGE_STATS_ENABLED": "0", "PYTHONUNBUFFERED": "1"}
    log = results / "study.log"
    results.mkdir(parents=True, exist_ok=True)
    with log.open("w") as out:
        proc = subprocess.Popen([sys.executable, str(REPO / "tune/run_ablation.py"), "--space", "aug_weight",
                                 "--budget", "smoke", "--datasets", "GunPoint", "--results-dir", str(results)],
                                cwd=REPO, env=env, stdout=out, stderr=subprocess.STDOUT)
        shot = False
        while proc.poll() is None:
            text = log.read_text()
            dashboard = re.search(r"Ray dashboard: (http://\S+)", text)
            if dashboard and not shot and alive_trials(dashboard.group(1)):
                dom = browse(f"{dashboard.group(1)}/#/actors", img / "ray_actors.png", size="1900,700")
                shot = True
                checks["ray dashboard: trial actors named by dataset, configuration, seed"] = \
                    "Stage1Trial" in dom and "GunPoint" in dom and " s0 (trial " in dom
            time.sleep(1)
    text = log.read_text()
    name = re.search(r"^Study (\S+):", text, re.M)
    if proc.returncode != 0 or not name:
        sys.exit(f"error: the smoke study failed (exit {proc.returncode}); see {log}")
    return name.group(1)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--results-dir", required=True, help="the study's --results-dir (its MLflow store is there)")
    p.add_argument("--study", help="study name (default: the latest experiment in the store)")
    p.add_argument("--run-study", action="store_true", help="run a smoke study first (and screenshot the dashboard)")
    p.add_argument("--img", default=str(REPO / "docs" / "img"), help="where the screenshots go (default docs/img)")
    args = p.parse_args(argv)
    results, img = Path(args.results_dir).resolve(), Path(args.img)
    img.mkdir(parents=True, exist_ok=True)
    checks: dict[str, bool] = {}
    study = run_study(results, img, checks) if args.run_study else args.study
    uri = default_tracking_uri(results)

    from mlflow.tracking import MlflowClient

    client = MlflowClient(uri)
    exps = [e for e in client.search_experiments() if e.name != "Default"]
    exp = next(e for e in exps if e.name == study) if study else max(exps, key=lambda e: e.creation_time)
    trials = client.search_runs([exp.experiment_id], f"tags.`{ROLE_TAG}` = '{ROLE_TRIAL}'")
    trial = next(r for r in trials if r.data.tags.get("ssl_method") != "none")
    port = free_port()
    env = {**os.environ, "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false", "MLFLOW_DISABLE_TELEMETRY": "true"}
    server = subprocess.Popen([sys.executable, "-m", "mlflow", "ui", "--backend-store-uri", uri, "--host", "127.0.0.1",
                               "--port", str(port), "--workers", "1"], env=env, stdout=subprocess.DEVNULL,
                              stderr=subprocess.DEVNULL)
    try:
        base = f"http://127.0.0.1:{port}"
        wait_http(f"{base}/health", 120)
        q = urllib.parse.quote
        trial_filter = q(f"tags.`{ROLE_TAG}` = '{ROLE_TRIAL}'")       # a filter lists the nested trial runs flat
        table = (f"{experiment_url(base, exp.experiment_id)}&searchFilter={trial_filter}"
                 f"&orderByKey={q('metrics.`val/svm_acc`')}&orderByAsc=false")
        dom = browse(table, img / "mlflow_runs.png")
        names = {r.info.run_name for r in trials}
        checks["runs table: every trial's readable name"] = all(n in dom for n in names)
        ds = trial.inputs.dataset_inputs[0].dataset
        checks[f"runs table: dataset input {ds.name} ({ds.digest})"] = f"{ds.name} ({ds.digest})" in dom
        landing = browse(experiment_url(base, exp.experiment_id))
        checks["the printed experiment URL opens on its runs table"] = "matching runs" in landing
        run_url = f"{base}/#/experiments/{exp.experiment_id}/runs/{trial.info.run_id}?workflowType=machine_learning"
        page = browse(run_url, img / "mlflow_run.png", size="1900,1100")
        checks[f"run page: name {trial.info.run_name}"] = trial.info.run_name in page
        value = trial.data.metrics[TEST_SVM]
        checks[f"run page: {TEST_SVM} = {value:.4g}"] = TEST_SVM in page and f"{value:.3f}" in page
        checks["run page: git commit"] = trial.data.tags.get(GIT_COMMIT_TAG, "?")[:7] in page
        ids = json.dumps([r.info.run_id for r in trials])
        compare = browse(f"{base}/#/compare-runs?runs={q(ids)}&experiments={q(json.dumps([exp.experiment_id]))}",
                         img / "mlflow_compare.png", size="1900,1300")
        checks["compare view: every trial"] = all(n in compare for n in names)
    finally:
        server.terminate()
        server.wait(timeout=30)
    for what, ok in checks.items():
        print(f"{'ok  ' if ok else 'FAIL'} {what}")
    print(f"screenshots: {img}")
    return 0 if all(checks.values()) else 1


if __name__ == "__main__":
    sys.exit(main())

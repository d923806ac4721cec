"""A study on a real two-node Ray cluster with a real MLflow tracking server, as on a cluster:

`ray start --head` (1 CPU) and a second `ray start --address` node (1 CPU) on this machine, both with
Ray's default token authentication, and `mlflow server` on 127.0.0.1; the study joins with --address and
--mlflow-uri http://... . Everything started here is stopped by process id, also when the test fails.
"""
from __future__ import annotations

import json
import re
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

import pytest
from mlflow.tracking import MlflowClient

from study_helpers import CLI, CONTRACT, REPO, study_env

pytestmark = pytest.mark.slow
BIN = Path(sys.executable).parent


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def node_ip() -> str:
    """The address Ray advertises for this machine (it resolves 127.0.0.1 to it)."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        try:
            s.connect(("192.0.2.1", 9))      # TEST-NET: no packet is sent, it only picks the outgoing interface
            return s.getsockname()[0]
        except OSError:
            return "127.0.0.1"


def cluster_cpus(ip: str, port: int, env: dict) -> float:
    """CPUs of the cluster's registered nodes, from `ray status` (each node here has one)."""
    out = subprocess.run([str(BIN / "ray"), "status", "--address", f"{ip}:{port}"], env={**env, "RAY_AUTH_MODE": "token"},
                         capture_output=True, text=True, timeout=60).stdout
    match = re.search(r"/(\d+(?:\.\d+)?) CPU", out)
    return float(match.group(1)) if match else 0.0


def wait_for(check, what: str, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if check():
                return
        except (OSError, subprocess.TimeoutExpired):
            pass
        time.sleep(1)
    raise TimeoutError(f"{what} did not come up in {timeout:.0f} s")


def stop(procs: list[subprocess.Popen]) -> None:
    """SIGTERM to each `--block` parent (it drains its node), then SIGKILL whatever is left of its group."""
    for p in reversed(procs):
        if p.poll() is None:
            p.send_signal(signal.SIGTERM)
    for p in reversed(procs):
        try:
            p.wait(timeout=30)
        except subprocess.TimeoutExpired:
            pass
        try:
            os.killpg(p.pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass


@pytest.fixture
def cluster(tmp_path):
    """(ray address, mlflow uri, artifacts folder) of a 2-node cluster and a tracking server on this machine."""
    temp = Path(tempfile.mkdtemp(prefix="rmn", dir="/tmp"))      # short: Ray's socket paths must fit 107 bytes
    env = {k: v for k, v in study_env().items() if k != "RAY_AUTH_MODE"}
    port, dash, mlflow_port = free_port(), free_port(), free_port()
    ip = node_ip()
    procs = []
    logs = (tmp_path / "head.log").open("w"), (tmp_path / "worker.log").open("w"), (tmp_path / "mlflow.log").open("w")

    def launch(args, log, extra_env=None):
        procs.append(subprocess.Popen(args, env={**env, **(extra_env or {})}, stdout=log, stderr=subprocess.STDOUT,
                                      start_new_session=True))

    # a fresh machine has no token yet and `ray start --head` does not write one: the joining node needs it
    subprocess.run([str(BIN / "ray"), "get-auth-token", "--generate"], env=env, capture_output=True, check=True)
    try:
        launch([str(BIN / "ray"), "start", "--head", "--block", "--port", str(port), "--num-cpus", "1",
                "--temp-dir", str(temp), "--dashboard-host", "127.0.0.1", "--dashboard-port", str(dash),
                "--resources", json.dumps({"head_node": 1})], logs[0])
        wait_for(lambda: socket.create_connection((ip, port), timeout=2).close() is None, "the Ray head")
        time.sleep(3)
        launch([str(BIN / "ray"), "start", "--block", "--address", f"{ip}:{port}", "--num-cpus", "1",
                "--resources", json.dumps({"worker_node": 1})], logs[1], {"RAY_AUTH_MODE": "token"})
        # the study must not start before the second node has joined, or a loaded machine runs it on the head alone
        wait_for(lambda: cluster_cpus(ip, port, env) == 2, "the second Ray node")
        artifacts = tmp_path / "mlartifacts"
        launch([str(BIN / "mlflow"), "server", "--backend-store-uri", f"sqlite:///{tmp_path / 'mlflow.db'}",
                "--artifacts-destination", artifacts.as_uri(), "--host", "127.0.0.1", "--port", str(mlflow_port),
                "--workers", "1"], logs[2], {"MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"})
        uri = f"http://127.0.0.1:{mlflow_port}"
        wait_for(lambda: urllib.request.urlopen(f"{uri}/health", timeout=2).status == 200, "mlflow server")
        yield f"{ip}:{port}", uri, artifacts
    finally:
        stop(procs)
        for log in logs:
            log.close()


def test_study_on_two_nodes_with_a_tracking_server(tmp_path, cluster):
    address, uri, artifacts = cluster
    env = {k: v for k, v in study_env().items() if k != "RAY_AUTH_MODE"}   # the study finds the token itself
    proc = subprocess.run([sys.executable, str(CLI), "--results-dir", str(tmp_path / "results"), "--no-report",
                           "--space", "aug_weight", "--budget", "smoke", "--set", "proj_dim=64", "--datasets",
                           "GunPoint,ItalyPowerDemand", "--num-samples", "1", "--methods", "vibcreg",
                           "--stage2", "off", "--name", "cluster",
                           "--address", address, "--mlflow-uri", uri],
                          cwd=REPO, env=env, capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stderr[-4000:]

    client = MlflowClient(uri)
    exp = client.get_experiment_by_name("cluster")
    found = client.search_runs([exp.experiment_id], max_results=100)
    parents = [r for r in found if r.data.tags.get("ssl_vqvae.role") == "parent"]
    children = [r for r in found if r.data.tags.get("ssl_vqvae.role") == "trial"]
    assert len(parents) == 2 and len(children) == 6          # (baseline + vibcreg/warp + vibcreg/slice) x 2
    assert {r.info.status for r in children} == {"FINISHED"}
    for r in children:
        assert r.data.tags["mlflow.parentRunId"] in {p.info.run_id for p in parents}
        assert CONTRACT <= r.data.metrics.keys(), CONTRACT - r.data.metrics.keys()
    nodes = {r.data.tags["ray.node_id"] for r in children}
    assert len(nodes) == 2, f"trials ran on {len(nodes)} node(s)"

    # artifacts went through the server (mlflow-artifacts:/) and are readable through it
    run = children[0]
    assert run.info.artifact_uri.startswith("mlflow-artifacts:")
    listed = {a.path for a in client.list_artifacts(run.info.run_id)}
    assert {"config.json", "plots", "checkpoint"} <= listed
    local = client.download_artifacts(run.info.run_id, "config.json", str(tmp_path))
    assert json.loads(Path(local).read_text())["dataset"] == run.data.params["dataset"]
    assert any(artifacts.rglob("tokenizer.pt"))     # stored by the server, not by the trial's node

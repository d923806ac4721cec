"""The whole-archive study, simulated, on a multi-node local Ray cluster: does anything grow faster than
the number of trials?

    python -m benchmarks.archive_scale --sizes 500,1000,2000,6500 --nodes 4 --cpus-per-node 8 \
        --store postgres --out docs/archive_scale.json

Starts `ray start --head` and NODES-1 `ray start --address` nodes on this machine (logical CPUs: what
the trials may hold at once), a tracking store (a SQLite file, or `mlflow server` on a private
PostgreSQL, tune.tracking_server), then per size runs `tune/run_ablation.py --space aug_weight --grid
--seeds 3 --simulate SCALE --address ... --mlflow-uri ...` on the first datasets of the archive
(51 trials per dataset) and reads back:
  trials/s          trials started per second (first to last MLflow run start)
  driver CPU s/trial  the study process's user+sys CPU seconds over its trials (its rusage)
  driver peak MB      its peak resident memory
  to final (s)      median seconds from a trial's last metric to its MLflow run ending (the final flush)
  MLflow s/trial    median seconds a trial spent in MLflow calls (time/mlflow_s)
  read / summary / report (s)   the driver's phases after the search, from its console
With --faults the smallest size runs twice more: once with a worker node killed (SIGKILL of its `ray
start`, its raylet and workers) at half its trials, once with the driver killed (SIGKILL) at half and
then `--resume`d; each counts its trial runs (every planned one exactly once, none RUNNING) and compares
each dataset's selected configuration (the parents' best_ssl tags) with the uninterrupted study's.
"""
from __future__ import annotations

import argparse
import contextlib
import json
import os
import re
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from mlflow import MlflowClient

from results.contract import BEST_SSL_PREFIX, KEY_TAG, MLFLOW_S, ROLE_PARENT, ROLE_TAG, ROLE_TRIAL
from tune.tracking_server import free_port, mlflow_server, postgres

REPO = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
PER_DATASET = 51            # aug_weight grid: (4 weights x 2 sets x 2 methods + baseline) x 3 seeds


def node_ip() -> str:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        try:
            s.connect(("192.0.2.1", 9))
            return s.getsockname()[0]
        except OSError:
            return "127.0.0.1"


def env() -> dict:
    return {**{k: v for k, v in os.environ.items() if k != "RAY_AUTH_MODE"}, "MLFLOW_DISABLE_TELEMETRY": "true",
            "RAY_USAGE_STATS_ENABLED": "0", "PYTHONUNBUFFERED": "1"}


@contextlib.contextmanager
def ray_cluster(nodes: int, cpus: int, logs: Path):
    """A head and nodes-1 worker nodes, `cpus` logical CPUs each -> (address, [worker node processes])."""
    temp = Path(tempfile.mkdtemp(prefix="rsc", dir="/tmp"))
    ip, port = node_ip(), free_port()
    procs = []

    def launch(args, name, extra=None):
        log = (logs / f"{name}.log").open("w")
        procs.append(subprocess.Popen([str(BIN / "ray"), "start", "--block", *args], env={**env(), **(extra or {})},
                                      stdout=log, stderr=subprocess.STDOUT, start_new_session=True))
        return procs[-1]

    # a fresh machine has no token yet and `ray start --head` does not write one: the joining nodes need it
    subprocess.run([str(BIN / "ray"), "get-auth-token", "--generate"], env=env(), capture_output=True, check=True)
    try:
        launch(["--head", "--port", str(port), "--num-cpus", str(cpus), "--temp-dir", str(temp),
                "--dashboard-host", "127.0.0.1", "--dashboard-port", str(free_port())], "head")
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            with contextlib.suppress(OSError):
                socket.create_connection((ip, port), timeout=2).close()
                break
            time.sleep(1)
        time.sleep(3)
        workers = []
        for i in range(1, nodes):    # one at a time, each retried once: a loaded machine times a raylet out
            for attempt in range(2):
                node = launch(["--address", f"{ip}:{port}", "--num-cpus", str(cpus)], f"node{i}-{attempt}",
                              {"RAY_AUTH_MODE": "token"})
                if _wait_cpus(ip, port, (i + 1) * cpus, node):
                    workers.append(node)
                    break
            else:
                raise TimeoutError(f"node {i} did not join the cluster; see {logs}/node{i}-*.log")
        yield f"{ip}:{port}", workers
    finally:
        for p in reversed(procs):
            if p.poll() is None:
                p.send_signal(signal.SIGTERM)
        for p in reversed(procs):
            with contextlib.suppress(subprocess.TimeoutExpired):
                p.wait(timeout=30)
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(p.pid, signal.SIGKILL)


def _wait_cpus(ip: str, port: int, want: int, node: subprocess.Popen, timeout: float = 180) -> bool:
    """Whether the cluster reaches `want` CPUs before `node` exits or the timeout."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and node.poll() is None:
        with contextlib.suppress(subprocess.TimeoutExpired):
            out = subprocess.run([str(BIN / "ray"), "status", "--address", f"{ip}:{port}"], capture_output=True,
                                 text=True, env={**env(), "RAY_AUTH_MODE": "token"}, timeout=60).stdout
            found = re.search(r"/(\d+(?:\.\d+)?) CPU", out)
            if found and float(found.group(1)) >= want:
                return True
        time.sleep(2)
    return False


@contextlib.contextmanager
def tracking_store(kind: str, folder: Path):
    if kind == "sqlite":
        yield f"sqlite:///{folder / 'mlflow.db'}"
        return
    with postgres(folder / "db") as db, mlflow_server(db, (folder / "mlartifacts").as_uri(), workers=4,
                                                       log=folder / "mlflow-server.log") as uri:
        yield uri


def archive_names(count: int) -> list[str]:
    from datasets.ucr import archive_summary

    return list(archive_summary()["Name"])[:count]


def run_study(args, address: str, uri: str, folder: Path, name: str, datasets: list[str], extra=(),
              kill_after: tuple[int, callable] | None = None) -> dict:
    """One study in a subprocess -> its exit code, wall seconds, CPU seconds, peak MB and console phases.
    kill_after (n, action): action(proc) once n trial lines were printed."""
    cmd = [sys.executable, str(REPO / "tune/run_ablation.py"), "--space", "aug_weight", "--grid", "--seeds", "3",
           "--datasets", ",".join(datasets), "--simulate", str(args.scale), "--address", address, "--mlflow-uri", uri,
           "--results-dir", str(folder), "--name", name, "--cpus-per-trial", str(args.cpus_per_trial), *extra]
    started = time.monotonic()
    proc = subprocess.Popen(cmd, cwd=REPO, env=env(), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    out, done = [], 0
    for line in proc.stdout:
        out.append(line)
        if re.match(r"\[\d+/\d+\]", line):
            done += 1
            if kill_after and done == kill_after[0]:
                kill_after[1](proc)
                kill_after = None
    _, status, usage = os.wait4(proc.pid, 0)
    proc.returncode = os.waitstatus_to_exitcode(status)
    text = "".join(out)
    (folder / f"{name}.console.txt").write_text(text)
    phases = {what: float(n) * (60 if unit == "min" else 1) for what, n, unit in re.findall(
        r"^(reading|summary|report)[^\n]*\.\.\.\n(?:.*\n)*?  done in ([\d.]+) (s|min)", text, re.M)}
    return {"exit": proc.returncode, "wall_s": time.monotonic() - started, "cpu_s": usage.ru_utime + usage.ru_stime,
            "peak_mb": usage.ru_maxrss / 1024, "phases": phases, "tail": text[-600:]}


def store_counts(uri: str, name: str) -> dict:
    """From the store: trials started per second, time to final, MLflow seconds, and duplicates."""
    import numpy as np

    client = MlflowClient(uri)
    exp = client.get_experiment_by_name(name)
    runs, token = [], None
    while True:
        page = client.search_runs([exp.experiment_id], f"tags.`{ROLE_TAG}` = '{ROLE_TRIAL}'", max_results=5000,
                                  page_token=token)
        runs += list(page)
        token = page.token
        if not token:
            break
    starts = sorted(r.info.start_time for r in runs)
    keys = [r.data.tags.get(KEY_TAG) for r in runs]
    final = [(r.info.end_time - max(m.timestamp for m in client.get_metric_history(r.info.run_id, MLFLOW_S))) / 1000
             for r in runs[:: max(1, len(runs) // 50)] if r.info.end_time]       # a sample of 50: one query each
    mlflow_s = [r.data.metrics[MLFLOW_S] for r in runs if MLFLOW_S in r.data.metrics]
    return {"runs": len(runs), "finished": sum(r.info.status == "FINISHED" for r in runs),
            "running": sum(r.info.status == "RUNNING" for r in runs), "duplicates": len(keys) - len(set(keys)),
            "trials_per_s": (len(starts) - 1) / max(1e-9, (starts[-1] - starts[0]) / 1000) if len(starts) > 1 else 0.0,
            "to_final_s": float(np.median(final)) if final else float("nan"),
            "mlflow_s_per_trial": float(np.median(mlflow_s)) if mlflow_s else float("nan")}


def measure(args, uri: str, name: str, datasets: list[str], result: dict, reference: dict | None = None) -> dict:
    row = {"study": name, "trials": len(datasets) * PER_DATASET, "datasets": len(datasets), **result,
           **store_counts(uri, name)}
    row["driver_cpu_s_per_trial"] = row["cpu_s"] / row["trials"]
    row["extra"] = row["runs"] - row["trials"]          # runs beyond the plan (lost ones: negative)
    if reference is not None:
        row["same_answer"] = answers(uri, name) == reference
    print(json.dumps({k: v for k, v in row.items() if k != "tail"}), flush=True)
    return row


def answers(uri: str, name: str) -> dict[str, dict[str, str]]:
    """Per dataset, the study's answer: its parent run's best_ssl tags (the selected configuration)."""
    client = MlflowClient(uri)
    exp = client.get_experiment_by_name(name)
    parents = client.search_runs([exp.experiment_id], f"tags.`{ROLE_TAG}` = '{ROLE_PARENT}'", max_results=1000)
    return {r.data.tags["dataset"]: {k: v for k, v in r.data.tags.items() if k.startswith(BEST_SSL_PREFIX + ".")}
            for r in parents}


def fault_rows(args, address: str, workers: list, uri: str, work: Path, datasets: list[str], reference: dict) -> list:
    """The smallest study again with a worker node killed at half its trials, and with the driver killed at
    half and then resumed: each must run every trial once and give the reference's answer."""
    size = len(datasets) * PER_DATASET
    half, rows = size // 2, []
    name = f"node-lost-{size}"
    result = run_study(args, address, uri, work, name, datasets,
                       kill_after=(half, lambda proc: os.killpg(workers[-1].pid, signal.SIGKILL)))
    rows.append(measure(args, uri, name, datasets, result, reference))
    name = f"driver-killed-{size}"
    killed = run_study(args, address, uri, work, name, datasets, kill_after=(half, lambda proc: proc.kill()))
    resumed = run_study(args, address, uri, work, name, datasets, extra=["--resume"])
    rows.append(measure(args, uri, name, datasets, {**resumed, "killed_exit": killed["exit"],
                                                    "cpu_s": killed["cpu_s"] + resumed["cpu_s"]}, reference))
    return rows


def main() -> None:
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))     # stop the cluster and the store on a kill too
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--sizes", default="500,1000,2000", help="trials per study, rounded to whole datasets (51 each)")
    p.add_argument("--nodes", type=int, default=4)
    p.add_argument("--cpus-per-node", type=int, default=8)
    p.add_argument("--cpus-per-trial", type=float, default=1.0)
    p.add_argument("--scale", type=float, default=0.01, help="--simulate's scale (default %(default)s)")
    p.add_argument("--store", default="postgres", choices=["sqlite", "postgres"])
    p.add_argument("--faults", action="store_true", help="then the smallest size with a node killed, and with the "
                                                          "driver killed and resumed")
    p.add_argument("--work", help="folder for the stores and logs (default: a temporary one)")
    p.add_argument("--out", help="write the rows as JSON here")
    args = p.parse_args()
    work = Path(args.work or tempfile.mkdtemp(prefix="archive-scale-"))
    work.mkdir(parents=True, exist_ok=True)
    sizes = [int(s) for s in args.sizes.split(",")]
    rows = []
    with ray_cluster(args.nodes, args.cpus_per_node, work) as (address, workers), tracking_store(args.store, work) as uri:
        print(f"cluster {address} ({args.nodes} nodes x {args.cpus_per_node} CPUs), store {uri}", flush=True)
        for size in sizes:
            datasets = archive_names(max(1, round(size / PER_DATASET)))
            name = f"scale-{len(datasets) * PER_DATASET}"
            rows.append(measure(args, uri, name, datasets, run_study(args, address, uri, work, name, datasets)))
        if args.faults:       # last: the lost node does not come back
            datasets = archive_names(max(1, round(sizes[0] / PER_DATASET)))
            rows += fault_rows(args, address, workers, uri, work, datasets,
                               answers(uri, f"scale-{len(datasets) * PER_DATASET}"))
    if args.out:
        Path(args.out).write_text(json.dumps(rows, indent=2))
    print("| study | trials | datasets | exit | wall min | trials/s | driver CPU s/trial | driver peak MB | to final s | "
          "MLflow s/trial | read s | summary s | report s | runs | extra | duplicates | RUNNING | same answer |")
    print("|" + "---|" * 18)
    for r in rows:
        ph = r["phases"]
        print(f"| {r['study']} | {r['trials']} | {r['datasets']} | {r.get('killed_exit', '')} {r['exit']} | {r['wall_s'] / 60:.1f} | {r['trials_per_s']:.2f} | "
              f"{r['driver_cpu_s_per_trial']:.3f} | {r['peak_mb']:.0f} | {r['to_final_s']:.2f} | "
              f"{r['mlflow_s_per_trial']:.2f} | {ph.get('reading', float('nan')):.0f} | "
              f"{ph.get('summary', float('nan')):.0f} | {ph.get('report', float('nan')):.0f} | {r['runs']} | {r['extra']} | "
              f"{r['duplicates']} | {r['running']} | {r.get('same_answer', '')} |")


if __name__ == "__main__":
    main()

"""Faults during a study, each on a smoke study (GunPoint, 3 trials of 10 epochs) in a temp folder, as a
Markdown table: case, exit code, stderr lines, runs left RUNNING, trials lost / duplicated (after the
resume, where the case resumes). docs/faults.md holds its output.

    python benchmarks/fault_cases.py [--only NAME,...] [--list]

A case that resumes reports both exits ("130 -> 0"). Needs ~2 min per study on 2 cores; the MLflow
server cases start `mlflow server` on a free local port; the disk cases mount a small tmpfs as the
results folder (and chattr), so they need root (elsewhere they fail at the mount, and say so in their row).
"""
from __future__ import annotations

import argparse
import contextlib
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
PY = sys.executable
SMOKE = ["--space", "aug_weight", "--budget", "smoke", "--datasets", "GunPoint", "--set", "epochs=10", "--no-report"]
PLANNED = 5          # the smoke budget's baseline and one configuration per (method, set) cell


def env(**extra) -> dict:
    return {**os.environ, "PYTHONPATH": str(REPO), "MLFLOW_DISABLE_TELEMETRY": "true",
            "RAY_USAGE_STATS_ENABLED": "0", "PYTHONUNBUFFERED": "1", **extra}


class Study:
    def __init__(self, root: Path, name: str, uri: str | None = None, **environ):
        self.root, self.name, self.results = root, name, root / "results"
        self.uri = uri or f"sqlite:///{self.results / 'mlflow.db'}"
        self.env = env(**environ)
        self.err_lines = 0

    def args(self, *extra) -> list[str]:
        uri = [] if self.uri.startswith("sqlite") else ["--mlflow-uri", self.uri]
        return [PY, str(REPO / "tune" / "run_ablation.py"), "--results-dir", str(self.results), "--name", self.name,
                *uri, *extra]

    def run(self, *extra, timeout=900) -> int:
        proc = subprocess.run(self.args(*extra), cwd=REPO, env=self.env, capture_output=True, text=True,
                              timeout=timeout)
        self.err_lines, self.last = _lines(proc.stderr), _last(proc.stderr)
        return proc.returncode

    def start(self, *extra):
        self.err_file = open(self.root / f"{self.name}.err", "w+")
        self.out_path = self.root / f"{self.name}.out"
        return subprocess.Popen(self.args(*extra), cwd=REPO, env=self.env, stdout=open(self.out_path, "w"),
                                stderr=self.err_file, text=True, start_new_session=True)

    def wait_checkpoint(self, proc, timeout=400) -> None:
        """Until the console's first trial line (a trial ended, so it checkpointed): Ray no longer logs
        its checkpoints by default, so the console is the signal."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and proc.poll() is None:
            if any(line.startswith("[") and "/" in line.split("]")[0] for line in self.out_path.read_text().splitlines()):
                return
            time.sleep(0.5)
        raise RuntimeError(f"no trial ended within {timeout} s (exit {proc.poll()}): the fault would come too late")

    def finish(self, proc, timeout=900) -> int:
        code = proc.wait(timeout=timeout)
        self.err_file.seek(0)
        text = self.err_file.read()
        self.err_lines, self.last = _lines(text), _last(text)
        return code

    def counts(self) -> tuple[int | str, int | str, int | str]:
        """(runs RUNNING, trials lost, trials duplicated) in the study's store."""
        from mlflow.tracking import MlflowClient

        from results.contract import KEY_TAG, ROLE_TAG, ROLE_TRIAL

        if self.uri.startswith("sqlite") and not (self.results / "mlflow.db").exists():
            return "-", "-", "-"
        try:
            client = MlflowClient(self.uri)
            exp = client.get_experiment_by_name(self.name)
            if exp is None:
                return "-", "-", "-"
            runs = client.search_runs([exp.experiment_id], max_results=1000)
        except Exception as err:  # noqa: BLE001 - a store that is gone is a row of the table
            return f"? ({type(err).__name__})", "?", "?"
        trials = [r for r in runs if r.data.tags.get(ROLE_TAG) == ROLE_TRIAL]
        keys = [r.data.tags.get(KEY_TAG) for r in trials]
        done = {k for r, k in zip(trials, keys) if r.info.status == "FINISHED"}
        return (sum(r.info.status == "RUNNING" for r in runs), PLANNED - len(done), len(keys) - len(set(keys)))


def _lines(text: str) -> int:
    return sum(1 for ln in text.splitlines() if ln.strip())


def _last(text: str) -> str:
    lines = [ln for ln in text.splitlines() if ln.strip()]
    return lines[-1][:160] if lines else ""


def signal_case(root, sig, group):
    s = Study(root, "sig")
    proc = s.start(*SMOKE)
    s.wait_checkpoint(proc)
    (os.killpg if group else os.kill)(proc.pid, sig)
    first = s.finish(proc)
    stopped = (s.err_lines, s.counts()[0], s.last)
    second = s.run("--resume")
    return f"{first} -> {second}", f"{stopped[0]} -> {s.err_lines}", f"{stopped[1]} -> {s.counts()[0]}", s, stopped[2]


def case_sigint(root):
    """Ctrl-C (SIGINT to the process group) after the first checkpoint, then --resume."""
    return signal_case(root, signal.SIGINT, group=True)


def case_sigterm(root):
    """SIGTERM to the driver after the first checkpoint, then --resume."""
    return signal_case(root, signal.SIGTERM, group=False)


def case_cpus(root):
    """--cpus-per-trial more than any node has."""
    s = Study(root, "cpus")
    return s.run(*SMOKE, "--cpus-per-trial", str((os.cpu_count() or 1) + 1)), s.err_lines, None, s, s.last


def case_undefined_objective(root):
    """A dataset whose classes have one training series each (Fungi's shape)."""
    archive = root / "ucr" / "Fungi"
    archive.mkdir(parents=True)
    rng = np.random.default_rng(0)
    for split, n in (("TRAIN", 18), ("TEST", 186)):
        np.savetxt(archive / f"Fungi_{split}.tsv", np.column_stack([np.arange(n) % 18 + 1, rng.normal(size=(n, 201))]),
                   fmt="%.6g", delimiter="\t")
    s = Study(root, "fungi")
    code = s.run("--space", "aug_weight", "--budget", "smoke", "--datasets", "Fungi", "--ucr-root", str(root / "ucr"))
    return code, s.err_lines, None, s, s.last


def interrupted(root, name) -> Study:
    """A smoke study stopped by SIGINT after its first checkpoint."""
    s = Study(root, name)
    proc = s.start(*SMOKE)
    s.wait_checkpoint(proc)
    os.kill(proc.pid, signal.SIGINT)
    s.finish(proc)
    return s


def case_resume_conflict(root):
    """Interrupted, then --resume --budget quick (the study's is smoke)."""
    s = interrupted(root, "conflict")
    return s.run("--resume", "--budget", "quick"), s.err_lines, None, s, s.last


def case_truncated_state(root):
    """Interrupted, the Tune experiment state truncated (what a full disk leaves), then --resume."""
    s = interrupted(root, "truncated")
    state = max((s.results / "ray_results" / s.name).glob("experiment_state-*.json"), key=os.path.getmtime)
    state.write_text(state.read_text()[:100])
    return s.run("--resume"), s.err_lines, None, s, s.last


def case_store_deleted(root):
    """The SQLite store deleted after the first checkpoint (MLflow recreates it empty)."""
    s = Study(root, "deleted")
    proc = s.start(*SMOKE)
    s.wait_checkpoint(proc)
    (s.results / "mlflow.db").unlink()
    code = s.finish(proc)
    return code, s.err_lines, None, s, s.last


def _server(root: Path, port: int):
    return subprocess.Popen([PY, "-m", "mlflow", "server", "--backend-store-uri", f"sqlite:///{root / 'server.db'}",
                             "--artifacts-destination", str(root / "server-artifacts"), "--host", "127.0.0.1",
                             "--port", str(port), "--workers", "1"], env=env(MLFLOW_SERVER_ENABLE_JOB_EXECUTION="false"),
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)


def _ready(port: int, timeout=120) -> None:
    import urllib.request

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=2).read()
            return
        except OSError:
            time.sleep(1)
    raise RuntimeError("mlflow server did not start")


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def outage_case(root, down_s, retry_s, resume=False):
    port = _free_port()
    server = _server(root, port)
    _ready(port)
    s = Study(root, "outage", uri=f"http://127.0.0.1:{port}", SSLVQ_MLFLOW_RETRY_S=str(retry_s))
    proc = s.start(*SMOKE)
    s.wait_checkpoint(proc)
    os.killpg(server.pid, signal.SIGTERM)
    server.wait()
    time.sleep(down_s)
    server = _server(root, port)
    try:
        _ready(port)
        code = s.finish(proc)
        if not resume:
            return code, s.err_lines, None, s, s.last
        stopped = (s.err_lines, s.counts()[0], s.last)
        second = s.run("--resume")
        s.final_counts = s.counts()
        return (f"{code} -> {second}", f"{stopped[0]} -> {s.err_lines}", f"{stopped[1]} -> {s.final_counts[0]}", s,
                stopped[2])
    finally:
        os.killpg(server.pid, signal.SIGTERM)


def case_server_restart(root):
    """The MLflow server stopped for 60 s after the first checkpoint, then started again (retries: 600 s)."""
    return outage_case(root, 60, 600)


def case_server_away(root):
    """The MLflow server stopped for longer than the retry window (SSLVQ_MLFLOW_RETRY_S=20), then started
    again and --resume."""
    return outage_case(root, 90, 20, resume=True)


@contextlib.contextmanager
def small_disk(path: Path, size: str = "400M"):
    """A tmpfs mounted at `path` (needs root): a results disk this case can fill."""
    path.mkdir(parents=True, exist_ok=True)
    subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(path)], check=True,
                   capture_output=True)
    try:
        yield path
    finally:
        subprocess.run(["umount", "-l", str(path)], capture_output=True)


def fill(folder: Path) -> None:
    """Write zeros into `folder` until its disk is full."""
    with contextlib.suppress(OSError), open(folder / "filler", "wb") as fh:
        while True:
            fh.write(bytes(1 << 20))
            fh.flush()


def disk_case(root, name: str, break_disk, mend_disk):
    """A smoke study whose results disk breaks after the first checkpoint, then is mended and resumed; the
    counts are read before the disk goes away."""
    s = Study(root, name, SSLVQ_MLFLOW_RETRY_S="60")
    with small_disk(s.results):
        proc = s.start(*SMOKE)
        s.wait_checkpoint(proc)
        break_disk(s.results)
        first = s.finish(proc)
        stopped = (s.err_lines, s.counts()[0], s.last)
        mend_disk(s.results)
        second = s.run("--resume")
        s.final_counts = s.counts()
    return f"{first} -> {second}", f"{stopped[0]} -> {s.err_lines}", f"{stopped[1]} -> {s.final_counts[0]}", s, stopped[2]


def case_disk_full(root):
    """The results disk full after the first checkpoint (MLflow retries: 60 s), then space freed and --resume."""
    return disk_case(root, "full", fill, lambda folder: (folder / "filler").unlink())


def case_results_not_writable(root):
    """The results folder made unwritable after the first checkpoint (chattr -R +i: no file in it created or
    opened for writing, what a folder whose permissions changed is to a non-root user; a tmpfs cannot be
    remounted read-only while the store is open), then writable again and --resume."""
    def attribute(flag):
        return lambda folder: subprocess.run(["chattr", "-R", flag, str(folder)], check=True, capture_output=True)
    return disk_case(root, "unwritable", attribute("+i"), attribute("-i"))


def case_train_one_short(root):
    """python -m tune.train_one on series shorter than the STFT window needs."""
    proc = subprocess.run([PY, "-m", "tune.train_one", "--dataset", "GunPoint", "--set", "tokenizer.n_fft=512"],
                          cwd=REPO, env=env(), capture_output=True, text=True)
    return proc.returncode, _lines(proc.stderr), None, None, _last(proc.stderr)


def case_report_escape(root):
    """results/report.py --study ../../x."""
    proc = subprocess.run([PY, str(REPO / "results" / "report.py"), "--study", "../../x", "--results-dir",
                           str(root / "results")], cwd=REPO, env=env(), capture_output=True, text=True)
    return proc.returncode, _lines(proc.stderr), None, None, _last(proc.stderr)


CASES = {name[5:]: fn for name, fn in globals().items() if name.startswith("case_")}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--only", help="comma-separated case names")
    p.add_argument("--list", action="store_true")
    args = p.parse_args()
    if args.list:
        print("\n".join(f"{n}: {fn.__doc__}" for n, fn in CASES.items()))
        return
    names = args.only.split(",") if args.only else list(CASES)
    print("| case | exit | stderr lines | runs RUNNING | trials lost | trials duplicated | last stderr line |")
    print("|---|---|---|---|---|---|---|")
    for name in names:
        with tempfile.TemporaryDirectory(prefix=f"fault-{name}-") as d:
            started = time.monotonic()
            code, lines, running, study, last = CASES[name](Path(d))
            counts = getattr(study, "final_counts", None) or (study.counts() if study else ("-", "-", "-"))
            running = running if running is not None else counts[0]
            print(f"| {name} | {code} | {lines} | {running} | {counts[1]} | {counts[2]} | "
                  f"{last.replace('|', '/')} ({time.monotonic() - started:.0f} s) |", flush=True)


if __name__ == "__main__":
    main()

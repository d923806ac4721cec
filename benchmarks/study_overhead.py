"""What Ray and MLflow cost a study: wall time, time inside trials, overhead share, core utilisation.

    python benchmarks/study_overhead.py [--budget quick] [--datasets bundled] [--json out.json] [-- extra study args]

Runs `tune/run_ablation.py` in a subprocess on a fresh results directory while sampling /proc/stat,
then reads the trials' own timings back from MLflow:
  trial work  = sum over trials of time/trial_s (data, training, evaluation, artifacts) minus time/mlflow_s
  capacity    = wall time x concurrent trial slots (CPUs / cpus per trial)
  overhead    = 1 - trial work / capacity   (Ray start-up and scheduling, MLflow, the driver, idle slots)
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def cpu_times() -> tuple[float, float]:
    fields = [float(v) for v in Path("/proc/stat").read_text().splitlines()[0].split()[1:]]
    idle = fields[3] + fields[4]
    return sum(fields) - idle, sum(fields)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--budget", default="quick")
    p.add_argument("--datasets", default="bundled")
    p.add_argument("--space", default="aug_weight")
    p.add_argument("--cpus-per-trial", type=float, default=1.0)
    p.add_argument("--results-dir", help="default: a fresh temporary directory")
    p.add_argument("--name", default="overhead", help="study name (default %(default)s)")
    p.add_argument("--report", action="store_true", help="also write the results report (off: measure the study alone)")
    p.add_argument("--json")
    p.add_argument("extra", nargs="*", help="more study arguments (after --)")
    args = p.parse_args()
    results = Path(args.results_dir or tempfile.mkdtemp(prefix="overhead-"))
    cmd = [sys.executable, str(REPO / "tune" / "run_ablation.py"), "--space", args.space, "--budget", args.budget,
           "--datasets", args.datasets, "--results-dir", str(results), "--name", args.name,
           "--cpus-per-trial", str(args.cpus_per_trial), *([] if args.report else ["--no-report"]), *args.extra]
    samples: list[float] = []
    done = threading.Event()

    def sample() -> None:
        busy0, total0 = cpu_times()
        while not done.wait(1.0):
            busy1, total1 = cpu_times()
            samples.append((busy1 - busy0) / max(total1 - total0, 1e-9))
            busy0, total0 = busy1, total1

    threading.Thread(target=sample, daemon=True).start()
    start = time.perf_counter()
    proc = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True,
                          env={**os.environ, "MLFLOW_DISABLE_TELEMETRY": "true", "RAY_USAGE_STATS_ENABLED": "0"})
    wall = time.perf_counter() - start
    done.set()
    if proc.returncode:
        sys.exit(f"study failed ({proc.returncode}):\n{proc.stderr[-3000:]}")

    from results.contract import MLFLOW_S, TRAIN_S, TRIAL_S, default_tracking_uri
    from results.runs import load_study

    trials = load_study(args.name, default_tracking_uri(results)).trials
    metric = lambda key: float(trials[key].fillna(0.0).sum()) if key in trials else 0.0
    slots = max(1, int((os.cpu_count() or 1) // args.cpus_per_trial))
    work = metric(TRIAL_S) - metric(MLFLOW_S)
    row = {"budget": args.budget, "datasets": args.datasets, "trials": len(trials), "wall_s": wall, "slots": slots,
           "trial_work_s": work, "train_s": metric(TRAIN_S), "mlflow_s": metric(MLFLOW_S),
           "overhead_share": 1 - work / (wall * slots),
           "cpu_busy": sum(samples) / max(len(samples), 1), "results_dir": str(results)}
    print(f"{'trials':>6s} {'wall s':>8s} {'work s':>8s} {'train s':>8s} {'mlflow s':>8s} {'overhead':>9s} {'cpu busy':>9s}")
    print(f"{row['trials']:6d} {wall:8.1f} {work:8.1f} {row['train_s']:8.1f} {row['mlflow_s']:8.1f} "
          f"{100 * row['overhead_share']:8.1f}% {100 * row['cpu_busy']:8.1f}%")
    if args.json:
        Path(args.json).write_text(json.dumps(row, indent=2))


if __name__ == "__main__":
    main()

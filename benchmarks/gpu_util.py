"""GPU utilisation sampled by `nvidia-smi -lms` in the background, for the benchmarks and benchmarks/gpu_check.sh.

    sampler = GPUSampler(); ...; samples = sampler.stop(); mean_util(samples)

Utilisation is nvidia-smi's "percent of time over the past sample period during which one or more kernels
was executing": a busy GPU by this measure may still run small kernels far below its peak.
"""
from __future__ import annotations

import os
import shutil
import subprocess
from datetime import datetime

QUERY = "timestamp,utilization.gpu,memory.used"
TIME_FORMAT = "%Y/%m/%d %H:%M:%S.%f"


def command(interval_ms: int = 500, gpu: str | None = None) -> list[str]:
    """The nvidia-smi command line that prints `timestamp, utilization %, memory MiB` every interval_ms."""
    select = [f"--id={gpu}"] if gpu else []
    return ["nvidia-smi", *select, f"--query-gpu={QUERY}", "--format=csv,noheader,nounits", "-lms", str(interval_ms)]


def visible_gpu(index: int = 0) -> str | None:
    """nvidia-smi's id of torch's cuda:index (CUDA_VISIBLE_DEVICES renumbers the GPUs torch sees)."""
    visible = [v.strip() for v in os.environ.get("CUDA_VISIBLE_DEVICES", "").split(",") if v.strip()]
    return visible[index] if index < len(visible) else str(index)


def parse(text: str) -> list[tuple[float, float, float]]:
    """nvidia-smi CSV lines -> [(unix time, utilization %, memory MiB)]; unreadable lines are skipped."""
    samples = []
    for line in text.splitlines():
        parts = [p.strip() for p in line.split(",")]
        if len(parts) != 3:
            continue
        try:
            samples.append((datetime.strptime(parts[0], TIME_FORMAT).timestamp(), float(parts[1]), float(parts[2])))
        except ValueError:
            continue
    return samples


def mean_util(samples, start: float | None = None, end: float | None = None) -> float | None:
    """Mean utilisation % of the samples within [start, end] (unix seconds); None without samples."""
    values = [u for t, u, _ in samples if (start is None or t >= start) and (end is None or t <= end)]
    return sum(values) / len(values) if values else None


class GPUSampler:
    """nvidia-smi in the background from construction to stop(); without nvidia-smi it samples nothing."""

    def __init__(self, gpu: str | None = None, interval_ms: int = 500):
        self.proc = None
        if shutil.which("nvidia-smi"):
            self.proc = subprocess.Popen(command(interval_ms, gpu), stdout=subprocess.PIPE,
                                         stderr=subprocess.DEVNULL, text=True)

    def stop(self) -> list[tuple[float, float, float]]:
        if self.proc is None:
            return []
        self.proc.terminate()
        try:
            out, _ = self.proc.communicate(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            out, _ = self.proc.communicate()
        return parse(out)

"""What a local study cluster listens on: starts Ray exactly as the study does and lists the listening
TCP sockets of its processes (address, port, process), then shuts it down.

    python benchmarks/listening_sockets.py
"""
from __future__ import annotations

import os
import subprocess
import time


def listening() -> list[tuple[str, str, str]]:
    """(local address, port, process name) of every listening TCP socket that `ss` attributes to a process."""
    out = subprocess.run(["ss", "-ltnpH"], capture_output=True, text=True, check=True).stdout
    rows = []
    for line in out.splitlines():
        fields = line.split()
        address, _, port = fields[3].rpartition(":")
        process = fields[5].split('"')[1] if len(fields) > 5 and '"' in fields[5] else "?"
        rows.append((address, port, process))
    return rows


def main() -> None:
    import ray

    before = set(listening())
    ray.init(address="local", num_cpus=os.cpu_count(), include_dashboard=True, dashboard_host="127.0.0.1",
             logging_level="WARNING")
    try:
        ray.get([ray.remote(lambda: 1).remote() for _ in range(2)])   # start workers too
        time.sleep(2)
        rows = sorted(set(listening()) - before, key=lambda r: (r[2], r[0], int(r[1])))
    finally:
        ray.shutdown()
    print(f"{'address':>16}  {'port':>6}  process")
    for address, port, process in rows:
        print(f"{address:>16}  {port:>6}  {process}")
    loopback = sum(a in ("127.0.0.1", "[::1]") for a, _, _ in rows)
    print(f"\n{len(rows)} listening sockets: {loopback} on the loopback, {len(rows) - loopback} on other or all interfaces")


if __name__ == "__main__":
    main()

"""Resources a trial asks for, checked against what one node can give before any trial starts: Tune
would otherwise keep an impossible trial PENDING for ever."""
from __future__ import annotations

from results.errors import UsageError


def check_node_resources(nodes: list[dict], cpus: float, gpus: float, where: str = "the Ray cluster") -> None:
    """nodes: each node's resources ({"CPU": 2.0, "GPU": 1.0, ...}); a trial runs on one node, so some node
    must hold its CPUs and GPUs together."""
    if any(n.get("CPU", 0) >= cpus and n.get("GPU", 0) >= gpus for n in nodes):
        return
    most_cpu = max((n.get("CPU", 0) for n in nodes), default=0)
    most_gpu = max((n.get("GPU", 0) for n in nodes), default=0)
    asked = f"--cpus-per-trial {cpus:g}" + (f" --gpus-per-trial {gpus:g}" if gpus else "")
    raise UsageError(f"{asked} but no node of {where} has that much (at most {most_cpu:g} CPUs"
                     + (f" and {most_gpu:g} GPUs" if gpus else "") + " on one node); lower the request or add a "
                     "larger node")


def ray_node_resources() -> list[dict]:
    """Per alive node of the connected Ray cluster, its total resources (ray.nodes(), public API)."""
    import ray

    return [dict(n.get("Resources", {})) for n in ray.nodes() if n.get("Alive")]

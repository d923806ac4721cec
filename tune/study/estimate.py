"""--dry-run's estimate of a study's wall time: start-up, the trials, the yardsticks, stage 2 and the report.

Costs are seconds on one core of a quiet 2-core CPU with two trials at once, measured on the study's own
runs (the MLflow `time/*` metrics of GunPoint studies, docs/quick-budget.md): a stage-1 step costs
a + b * (series in a batch x length) at the reference width (hidden 64), scaled by WIDTH_COST for a
narrower encoder; a stage-2 run costs its prior's epochs plus a fixed generation and evaluation part,
and each dataset's FCN is trained once. Phases run one after another; within a phase the work is spread
over the concurrent slots.
"""
from __future__ import annotations

import math

STEP_COST = {"none": (0.037, 9.5e-6), "ssl-256": (0.08, 2.7e-5), "ssl-4096": (0.30, 3.7e-5)}
WIDTH_COST = {64: 1.0, 32: 0.72}    # an SSL step at tokenizer.hidden 32: 0.20 s against the formula's 0.28 (GunPoint)
TRIAL_OVERHEAD_S = 7.0              # actor start, data, evaluations beyond the steps, MLflow
STARTUP_S = 20.0                    # Ray's local cluster and the MLflow store
YARDSTICKS_S = 5.0                  # per small dataset: probes, 1-NN and MiniRocket on the raw series (cached after)
PRIOR_EPOCH_S = 0.35                # per prior epoch on a one-batch train split (width 128, depth 2)
STAGE2_FIXED_S = 25.0               # generation, FID / IS and the CAS classifier at the quick budget's sizes
FCN_EPOCH_S = 0.25                  # per FCN epoch, once per dataset
REPORT_S = 8.0                      # tables, figures and tests, plus 4 s per dataset


def step_s(method: str, points: int, proj_dim: int, hidden: int) -> float:
    a, b = STEP_COST["none" if method == "none" else "ssl-256" if proj_dim <= 256 else "ssl-4096"]
    width = 1.0 if method == "none" else WIDTH_COST.get(hidden, (hidden / 64) ** 1.3)
    return (a + b * points) * width


def trial_s(method: str, n: int, length: int, epochs: int, batch: int, proj_dim: int, hidden: int) -> float:
    """Seconds of one stage-1 trial: its optimizer steps plus the fixed part (what --simulate waits, scaled)."""
    steps = epochs * math.ceil(n / batch)
    return step_s(method, min(n, batch) * length, proj_dim, hidden) * steps + TRIAL_OVERHEAD_S


def stage2_s(n: int, batch: int, prior_epochs: int) -> float:
    """Seconds of one stage-2 run (prior, generation, FID / IS / CAS), the FCN excluded."""
    return PRIOR_EPOCH_S * prior_epochs * math.ceil(n / batch) + STAGE2_FIXED_S


def estimate_phases(plan, concurrent: int) -> dict[str, float]:
    """Wall seconds per phase of `plan` (a StudyPlan) at `concurrent` trials at once."""
    slots = max(1, concurrent)
    batch = plan.train.get("batch_size", 128)
    proj, hidden = plan.train.get("proj_dim", 4096), plan.train.get("tokenizer.hidden", 64)
    trials, longest, s2_total = 0.0, 0.0, 0.0
    s2 = {k.removeprefix("stage2."): v for k, v in plan.train.items() if k.startswith("stage2.")}
    methods = {c.fixed["ssl_method"] for c in plan.cells}
    for ds, (n, length) in plan.shapes.items():
        for cell in plan.cells:
            one = trial_s(cell.fixed["ssl_method"], n, length, plan.per_dataset[ds]["epochs"], batch, proj, hidden)
            trials += plan.seeds * cell.quota * one
            longest = max(longest, one)
        if plan.stage2 in ("best", "front"):
            runs = len(methods) * plan.seeds
            s2_total += runs * stage2_s(n, batch, s2.get("epochs", 100))
            s2_total += FCN_EPOCH_S * s2.get("fcn_epochs", 500) * math.ceil(n / 16) / 4
    return {"start-up": STARTUP_S, "trials": trials / slots + longest / 2,
            "yardsticks": YARDSTICKS_S * len(plan.datasets), "stage 2": s2_total / slots,
            "report": REPORT_S + 4 * len(plan.datasets)}


def describe_estimate(plan, concurrent: int) -> str:
    phases = estimate_phases(plan, concurrent)
    parts = ", ".join(f"{name} {_minutes(s)}" for name, s in phases.items() if s > 0)
    return f"~{_minutes(sum(phases.values()))} ({parts})"


def _minutes(seconds: float) -> str:
    return f"{seconds / 60:.0f} min" if seconds >= 300 else f"{seconds:.0f} s"

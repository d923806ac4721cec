"""The Python half of benchmarks/gpu_check.sh: what the machine has, the study's throughput, the summary.

    python benchmarks/gpu_check.py env                       # JSON: Python, torch, GPU, bf16, importable deps
    python benchmarks/gpu_check.py study --results-dir D --name N --util CSV --wall S   # JSON: trials/h, GPU %
    python benchmarks/gpu_check.py summary --work WORK --out OUT     # OUT/summary.md (tables + the raw JSON)

Only the standard library, torch and (for `study`) mlflow: it runs where the project's other deps may be missing.
"""
from __future__ import annotations

import argparse
import importlib.util
import json
import platform
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

from gpu_util import mean_util, parse

DEPS = ("numpy", "scipy", "sklearn", "pandas", "einops", "matplotlib", "threadpoolctl", "pytest", "aeon", "ray",
        "optuna", "mlflow")


def env() -> dict:
    info = {"python": platform.python_version(), "executable": sys.executable,
            "missing": [m for m in DEPS if importlib.util.find_spec(m) is None]}
    try:
        import torch
    except ImportError:
        return {**info, "torch": None, "cuda": False}
    info |= {"torch": torch.__version__, "cuda": torch.cuda.is_available(), "cuda_build": torch.version.cuda}
    if torch.cuda.is_available():
        props = torch.cuda.get_device_properties(0)
        info |= {"gpu": props.name, "gpu_memory_gib": round(props.total_memory / 2**30, 1),
                 "capability": f"{props.major}.{props.minor}",
                 "bf16_native": torch.cuda.is_bf16_supported(including_emulation=False)}
    return info


def study(results_dir: Path, name: str, util_csv: Path, wall_s: float) -> dict:
    """Trials per hour (over the study's wall time, and over the span from the first trial's start to the
    last one's end) and the GPU's mean utilisation over both, from the study's MLflow store."""
    from results.contract import GEN_FID, ROLE_TAG, ROLE_TRIAL, default_tracking_uri
    from results.errors import UsageError
    from results.runs import search_study

    util = parse(util_csv.read_text()) if util_csv.exists() else []
    out = {"wall_s": wall_s, "gpu_util_pct_wall": mean_util(util),
           "gpu_mem_peak_mib": max((m for _, _, m in util), default=None)}
    try:
        runs = search_study(name, default_tracking_uri(results_dir))
        runs = [r for r in runs if r.data.tags.get(ROLE_TAG) == ROLE_TRIAL]
    except UsageError:          # no store or no experiment
        return {**out, "trials_finished": 0, "note": "no MLflow experiment: the study did not start its trials"}
    finished = [r for r in runs if r.info.status == "FINISHED"]
    out |= {"trials": len(runs), "trials_finished": len(finished),
            "trials_failed": sum(r.info.status == "FAILED" for r in runs),
            "stage2_done": sum(GEN_FID in r.data.metrics for r in runs),
            "trials_per_hour_wall": 3600 * len(finished) / wall_s if wall_s else None}
    if finished:
        start = min(r.info.start_time for r in finished) / 1000
        end = max(r.info.end_time or r.info.start_time for r in finished) / 1000
        span = max(end - start, 1e-9)
        out |= {"search_span_s": span, "trials_per_hour_search": 3600 * len(finished) / span,
                "gpu_util_pct_search": mean_util(util, start, end),
                "trial_s_mean": sum((r.info.end_time - r.info.start_time) / 1000 for r in finished) / len(finished)}
    return out


def _pytest(junit: Path) -> dict | None:
    if not junit.exists():
        return None
    cases = ET.parse(junit).getroot().iter("testcase")
    counts, failed = {"passed": 0, "failed": 0, "skipped": 0, "xfailed": 0}, []
    for case in cases:
        name = f"{case.get('classname', '').split('.')[-1]}::{case.get('name')}"
        outcome = next((c for c in case if c.tag in ("failure", "error", "skipped")), None)
        if outcome is None:
            counts["passed"] += 1
        elif outcome.tag == "skipped":
            counts["xfailed" if "xfail" in (outcome.get("type", "") + outcome.get("message", "")) else "skipped"] += 1
        else:
            counts["failed"] += 1
            message = (outcome.get("message") or "").strip()
            failed.append(f"{name}: {message.splitlines()[0][:200] if message else outcome.tag}")
    return {**counts, "failures": failed}


def _fmt(value, spec: str = ".1f") -> str:
    return "-" if value is None else format(value, spec)


def summary(work: Path, out: Path) -> str:
    rows = (work / "parts.tsv").read_text().splitlines() if (work / "parts.tsv").exists() else []
    parts = [dict(zip(("part", "status", "seconds", "note"), row.split("\t", 3))) for row in rows if row.strip()]
    data = {"parts": parts, "env": _read_json(work / "env.json"), "pytest": _pytest(work / "junit.xml"),
            "speed": [row for f in sorted(work.glob("speed_*.json")) for row in (_read_json(f) or [])],
            "study": _read_json(work / "study.json")}
    lines = ["# GPU check", ""]
    e = data["env"] or {}
    lines += [f"- machine: {e.get('gpu', 'no GPU seen')} ({e.get('gpu_memory_gib', '-')} GiB, capability "
              f"{e.get('capability', '-')}, native bf16 {e.get('bf16_native', '-')}); Python {e.get('python', '-')}, "
              f"torch {e.get('torch', '-')} (CUDA {e.get('cuda_build', '-')})",
              f"- not importable: {', '.join(e.get('missing', [])) or 'none'}", "",
              "| part | status | seconds | note |", "|---|---|---|---|"]
    lines += [f"| {p['part']} | {p['status']} | {p['seconds']} | {p.get('note', '')} |" for p in parts]
    if data["pytest"]:
        t = data["pytest"]
        lines += ["", f"**CUDA tests**: {t['passed']} passed, {t['failed']} failed, {t['skipped']} skipped, "
                      f"{t['xfailed']} xfailed"] + [f"- FAILED {f}" for f in t["failures"]]
    if data["speed"]:
        lines += ["", "**Stage-1 speed** (median epoch after a warm-up; GPU % sampled by nvidia-smi)", "",
                  "| dataset | n x length | config | proj | precision | s/epoch | samples/s | peak MiB | GPU % |",
                  "|---|---|---|---|---|---|---|---|---|"]
        lines += [f"| {r['dataset']} | {r['n_train']}x{r['length']} | {r['config']} | {r['proj_dim']} | "
                  f"{r['precision']} | {r['epoch_s']:.3f} | {r['samples_per_s']:.0f} | {r['peak_mib']:.0f} | "
                  f"{_fmt(r.get('gpu_util_pct'))} |" for r in data["speed"]]
    s = data["study"]
    if s:
        lines += ["", f"**Packed study**: {s.get('trials_finished', 0)} of {s.get('trials', 0)} trials finished "
                      f"({s.get('trials_failed', 0)} failed), stage 2 in {s.get('stage2_done', 0)} runs; "
                      f"{_fmt(s.get('trials_per_hour_search'), '.0f')} trials/h between the first trial's start and "
                      f"the last one's end ({_fmt(s.get('trials_per_hour_wall'), '.0f')} over the whole "
                      f"{_fmt(s.get('wall_s'), '.0f')} s); mean GPU utilisation {_fmt(s.get('gpu_util_pct_search'))} % "
                      f"over the trials ({_fmt(s.get('gpu_util_pct_wall'))} % overall); peak GPU memory used "
                      f"{_fmt(s.get('gpu_mem_peak_mib'), '.0f')} MiB"]
    lines += ["", "```json", json.dumps(data, indent=1, default=str), "```", ""]
    text = "\n".join(lines)
    (out / "summary.md").write_text(text)
    return text


def _read_json(path: Path):
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="cmd", required=True)
    sub.add_parser("env")
    st = sub.add_parser("study")
    st.add_argument("--results-dir", type=Path, required=True)
    st.add_argument("--name", required=True)
    st.add_argument("--util", type=Path, required=True)
    st.add_argument("--wall", type=float, required=True)
    sm = sub.add_parser("summary")
    sm.add_argument("--work", type=Path, required=True)
    sm.add_argument("--out", type=Path, required=True)
    args = p.parse_args()
    if args.cmd == "env":
        print(json.dumps(env()))
    elif args.cmd == "study":
        print(json.dumps(study(args.results_dir, args.name, args.util, args.wall)))
    else:
        print(summary(args.work, args.out))


if __name__ == "__main__":
    main()

"""The study's answer: tables, figures and significance tests read back from its MLflow store.

Writes `<results-dir>/<study>/` and logs the same files to the study's MLflow parent runs under
`report/`. Works on a partial or running study: only FINISHED trials enter the tables, and the
summary names the trials that are missing, failed or still running.

examples:
  python results/report.py --study aug_weight-quick-20260101-120000
  python results/report.py --study my-study --mlflow-uri http://mlflow:5000 --results-dir /tmp/out
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

if __name__ == "__main__" and not __package__:   # `python results/report.py`: import from the repo root
    sys.path[0] = str(Path(__file__).resolve().parents[1])

from results.cli import run_cli  # noqa: E402
from results.contract import DEFAULT_RESULTS_DIR, default_tracking_uri  # noqa: E402
from results.study_report import write_report  # noqa: E402


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python results/report.py", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--study", required=True, help="study name (its MLflow experiment)")
    p.add_argument("--results-dir", help="where <study>/ is written and the default store lives (default: results/)")
    p.add_argument("--mlflow-uri", help="MLflow tracking URI (default: sqlite under --results-dir)")
    args = p.parse_args(argv)
    results_dir = Path(args.results_dir).expanduser().resolve() if args.results_dir else DEFAULT_RESULTS_DIR
    out = write_report(args.study, tracking_uri=args.mlflow_uri or default_tracking_uri(results_dir),
                       results_dir=results_dir)
    print(f"report: {out} (summary.md, per_config, ranks, figures)")
    return 0


if __name__ == "__main__":
    run_cli(main)

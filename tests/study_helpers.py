"""Run the real study CLI in a subprocess and read back its real MLflow store."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from mlflow.tracking import MlflowClient

REPO = Path(__file__).resolve().parents[1]
CLI = REPO / "tune" / "run_ablation.py"
CONTRACT = {"train/loss", "val/recon_loss", "val/svm_acc", "val/knn_acc", "codebook/perplexity", "codebook/usage",
            "test/svm_acc", "test/knn_acc", "test/recon_loss", "time/train_s", "time/epoch_s"}


def study_env() -> dict:
    return {**os.environ, "MLFLOW_DISABLE_TELEMETRY": "true", "RAY_USAGE_STATS_ENABLED": "0",
            "PYTHONUNBUFFERED": "1", "TUNE_DISABLE_AUTO_CALLBACK_LOGGERS": "1"}


def cli(results: Path, *args: str, timeout: float = 600, **kw) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(CLI), "--results-dir", str(results), "--no-report", *args],
                          cwd=REPO, env=study_env(), capture_output=True, text=True, timeout=timeout, **kw)


def client(results: Path) -> MlflowClient:
    return MlflowClient(f"sqlite:///{results / 'mlflow.db'}")


def runs(results: Path, study: str, role: str) -> list:
    c = client(results)
    exp = c.get_experiment_by_name(study)
    if exp is None:
        return []
    return c.search_runs([exp.experiment_id], f"tags.`ssl_vqvae.role` = '{role}'", max_results=1000)

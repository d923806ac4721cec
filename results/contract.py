"""The names the study writes and the report reads, defined once: the results path, the MLflow tags,
the metric keys and the trial key (DESIGN.md section 6)."""
from __future__ import annotations

import hashlib
import json
import re
from pathlib import Path
from typing import Any

DEFAULT_RESULTS_DIR = Path(__file__).resolve().parent   # results/ of the repository
STUDY_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,99}")   # names folders and the MLflow experiment

# MLflow tags
TRIAL_TAG = "ray.trial_id"
KEY_TAG = "ssl_vqvae.trial_key"      # trial_key(): the same after a retry, a driver kill and a resume
CONFIG_TAG = "ssl_vqvae.config_id"   # config_id(): the seeds of one configuration share it
ROLE_TAG = "ssl_vqvae.role"          # ROLE_PARENT | ROLE_TRIAL
ROLE_PARENT, ROLE_TRIAL = "parent", "trial"
PARENT_TAG = "mlflow.parentRunId"
CONFIGS_TAG = "ssl_vqvae.configs_run"  # on a parent: distinct configurations its finished search ran
INTERRUPTED_TAG = "ssl_vqvae.interrupted"   # on a parent of a stopped study: "interrupted: N of M trials finished; ..."
PARETO_TAG = "pareto"                 # on a child of a multi-objective study: "true" | "false" (its config on the front)

# metric keys
SELECTION_METRIC = "val/svm_acc"     # what the search maximises and "best" means (train split only)
TIE_BREAKERS = (("val/knn_acc", False), ("val/recon_loss", True))   # (metric, lower is better), in order
FAILED_KEY = "trial_failed"          # in the last result of a trial that failed for a reason a retry cannot change
TEST_METRICS = ("test/svm_acc", "test/knn_acc", "test/recon_loss")
GEN_METRICS = ("gen/fid", "gen/is", "gen/cas")

# --objectives: name -> (metric, sense); train-split estimates only. A study records its names, comma-joined,
# as the parent runs' param OBJECTIVES_PARAM; the first is the one Tune, schedulers and "best" use.
OBJECTIVES = {"probe": (SELECTION_METRIC, "max"), "recon": ("val/recon_loss", "min")}
OBJECTIVES_PARAM = "objectives"
PLANNED_CONFIGS_PARAM = "configs"    # on a parent: the configurations its dataset's search plans (every cell's quota)
SEEDS_PARAM = "seeds"                # on a parent: seeds per configuration; selection uses only configurations with all
PLANNED_SEEDS = "planned_seeds"      # the runs reader's column on each trial: its parent's SEEDS_PARAM

# the parameters that name a configuration in tables and run names
IDENTITY_PARAMS = ("ssl_method", "aug_set", "aug_recon_weight")
BASELINE_METHOD = "none"             # ssl_method of the TimeVQVAE baseline


def default_tracking_uri(results_dir: Path) -> str:
    """An absolute SQLite URI: trials run with other working directories (notes/ray-stack.md)."""
    return f"sqlite:///{(Path(results_dir) / 'mlflow.db').resolve()}"


def config_id(params: dict[str, Any]) -> str:
    """A short stable hash of a trial's parameters without its seed: the seeds of one configuration share it."""
    shown = {k: params[k] for k in sorted(params) if k != "seed"}
    return hashlib.sha1(json.dumps(shown, sort_keys=True, default=str).encode()).hexdigest()[:10]


def trial_key(params: dict[str, Any]) -> str:
    """dataset, configuration and seed: what makes a trial's MLflow run findable after a resume."""
    return f"{params['dataset']}-{config_id(params)}-s{params['seed']}"

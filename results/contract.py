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
ERROR_TAG = "error"                   # on a failed or stopped run: why (a traceback's tail, or the stop's reason)
DATASET_TAG, STUDY_TAG = "dataset", "study"   # on a parent run: its dataset and study
PARETO_TAG = "pareto"                 # on a child of a multi-objective study: "true" | "false" (its config on the front)
# MLflow's own run tags (mlflow.utils.mlflow_tags), which MlflowClient.create_run does not add by itself
USER_TAG, SOURCE_NAME_TAG, SOURCE_TYPE_TAG = "mlflow.user", "mlflow.source.name", "mlflow.source.type"
GIT_COMMIT_TAG, GIT_BRANCH_TAG = "mlflow.source.git.commit", "mlflow.source.git.branch"
GIT_DIRTY_TAG = "mlflow.source.git.dirty"  # "true": the checkout had uncommitted changes to tracked files
DATA_CONTEXT_TAG = "mlflow.data.context"   # on a run's dataset input: "train" (the split the tokenizer saw)
EXPERIMENT_KIND_TAG = "mlflow.experimentKind"   # MLflow 3's UI opens an experiment without it on the GenAI view
EXPERIMENT_KIND = "custom_model_development"    # ... and with this kind on its runs table
# on a parent: the best SSL configuration (results.selection's rule, never the baseline), its mean metrics
# (BEST_SSL_PREFIX + "/" + key, e.g. best_ssl/test_svm_acc) and tags (BEST_SSL_PREFIX + "." + param)
BEST_SSL_PREFIX = "best_ssl"
BUDGET_PARAM = "budget"               # on a parent: the study's budget name (smoke: a plumbing check, not a result)
SIMULATE_PARAM = "simulate"           # on a parent of a --simulate study: its scale (tune.study.simulate); metrics synthetic
PLUMBING_BUDGETS = ("smoke",)         # budgets too small for any finding: they check that the study runs end to end

# metric keys (DESIGN.md section 6); no other module spells one (tests/test_contract.py greps for them)
# stage 1, per evaluation: val/* are cross-validated estimates on the train split, holdout/* score a held-out split
VAL_SVM, VAL_KNN, VAL_RECON = "val/svm_acc", "val/knn_acc", "val/recon_loss"
HOLDOUT_SVM, HOLDOUT_KNN = "holdout/svm_acc", "holdout/knn_acc"
PERPLEXITY, USAGE, REDUNDANCY = "codebook/perplexity", "codebook/usage", "codebook/redundancy"
TRAIN_LOSS = "train/loss"
# stage 1, final (test split, reported only) and stage 2 (generation)
TEST_SVM, TEST_KNN, TEST_RECON = "test/svm_acc", "test/knn_acc", "test/recon_loss"
TEST_METRICS = (TEST_SVM, TEST_KNN, TEST_RECON)
GEN_FID, GEN_FID_LOW, GEN_FID_HIGH = "gen/fid", "gen/fid_low", "gen/fid_high"
GEN_IS, GEN_IS_STD, GEN_CAS = "gen/is", "gen/is_std", "gen/cas"
GEN_N_REAL, GEN_N_GEN = "gen/n_real", "gen/n_gen"
FCN_TEST_ACC = "fcn/test_acc"        # the dataset's FCN (FID / IS features) on the real test split
GEN_METRICS = (GEN_FID, GEN_IS, GEN_CAS)
PRIOR_TRAIN_LOSS, PRIOR_VAL_LOSS, PRIOR_EPOCH_S = "prior/train_loss", "prior/val_loss", "prior/epoch_s"
# cost, in seconds
EPOCH_S, TRAIN_S, TRIAL_S, MLFLOW_S = "time/epoch_s", "time/train_s", "time/trial_s", "time/mlflow_s"
PRIOR_TRAIN_S, FCN_S, PRIOR_S = "time/prior_train_s", "time/fcn_s", "time/prior_s"
GENERATE_S, GEN_EVAL_S, STAGE2_S = "time/generate_s", "time/gen_eval_s", "time/stage2_s"
# parent runs: the yardsticks (evaluation.yardsticks' names under RAW_PREFIX) and the summary's means
RAW_PREFIX = "raw/"
RAW_SVM, RAW_KNN, RAW_1NN, RAW_MINIROCKET = "raw/svm_acc", "raw/knn_acc", "raw/1nn_acc", "raw/minirocket_acc"
YARDSTICK_KEYS = (RAW_SVM, RAW_KNN, RAW_1NN, RAW_MINIROCKET)
BASELINE_PREFIX = "baseline"         # the baseline's best configuration, beside BEST_SSL_PREFIX's

SELECTION_METRIC = VAL_SVM           # what the search maximises and "best" means (train split only)
TIE_BREAKERS = ((VAL_KNN, False), (VAL_RECON, True))   # (metric, lower is better), in order
FAILED_KEY = "trial_failed"          # in the last result of a trial that failed for a reason a retry cannot change

# --objectives: name -> (metric, sense); train-split estimates only. A study records its names, comma-joined,
# as the parent runs' param OBJECTIVES_PARAM; the first is the one Tune, schedulers and "best" use.
OBJECTIVES = {"probe": (SELECTION_METRIC, "max"), "recon": (VAL_RECON, "min")}
OBJECTIVES_PARAM = "objectives"
PLANNED_CONFIGS_PARAM = "configs"    # on a parent: the configurations its dataset's search plans (every cell's quota)
SEEDS_PARAM = "seeds"                # on a parent: seeds per configuration; selection uses only configurations with all
PLANNED_SEEDS = "planned_seeds"      # the runs reader's column on each trial: its parent's SEEDS_PARAM

# the parameters that name a configuration in tables and run names
IDENTITY_PARAMS = ("ssl_method", "aug_set", "aug_recon_weight")
BASELINE_METHOD = "none"             # ssl_method of the TimeVQVAE baseline


def column(metric: str) -> str:
    """A metric key as a table column or a summary key: val/svm_acc -> val_svm_acc."""
    return metric.replace("/", "_")


def summary_key(prefix: str, metric: str) -> str:
    """A parent run's mean of a selected configuration: (BEST_SSL_PREFIX, TEST_SVM) -> best_ssl/test_svm_acc."""
    return f"{prefix}/{column(metric)}"


def format_weight(weight: Any) -> str:
    """aug_recon_weight as it reads in run names and the console: 0.10, 0.05, 0.125, 0.0003."""
    try:
        w = float(weight)
    except (TypeError, ValueError):
        return str(weight)
    return f"{w:.2f}" if abs(w - round(w, 2)) < 1e-9 else f"{w:.3g}"


def config_label(params: dict[str, Any]) -> str:
    """A configuration as it reads: `vibcreg/warp w=0.10`, the baseline `none`; other searched
    parameters (the `full` space's lr, codebook size) are in the run's params, not its name."""
    method = str(params.get("ssl_method", BASELINE_METHOD))
    if method == BASELINE_METHOD:
        return BASELINE_METHOD
    return f"{method}/{params.get('aug_set', '')} w={format_weight(params.get('aug_recon_weight'))}"


def run_label(params: dict[str, Any]) -> str:
    """A trial's MLflow run name (its parent run names the dataset): `vibcreg/warp w=0.10 s0`, `none s0`."""
    return f"{config_label(params)} s{params.get('seed', 0)}"


def trial_label(params: dict[str, Any], trial_id: str | None = None) -> str:
    """A trial wherever it shows outside its dataset's parent run (Ray dashboard, console):
    `GunPoint vibcreg/warp w=0.10 s0 (trial 27da8b19)`."""
    label = f"{params.get('dataset', '?')} {run_label(params)}"
    return f"{label} (trial {trial_id})" if trial_id else label


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

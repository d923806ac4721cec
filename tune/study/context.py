"""What every trial of a study shares: a module without torch, so that a simulated trial's process
(tune.study.simulate) starts light."""
from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class TrialContext:
    """What every trial of a study shares but Optuna does not search (passed with tune.with_parameters)."""
    tracking_uri: str
    experiment_id: str
    parent_runs: dict[str, str]      # dataset -> MLflow parent run id
    ucr_root: str | None = None
    cpus: float = 1.0                # per Ray Train worker
    gpus: float = 0.0
    train_storage: str = ""          # Ray Train's run storage (the Ray Train path)
    stage2: bool = False             # after the tokenizer: train its prior, log FID / IS / CAS
    fcn_cache: str = ""              # one evaluation FCN per dataset, shared by every trial
    stage2_params: bool = False      # the study trains priors (--stage2 all / best / front): log the stage2.* params
    run_tags: dict = field(default_factory=dict)   # tracking.code_version_tags() of the study driver
    simulate: float = 0.0            # --simulate: no training; trials wait this share of their estimated time
    shapes: dict = field(default_factory=dict)     # dataset -> (train series, length): what --simulate prices

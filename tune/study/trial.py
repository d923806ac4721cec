"""A study trial: one stage-1 configuration trained, tracked in MLflow and reported to Ray Tune.

Two ways to run the same `run_trial`:
- `stage1_trainable`: a Tune function trainable, for CPU trials with one worker (no Ray Train
  start-up cost, about 30 s per run on 2 cores);
- `train_driver`: a Tune trial that launches a Ray Train TorchTrainer (GPU or when asked); the
  driver holds no CPU, so it never takes the cores its own worker needs.
`--stage2 best` runs `stage2_of_finished_trial` the same two ways: a Ray task, or a Ray Train run
(`stage2_in_ray_train`) where trials run through Ray Train.
"""
from __future__ import annotations

import dataclasses
import functools
import math
import tempfile
import time
import traceback
from pathlib import Path
from typing import Callable

import matplotlib.pyplot as plt
import numpy as np
import torch

from datasets.ucr import UCRDataset, load_dataset
from results.contract import FAILED_KEY, GEN_FID, PRIOR_VAL_LOSS, SELECTION_METRIC, TRIAL_S, run_label, trial_label
from results.errors import EXPECTED
from tune.config import TrainConfig, from_flat_dict, to_flat_dict
from tune.engine.figures import reconstruction_figure
from tune.engine.tokenizer_training import TOKENIZER_FILE, load_tokenizer, train_stage1
from tune.study.retry import StoreUnavailable
from tune.study.context import TrialContext
from tune.study.tracking import TrialRun

EVAL_KEY = SELECTION_METRIC   # present in a report exactly when the epoch evaluated
ToTune = Callable[[dict, bool], None]  # (metrics, attach_checkpoint)


def run_name(cfg: TrainConfig) -> str:
    """`vibcreg/warp w=0.10 s0`, `none s0`: the run sits under its dataset's parent run."""
    return run_label(dataclasses.asdict(cfg))


def trial_run(context: TrialContext, cfg: TrainConfig, trial_id: str) -> TrialRun:
    """The trial's MLflow child run, created or found again; stage-2 params only where stage 2 applies."""
    return TrialRun(context.tracking_uri, context.experiment_id, context.parent_runs[cfg.dataset], trial_id,
                    run_name(cfg), to_flat_dict(cfg), tags=context.run_tags,
                    unused=() if context.stage2 or context.stage2_params else ("stage2.",))


def run_trial(config: dict, context: TrialContext, *, trial_id: str, to_tune: ToTune, workdir: Path) -> dict:
    """Train `config`, log it to its MLflow child run, report evaluations to Tune; return final metrics."""
    cfg = from_flat_dict(config)
    tracker = trial_run(context, cfg, trial_id)
    finished = tracker.finished_metrics(require=(GEN_FID,) if context.stage2 else ())
    if finished is not None:          # the run had finished before the study driver was killed
        to_tune(finished, False)
        return finished
    started = time.perf_counter()
    try:
        data = load_dataset(cfg.dataset, context.ucr_root, val_fraction=cfg.val_fraction,
                            seed=cfg.seed, nan_policy=cfg.nan_policy)
        tracker.log_dataset(data)

        def on_epoch(metrics: dict, epoch: int) -> None:
            evaluated = EVAL_KEY in metrics
            tracker.log_metrics(metrics, epoch, flush=evaluated)
            if evaluated:
                to_tune(metrics, True)

        final = train_stage1(cfg, data, on_epoch=on_epoch, checkpoint_dir=workdir)
        log_artifacts(tracker, cfg, data, workdir)
        if context.stage2:
            final = {**final, **run_stage2(tracker, cfg, data, workdir, context.fcn_cache)}
            to_tune(final, False)
        tracker.log_metrics({TRIAL_S: time.perf_counter() - started}, cfg.epochs)
        tracker.finish()
        return final
    except StoreUnavailable:      # the store stayed away: writing the failure would wait as long again
        raise
    except EXPECTED as err:
        # Deterministic (divergence, a bad config, bad data): a retry would fail the same way, so the trial
        # ends here, FAILED in MLflow with the reason, and Tune and Optuna are told it has no score.
        reason = str(err).splitlines()[0]
        tracker.finish("FAILED", error=reason)
        to_tune({EVAL_KEY: math.nan, FAILED_KEY: reason}, False)
        return {}
    except SystemExit:
        # tune.report raises SystemExit(0) in a trial that Tune stopped (the early-stopping scheduler, or the
        # study interrupted): no failure; the driver closes the run KILLED with the reason (TrialStatus or
        # tune.study.interrupts), which only it knows
        tracker.flush()
        raise
    except BaseException:
        tracker.finish("FAILED", error=traceback.format_exc())
        raise


def log_artifacts(tracker: TrialRun, cfg: TrainConfig, data: UCRDataset, workdir: Path) -> None:
    """The trial's config, a reconstruction plot (validation series, or train series without a validation
    split), and the final checkpoint."""
    tracker.log_dict(to_flat_dict(cfg), "config.json")
    tokenizer, _ = load_tokenizer(workdir / TOKENIZER_FILE)
    x_all, y_all = (data.x_val, data.y_val) if len(data.y_val) else (data.x_train, data.y_train)
    pick = np.unique(y_all, return_index=True)[1][:4]       # one series per class, at most 4
    x = torch.as_tensor(x_all[pick], dtype=torch.float32).unsqueeze(1)
    with torch.no_grad():
        x_hat = tokenizer(x).x_hat.squeeze(1).numpy()
    fig = reconstruction_figure(x_all[pick], x_hat, y_all[pick], title=f"{cfg.dataset} {run_name(cfg)}")
    tracker.log_figure(fig, "plots/reconstruction.png")
    plt.close(fig)
    tracker.log_artifact(workdir / TOKENIZER_FILE, "checkpoint")


def run_stage2(tracker: TrialRun, cfg: TrainConfig, data: UCRDataset, workdir: Path, fcn_cache: str) -> dict:
    """Train the trial's prior on its tokens and log the generative metrics and samples to its run."""
    from tune.engine.generation import evaluate_stage2, load_tokenizer_for
    from tune.engine.prior_training import PRIOR_FILE

    tokenizer, _ = load_tokenizer_for(workdir / TOKENIZER_FILE, data)
    s2 = dataclasses.replace(cfg.stage2, seed=cfg.seed, device=cfg.device, precision=cfg.precision)
    metrics, fig = evaluate_stage2(tokenizer, data, s2, cache_dir=fcn_cache, checkpoint_dir=workdir,
                                   on_epoch=lambda m, e: tracker.log_metrics(m, e, flush=PRIOR_VAL_LOSS in m))
    tracker.log_metrics(metrics, cfg.epochs, flush=True)
    tracker.log_figure(fig, "plots/samples.png")
    plt.close(fig)
    tracker.log_artifact(workdir / PRIOR_FILE, "checkpoint")
    return metrics


def stage2_of_finished_trial(params: dict, context: TrialContext, trial_id: str) -> dict:
    """`--stage2 best`: fetch a finished trial's tokenizer from its MLflow run and run its stage 2 into
    that run -> the stage-2 metrics. Runs in a Ray task or a Ray Train worker (see tune.study.run)."""
    cfg = from_flat_dict(params)
    tracker = trial_run(context, cfg, trial_id)
    data = load_dataset(cfg.dataset, context.ucr_root, val_fraction=cfg.val_fraction, seed=cfg.seed,
                        nan_policy=cfg.nan_policy)
    with tempfile.TemporaryDirectory(prefix="stage2-") as d:
        local = tracker.client.download_artifacts(tracker.run_id, f"checkpoint/{TOKENIZER_FILE}", d)
        return run_stage2(tracker, cfg, data, Path(local).parent, context.fcn_cache)


def stage2_worker(params: dict, *, context: TrialContext, trial_id: str) -> None:
    """Ray Train worker (rank 0 of 1) of stage2_in_ray_train: reports the stage-2 metrics, or FAILED_KEY
    with the reason of an error a retry cannot change (so Train does not retry it)."""
    import ray.train

    try:
        metrics = stage2_of_finished_trial(params, context, trial_id)
    except EXPECTED as err:
        metrics = {FAILED_KEY: str(err).splitlines()[0]}
    ray.train.report(metrics)


def stage2_in_ray_train(params: dict, trial_id: str, context: TrialContext) -> dict:
    """stage2_of_finished_trial as one Ray Train run (1 worker with a trial's CPUs and GPU share) -> its
    metrics; blocks until it ends, so the study runs several from threads. No checkpoints: a retried
    worker trains the prior again."""
    import ray.train
    from ray.train.torch import TorchTrainer

    worker = {"CPU": context.cpus, **({"GPU": context.gpus} if context.gpus else {})}
    result = TorchTrainer(
        functools.partial(stage2_worker, context=context, trial_id=trial_id),
        train_loop_config=params,
        scaling_config=ray.train.ScalingConfig(num_workers=1, use_gpu=context.gpus > 0, resources_per_worker=worker),
        run_config=ray.train.RunConfig(name=f"stage2-{trial_id}", storage_path=context.train_storage,
                                       failure_config=ray.train.FailureConfig(max_failures=1)),
    ).fit()
    metrics = dict(result.metrics or {})
    if FAILED_KEY in metrics:
        raise RuntimeError(metrics[FAILED_KEY])
    return metrics


def named_trainable(fn: Callable, class_name: str) -> type:
    """`fn` (a Tune function trainable, after tune.with_resources) as a Trainable class named `class_name`
    whose Ray actor reads as its trial in the Ray dashboard and `ray list actors --detail` (repr: dataset,
    configuration, seed, trial id). Ray takes an actor's repr once, when the actor starts: run it with
    TuneConfig(reuse_actors=False), so that each trial has its own actor."""
    from ray.tune.trainable import wrap_function

    def __repr__(self) -> str:
        return trial_label(self.config, self.trial_id)

    return type(class_name, (wrap_function(fn),), {"__repr__": __repr__, "__module__": __name__,
                                                   "__qualname__": class_name})


def stage1_trainable(config: dict, context: TrialContext) -> None:
    """Tune function trainable: the loop runs in the trial's own process."""
    from ray import tune

    trial_id = tune.get_context().get_trial_id()
    with tempfile.TemporaryDirectory(prefix="trial-") as d:
        checkpoint = tune.get_checkpoint()
        if checkpoint is not None:
            checkpoint.to_directory(d)

        def to_tune(metrics: dict, attach: bool) -> None:
            tune.report(metrics, checkpoint=tune.Checkpoint.from_directory(d) if attach else None)

        run_trial(config, context, trial_id=trial_id, to_tune=to_tune, workdir=Path(d))


def train_worker(config: dict, *, context: TrialContext, trial_id: str) -> None:
    """Ray Train worker (rank 0 of 1): the same trial, reporting through ray.train."""
    import ray.train

    with tempfile.TemporaryDirectory(prefix="trial-") as d:
        checkpoint = ray.train.get_checkpoint()
        if checkpoint is not None:
            checkpoint.to_directory(d)

        def to_tune(metrics: dict, attach: bool) -> None:
            ray.train.report(metrics, checkpoint=ray.train.Checkpoint.from_directory(d) if attach else None)

        run_trial(config, context, trial_id=trial_id, to_tune=to_tune, workdir=Path(d))


def train_driver(config: dict, context: TrialContext) -> None:
    """Tune trial that launches one Ray Train run; its name is stable, so a retry restores it."""
    import ray.train
    from ray import tune
    from ray.train.torch import TorchTrainer
    from ray.tune.integration.ray_train import TuneReportCallback

    trial_id = tune.get_context().get_trial_id()
    worker = {"CPU": context.cpus, **({"GPU": context.gpus} if context.gpus else {})}
    TorchTrainer(
        functools.partial(train_worker, context=context, trial_id=trial_id),
        train_loop_config=config,
        scaling_config=ray.train.ScalingConfig(num_workers=1, use_gpu=context.gpus > 0, resources_per_worker=worker),
        run_config=ray.train.RunConfig(
            name=f"train-{trial_id}", storage_path=context.train_storage, callbacks=[TuneReportCallback()],
            failure_config=ray.train.FailureConfig(max_failures=1),
            checkpoint_config=ray.train.CheckpointConfig(num_to_keep=1)),
    ).fit()

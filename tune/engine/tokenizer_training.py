"""Train one stage-1 configuration: the loop that Ray wraps and that tests drive directly.

Ray owns nothing here: progress leaves through an `on_epoch(metrics, epoch)` callback, and the loop
checkpoints to a plain directory and resumes from it, so the same code runs under Ray Train, as a
Tune function trainable, or from the single-run CLI.
"""
from __future__ import annotations

import dataclasses
import math
import time
from pathlib import Path
from typing import Callable

import numpy as np
import torch

from datasets.augment import augment
from datasets.ucr import UCRDataset, load_dataset
from evaluation.probes import cv_probe_accuracy, linear_probes
from evaluation.tokens import SplitEval, codebook_redundancy, evaluate_split
from models.ssl_vqvae import SSLVQVAE
from models.tokenizer import Tokenizer, TokenizerConfig
from results.contract import (EPOCH_S, HOLDOUT_KNN, HOLDOUT_SVM, PERPLEXITY, REDUNDANCY, TEST_KNN, TEST_RECON, TEST_SVM,
                              TRAIN_LOSS, TRAIN_S, USAGE, VAL_KNN, VAL_RECON, VAL_SVM)
from results.errors import CheckpointError
from tune.config import TrainConfig
from tune.engine.checkpoints import load_model, load_training_state, save_model, save_training_state
from tune.engine.loop import (OnEpoch, check_diverged, mixed_precision, select_device, step_generator, to_device,
                              train_epoch)

STATE_FILE = "state.pt"        # resumable training state, rewritten at every evaluation
TOKENIZER_FILE = "tokenizer.pt"  # final model + the arguments that rebuild it + its data block
DATA_KEYS = ("dataset", "seed", "val_fraction", "nan_policy")   # what stage 2 needs to reload the same split


def build_model(cfg: TrainConfig, length: int) -> SSLVQVAE:
    return SSLVQVAE(length, cfg.tokenizer, ssl_method=cfg.ssl_method,
                    aug_recon_weight=cfg.aug_recon_weight, proj_dim=cfg.proj_dim, ssl_latent=cfg.ssl_latent)


def load_tokenizer(path: str | Path, device: str = "cpu") -> tuple[Tokenizer, dict]:
    """Rebuild a trained tokenizer (no SSL projector: stage 2 needs the tokens only) from its file alone
    -> (tokenizer in eval mode, its data block: the dataset, seed, val_fraction and nan_policy of its split)."""
    tokenizer, blob = load_model(path, _rebuild_tokenizer, "tokenizer", device, keys=("data",),
                                 missing_hint="; train one first (python -m tune.train_one)")
    data = blob["data"]
    if not isinstance(data, dict) or not set(DATA_KEYS) <= data.keys():
        raise CheckpointError(f"{path} is not a tokenizer checkpoint: its data block lacks some of "
                              f"{', '.join(DATA_KEYS)}")
    return tokenizer, {k: data[k] for k in DATA_KEYS}


def _rebuild_tokenizer(length: int, cfg: dict) -> Tokenizer:
    return Tokenizer(length, TokenizerConfig(**cfg))


def _save_tokenizer(path: Path, tokenizer: Tokenizer, cfg: TrainConfig) -> None:
    kwargs = {"length": tokenizer.length, "cfg": dataclasses.asdict(tokenizer.cfg)}
    save_model(path, tokenizer, kwargs, data={k: getattr(cfg, k) for k in DATA_KEYS})


def _split_tensors(data: UCRDataset, device: torch.device) -> dict[str, torch.Tensor]:
    """Every split on the training device, once: a UCR split is megabytes, a GPU holds gigabytes."""
    as_x = lambda a: to_device(torch.as_tensor(a, dtype=torch.float32).unsqueeze(1), device)  # (n, 1, l)
    return {"train": as_x(data.x_train), "val": as_x(data.x_val), "test": as_x(data.x_test)}


def _lr_advice(cfg: TrainConfig) -> str:
    return f"lower lr (now {cfg.lr:g}; --set lr=...)"


def _evaluate_split(tok: Tokenizer, x: torch.Tensor, split: str, epoch: int, cfg: TrainConfig) -> SplitEval:
    """evaluate_split, stopped by TrainingDiverged before features that are not finite reach the probes."""
    out = evaluate_split(tok, x)
    check_diverged(epoch, {f"{split}/recon_loss": out.recon_loss, f"{split} features": out.features}, _lr_advice(cfg))
    return out


CV_SEED = 0   # the same folds for every trial of a dataset: configurations are compared on equal terms


def evaluate(model: SSLVQVAE, data: UCRDataset, xs: dict[str, torch.Tensor], cfg: TrainConfig,
             epoch: int) -> dict[str, float]:
    """Selection metrics from the train split; at the last epoch also the test metrics (reported only).

    `val/svm_acc` and `val/knn_acc` (the search objective) are repeated stratified k-fold cross-validated
    probe accuracies on the train split's features (the tokenizer never saw labels, so it trains on the
    whole split and the probes are validated within it). `val/recon_loss` is the eval-mode reconstruction
    loss of the held-out validation series when val_fraction > 0, else of the train split itself (so it
    measures fit, not generalisation; `test/recon_loss` is the held-out number). With val_fraction > 0,
    `holdout/*` also scores the probes on that split, for comparing the two selection protocols.
    """
    tok = model.tokenizer
    train = _evaluate_split(tok, xs["train"], "train", epoch, cfg)
    cv = cv_probe_accuracy(train.features, data.y_train, seed=CV_SEED)
    metrics = {PERPLEXITY: train.perplexity, USAGE: train.usage,
               REDUNDANCY: codebook_redundancy(tok.codebook), VAL_SVM: cv["svm_acc"],
               VAL_KNN: cv["knn_acc"], VAL_RECON: train.recon_loss}
    f_fit, y_fit = train.features, data.y_train
    if len(data.y_val):
        val = _evaluate_split(tok, xs["val"], "val", epoch, cfg)
        probes = linear_probes(train.features, data.y_train, val.features, data.y_val)
        metrics |= {VAL_RECON: val.recon_loss, HOLDOUT_SVM: probes["svm_acc"],
                    HOLDOUT_KNN: probes["knn_acc"]}
        f_fit, y_fit = np.concatenate([f_fit, val.features]), np.concatenate([y_fit, data.y_val])
    if epoch == cfg.epochs:
        # Selection is over; the test probes may use every labelled train series (train + validation).
        test = _evaluate_split(tok, xs["test"], "test", epoch, cfg)
        probes = linear_probes(f_fit, y_fit, test.features, data.y_test)
        metrics.update({TEST_SVM: probes["svm_acc"], TEST_KNN: probes["knn_acc"],
                        TEST_RECON: test.recon_loss})
    return metrics


def train_tokenizer_epoch(model: SSLVQVAE, opt, sched, x: torch.Tensor, cfg: TrainConfig, gen: torch.Generator,
                          steps: int) -> tuple[torch.Tensor, float]:
    """One pass over x: (n, 1, l) -> (mean loss as a tensor on x's device, seconds spent augmenting).

    The forward pass runs in cfg.precision (mixed_precision); augmentations and the loss stay float32.
    On a GPU the seconds spent augmenting count kernel launches, not kernels.
    """
    model.train()
    aug_s = 0.0
    aug_gen = step_generator(gen, x.device)

    def loss_fn(idx: torch.Tensor) -> torch.Tensor:
        nonlocal aug_s
        xb = x[idx]
        x_aug = None
        if cfg.ssl_method != "none":
            t0 = time.perf_counter()
            x_aug = augment(xb, cfg.aug_set, aug_gen)
            aug_s += time.perf_counter() - t0
        with mixed_precision(cfg.precision, x.device):
            return model(xb, x_aug).loss.float()

    return train_epoch(loss_fn, opt, len(x), steps, gen, x.device, sched), aug_s


def make_optimizer(model: SSLVQVAE, cfg: TrainConfig, total_steps: int):
    """AdamW (fused kernel: one pass over every parameter) with a cosine schedule over the whole run."""
    opt = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay, fused=True)
    return opt, torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=total_steps)


def train_stage1(cfg: TrainConfig, data: UCRDataset | None = None, *, on_epoch: OnEpoch | None = None,
                 checkpoint_dir: str | Path | None = None, ucr_root: str | None = None,
                 after_steps: Callable[[SSLVQVAE, int, dict], None] | None = None) -> dict[str, float]:
    """Train `cfg`, report metrics every epoch, and return the final metrics (test/* included).

    With `checkpoint_dir`, the state is saved at every evaluation and a run whose directory already
    holds a state resumes from it; a run that had finished re-reports its final metrics. A loss or
    evaluation that is no longer finite raises TrainingDiverged. after_steps(model, epoch, metrics) sees
    the model after each epoch's optimizer steps, before the evaluation: the learning-curve benchmark
    evaluates there at step counts of its own.
    """
    if data is None:
        data = load_dataset(cfg.dataset, ucr_root, val_fraction=cfg.val_fraction, seed=cfg.seed,
                            nan_policy=cfg.nan_policy)
    on_epoch = on_epoch or (lambda metrics, epoch: None)
    device = select_device(cfg.device)
    torch.manual_seed(cfg.seed)
    model = build_model(cfg, data.length).to(device)
    xs = _split_tensors(data, device)
    steps = max(1, math.ceil(len(xs["train"]) / cfg.batch_size))
    opt, sched = make_optimizer(model, cfg, cfg.epochs * steps)
    gen = torch.Generator().manual_seed(cfg.seed)   # shuffling and augmentation parameters

    state_path = Path(checkpoint_dir) / STATE_FILE if checkpoint_dir else None
    start, train_s, metrics = load_training_state(state_path, model, opt, sched, gen)
    if start == cfg.epochs:
        on_epoch(metrics, cfg.epochs)
        return metrics

    for epoch in range(start, cfg.epochs):
        t0 = time.perf_counter()
        loss = train_tokenizer_epoch(model, opt, sched, xs["train"], cfg, gen, steps)[0].item()
        epoch_s = time.perf_counter() - t0
        train_s += epoch_s
        done = epoch + 1
        check_diverged(done, {TRAIN_LOSS: loss}, _lr_advice(cfg))
        metrics = {TRAIN_LOSS: loss, EPOCH_S: epoch_s, TRAIN_S: train_s, "epochs_done": done}
        if after_steps is not None:
            after_steps(model, done, metrics)
        if done % cfg.eval_every == 0 or done == cfg.epochs:
            metrics.update(evaluate(model, data, xs, cfg, done))
            if state_path is not None:
                if done == cfg.epochs:      # before the state: a finished state always has its tokenizer file
                    _save_tokenizer(state_path.parent / TOKENIZER_FILE, model.tokenizer, cfg)
                save_training_state(state_path, model, opt, sched, gen, epoch=done, train_s=train_s, metrics=metrics)
        on_epoch(metrics, done)
    return metrics

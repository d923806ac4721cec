"""Train one stage-1 configuration: the loop that Ray wraps and that tests drive directly.

Ray owns nothing here: progress leaves through an `on_epoch(metrics, epoch)` callback, and the loop
checkpoints to a plain directory and resumes from it, so the same code runs under Ray Train, as a
Tune function trainable, or from the single-run CLI.
"""
from __future__ import annotations

import math
import time
from pathlib import Path
import numpy as np
import torch

from datasets.augment import augment, parse_aug_set
from datasets.ucr import UCRDataset, load_dataset
from evaluation.probes import linear_probes
from evaluation.tokens import codebook_redundancy, evaluate_split
from models.ssl_vqvae import SSLVQVAE
from models.tokenizer import Tokenizer
from tune.config import TrainConfig, from_flat_dict, to_flat_dict
from tune.engine.checkpoints import CheckpointError, atomic_save
from tune.engine.loop import OnEpoch, select_device

STATE_FILE = "state.pt"        # resumable training state, rewritten at every evaluation
TOKENIZER_FILE = "tokenizer.pt"  # final model + the arguments that rebuild it


def build_model(cfg: TrainConfig, length: int) -> SSLVQVAE:
    return SSLVQVAE(length, cfg.tokenizer, ssl_method=cfg.ssl_method,
                    aug_recon_weight=cfg.aug_recon_weight, proj_dim=cfg.proj_dim)


def load_tokenizer(path: str | Path, device: str = "cpu") -> tuple[Tokenizer, TrainConfig]:
    """Rebuild a trained tokenizer (no SSL projector: stage 2 needs the tokens only) from its file alone."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"no tokenizer checkpoint at {path}; train one first (python -m tune.train_one)")
    blob = torch.load(path, map_location=device, weights_only=True)
    cfg = from_flat_dict(blob["config"])
    tokenizer = Tokenizer(blob["length"], cfg.tokenizer)
    tokenizer.load_state_dict(blob["tokenizer"])
    return tokenizer.to(device).eval(), cfg


def _split_tensors(data: UCRDataset, device: torch.device) -> dict[str, torch.Tensor]:
    as_x = lambda a: torch.as_tensor(a, dtype=torch.float32).unsqueeze(1).to(device)  # (n, 1, l)
    return {"train": as_x(data.x_train), "val": as_x(data.x_val), "test": as_x(data.x_test)}


def evaluate(model: SSLVQVAE, data: UCRDataset, xs: dict[str, torch.Tensor], final: bool) -> dict[str, float]:
    """Validation metrics for model selection; with final=True also the test metrics (reported only)."""
    tok = model.tokenizer
    train = evaluate_split(tok, xs["train"])
    metrics = {"codebook/perplexity": train.perplexity, "codebook/usage": train.usage,
               "codebook/redundancy": codebook_redundancy(tok.codebook)}
    f_fit, y_fit = train.features, data.y_train
    if len(data.y_val):     # a train split of one series per class (Fungi) leaves no validation series
        val = evaluate_split(tok, xs["val"])
        probes = linear_probes(train.features, data.y_train, val.features, data.y_val)
        metrics |= {"val/recon_loss": val.recon_loss, "val/svm_acc": probes["svm_acc"], "val/knn_acc": probes["knn_acc"]}
        f_fit, y_fit = np.concatenate([f_fit, val.features]), np.concatenate([y_fit, data.y_val])
    else:
        metrics |= {"val/recon_loss": math.nan, "val/svm_acc": math.nan, "val/knn_acc": math.nan}
    if final:
        # Selection is over; the test probes may use every labelled train series (train + validation).
        test = evaluate_split(tok, xs["test"])
        probes = linear_probes(f_fit, y_fit, test.features, data.y_test)
        metrics.update({"test/svm_acc": probes["svm_acc"], "test/knn_acc": probes["knn_acc"],
                        "test/recon_loss": test.recon_loss})
    return metrics


def train_epoch(model: SSLVQVAE, opt, sched, x: torch.Tensor, cfg: TrainConfig, gen: torch.Generator,
                steps: int) -> tuple[float, float]:
    """One pass over x: (n, 1, l) in `steps` near-equal shuffled batches; returns (mean loss, augmentation s)."""
    model.train()
    total, aug_s = torch.zeros((), device=x.device), 0.0
    for idx in torch.tensor_split(torch.randperm(len(x), generator=gen), steps):
        xb = x[idx.to(x.device)]
        x_aug = None
        if cfg.ssl_method != "none":
            t0 = time.perf_counter()
            x_aug = augment(xb, cfg.aug_set, gen)
            aug_s += time.perf_counter() - t0
        out = model(xb, x_aug)
        opt.zero_grad(set_to_none=True)
        out.loss.backward()
        opt.step()
        sched.step()
        total += out.loss.detach()
    return float(total) / steps, aug_s


def make_optimizer(model: SSLVQVAE, cfg: TrainConfig, total_steps: int):
    """AdamW (fused kernel: one pass over every parameter) with a cosine schedule over the whole run."""
    opt = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay, fused=True)
    return opt, torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=total_steps)


def train_stage1(cfg: TrainConfig, data: UCRDataset | None = None, *, on_epoch: OnEpoch | None = None,
                 checkpoint_dir: str | Path | None = None, ucr_root: str | None = None) -> dict[str, float]:
    """Train `cfg`, report metrics every epoch, and return the final metrics (test/* included).

    With `checkpoint_dir`, the state is saved at every evaluation and a run whose directory already
    holds a state resumes from it; a run that had finished re-reports its final metrics.
    """
    if cfg.ssl_method != "none":
        parse_aug_set(cfg.aug_set)
    if data is None:
        data = load_dataset(cfg.dataset, ucr_root, val_fraction=cfg.val_fraction, seed=cfg.seed,
                            nan_policy=cfg.nan_policy)
    on_epoch = on_epoch or (lambda metrics, epoch: None)
    device = select_device(cfg.device)
    torch.manual_seed(cfg.seed)
    model = build_model(cfg, data.length).to(device)
    xs = _split_tensors(data, device)
    n = len(xs["train"])
    steps = max(1, math.ceil(n / cfg.batch_size))   # near-equal batches: no size-1 batch for BatchNorm
    opt, sched = make_optimizer(model, cfg, cfg.epochs * steps)
    gen = torch.Generator().manual_seed(cfg.seed)   # shuffling and augmentation parameters

    start, train_s, final = 0, 0.0, None
    state_path = Path(checkpoint_dir) / STATE_FILE if checkpoint_dir else None
    if state_path is not None and state_path.exists():
        state = torch.load(state_path, map_location=device, weights_only=True)
        model.load_state_dict(state["model"]); opt.load_state_dict(state["optimizer"])
        sched.load_state_dict(state["scheduler"]); gen.set_state(state["generator"])
        start, train_s, final = state["epoch"], state["train_s"], state["final"]
    if final is not None:
        on_epoch(final, cfg.epochs)
        return final

    for epoch in range(start, cfg.epochs):
        t0 = time.perf_counter()
        loss, _ = train_epoch(model, opt, sched, xs["train"], cfg, gen, steps)
        epoch_s = time.perf_counter() - t0
        train_s += epoch_s
        done = epoch + 1
        metrics = {"train/loss": loss, "time/epoch_s": epoch_s, "time/train_s": train_s, "epochs_done": done}
        if done % cfg.eval_every == 0 or done == cfg.epochs:
            metrics.update(evaluate(model, data, xs, final=done == cfg.epochs))
            if done == cfg.epochs:
                final = metrics
            if state_path is not None:
                _save_state(state_path, model, opt, sched, gen, done, train_s, final, cfg, data.length)
        on_epoch(metrics, done)
    return final


def _save_state(path: Path, model, opt, sched, gen, epoch, train_s, final, cfg, length) -> None:
    state = {"model": model.state_dict(), "optimizer": opt.state_dict(), "scheduler": sched.state_dict(),
             "generator": gen.get_state(), "epoch": epoch, "train_s": train_s, "final": final}
    atomic_save(path, state)
    if final is not None:
        torch.save({"config": to_flat_dict(cfg), "length": length, "tokenizer": model.tokenizer.state_dict()},
                   path.parent / TOKENIZER_FILE)

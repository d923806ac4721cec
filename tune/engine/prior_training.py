"""Stage 2's prior: a class-conditional MaskGIT trained on a tokenizer's codes, and the code <-> series helpers.

Ray-free: progress leaves through an `on_epoch(metrics, epoch)` callback, and the prior checkpoints to
a plain directory and resumes from it.
"""
from __future__ import annotations

import math
import time
from pathlib import Path

import numpy as np
import torch
from einops import rearrange

from models.modes import eval_mode
from models.prior import MaskGIT
from models.tokenizer import Tokenizer
from results.contract import PRIOR_EPOCH_S, PRIOR_TRAIN_LOSS, PRIOR_TRAIN_S, PRIOR_VAL_LOSS
from tune.config import Stage2Config
from tune.engine.checkpoints import fingerprint, load_training_state, save_model, save_training_state
from tune.engine.loop import (OnEpoch, check_diverged, mixed_precision, select_device, step_generator, to_device,
                              train_epoch)

PRIOR_STATE_FILE = "prior_state.pt"   # resumable prior training state (beside stage 1's state.pt)
PRIOR_FILE = "prior.pt"               # final prior + the arguments that rebuild it


@torch.no_grad()
def tokenize(tokenizer: Tokenizer, x: np.ndarray, batch_size: int = 512) -> torch.Tensor:
    """x: (n, l) -> code indices (n, h * w) on the CPU, in eval mode (no codebook or BatchNorm updates)."""
    x = torch.as_tensor(x, dtype=torch.float32)
    if len(x) == 0:      # a train split of one series per class leaves no validation series
        return torch.zeros((0, math.prod(tokenizer.token_shape)), dtype=torch.long)
    device = tokenizer.codebook.device
    out = []
    with eval_mode(tokenizer):
        for xb in x.split(batch_size):
            indices = tokenizer.quantize(tokenizer.encode(to_device(xb[:, None], device))).indices  # (b, h, w)
            out.append(rearrange(indices, "b h w -> b (h w)").cpu())
    return torch.cat(out).long()

@torch.no_grad()
def decode(tokenizer: Tokenizer, tokens: torch.Tensor) -> torch.Tensor:
    """tokens: (b, h * w) -> series (b, l) on the CPU, in eval mode."""
    h, _ = tokenizer.token_shape
    with eval_mode(tokenizer):
        x = tokenizer.decode_tokens(rearrange(to_device(tokens, tokenizer.codebook.device), "b (h w) -> b h w", h=h))
    return x[:, 0].float().cpu()

_TRAIN_KEYS = ("width", "depth", "heads", "dropout", "p_uncond", "epochs", "eval_every", "batch_size", "lr",
               "weight_decay", "seed")

def build_prior(n_tokens: int, n_classes: int, codebook_size: int, cfg: Stage2Config) -> MaskGIT:
    return MaskGIT(codebook_size, n_tokens, n_classes, width=cfg.width, depth=cfg.depth, heads=cfg.heads,
                   dropout=cfg.dropout, p_uncond=cfg.p_uncond)

@torch.no_grad()
def masked_loss(prior: MaskGIT, tokens: torch.Tensor, y: torch.Tensor, seed: int, batch_size: int = 512) -> float:
    """Eval-mode masked-token cross-entropy with a fixed masking draw, so epochs compare like for like."""
    if len(tokens) == 0:
        return math.nan
    gen = torch.Generator().manual_seed(seed)
    with eval_mode(prior):
        total = sum(prior.loss(tb, yb, generator=gen) * len(tb)
                    for tb, yb in zip(tokens.split(batch_size), y.split(batch_size)))
    return total.item() / len(tokens)

def train_prior(tokens, y, n_classes: int, codebook_size: int, cfg: Stage2Config, *,
                val: tuple | None = None, on_epoch: OnEpoch | None = None,
                checkpoint_dir: str | Path | None = None) -> MaskGIT:
    """Train a MaskGIT prior on tokens (n, h * w) with labels (n,); returns it in eval mode (ready to sample).

    Reports `prior/train_loss` every epoch and `prior/val_loss` (on `val` = (tokens, labels)) every
    `eval_every` epochs. With `checkpoint_dir` the state is saved at those epochs and a run whose
    directory holds a state resumes from it; a finished one re-reports its last metrics. A loss that
    is no longer finite raises TrainingDiverged. Training steps run in cfg.precision (mixed_precision);
    the tokens live on the device for the whole run.
    """
    tokens, y = torch.as_tensor(tokens).long(), torch.as_tensor(y).long()
    if tokens.ndim != 2 or len(tokens) != len(y) or len(tokens) == 0:
        raise ValueError(f"train_prior needs tokens (n, h * w) and n labels with n >= 1, got {tuple(tokens.shape)} "
                         f"and {tuple(y.shape)}")
    val_tokens, val_y = (torch.as_tensor(val[0]).long(), torch.as_tensor(val[1]).long()) if val else (tokens[:0], y[:0])
    on_epoch = on_epoch or (lambda metrics, epoch: None)
    device = select_device(cfg.device)
    torch.manual_seed(cfg.seed)      # init here; dropout draws from the global generators during training
    prior = build_prior(tokens.shape[1], n_classes, codebook_size, cfg).to(device)
    tokens, y, val_tokens, val_y = (to_device(t, device) for t in (tokens, y, val_tokens, val_y))
    steps = max(1, math.ceil(len(tokens) / cfg.batch_size))
    opt = torch.optim.AdamW(prior.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay,
                            fused=device.type == "cuda")   # the fused CPU kernel is ~2.5x slower here
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=cfg.epochs * steps)
    gen = torch.Generator().manual_seed(cfg.seed)

    identity = {"kwargs": prior.kwargs, "train": {k: getattr(cfg, k) for k in _TRAIN_KEYS},
                "tokens": fingerprint(tokens.cpu().numpy(), y.cpu().numpy())}
    state_path = Path(checkpoint_dir) / PRIOR_STATE_FILE if checkpoint_dir else None
    start, train_s, last = load_training_state(state_path, prior, opt, sched, gen, identity=identity)
    if start == cfg.epochs:
        on_epoch(last, cfg.epochs)
        return prior.eval()

    advice = f"lower the prior's lr (now {cfg.lr:g})"

    def step_loss(idx: torch.Tensor, mask_gen: torch.Generator) -> torch.Tensor:
        with mixed_precision(cfg.precision, device):
            return prior.loss(tokens[idx], y[idx], generator=mask_gen).float()

    for epoch in range(start, cfg.epochs):
        t0 = time.perf_counter()
        prior.train()
        mask_gen = step_generator(gen, device)
        loss = train_epoch(lambda idx: step_loss(idx, mask_gen), opt, len(tokens), steps, gen, device, sched).item()
        epoch_s = time.perf_counter() - t0
        train_s += epoch_s
        done = epoch + 1
        check_diverged(done, {PRIOR_TRAIN_LOSS: loss}, advice)
        last = {PRIOR_TRAIN_LOSS: loss, PRIOR_EPOCH_S: epoch_s, PRIOR_TRAIN_S: train_s}
        if done % cfg.eval_every == 0 or done == cfg.epochs:
            last[PRIOR_VAL_LOSS] = masked_loss(prior, val_tokens, val_y, seed=cfg.seed + 1)
            if len(val_tokens):     # no validation tokens: the loss is NaN by design
                check_diverged(done, {PRIOR_VAL_LOSS: last[PRIOR_VAL_LOSS]}, advice)
            if state_path is not None:
                if done == cfg.epochs:      # before the state: a finished state always has its prior file
                    save_model(state_path.parent / PRIOR_FILE, prior, prior.kwargs)
                save_training_state(state_path, prior, opt, sched, gen, epoch=done, train_s=train_s, metrics=last,
                                    identity=identity)
        on_epoch(last, done)
    return prior.eval()

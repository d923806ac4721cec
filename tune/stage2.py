"""Stage 2 for one trained tokenizer: train the MaskGIT prior on its tokens, generate, score FID / IS / CAS.

Ray-free like stage 1: progress leaves through `report(metrics, epoch)`, the prior checkpoints to a
plain directory and resumes from it. One FCN per dataset (cached on disk, shared by every trial)
extracts the features of FID and the probabilities of IS; CAS trains a fresh FCN on generated series.

    python -m tune.stage2 --checkpoint RUN/tokenizer.pt --set epochs=200 --json gen.json
"""
from __future__ import annotations

import argparse
import dataclasses
import hashlib
import json
import math
import time

from pathlib import Path
from typing import Callable

import numpy as np
import torch
from einops import rearrange

import tune.plots  # noqa: F401  (selects the headless Agg backend before pyplot loads)
import matplotlib.pyplot as plt  # noqa: E402
from datasets.ucr import UCRDataset, load_dataset
from evaluation.generative import class_balanced_labels, evaluate_generation, stratified_holdout
from models.fcn import CachedFCN, accuracy, cached_fcn, train_fcn
from models.prior import MaskGIT
from models.tokenizer import Tokenizer
from tune.cli import parse_overrides, run_cli, write_json
from tune.config import Stage2Config, from_flat_dict, to_flat_dict
from tune.stage1 import load_tokenizer, select_device

Report = Callable[[dict, int], None]
PRIOR_STATE_FILE = "prior_state.pt"   # resumable prior training state (beside stage 1's state.pt)
PRIOR_FILE = "prior.pt"               # final prior + the arguments that rebuild it
DEFAULT_FCN_CACHE = Path(__file__).resolve().parents[1] / "results" / "fcn"



def stage2_config(values: dict | None = None, base: Stage2Config | None = None) -> Stage2Config:
    """Flat keys ("epochs": 200, "guidance_scale": "2") over `base`; unknown keys are an error."""
    return from_flat_dict(values or {}, base=base or Stage2Config())


def load_tokenizer_for(path: str | Path, data: UCRDataset, device: str = "cpu"):
    """load_tokenizer, checked against the data it will tokenize -> (Tokenizer, TrainConfig)."""
    tokenizer, train_cfg = load_tokenizer(path, device)
    if train_cfg.dataset != data.name:
        raise ValueError(f"tokenizer {path} was trained on {train_cfg.dataset}, not {data.name}; "
                         f"pass that dataset's tokenizer or load {train_cfg.dataset}")
    check_inputs(tokenizer, data)
    return tokenizer, train_cfg


def check_inputs(tokenizer: Tokenizer, data: UCRDataset) -> None:
    if tokenizer.length != data.length:
        raise ValueError(f"tokenizer takes series of length {tokenizer.length} but {data.name} has length "
                         f"{data.length}; use the tokenizer trained on this dataset")
    missing = np.flatnonzero(np.bincount(data.y_train, minlength=data.n_classes) == 0)
    if len(missing):
        names = [data.classes[c] for c in missing]
        raise ValueError(f"class(es) {names} of {data.name} have no train series, so the prior cannot learn "
                         f"them; lower val_fraction or drop those classes")


@torch.no_grad()
def tokenize(tokenizer: Tokenizer, x: np.ndarray, batch_size: int = 512) -> torch.Tensor:
    """x: (n, l) -> code indices (n, h * w) on the CPU, in eval mode (no codebook or BatchNorm updates)."""
    x = torch.as_tensor(x, dtype=torch.float32)
    if len(x) == 0:      # a train split of one series per class leaves no validation series
        return torch.zeros((0, math.prod(tokenizer.token_shape)), dtype=torch.long)
    device = tokenizer.codebook.device
    was_training = tokenizer.training
    tokenizer.eval()
    out = []
    for xb in x.split(batch_size):
        indices = tokenizer.quantize(tokenizer.encode(xb[:, None].to(device))).indices  # (b, h, w)
        out.append(rearrange(indices, "b h w -> b (h w)").cpu())
    tokenizer.train(was_training)
    return torch.cat(out).long()


@torch.no_grad()
def decode(tokenizer: Tokenizer, tokens: torch.Tensor) -> torch.Tensor:
    """tokens: (b, h * w) -> series (b, l) on the CPU."""
    h, _ = tokenizer.token_shape
    tokenizer.eval()
    x = tokenizer.decode_tokens(rearrange(tokens.to(tokenizer.codebook.device), "b (h w) -> b h w", h=h))
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
    was_training = prior.training
    prior.eval()
    gen = torch.Generator().manual_seed(seed)
    total = sum(prior.loss(tb, yb, generator=gen).item() * len(tb)
                for tb, yb in zip(tokens.split(batch_size), y.split(batch_size)))
    prior.train(was_training)
    return total / len(tokens)


def _digest(*arrays) -> str:
    h = hashlib.sha256()
    for a in arrays:
        a = np.ascontiguousarray(np.asarray(a))
        h.update(str((a.dtype, a.shape)).encode())
        h.update(a.tobytes())
    return h.hexdigest()[:16]


def train_prior(tokens, y, n_classes: int, codebook_size: int, cfg: Stage2Config, *,
                val: tuple | None = None, report: Report | None = None,
                checkpoint_dir: str | Path | None = None) -> MaskGIT:
    """Train a MaskGIT prior on tokens (n, h * w) with labels (n,); returns it in eval mode.

    Reports `prior/train_loss` every epoch and `prior/val_loss` (on `val` = (tokens, labels)) every
    `eval_every` epochs. With `checkpoint_dir` the state is saved at those epochs and a run whose
    directory holds a state resumes from it; a finished one re-reports its last metrics.
    """
    tokens, y = torch.as_tensor(tokens).long(), torch.as_tensor(y).long()
    if tokens.ndim != 2 or len(tokens) != len(y) or len(tokens) == 0:
        raise ValueError(f"train_prior needs tokens (n, h * w) and n labels with n >= 1, got {tuple(tokens.shape)} "
                         f"and {tuple(y.shape)}")
    val_tokens, val_y = (torch.as_tensor(val[0]).long(), torch.as_tensor(val[1]).long()) if val else (tokens[:0], y[:0])
    report = report or (lambda metrics, epoch: None)
    device = select_device(cfg.device)
    torch.manual_seed(cfg.seed)      # init here; dropout draws from the global generators during training
    prior = build_prior(tokens.shape[1], n_classes, codebook_size, cfg).to(device)
    tokens, y, val_tokens, val_y = (t.to(device) for t in (tokens, y, val_tokens, val_y))
    n = len(tokens)
    steps = max(1, math.ceil(n / cfg.batch_size))
    opt = torch.optim.AdamW(prior.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay,
                            fused=device.type == "cuda")   # the fused CPU kernel is ~2.5x slower here
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=cfg.epochs * steps)
    gen = torch.Generator().manual_seed(cfg.seed)

    identity = {"kwargs": prior.kwargs, "train": {k: getattr(cfg, k) for k in _TRAIN_KEYS},
                "tokens": _digest(tokens.cpu().numpy(), y.cpu().numpy())}
    state_path = Path(checkpoint_dir) / PRIOR_STATE_FILE if checkpoint_dir else None
    start, train_s, last = 0, 0.0, None
    if state_path is not None and state_path.exists():
        state = torch.load(state_path, map_location=device, weights_only=True)
        if state["identity"] != identity:
            raise ValueError(f"{state_path} holds a prior of other tokens or settings; use an empty checkpoint "
                             f"directory or the settings it was trained with")
        prior.load_state_dict(state["model"]); opt.load_state_dict(state["optimizer"])
        sched.load_state_dict(state["scheduler"]); gen.set_state(state["generator"])
        if state["rng_device"] == device.type:
            _set_rng(state["rng"], device)
        start, train_s, last = state["epoch"], state["train_s"], state["last"]
        if start == cfg.epochs:
            report(last, cfg.epochs)
            return prior.eval()

    for epoch in range(start, cfg.epochs):
        t0 = time.perf_counter()
        prior.train()
        total = torch.zeros((), device=device)
        for idx in torch.tensor_split(torch.randperm(n, generator=gen), steps):
            idx = idx.to(device)
            loss = prior.loss(tokens[idx], y[idx], generator=gen)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
            total += loss.detach()
        epoch_s = time.perf_counter() - t0
        train_s += epoch_s
        done = epoch + 1
        last = {"prior/train_loss": total.item() / steps, "prior/epoch_s": epoch_s, "time/prior_train_s": train_s}
        if done % cfg.eval_every == 0 or done == cfg.epochs:
            last["prior/val_loss"] = masked_loss(prior, val_tokens, val_y, seed=cfg.seed + 1)
            if state_path is not None:
                _save(state_path, {"model": prior.state_dict(), "optimizer": opt.state_dict(),
                                   "scheduler": sched.state_dict(), "generator": gen.get_state(),
                                   "rng": _get_rng(device), "rng_device": device.type, "epoch": done,
                                   "train_s": train_s, "last": last, "identity": identity})
                if done == cfg.epochs:
                    _save(state_path.parent / PRIOR_FILE, {"kwargs": prior.kwargs, "state_dict": prior.state_dict()})
        report(last, done)
    return prior.eval()


def _get_rng(device: torch.device) -> torch.Tensor:
    """The global generator that dropout draws from on `device`, so a resumed run repeats an uninterrupted one."""
    return torch.cuda.get_rng_state(device) if device.type == "cuda" else torch.get_rng_state()


def _set_rng(state: torch.Tensor, device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.set_rng_state(state.cpu(), device)
    else:
        torch.set_rng_state(state.cpu())


def _save(path: Path, obj: dict) -> None:
    """Write atomically (temp file + rename): a kill mid-write never leaves a broken checkpoint."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    torch.save(obj, tmp)
    tmp.replace(path)


def load_prior(path: str | Path, device: str = "cpu") -> MaskGIT:
    """Rebuild a trained prior (eval mode) from its PRIOR_FILE alone."""
    blob = torch.load(path, map_location=device, weights_only=True)
    prior = MaskGIT(**blob["kwargs"])
    prior.load_state_dict(blob["state_dict"])
    return prior.to(device).eval()


def _archive_train(data: UCRDataset) -> tuple[np.ndarray, np.ndarray]:
    """The archive's train split (train + validation) in a canonical row order: independent of the trial seed."""
    x = np.concatenate([data.x_train, data.x_val])
    y = np.concatenate([data.y_train, data.y_val])
    order = np.lexsort(np.column_stack([y, x]).T[::-1])
    return x[order], y[order]


def fcn_cache_key(data: UCRDataset, cfg: Stage2Config) -> str:
    """Dataset name + a hash of its preprocessed series (mean, std, NaN policy and length show in them)
    and of the FCN's training settings: a change to either trains a new FCN."""
    x, y = _archive_train(data)
    settings = [cfg.fcn_epochs, cfg.fcn_patience, cfg.fcn_batch_size, cfg.fcn_lr, cfg.fcn_val_fraction, cfg.fcn_seed,
                data.mean, data.std, data.classes]
    digest = _digest(x, y, data.x_test, data.y_test, np.frombuffer(repr(settings).encode(), np.uint8))
    return f"{data.name}-{digest[:12]}"


def fcn_for_dataset(data: UCRDataset, cache_dir: str | Path, cfg: Stage2Config) -> CachedFCN:
    """The dataset's FCN, trained once (early stopping on a fixed stratified part of the archive's train
    split) and loaded from `cache_dir` afterwards; `.meta["test_acc"]` is its test accuracy."""
    device = select_device(cfg.device)

    def train():
        x, y = _archive_train(data)
        fit, held = stratified_holdout(y, cfg.fcn_val_fraction, cfg.fcn_seed)
        if len(held) == 0:            # one series per class: select on the train split, as Wang et al. did
            held = fit
        model, info = train_fcn(x[fit], y[fit], x[held], y[held], epochs=cfg.fcn_epochs,
                                batch_size=cfg.fcn_batch_size, lr=cfg.fcn_lr, seed=cfg.fcn_seed, device=device,
                                n_classes=data.n_classes, patience=cfg.fcn_patience)
        return model, {**dataclasses.asdict(info), "test_acc": accuracy(model, data.x_test, data.y_test),
                       "n_fit": len(fit), "n_val": len(held)}

    cached = cached_fcn(cache_dir, fcn_cache_key(data, cfg), train, device=device)
    if cached.model.n_classes < data.n_classes:
        raise ValueError(f"the cached FCN {cached.path} has {cached.model.n_classes} classes but {data.name} has "
                         f"{data.n_classes}; delete that file so the FCN is retrained")
    return cached


def generate(prior: MaskGIT, tokenizer: Tokenizer, labels: torch.Tensor, cfg: Stage2Config,
             generator: torch.Generator) -> np.ndarray:
    """Class-conditional series (n, l) for labels (n,), sampled and decoded `gen_batch` at a time."""
    device = prior.pos_emb.device
    out = [decode(tokenizer, prior.sample(yb.to(device), steps=cfg.steps, guidance_scale=cfg.guidance_scale,
                                          choice_temperature=cfg.choice_temperature, generator=generator))
           for yb in labels.split(cfg.gen_batch)]
    return torch.cat(out).numpy()


def samples_figure(x_real: np.ndarray, y_real: np.ndarray, x_gen: np.ndarray, y_gen: np.ndarray, title: str,
                   classes: tuple = (), per_class: int = 3, max_classes: int = 8):
    """Real (left) and generated (right) series, a few per class, one row per class (the first max_classes);
    `classes` names the encoded labels (the archive's own labels)."""
    rows = int(min(max(y_real.max(initial=0), y_gen.max(initial=0)) + 1, max_classes))
    fig, axes = plt.subplots(rows, 2, figsize=(9, 1.5 * rows + 0.6), sharex=True, sharey="row", squeeze=False)
    for c in range(rows):
        for ax, x, y in ((axes[c, 0], x_real, y_real), (axes[c, 1], x_gen, y_gen)):
            for series in x[y == c][:per_class]:
                ax.plot(series, lw=1.0)
        axes[c, 0].set_ylabel(f"class {classes[c] if c < len(classes) else c}", fontsize=8)
    axes[0, 0].set_title("real (train)", fontsize=9)
    axes[0, 1].set_title("generated", fontsize=9)
    fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    return fig


def evaluate_stage2(tokenizer: Tokenizer, data: UCRDataset, cfg: Stage2Config, *, cache_dir: str | Path,
                    report: Report | None = None, checkpoint_dir: str | Path | None = None):
    """Prior on the tokenizer's train tokens (validated on the validation tokens), class-conditional samples
    in the train split's proportions, and FID / IS / CAS against the real test split -> (metrics, figure).

    The tokenizer is moved to the config's device and used in eval mode.
    """
    t0 = time.perf_counter()
    check_inputs(tokenizer, data)
    device = select_device(cfg.device)
    fcn = fcn_for_dataset(data, cache_dir, cfg)           # before the prior: a bad cache fails fast
    times = {"time/fcn_s": time.perf_counter() - t0}
    tokenizer.to(device).eval()
    val = (tokenize(tokenizer, data.x_val), torch.as_tensor(data.y_val))
    prior = train_prior(tokenize(tokenizer, data.x_train), data.y_train, data.n_classes,
                        tokenizer.cfg.codebook_size, cfg, val=val, report=report, checkpoint_dir=checkpoint_dir)
    val_loss = masked_loss(prior, *(t.to(device) for t in val), seed=cfg.seed + 1)
    times["time/prior_s"] = time.perf_counter() - t0 - times["time/fcn_s"]

    t1 = time.perf_counter()
    gen = torch.Generator().manual_seed(cfg.seed)
    labels = class_balanced_labels(np.concatenate([data.y_train, data.y_val]),
                                   max(cfg.min_generate, len(data.x_test)), gen)    # the train split's proportions
    x_gen, y_gen = generate(prior, tokenizer, labels, cfg, gen), labels.numpy()
    times["time/generate_s"] = time.perf_counter() - t1

    t1 = time.perf_counter()
    cas = {"epochs": cfg.cas_epochs, "patience": cfg.cas_patience, "batch_size": cfg.cas_batch_size,
           "val_fraction": cfg.cas_val_fraction}
    scores = evaluate_generation(fcn.model, x_gen, y_gen, data.x_test, data.y_test, n_boot=cfg.n_boot,
                                 is_splits=cfg.is_splits, seed=cfg.seed, device=device, cas_kwargs=cas)
    times["time/gen_eval_s"] = time.perf_counter() - t1
    metrics = {**scores.as_dict(), "fcn/test_acc": float(fcn.meta["test_acc"]), "prior/val_loss": val_loss,
               **times, "time/stage2_s": time.perf_counter() - t0}
    figure = samples_figure(data.x_train, data.y_train, x_gen, y_gen, classes=data.classes,
                            title=f"{data.name}: real vs generated (FID {metrics['gen/fid']:.2f}, "
                                  f"IS {metrics['gen/is']:.2f}, CAS {metrics['gen/cas']:.2f})")
    return metrics, figure


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m tune.stage2", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--checkpoint", required=True,
                   help="a stage-1 tokenizer.pt (its dataset and split settings are used)")
    p.add_argument("--ucr-root", help="UCRArchive_2018 folder (default: $UCR_ARCHIVE_DIR, the download cache, "
                                      "then the datasets bundled with aeon)")
    p.add_argument("--fcn-cache", default=str(DEFAULT_FCN_CACHE), help="FCN cache folder (default %(default)s)")
    p.add_argument("--checkpoint-dir", help="save the prior's state here and resume from it")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="stage-2 config keys, e.g. --set epochs=200 --set guidance_scale=2 --set device=cpu")
    p.add_argument("--figure", help="write the real-vs-generated PNG here")
    p.add_argument("--json", help="write the metrics to this JSON file")
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    overrides = parse_overrides(args.overrides)
    cfg = stage2_config(overrides)                   # bad keys fail before anything loads
    tokenizer, train_cfg = load_tokenizer(args.checkpoint)
    data = load_dataset(train_cfg.dataset, args.ucr_root, val_fraction=train_cfg.val_fraction, seed=train_cfg.seed,
                        nan_policy=train_cfg.nan_policy)      # the tokenizer's own dataset and split
    print(json.dumps(to_flat_dict(cfg)))

    def report(metrics: dict, epoch: int) -> None:
        if "prior/val_loss" in metrics:
            print(f"prior epoch {epoch:4d}/{cfg.epochs}  train_loss={metrics['prior/train_loss']:.4f}  "
                  f"val_loss={metrics['prior/val_loss']:.4f}", flush=True)

    metrics, figure = evaluate_stage2(tokenizer, data, cfg, cache_dir=args.fcn_cache, report=report,
                                      checkpoint_dir=args.checkpoint_dir)
    print("\n".join(f"{k:20s} {v:.4f}" for k, v in metrics.items()))
    if args.figure:
        figure.savefig(args.figure, dpi=100)
    plt.close(figure)
    write_json(args.json, metrics)
    return 0


if __name__ == "__main__":
    run_cli(main)

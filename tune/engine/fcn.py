"""Training the FCN (for CAS and as the dataset's FID / IS feature extractor) and the dataset's FCN,
trained once per dataset and preprocessing and cached on disk so every trial of a study is scored by
the same network."""
from __future__ import annotations

import copy
import os
import re
import time
from dataclasses import asdict, dataclass, is_dataclass
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch
import torch.nn.functional as F
from filelock import FileLock

from datasets.ucr import UCRDataset
from evaluation.generative import stratified_holdout
from models.fcn import FCN, accuracy, as_series_batch, check_labels
from models.modes import eval_mode
from results.errors import CheckpointError
from tune.config import Stage2Config
from tune.engine.checkpoints import FORMAT, fingerprint, load_model, save_model
from tune.engine.loop import OnEpoch, select_device, to_device, train_epoch
from tune.engine.yardsticks import archive_train


@dataclass(frozen=True)
class FCNTrainInfo:
    best_epoch: int       # 1-based epoch whose weights were kept
    best_val_acc: float
    best_val_loss: float
    epochs_run: int       # < epochs when early stopping fired
    train_s: float


@torch.no_grad()
def _val_metrics(model: FCN, x: torch.Tensor, y: torch.Tensor, batch_size: int) -> tuple[float, float]:
    with eval_mode(model):
        logits = torch.cat([model(xb) for xb in x.split(batch_size)])
    return F.cross_entropy(logits, y).item(), (logits.argmax(1) == y).float().mean().item()


def train_fcn(x_train, y_train, x_val, y_val, *, epochs: int, batch_size: int = 16, lr: float = 1e-3,
              seed: int = 0, device: str | torch.device = "cpu", n_classes: int | None = None,
              patience: int = 100, report: OnEpoch | None = None) -> tuple[FCN, FCNTrainInfo]:
    """Adam on the train split; keeps the weights of the best validation epoch (accuracy, then loss) and
    returns the model in eval mode, ready to predict.

    Stops after `patience` epochs without a better validation score. The test split never enters here.
    x: (n, l) or (n, c, l); y: int labels in [0, n_classes) (n_classes defaults to max label + 1).
    """
    x_train, x_val = as_series_batch(x_train), as_series_batch(x_val)
    if len(x_val) == 0:
        raise ValueError("train_fcn needs a non-empty validation split for model selection")
    if x_train.shape[1:] != x_val.shape[1:]:
        raise ValueError(f"train series {tuple(x_train.shape[1:])} and validation series "
                         f"{tuple(x_val.shape[1:])} differ in shape")
    for name, x, y in (("train", x_train, y_train), ("validation", x_val, y_val)):
        if len(x) != len(y):
            raise ValueError(f"{name} split has {len(x)} series but {len(y)} labels")
    if n_classes is None:
        n_classes = int(max(torch.as_tensor(y_train).max(), torch.as_tensor(y_val).max())) + 1
    y_train = check_labels(y_train, n_classes, "training")
    y_val = torch.as_tensor(y_val).long()
    if int(y_val.min()) < 0 or int(y_val.max()) >= n_classes:
        raise ValueError(f"validation labels exceed the FCN head's {n_classes} classes")
    report = report or (lambda metrics, epoch: None)
    device = torch.device(device)

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = FCN(x_train.shape[1], n_classes)
    model.to(device)
    gen = torch.Generator().manual_seed(seed)
    x_train, y_train, x_val, y_val = (to_device(t, device) for t in (x_train, y_train, x_val, y_val))
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    n = len(x_train)
    steps = max(1, -(-n // batch_size))
    if n > 1:
        steps = min(steps, n // 2)  # near-equal batches of >= 2: BatchNorm cannot train on one series

    best_score, best_state, best_epoch, best = None, None, 0, (0.0, float("inf"))
    t0, epoch = time.perf_counter(), 0
    for epoch in range(1, epochs + 1):
        model.train()
        train_loss = train_epoch(lambda idx: F.cross_entropy(model(x_train[idx]), y_train[idx]), opt, n, steps,
                                 gen, device).item()
        val_loss, val_acc = _val_metrics(model, x_val, y_val, max(batch_size, 256))
        score = (val_acc, -val_loss)
        if best_score is None or score > best_score:
            best_score, best_epoch, best = score, epoch, (val_acc, val_loss)
            best_state = copy.deepcopy(model.state_dict())
        report({"train_loss": train_loss, "val_loss": val_loss, "val_acc": val_acc}, epoch)
        if epoch - best_epoch >= patience:
            break
    model.load_state_dict(best_state)
    model.eval()
    return model, FCNTrainInfo(best_epoch, best[0], best[1], epoch, time.perf_counter() - t0)


def save_fcn(path: str | os.PathLike, model: FCN, meta: dict | None = None) -> None:
    """Written atomically: concurrent trials reading the cache never see half a file."""
    save_model(path, model, model.kwargs, meta=meta or {})


def _load(path: str | os.PathLike, device: str | torch.device) -> tuple[FCN, dict]:
    model, blob = load_model(path, FCN, "FCN", device, keys=("meta",))
    return model, blob["meta"]


@dataclass(frozen=True)
class CachedFCN:
    model: FCN
    meta: dict    # what train_fn returned beside the model (e.g. FCNTrainInfo as a dict)
    path: Path
    reused: bool  # True when loaded from the cache, False when train_fn ran


def cached_fcn(cache_dir: str | os.PathLike, key: str, train_fn: Callable[[], tuple[FCN, Any]],
               device: str | torch.device = "cpu") -> CachedFCN:
    """Load `<cache_dir>/<key>.pt`, or run `train_fn() -> (model, info)` once and store it there.

    `key` names the dataset and its preprocessing (e.g. "GunPoint-3f2a9c"); the caller owns it.
    """
    if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9._=-]*", key):
        raise ValueError(f"FCN cache key {key!r} must be letters, digits, '.', '_', '=' or '-' (it names a file)")
    cache_dir = Path(cache_dir)
    cache_dir.mkdir(parents=True, exist_ok=True)
    path = cache_dir / f"{key}.pt"
    with FileLock(cache_dir / f".{key}.lock"):     # concurrent trials train the FCN once, not once each
        if path.exists():
            model, meta = _load(path, device)
            return CachedFCN(model, meta, path, reused=True)
        model, info = train_fn()
        meta = asdict(info) if is_dataclass(info) else dict(info or {})
        save_fcn(path, model, meta)
    return CachedFCN(model.to(device).eval(), meta, path, reused=False)


def fcn_cache_key(data: UCRDataset, cfg: Stage2Config) -> str:
    """Dataset name + a hash of its preprocessed series (mean, std, NaN policy and length show in them),
    of the FCN's training settings and of the checkpoint format: a change to any trains a new FCN."""
    x, y = archive_train(data)
    settings = [cfg.fcn_epochs, cfg.fcn_patience, cfg.fcn_batch_size, cfg.fcn_lr, cfg.fcn_val_fraction, cfg.fcn_seed,
                data.mean, data.std, data.classes, FORMAT]
    digest = fingerprint(x, y, data.x_test, data.y_test, np.frombuffer(repr(settings).encode(), np.uint8))
    return f"{data.name}-{digest[:12]}"


def fcn_for_dataset(data: UCRDataset, cache_dir: str | Path, cfg: Stage2Config) -> CachedFCN:
    """The dataset's FCN, trained once (early stopping on a fixed stratified part of the archive's train
    split) and loaded from `cache_dir` afterwards; `.meta["test_acc"]` is its test accuracy."""
    device = select_device(cfg.device)

    def train():
        x, y = archive_train(data)
        fit, held = stratified_holdout(y, cfg.fcn_val_fraction, cfg.fcn_seed)
        if len(held) == 0:            # one series per class: select on the train split, as Wang et al. did
            held = fit
        model, info = train_fcn(x[fit], y[fit], x[held], y[held], epochs=cfg.fcn_epochs,
                                batch_size=cfg.fcn_batch_size, lr=cfg.fcn_lr, seed=cfg.fcn_seed, device=device,
                                n_classes=data.n_classes, patience=cfg.fcn_patience)
        return model, {**asdict(info), "test_acc": accuracy(model, data.x_test, data.y_test),
                       "n_fit": len(fit), "n_val": len(held)}

    cached = cached_fcn(cache_dir, fcn_cache_key(data, cfg), train, device=device)
    if cached.model.n_classes < data.n_classes:
        raise CheckpointError(f"the cached FCN {cached.path} has {cached.model.n_classes} classes but {data.name} has "
                              f"{data.n_classes}; delete that file so the FCN is retrained")
    return cached

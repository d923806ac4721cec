"""The fully convolutional classifier of Wang et al. 2017, the feature extractor of FID/IS and the CAS model.

Wang, Yan, Oates, "Time series classification from scratch with deep neural networks: a strong
baseline", IJCNN 2017. One FCN is trained per dataset and cached on disk, so every trial of a study
scores its generated samples with the same network.
"""
from __future__ import annotations

import contextlib
import copy
import os
import re
import tempfile
import time
from dataclasses import asdict, dataclass, is_dataclass
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

Report = Callable[[dict, int], None]
FEATURE_DIM = 128


def _block(c_in: int, c_out: int, kernel: int) -> nn.Sequential:
    # "same" padding written out (left (k-1)//2, right k//2, as Keras and torch's padding="same"), which
    # spares torch a padded copy for even kernels; bias is redundant before BatchNorm
    return nn.Sequential(nn.ConstantPad1d(((kernel - 1) // 2, kernel // 2), 0.0),
                         nn.Conv1d(c_in, c_out, kernel, bias=False), nn.BatchNorm1d(c_out), nn.ReLU())


class FCN(nn.Module):
    def __init__(self, in_channels: int, n_classes: int):
        super().__init__()
        if in_channels < 1 or n_classes < 2:
            raise ValueError(f"FCN needs in_channels >= 1 and n_classes >= 2, got {in_channels} and {n_classes}")
        self.kwargs = {"in_channels": in_channels, "n_classes": n_classes}  # rebuilds the model from a checkpoint
        self.body = nn.Sequential(_block(in_channels, 128, 8), _block(128, 256, 5), _block(256, FEATURE_DIM, 3))
        self.head = nn.Linear(FEATURE_DIM, n_classes)

    @property
    def n_classes(self) -> int:
        return self.head.out_features

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """x: (b, c, l) -> global-average-pooled features (b, 128)."""
        return self.body(x).mean(dim=-1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x))  # (b, n_classes)


@dataclass(frozen=True)
class FCNPrediction:
    features: np.ndarray  # (n, 128)
    probs: np.ndarray     # (n, n_classes)

    @property
    def labels(self) -> np.ndarray:
        return self.probs.argmax(axis=1)


@dataclass(frozen=True)
class FCNTrainInfo:
    best_epoch: int       # 1-based epoch whose weights were kept
    best_val_acc: float
    best_val_loss: float
    epochs_run: int       # < epochs when early stopping fired
    train_s: float


def as_series_batch(x: np.ndarray | torch.Tensor) -> torch.Tensor:
    """(n, l) or (n, c, l) array/tensor -> float32 tensor (n, c, l)."""
    x = torch.as_tensor(x, dtype=torch.float32)
    if x.ndim == 2:
        x = x.unsqueeze(1)
    if x.ndim != 3:
        raise ValueError(f"series must have shape (n, l) or (n, c, l), got {tuple(x.shape)}")
    return x


def check_labels(y: np.ndarray | torch.Tensor, n_classes: int, what: str = "training") -> torch.Tensor:
    """Labels as int64; every class in [0, n_classes) present, none beyond the head."""
    y = torch.as_tensor(y).long().cpu()
    if y.numel() and (int(y.min()) < 0 or int(y.max()) >= n_classes):
        raise ValueError(f"{what} labels span [{int(y.min())}, {int(y.max())}] but the FCN head has "
                         f"{n_classes} classes; encode labels as 0..n_classes-1 or raise n_classes")
    missing = sorted(set(range(n_classes)) - set(y.unique().tolist()))
    if missing:
        raise ValueError(f"class(es) {missing} have no {what} series; drop them or use a split that holds them")
    return y


@torch.no_grad()
def predict(model: FCN, x: np.ndarray | torch.Tensor, *, batch_size: int = 512) -> FCNPrediction:
    """Eval-mode features and class probabilities, on the model's device; BatchNorm statistics never see x."""
    device = next(model.parameters()).device
    x = as_series_batch(x)
    was_training = model.training
    model.eval()
    feats, probs = [], []
    for xb in x.split(batch_size):
        f = model.features(xb.to(device))
        feats.append(f.float().cpu())
        probs.append(F.softmax(model.head(f), dim=-1).float().cpu())
    model.train(was_training)
    return FCNPrediction(torch.cat(feats).numpy(), torch.cat(probs).numpy())


def accuracy(model: FCN, x: np.ndarray | torch.Tensor, y: np.ndarray | torch.Tensor, *, batch_size: int = 512) -> float:
    y = torch.as_tensor(y).cpu().numpy()
    return float((predict(model, x, batch_size=batch_size).labels == y).mean())


@torch.no_grad()
def _val_metrics(model: FCN, x: torch.Tensor, y: torch.Tensor, batch_size: int) -> tuple[float, float]:
    model.eval()
    logits = torch.cat([model(xb) for xb in x.split(batch_size)])
    return F.cross_entropy(logits, y).item(), (logits.argmax(1) == y).float().mean().item()


def train_fcn(x_train, y_train, x_val, y_val, *, epochs: int, batch_size: int = 16, lr: float = 1e-3,
              seed: int = 0, device: str | torch.device = "cpu", n_classes: int | None = None,
              patience: int = 100, report: Report | None = None) -> tuple[FCN, FCNTrainInfo]:
    """Adam on the train split; keeps the weights of the best validation epoch (accuracy, then loss).

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
    x_train, y_train, x_val, y_val = x_train.to(device), y_train.to(device), x_val.to(device), y_val.to(device)
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    n = len(x_train)
    steps = max(1, -(-n // batch_size))
    if n > 1:
        steps = min(steps, n // 2)  # near-equal batches of >= 2: BatchNorm cannot train on one series

    best_score, best_state, best_epoch, best = None, None, 0, (0.0, float("inf"))
    t0, epoch = time.perf_counter(), 0
    for epoch in range(1, epochs + 1):
        model.train()
        total = torch.zeros((), device=device)
        for idx in torch.tensor_split(torch.randperm(n, generator=gen), steps):
            idx = idx.to(device)
            loss = F.cross_entropy(model(x_train[idx]), y_train[idx])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            total += loss.detach()
        val_loss, val_acc = _val_metrics(model, x_val, y_val, max(batch_size, 256))
        score = (val_acc, -val_loss)
        if best_score is None or score > best_score:
            best_score, best_epoch, best = score, epoch, (val_acc, val_loss)
            best_state = copy.deepcopy(model.state_dict())
        report({"train_loss": total.item() / steps, "val_loss": val_loss, "val_acc": val_acc}, epoch)
        if epoch - best_epoch >= patience:
            break
    model.load_state_dict(best_state)
    model.eval()
    return model, FCNTrainInfo(best_epoch, best[0], best[1], epoch, time.perf_counter() - t0)


def save_fcn(path: str | os.PathLike, model: FCN, meta: dict | None = None) -> None:
    """Write atomically (temp file in the same folder + rename): concurrent readers never see half a file."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    blob = {"kwargs": model.kwargs, "state_dict": {k: v.cpu() for k, v in model.state_dict().items()},
            "meta": meta or {}}
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)
    try:
        torch.save(blob, tmp)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)


def _load(path: str | os.PathLike, device: str | torch.device) -> tuple[FCN, dict]:
    blob = torch.load(path, map_location=device, weights_only=True)
    model = FCN(**blob["kwargs"])
    model.load_state_dict(blob["state_dict"])
    return model.to(device).eval(), blob["meta"]


def load_fcn(path: str | os.PathLike, device: str | torch.device = "cpu") -> FCN:
    """Rebuild a saved FCN (eval mode) from its checkpoint alone."""
    return _load(path, device)[0]


@dataclass(frozen=True)
class CachedFCN:
    model: FCN
    meta: dict    # what train_fn returned beside the model (e.g. FCNTrainInfo as a dict)
    path: Path
    reused: bool  # True when loaded from the cache, False when train_fn ran


@contextlib.contextmanager
def _exclusive(lock_path: Path):
    """Serialise trainers of one key so concurrent trials train the FCN once, not once each."""
    try:
        import fcntl
    except ImportError:  # no flock (Windows): the atomic rename alone keeps the cache consistent
        yield
        return
    with open(lock_path, "a") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


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
    with _exclusive(cache_dir / f".{key}.lock"):
        if path.exists():
            model, meta = _load(path, device)
            return CachedFCN(model, meta, path, reused=True)
        model, info = train_fn()
        meta = asdict(info) if is_dataclass(info) else dict(info or {})
        save_fcn(path, model, meta)
    return CachedFCN(model.to(device).eval(), meta, path, reused=False)
